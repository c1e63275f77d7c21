// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/router"
)

// adminConfig writes a minimal config whose state_dir is dir/state and
// returns its path.
func adminConfig(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "dualmx.yaml")
	text := fmt.Sprintf("hostname: relay.test.localhost\nstate_dir: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: \"\"\ntarget:\n  host: 127.0.0.1\n", filepath.Join(dir, "state"))
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// executeAs runs the CLI in process with a made-up identity.
func executeAs(t *testing.T, id router.Identity, args ...string) (string, error) {
	t.Helper()
	root := newRootCmdFor(id)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestAuditActorFromLoginUID: the audit trail names the person from the
// login uid, whatever SUDO_USER says; the claim is kept beside it, shown
// escaped, and the effective user is noted.
func TestAuditActorFromLoginUID(t *testing.T) {
	cfg := adminConfig(t, t.TempDir())
	names := map[uint32]string{1000: "alice", uint32(os.Geteuid()): "effective"}
	id := router.Identity{
		LoginUID: func() (uint32, bool) { return 1000, true },
		EUID:     os.Geteuid(),
		UserName: func(uid uint32) string { return names[uid] },
		SudoUser: "mallory\x1b[8m",
	}
	if out, err := executeAs(t, id, "--config", cfg, "address", "add", "scriba@example.nl", "--alias", "scriba@fwd.example.nl"); err != nil {
		t.Fatalf("address add: %v\n%s", err, out)
	}
	out, err := executeAs(t, id, "--config", cfg, "address", "show", "scriba@example.nl")
	if err != nil {
		t.Fatalf("address show: %v\n%s", err, out)
	}
	if want := `alice (as effective; sudo claims mallory\x1b[8m)`; !strings.Contains(out, want) {
		t.Errorf("audit trail lacks actor %q:\n%s", want, out)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("address show prints a raw ESC:\n%q", out)
	}
}
