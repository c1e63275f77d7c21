// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

// TestVerdictSurvivesRestart: the arrival checks judge a message once. A
// message deferred at its first attempt goes to the tenant, after a restart,
// with the verdict of that attempt, although the sender's SPF record has
// changed since: the restart does not judge it again.
func TestVerdictSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	var down atomic.Bool
	down.Store(true)
	tenant, err := standin.Start(standin.Options{Hook: func(e standin.Event) error {
		if down.Load() && e.Stage == standin.StageRcpt {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tenant.Close()
	// The author's SPF record before and after the restart.
	before := dnstest.Start(t, "author.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n")
	after := dnstest.Start(t, "author.test. 300 IN TXT \"v=spf1 -all\"\n")
	cfg := relayConfig(t, dir, fmt.Sprintf("hostname: relay.test\nstate_dir: %q\nresolver: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: \"\"\n"+
		"target:\n  host: 127.0.0.1\n  port: %d\n  tls: none\ndelivery:\n  retry_initial: 1s\n  retry_max: 1s\n",
		filepath.Join(dir, "state"), before.Addr(), tenant.Port()), "scriba")
	ctx := context.Background()

	start := func() (*daemon, context.CancelFunc) {
		t.Helper()
		dctx, cancel := context.WithCancel(ctx)
		d, err := startDaemon(dctx, cfg, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		return d, cancel
	}
	d, stop := start()
	msg := "From: a@author.test\r\nTo: scriba@example.nl\r\nSubject: verdict\r\nMessage-ID: <v@author.test>\r\n\r\nHello.\r\n"
	c, err := smtp.Dial(d.smtpAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@author.test", []string{"scriba@fwd.example.nl"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	deferred := func() bool {
		adm, err := spool.OpenAdmin(cfg.SpoolDir(), nil)
		if err != nil {
			return false
		}
		items, _ := adm.List()
		return len(items) == 1 && items[0].State == spool.StateDeferred
	}
	deadline := time.Now().Add(30 * time.Second)
	for !deferred() {
		if time.Now().After(deadline) {
			t.Fatal("the first attempt was not deferred")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	d.wait()

	cfg.Resolver = after.Addr()
	down.Store(false)
	d, stop = start()
	defer func() { stop(); d.wait() }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	got, err := tenant.Wait(wctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	ar, _, _ := strings.Cut(string(got[0].Data), "\r\nReceived:")
	if !strings.HasPrefix(ar, "Authentication-Results: relay.test;") || !strings.Contains(ar, "spf=pass") {
		t.Errorf("delivered after the restart with\n%s\nwant the first attempt's spf=pass", ar)
	}
}
