// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/router"
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
	dir := b.TempDir()
	tenant, err := standin.Start(standin.Options{Keep: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer tenant.Close()
	ns := dnstest.Start(b, "")
	extra := ""
	if withARC {
		key := filepath.Join(dir, "arc.key")
		if err := runKeygen(key); err != nil {
			b.Fatal(err)
		}
		extra = fmt.Sprintf("arc:\n  domain: relay.bench.test\n  selector: arc\n  key_file: %q\n", key)
	}
	cfgText := fmt.Sprintf("hostname: relay.bench.test\nstate_dir: %q\nresolver: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: \"\"\ninbound:\n  max_connections_per_ip: 1000\n"+
		"target:\n  host: 127.0.0.1\n  port: %d\n  tls: none\ndelivery:\n  concurrency: 20\n%s",
		filepath.Join(dir, "state"), ns.Addr(), tenant.Port(), extra)
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
	var next atomic.Int64
	var wg sync.WaitGroup
	for s := 0; s < 20; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := sendOne(addr, msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	if _, err := tenant.Wait(wctx, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
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
