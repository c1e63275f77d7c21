// SPDX-License-Identifier: MIT

package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestJournalSurvivesACrash: messages recorded in the journal after the
// last snapshot are known on the next load; a line torn by a crash is
// ignored; a pending create with no "done" stays pending, to be looked up.
func TestJournalSurvivesACrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.json")
	p := &Progress{Mailbox: mailbox, Method: MethodCopy}
	f := p.folder("INBOX")
	f.setValidity(7)
	f.markDone(7, 1, "k1")
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []journalLine{
		{Op: "pending", Folder: "INBOX", FolderID: "f1", UID: 2, Key: "k2"},
		{Op: "done", Folder: "INBOX", Validity: 7, UID: 2, Key: "k2"},
		{Op: "pending", Folder: "INBOX", FolderID: "f1", UID: 3, Key: "k3"},
	} {
		if err := j.write(l); err != nil {
			t.Fatal(err)
		}
	}
	j.f.WriteString(`{"op":"done","folder":"INBOX","uid":3,"ke`)
	j.Close()
	q, err := LoadProgress(path)
	if err != nil {
		t.Fatal(err)
	}
	g := q.folder("INBOX")
	if !g.doneUID(1) || !g.doneUID(2) || g.doneUID(3) || !g.doneKey("k2") || g.Moved != 2 {
		t.Errorf("after replay: %+v", g)
	}
	if len(q.Pending) != 1 || q.Pending[0].Key != "k3" || q.Pending[0].FolderID != "f1" {
		t.Errorf("pending: %+v", q.Pending)
	}
	// A snapshot takes the journal in and empties it.
	if err := q.Save(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(journalPath(path)); len(b) != 0 {
		t.Errorf("journal after save: %q", b)
	}
	r, _ := LoadProgress(path)
	if rf := r.folder("INBOX"); rf.UIDs != "1-2" || len(r.Pending) != 1 {
		t.Errorf("reloaded: uids %q pending %v", rf.UIDs, r.Pending)
	}
}

// TestOldProgressFileRefused: a version 1 file came from the copy that made
// drafts; it is not silently continued.
func TestOldProgressFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(path, []byte(`{"mailbox":"a@x","method":"imap-copy","done":{"INBOX":["<1@x>"]}}`), 0o600)
	if _, err := LoadProgress(path); err == nil || !strings.Contains(err.Error(), "drafts") {
		t.Fatalf("LoadProgress(v1) = %v", err)
	}
}

func TestUIDRanges(t *testing.T) {
	set := map[uint32]bool{1: true, 2: true, 3: true, 7: true, 9: true, 10: true}
	s := formatUIDs(set)
	if s != "1-3,7,9-10" {
		t.Fatalf("formatUIDs = %q", s)
	}
	back := parseUIDs(s + ",x,5-1,4294967295")
	if len(back) != 7 || !back[4294967295] || back[5] {
		t.Errorf("parseUIDs = %v", back)
	}
}

// TestProgressFilesReadableByTheGroup: the progress file, its journal and
// its lock are 0640, like the state, so a member of the state's group can
// run "import status"; whatever the umask, and also where an earlier
// dualmx made them 0600.
func TestProgressFilesReadableByTheGroup(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, earlier := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "p.json")
		if earlier {
			for _, f := range []string{path, journalPath(path), path + ".lock"} {
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		unlock, err := lockProgress(path)
		if err != nil {
			t.Fatal(err)
		}
		j, err := OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		j.Close()
		if err := (&Progress{Mailbox: mailbox, Method: MethodCopy}).Save(path); err != nil {
			t.Fatal(err)
		}
		unlock()
		for _, f := range []string{path, journalPath(path), path + ".lock"} {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if m := fi.Mode().Perm(); m != 0o640 {
				t.Errorf("earlier files %v: %s has mode %04o, want 0640", earlier, filepath.Base(f), m)
			}
		}
	}
}
