// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// execStarts reads the ExecStart= command lines of a unit, joining
// continuation lines, split into words as systemd does for these (spaces,
// double quotes).
func execStarts(t *testing.T, unit string) [][]string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart=")
		if !ok {
			continue
		}
		var words []string
		var cur strings.Builder
		quoted, in := false, false
		for _, r := range rest {
			switch {
			case r == '"':
				quoted, in = !quoted, true
			case r == ' ' && !quoted:
				if in {
					words = append(words, cur.String())
					cur.Reset()
					in = false
				}
			default:
				cur.WriteRune(r)
				in = true
			}
		}
		if in {
			words = append(words, cur.String())
		}
		cmds = append(cmds, words)
	}
	return cmds
}

// TestBackupAndRestore runs the commands of deploy/systemd/dualmx-backup.service
// against a running relay, changes the state afterwards, and restores as
// docs/install.md says: stop, put the copy in place, remove the -wal and
// -shm files that belong to the replaced database, start. The relay then
// has the state of the backup, and the tar holds the config and probe key.
func TestBackupAndRestore(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sqlite3 not found; CI must install Debian's sqlite3")
		}
		t.Skip("sqlite3 not installed (apt-get install sqlite3)")
	}
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("backup-1")); err != nil {
		t.Fatal(err)
	}
	waitTenant(t, e.tenant, 1)
	waitFor(t, failsafe, "the delivery on record", func() bool { return e.show("scriba@hervormdputten.nl").LastDelivery != nil })

	state := filepath.Join(e.dir, "state")
	backups := t.TempDir()
	for _, words := range execStarts(t, "../deploy/systemd/dualmx-backup.service") {
		for i, w := range words {
			w = strings.ReplaceAll(w, "/var/lib/dualmx", state)
			w = strings.ReplaceAll(w, "/var/backups/dualmx", backups)
			w = strings.ReplaceAll(w, "var/lib/dualmx", strings.TrimPrefix(state, "/"))
			w = strings.ReplaceAll(w, "etc/dualmx", strings.TrimPrefix(e.dir, "/"))
			words[i] = w
		}
		if out, err := exec.Command(words[0], words[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(words, " "), err, out)
		}
	}

	// After the backup: one more address, and the relay is stopped.
	e.mustCLI("address", "add", "koster@hervormdputten.nl", "--alias", "koster@fwd.hervormdputten.nl")
	e.stop(syscall.SIGTERM)
	copyFile(t, filepath.Join(backups, "state.db"), filepath.Join(state, "state.db"))
	for _, f := range []string{"state.db-wal", "state.db-shm"} {
		if err := os.Remove(filepath.Join(state, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	e.start()
	list := e.mustCLI("address", "list")
	if !strings.Contains(list, "scriba@hervormdputten.nl") || strings.Contains(list, "koster@") {
		t.Errorf("after the restore:\n%s", list)
	}
	if v := e.show("scriba@hervormdputten.nl"); v.LastDelivery == nil || v.State != "forwarding" {
		t.Errorf("restored address: %+v", v)
	}

	// The files: the config and the probe key, as they were.
	x := t.TempDir()
	if out, err := exec.Command("tar", "-xzf", filepath.Join(backups, "files.tar.gz"), "-C", x).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	for _, f := range []string{e.cfgPath, filepath.Join(state, "probe.key")} {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(x, f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s in the backup: %v", f, err)
		}
	}
	// Each copy replaced the last by a rename: no half-written one is left.
	if left, _ := filepath.Glob(filepath.Join(backups, "*.new")); len(left) > 0 {
		t.Errorf("temporary copies left: %v", left)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o640); err != nil {
		t.Fatal(err)
	}
}
