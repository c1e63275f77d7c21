// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/dnstest"
)

// TestServeWithDane: target.tls: dane starts a relay whose delivery checks
// TLSA records through the configured resolver (the courier refuses dane
// without one, so a start is the wiring's proof).
func TestServeWithDane(t *testing.T) {
	dir := t.TempDir()
	ns := dnstest.Start(t, "")
	cfg, err := config.Parse(filepath.Join(dir, "dualmx.yaml"), []byte("hostname: relay.example.nl\nstate_dir: state\n"+
		"resolver: \""+ns.Addr()+"\"\nlisten: {smtp: \"127.0.0.1:0\", metrics: \"\", status: \"\"}\ntarget:\n  host: example-nl.j-v1.mx.microsoft\n  tls: dane\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := startDaemon(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		cancel()
		t.Fatalf("the daemon did not start with target.tls: dane: %v", err)
	}
	cancel()
	d.wait()
}
