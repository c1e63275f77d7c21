package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/config"
)

// Until delivery checks TLSA records, a config asking for DANE must not
// start a relay that would deliver without them.
func TestServeRefusesDaneUntilDeliveryUsesIt(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "dualmx.yaml"), []byte("hostname: relay.example.nl\nstate_dir: state\n"+
		"listen: {smtp: \"127.0.0.1:0\", metrics: \"\"}\ntarget:\n  host: example-nl.j-v1.mx.microsoft\n  tls: dane\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil {
		d.stop()
		t.Fatal("the daemon started with target.tls: dane")
	}
	if !strings.Contains(err.Error(), "target.tls: dane") {
		t.Fatalf("error %q does not name the setting", err)
	}
}
