// SPDX-License-Identifier: MIT

package migrate

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestProgressFiles: a mailbox's imports are found whatever the case it is
// named in, the old host's first, and a mailbox whose name holds glob
// characters finds its own files only.
func TestProgressFiles(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(Dir(state), 0o750); err != nil {
		t.Fatal(err)
	}
	files := []string{
		ProgressFile(state, "Scriba@Example.nl"),
		PSTProgressFile(state, "scriba@example.nl", "/old/b.pst"),
		PSTProgressFile(state, "scriba@example.nl", "/old/a.pst"),
		PSTProgressFile(state, "a*b@example.nl", "/old/a.pst"),
		ProgressFile(state, "koster@example.nl"),
	}
	for _, f := range files {
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if files[1] == files[2] || filepath.Dir(files[0]) != Dir(state) {
		t.Fatalf("paths: %v", files)
	}
	got, err := ProgressFiles(state, "SCRIBA@example.nl")
	if err != nil {
		t.Fatal(err)
	}
	pst := []string{files[1], files[2]}
	slices.Sort(pst)
	if want := append([]string{files[0]}, pst...); !slices.Equal(got, want) {
		t.Errorf("ProgressFiles = %v, want %v", got, want)
	}
	if got, _ := ProgressFiles(state, "a*b@example.nl"); len(got) != 1 || got[0] != files[3] {
		t.Errorf("a mailbox with a '*': %v", got)
	}
	if got, _ := ProgressFiles(state, "nobody@example.nl"); len(got) != 0 {
		t.Errorf("no imports: %v", got)
	}
}

func TestClearTextAllowed(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true,
		"imap.solcon.nl": false, "192.0.2.1": false, "127.example.nl": false, "": false, "::ffff:127.0.0.1": true,
	} {
		if got := ClearTextAllowed(host); got != want {
			t.Errorf("ClearTextAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}
