// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/standin"
)

// BenchmarkRelay measures the whole relay in one process, end to end: 20
// concurrent SMTP sessions send 4 KiB messages in, the stand-in tenant counts
// them out. It exists to profile (go test -bench Relay -cpuprofile); the
// comparison with Postfix is bench/run.sh.
func BenchmarkRelay(b *testing.B) {
	for _, withARC := range []bool{false, true} {
		b.Run(fmt.Sprintf("arc=%v", withARC), func(b *testing.B) { benchRelay(b, withARC) })
	}
}

func benchRelay(b *testing.B, withARC bool) {
	tenant, err := standin.Start(standin.Options{Keep: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tenant.Close() })
	extra := ""
	if withARC {
		key := filepath.Join(b.TempDir(), "arc.key")
		if err := runKeygen(key); err != nil {
			b.Fatal(err)
		}
		extra = fmt.Sprintf("arc:\n  domain: relay.bench.test\n  selector: arc\n  key_file: %q\n", key)
	}
	addr := benchDaemon(b, tenant.Port(), extra)

	b.ResetTimer()
	sendAll(b, addr)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer wcancel()
	if _, err := tenant.Wait(wctx, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// benchDaemon starts the relay in this process for bench@fwd.example.nl,
// delivering with 20 workers to a target on 127.0.0.1:port without TLS,
// with extra added to its config; it stops when b ends.
func benchDaemon(b *testing.B, port int, extra string) string {
	dir := b.TempDir()
	ns := dnstest.Start(b, "")
	cfg := relayConfig(b, dir, fmt.Sprintf("hostname: relay.bench.test\nstate_dir: %q\nresolver: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: \"\"\ninbound:\n  max_connections_per_ip: 1000\n"+
		"target:\n  host: 127.0.0.1\n  port: %d\n  tls: none\ndelivery:\n  concurrency: 20\n%s",
		filepath.Join(dir, "state"), ns.Addr(), port, extra), "bench")
	ctx, cancel := context.WithCancel(context.Background())
	d, err := startDaemon(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); d.wait() })
	return d.smtpAddr.String()
}

// benchMessage is a 4 KiB message to bench@example.nl.
var benchMessage = []byte("From: a@author.test\r\nTo: bench@example.nl\r\nSubject: bench\r\nMessage-ID: <x@author.test>\r\n\r\n" +
	strings.Repeat(strings.Repeat("x", 76)+"\r\n", 4096/78) + "\r\n")

// sendAll sends b.N copies of benchMessage to addr over 20 concurrent
// sessions, one message each.
func sendAll(b *testing.B, addr string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := sendOne(addr, benchMessage); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func sendOne(addr string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail("a@author.test", []string{"bench@fwd.example.nl"}, strings.NewReader(string(msg))); err != nil {
		return err
	}
	return c.Quit()
}

func runKeygen(out string) error {
	root := newRootCmd()
	root.SetArgs([]string{"arc", "keygen", "--domain", "relay.bench.test", "--selector", "arc", "--out", out})
	root.SetOut(new(strings.Builder))
	return root.Execute()
}
