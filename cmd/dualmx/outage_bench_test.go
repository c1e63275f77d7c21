// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/router"
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
	dir := b.TempDir()
	var port int
	var conns atomic.Int64
	if down {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
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
		defer tenant.Close()
		port = tenant.Port()
	}
	ns := dnstest.Start(b, "")
	cfgText := fmt.Sprintf("hostname: relay.bench.test\nstate_dir: %q\nresolver: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: \"\"\ninbound:\n  max_connections_per_ip: 1000\n"+
		"target:\n  host: 127.0.0.1\n  port: %d\n  tls: none\ndelivery:\n  concurrency: 20\n  retry_initial: 1s\n  retry_max: 2s\n",
		filepath.Join(dir, "state"), ns.Addr(), port)
	cfgPath := filepath.Join(dir, "dualmx.yaml")
	os.WriteFile(cfgPath, []byte(cfgText), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(cfg.StateDir, 0o750)
	st, err := router.Open(cfg.DBPath())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st.Add(ctx, "bench@example.nl", "bench@fwd.example.nl", "bench@example.nl", "bench")
	st.Flip(ctx, router.FlipRequest{Address: "bench@example.nl", To: router.Provisioned}, nil)
	st.Flip(ctx, router.FlipRequest{Address: "bench@example.nl", To: router.Forwarding}, nil)
	st.Close()

	dctx, cancel := context.WithCancel(ctx)
	d, err := startDaemon(dctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); d.wait() }()
	addr := d.smtpAddr.String()
	msg := []byte("From: a@author.test\r\nTo: bench@example.nl\r\nSubject: bench\r\nMessage-ID: <x@author.test>\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 76)+"\r\n", 4096/78) + "\r\n")

	b.ResetTimer()
	before := conns.Load()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := sendOne(addr, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepted/s")
	if down {
		b.ReportMetric(float64(conns.Load()-before), "target-conns")
	}
}
