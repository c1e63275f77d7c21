// SPDX-License-Identifier: MIT

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/migrate"
)

// TestPasswordFileMode: a password file others can read is refused, without
// the password in the error; an owner-only one is read with its newline cut.
func TestPasswordFileMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(p, []byte("geheim-42\n"), 0o644)
	if _, err := readSecretFile(p); err == nil || !strings.Contains(err.Error(), "group or others") || strings.Contains(err.Error(), "geheim") {
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

// TestImportStatus shows an import from its progress file: per folder
// found, moved and skipped, the rate, and each skipped message with its
// reason, in text (outside text escaped) and in JSON.
func TestImportStatus(t *testing.T) {
	dir := t.TempDir()
	cfg := adminConfig(t, dir)
	const mb = "scriba@hervormdputten.nl"
	path := filepath.Join(dir, "state", "import", mb+".json")
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &migrate.Progress{Mailbox: mb, Method: migrate.MethodCopy, Reason: mb + " is a shared mailbox: ...", Host: "imap.solcon.nl", User: "scriba",
		Started: start, Updated: start.Add(10 * time.Minute), Run: migrate.RunStats{Started: start, Moved: 300, Skipped: 1},
		Folders: []*migrate.FolderState{
			{Name: "INBOX", Target: "Inbox", Found: 250, Keys: keys("i", 249), Skips: []migrate.Skip{{UID: 17, Subject: "te groot\x1b[2J", Reason: "microsoft graph: HTTP 400 ErrorMessageSizeExceeded", At: start}}},
			{Name: "Verzonden", Target: "Sent Items", Found: 51, Keys: keys("v", 51)},
		}}
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	out, err := execute(t, "--config", cfg, "import", "status", mb)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"imap-copy import from imap.solcon.nl (user scriba)", "why imap-copy: " + mb + " is a shared mailbox",
		"INBOX", "Sent Items", "(all)", "301", "300", "last run: 300 moved, 1 skipped, 30 messages/minute",
		`INBOX UID 17 "te groot\\x1b[2J": microsoft graph: HTTP 400 ErrorMessageSizeExceeded`} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("raw escape in the output: %q", out)
	}

	out, err = execute(t, "--config", cfg, "import", "status", mb, "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var st struct {
		Mailbox string
		Imports []struct {
			Method  string
			Running bool
			Run     struct {
				PerMinute float64 `json:"per_minute"`
			}
			Totals  struct{ Found, Moved, Skipped int }
			Folders []struct{ Name, Target string }
			Skipped []struct {
				Folder, Subject, Reason string
				UID                     uint32
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(st.Imports) != 1 {
		t.Fatalf("imports: %+v", st)
	}
	im := st.Imports[0]
	if im.Method != "imap-copy" || im.Running || im.Run.PerMinute != 30 || im.Totals.Found != 301 || im.Totals.Moved != 300 || im.Totals.Skipped != 1 ||
		len(im.Folders) != 2 || len(im.Skipped) != 1 || im.Skipped[0].UID != 17 || im.Skipped[0].Subject != "te groot\x1b[2J" {
		t.Errorf("json status: %+v", im)
	}

	if _, err := execute(t, "--config", cfg, "import", "status", "koster@hervormdputten.nl"); err == nil || !strings.Contains(err.Error(), "no import started") {
		t.Errorf("status of an address without import: %v", err)
	}
}

// TestImportArguments: bad flags are usage errors before anything is asked
// or contacted.
func TestImportArguments(t *testing.T) {
	cfg := adminConfig(t, t.TempDir())
	for _, args := range [][]string{
		{"import", "start", "a@x", "--imap-user", "u"},
		{"import", "start", "a@x", "--imap-host", "h", "--imap-user", "u", "--method", "pop3"},
		{"import", "start", "a@x", "--imap-host", "h", "--imap-user", "u", "--imap-tls", "sometimes"},
		{"import", "start", "a@x", "--imap-host", "h", "--imap-user", "u", "--imap-port", "0"},
		{"import", "pst", "/nonexistent/file.pst", "--to", "a@x"},
		{"import", "pst", "x.pst"},
	} {
		_, err := execute(t, append([]string{"--config", cfg}, args...)...)
		if exitCode(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, exitCode(err), err)
		}
	}
}

func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}
