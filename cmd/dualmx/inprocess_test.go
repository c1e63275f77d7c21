// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/router"
)

// relayConfig writes cfgText as dir/dualmx.yaml, loads it, and makes
// local@example.nl a forwarding address, reached as local@fwd.example.nl:
// the config of a daemon a test or benchmark starts in this process.
func relayConfig(tb testing.TB, dir, cfgText, local string) *config.Config {
	tb.Helper()
	cfgPath := filepath.Join(dir, "dualmx.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		tb.Fatal(err)
	}
	st, err := router.Open(cfg.DBPath())
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	addr := local + "@example.nl"
	if _, err := st.Add(ctx, addr, local+"@fwd.example.nl", addr, "test"); err != nil {
		tb.Fatal(err)
	}
	for _, to := range []router.State{router.Provisioned, router.Forwarding} {
		if _, err := st.Flip(ctx, router.FlipRequest{Address: addr, To: to}, nil); err != nil {
			tb.Fatal(err)
		}
	}
	return cfg
}
