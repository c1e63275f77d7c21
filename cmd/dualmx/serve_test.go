// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/config"
)

// TestLogConfig: the start line carries the effective config as key=value
// pairs (not a Go map), and with --debug one line a section follows it
// instead; the SRS secret's value appears in neither.
func TestLogConfig(t *testing.T) {
	dir := t.TempDir()
	const secret = "srs-secret-value-never-logged"
	secretFile := filepath.Join(dir, "srs.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "dualmx.yaml")
	if err := os.WriteFile(cfgPath, []byte("hostname: relay.example.nl\nstate_dir: "+filepath.Join(dir, "state")+
		"\ntarget:\n  host: example-nl.mail.protection.outlook.com\nsrs:\n  domain: fwd.example.nl\n  secret_file: "+secretFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logConfig(context.Background(), newLogger("text", &buf), cfg)
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, `msg="starting dualmx" config.file=`+cfgPath) ||
		!strings.Contains(out, " config.srs.secret_file="+secretFile+" ") || !strings.Contains(out, " config.arc=off ") ||
		strings.Contains(out, "map[") || strings.Contains(out, secret) {
		t.Errorf("start line:\n%s", out)
	}

	buf.Reset()
	logConfig(context.Background(), newLeveledLogger("text", &buf, slog.LevelDebug), cfg)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 10 || !strings.Contains(lines[0], "config="+cfgPath) || strings.Contains(buf.String(), secret) {
		t.Fatalf("debug lines:\n%s", buf.String())
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, "level=DEBUG msg=config ") {
			t.Errorf("not a config section line: %s", l)
		}
	}
	if !strings.Contains(lines[2], "msg=config listen.smtp=") || !strings.Contains(lines[7], "msg=config srs.domain=fwd.example.nl ") {
		t.Errorf("sections out of order:\n%s", buf.String())
	}
}
