// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/router"
)

// foreignStateDir returns a config whose state_dir exists and belongs to
// another user than this process, and that user's name. As root it chowns
// a new directory to 65534 (CI runs as root); otherwise it points state_dir
// at "/", which belongs to root and where nothing can be created anyway.
func foreignStateDir(t *testing.T) (cfgPath, stateDir string, owner uint32) {
	t.Helper()
	dir := t.TempDir()
	stateDir, owner = "/", 0
	if os.Geteuid() == 0 {
		stateDir, owner = filepath.Join(dir, "state"), 65534
		if err := os.Mkdir(stateDir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(stateDir, int(owner), int(owner)); err != nil {
			t.Skipf("cannot give a directory to uid %d: %v", owner, err)
		}
	}
	cfgPath = filepath.Join(dir, "dualmx.yaml")
	text := fmt.Sprintf("hostname: relay.test.localhost\nstate_dir: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: \"\"\ntarget:\n  host: 127.0.0.1\n", stateDir)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, stateDir, owner
}

// TestCommandsRefuseAnotherUsersStateDir: every command that changes the
// state, and serve, refuse to run as another user than state_dir's owner,
// name the user to run as, and create nothing; the commands that only show
// open the state read-only and are not refused (a member of the state's
// group may run them), and create nothing either; check-config still runs.
func TestCommandsRefuseAnotherUsersStateDir(t *testing.T) {
	cfg, stateDir, owner := foreignStateDir(t)
	before, _ := os.ReadDir(stateDir)
	id := router.Identity{EUID: os.Geteuid()}
	want := "sudo -u " + shellQuote(userName(owner)) + " dualmx"
	run := func(args []string) (string, error) {
		t.Helper()
		// Bounded: a serve that is not refused would run until a signal.
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := executeAs(t, id, append([]string{"--config", cfg}, args...)...)
			done <- result{out, err}
		}()
		select {
		case r := <-done:
			return r.out, r.err
		case <-time.After(30 * time.Second): // a command that runs (serve) never returns
			t.Fatalf("dualmx %s as uid %d ran instead of refusing", strings.Join(args, " "), os.Geteuid())
		}
		return "", nil
	}
	for _, args := range [][]string{
		{"address", "add", "scriba@example.nl", "--alias", "scriba@fwd.example.nl"},
		{"address", "flip", "scriba@example.nl", "forwarding"},
		{"queue", "retry", "--all"},
		{"queue", "drop", "x", "--reason", "r"},
		{"cutover", "status"}, // it records the state it finds
		{"serve"},
	} {
		out, err := run(args)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "belongs to") {
			t.Errorf("dualmx %s as uid %d: err %v (exit %d), want a refusal naming %q\n%s", strings.Join(args, " "), os.Geteuid(), err, exitCode(err), want, out)
		}
	}
	for _, args := range [][]string{
		{"address", "list"},
		{"address", "show", "scriba@example.nl"},
		{"queue", "list"},
		{"import", "status", "scriba@example.nl"},
	} {
		if out, err := run(args); err != nil && strings.Contains(err.Error(), "belongs to") {
			t.Errorf("dualmx %s as uid %d: refused (%v), but it only reads\n%s", strings.Join(args, " "), os.Geteuid(), err, out)
		}
	}
	if after, _ := os.ReadDir(stateDir); len(after) != len(before) {
		t.Errorf("state_dir changed: %d entries before, %d after", len(before), len(after))
	}
	if out, err := executeAs(t, id, "--config", cfg, "check-config"); err != nil && !strings.Contains(out, "state_dir: user ") {
		t.Errorf("check-config refused: %v\n%s", err, out)
	}
}

// TestOwnerSuggestion: the suggested command carries the config (sudo
// resets the environment) and is quoted for the shell.
func TestOwnerSuggestion(t *testing.T) {
	for _, tc := range []struct {
		argv    []string
		fromEnv string
		want    string
	}{
		{[]string{"/usr/local/bin/dualmx", "--config", "/etc/dualmx/dualmx.yaml", "queue", "list"}, "", "dualmx --config /etc/dualmx/dualmx.yaml queue list"},
		{[]string{"dualmx", "queue", "drop", "ID", "--reason", "it's spam"}, "/etc/dualmx/dualmx.yaml", `dualmx --config /etc/dualmx/dualmx.yaml queue drop ID --reason 'it'\''s spam'`},
	} {
		if got := suggestion(tc.argv, tc.fromEnv); got != tc.want {
			t.Errorf("suggestion(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}
