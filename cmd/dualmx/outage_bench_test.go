// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/dualmx/dualmx/standin"
)

// BenchmarkAcceptWhileTargetDown measures how fast the relay accepts mail
// (20 sessions, 4 KiB messages, 1 s retries) with the target up and with
// the target down (every connection closed at once), and how many
// connections the down target saw: delivery retries must not eat the CPU
// the inbound side needs (issue 18). The outage part of bench/run.sh does
// the same against the built binary, beside Postfix.
func BenchmarkAcceptWhileTargetDown(b *testing.B) {
	for _, down := range []bool{false, true} {
		b.Run(fmt.Sprintf("down=%v", down), func(b *testing.B) { benchAccept(b, down) })
	}
}

func benchAccept(b *testing.B, down bool) {
	var port int
	var conns atomic.Int64
	if down {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				c.Close()
			}
		}()
		port = ln.Addr().(*net.TCPAddr).Port
	} else {
		tenant, err := standin.Start(standin.Options{Keep: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tenant.Close() })
		port = tenant.Port()
	}
	addr := benchDaemon(b, port, "  retry_initial: 1s\n  retry_max: 2s\n")

	b.ResetTimer()
	before := conns.Load()
	sendAll(b, addr)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepted/s")
	if down {
		b.ReportMetric(float64(conns.Load()-before), "target-conns")
	}
}
