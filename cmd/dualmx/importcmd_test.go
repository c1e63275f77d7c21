package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPasswordFileMode: a password file others can read is refused, without
// the password in the error; an owner-only one is read with its newline cut.
func TestPasswordFileMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(p, []byte("geheim-42\n"), 0o644)
	if _, err := readSecretFile(p); err == nil || !strings.Contains(err.Error(), "readable by others") || strings.Contains(err.Error(), "geheim") {
		t.Fatalf("0644 file: %v", err)
	}
	os.Chmod(p, 0o600)
	if pw, err := readSecretFile(p); err != nil || pw != "geheim-42" {
		t.Fatalf("0600 file: %q %v", pw, err)
	}
	if _, err := askPassword(strings.NewReader(""), os.Stderr, "pw: "); err == nil || !strings.Contains(err.Error(), "--password-file") {
		t.Fatalf("askPassword without a terminal: %v", err)
	}
}
