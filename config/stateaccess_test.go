// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadSettings: the admin commands' load checks every value but does
// not look at the files the config names, which a member of the service's
// group may not be allowed to read; Load does.
func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dualmx.yaml")
	missing := filepath.Join(dir, "no-such.key")
	writeFile(t, p, withMinimal("arc:", "  domain: relay.example.nl", "  selector: arc2026", "  key_file: "+missing), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "arc.key_file") {
		t.Fatalf("Load with a missing key: %v", err)
	}
	c, err := LoadSettings(p)
	if err != nil {
		t.Fatalf("LoadSettings: %v", err)
	}
	if c.ARC.KeyFile != missing || c.StateDir != "/var/lib/dualmx" {
		t.Errorf("LoadSettings read %+v", c)
	}
	writeFile(t, p, withMinimal("log_format: chatty"), 0o600)
	if _, err := LoadSettings(p); err == nil || !strings.Contains(err.Error(), "log_format") {
		t.Errorf("LoadSettings with a bad value: %v", err)
	}
}

// TestCheckStateAccess: as this process's user, a state_dir it made can be
// written and read, one that does not exist yet can be made inside a
// directory it may write, and one that is a file is reported. The cases
// where the user lacks access need another user; e2e's
// TestReadOnlyCommandsAsAnotherUser runs them as nobody.
func TestCheckStateAccess(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x", 0o600)
	for _, tc := range []struct {
		name, stateDir string
		need           Access
		want           string // "" for no error
	}{
		{"existing, write", dir, WriteState, ""},
		{"existing, read", dir, ReadState, ""},
		{"to be made", filepath.Join(dir, "a", "b", "state"), WriteState, ""},
		{"a file", file, WriteState, "not a directory"},
		{"a file, read", file, ReadState, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{StateDir: tc.stateDir}
			err := c.CheckStateAccess(tc.need)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CheckStateAccess = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the check created a directory")
	}
}

// TestAccessErrorWords: what an admin reads names the user, the file or the
// directory in the way, and its owner, group and mode.
func TestAccessErrorWords(t *testing.T) {
	for _, tc := range []struct {
		e    AccessError
		want string
	}{
		{AccessError{Path: "/var/lib/dualmx/state.db", Need: "write", User: "alice", Owner: "dualmx", Group: "dualmx", Mode: 0o640},
			"user alice cannot write /var/lib/dualmx/state.db (owner dualmx, group dualmx, mode 0640)"},
		{AccessError{Path: "/var/lib/dualmx", Need: "create", Blocker: "/var/lib", User: "dualmx", Owner: "root", Group: "root", Mode: 0o755},
			"user dualmx cannot create /var/lib/dualmx: it may not write /var/lib (owner root, group root, mode 0755)"},
		{AccessError{Path: "/srv/state/state.db", Need: "read", Blocker: "/srv/state", User: "bob", Owner: "dualmx", Group: "dualmx", Mode: 0o700},
			"user bob cannot read /srv/state/state.db: it may not enter /srv/state (owner dualmx, group dualmx, mode 0700)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
