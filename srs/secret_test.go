// SPDX-License-Identifier: MIT

package srs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSecret(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// Chmod explicitly: WriteFile's mode is filtered by the umask.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadSecrets(t *testing.T) {
	const secret = "s3cr3t-k3y-do-not-log"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // the secret, or "" when refused
		errText string // part of the error when refused
	}{
		{"trailing newline trimmed", secret + "\n", 0o600, secret, ""},
		{"CRLF trimmed", secret + "\r\n", 0o600, secret, ""},
		{"no newline", secret, 0o400, secret, ""},
		{"inner spaces kept", " " + secret + " \n", 0o600, " " + secret + " ", ""},
		{"group-readable", secret, 0o640, "", "mode 0640"},
		{"world-readable", secret, 0o604, "", "mode 0604"},
		{"group-writable", secret, 0o620, "", "chmod 600"},
		{"empty", "", 0o600, "", "empty"},
		{"only a newline", "\n", 0o600, "", "empty"},
		{"postsrsd-style multi-line", secret + "\nolder-secret\n", 0o600, "", "more than one line"},
		{"NUL byte", "abc\x00def", 0o600, "", "NUL"},
		{"too large", strings.Repeat("x", maxSecretFile+1), 0o600, "", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeSecret(t, t.TempDir(), "secret", tt.content, tt.mode)
			cur, prev, err := LoadSecrets(p, nil)
			if tt.want != "" {
				if err != nil || string(cur) != tt.want || prev != nil {
					t.Fatalf("LoadSecrets = %q, %q, %v; want %q", cur, prev, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadSecrets = %q, want an error containing %q", cur, tt.errText)
			}
			if !strings.Contains(err.Error(), tt.errText) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q should name the file and contain %q", err, tt.errText)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the secret: %q", err)
			}
		})
	}
}

func TestLoadSecretsPrevious(t *testing.T) {
	dir := t.TempDir()
	cur := writeSecret(t, dir, "current", "new\n", 0o600)
	old1 := writeSecret(t, dir, "old1", "older\n", 0o600)
	old2 := writeSecret(t, dir, "old2", "oldest\n", 0o400)
	c, prev, err := LoadSecrets(cur, []string{old1, old2})
	if err != nil {
		t.Fatal(err)
	}
	if string(c) != "new" || len(prev) != 2 || string(prev[0]) != "older" || string(prev[1]) != "oldest" {
		t.Fatalf("LoadSecrets = %q, %q", c, prev)
	}

	// One bad previous file refuses the whole set: running with fewer
	// secrets than configured would silently turn valid bounces into 550s.
	bad := writeSecret(t, dir, "bad", "leaky\n", 0o644)
	if _, _, err := LoadSecrets(cur, []string{old1, bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad previous secret: %v", err)
	}
}

func TestLoadSecretsNotAFile(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"", filepath.Join(dir, "missing"), dir} {
		if _, _, err := LoadSecrets(p, nil); err == nil {
			t.Errorf("LoadSecrets(%q) succeeded", p)
		}
	}
	// A symlink is judged by what it points at.
	target := writeSecret(t, dir, "target", "abc\n", 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadSecrets(link, nil); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Errorf("symlink to a readable file: %v", err)
	}
}
