// SPDX-License-Identifier: MIT

package migrate

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/psttest"
	"github.com/dualmx/dualmx/m365/m365test"
)

// readpst returns Debian's readpst (pst-utils). Locally a missing readpst
// skips the PST tests; in CI it fails them.
func readpst(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("readpst")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("readpst not found; CI must install Debian's pst-utils")
		}
		t.Skip("readpst not found (apt-get install pst-utils); skipped outside CI")
	}
	return p
}

func headers(id, subject string, received time.Time) string {
	return "Received: from mx.example.org by mail.solcon.nl; " + received.Format(time.RFC1123Z) + "\r\n" +
		"From: Anna de Vries <anna@example.org>\r\nTo: scriba@hervormdputten.nl\r\nSubject: " + subject + "\r\n" +
		"Date: " + received.Add(-time.Minute).Format(time.RFC1123Z) + "\r\nMessage-ID: <" + id + ">\r\n\r\n"
}

// pstFixture is an old Outlook file as a congregation's function holder
// might have kept: Inbox with a subfolder, Sent Items, Deleted Items, and
// folders whose names try to leave the unpack directory or steer a
// terminal.
func pstFixture(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := psttest.Build("Persoonlijke mappen", []psttest.Folder{
		{Name: "Inbox", Messages: []psttest.Message{
			{Headers: headers("p1@example.org", "Rooster", day), Subject: "Rooster", Body: "Het rooster voor maart.\r\n", Read: true,
				Attachments: []psttest.Attachment{{Name: "rooster.txt", ContentType: "text/plain", Data: []byte("zondag 10:00")}}},
			{Headers: headers("p2@example.org", "Ongelezen", day.Add(time.Hour)), Subject: "Ongelezen", Body: "Nog niet gelezen.\r\n"},
		}, Folders: []psttest.Folder{{Name: "Kerkenraad", Messages: []psttest.Message{
			{Headers: headers("p3@example.org", "Vergadering", day.Add(2*time.Hour)), Subject: "Vergadering", Body: "Dinsdag.\r\n", Read: true},
		}}}},
		{Name: "Sent Items", Messages: []psttest.Message{
			{Headers: headers("p4@example.org", "Antwoord", day.Add(3*time.Hour)), Subject: "Antwoord", Body: "Goed.\r\n", Read: true},
		}},
		{Name: "Deleted Items", Messages: []psttest.Message{
			{Headers: headers("p5@example.org", "Weg", day.Add(4*time.Hour)), Subject: "Weg", Body: "x\r\n", Read: true},
		}},
		{Name: "../../buiten", Messages: []psttest.Message{
			{Headers: headers("p6@example.org", "Ontsnapping", day.Add(5*time.Hour)), Subject: "Ontsnapping", Body: "y\r\n", Read: true},
		}},
		{Name: "rood\x1b[31m", Messages: []psttest.Message{
			{Headers: headers("p7@example.org", "Kleur", day.Add(6*time.Hour)), Subject: "Kleur", Body: "z\r\n", Read: true},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestImportPST: a PST read by readpst arrives like an IMAP copy: folders
// kept and special ones mapped, not drafts, received time from the
// message's Received field, read state from readpst's Status field,
// attachments, nothing twice on a rerun. A file name made to look like a
// shell command or an option is only a name, and folder names from the PST
// neither leave the work directory nor reach the terminal raw.
func TestImportPST(t *testing.T) {
	prog := readpst(t)
	ctx := context.Background()
	dir := t.TempDir()
	file := pstFixture(t, dir, "-e x;$(touch PWNED) `touch PWNED2`.pst")
	tn, g := newTenant(t)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state", "scriba.pst.json")
	var out bytes.Buffer
	o := PSTOptions{Options: Options{Out: &out}, Readpst: prog, WorkDir: work}
	if err := ImportPST(ctx, file, g, &Progress{Mailbox: mailbox, Method: MethodPST, File: file}, path, o); err != nil {
		t.Fatal(err)
	}
	got := tn.Messages(mailbox)
	want := map[string]string{"Inbox": "Rooster,Ongelezen", "Inbox/Kerkenraad": "Vergadering", "Sent Items": "Antwoord",
		"Deleted Items": "Weg", ".._.._buiten": "Ontsnapping", "rood\x1b[31m": "Kleur"}
	for folder, subj := range want {
		if s := subjects(got[folder]); s != subj {
			t.Errorf("%q holds %q, want %q (all: %v)", folder, s, subj, keysOf(got))
		}
	}
	if total(got) != 7 {
		t.Errorf("%d messages, want 7", total(got))
	}
	r := got["Inbox"][0]
	if r.IsDraft || !r.IsRead || !r.Received.Equal(day) || len(r.Attachments) != 1 || string(r.Attachments[0].Data) != "zondag 10:00" ||
		r.InternetMessageID != "<p1@example.org>" {
		t.Errorf("first message stored as %+v", r)
	}
	if u := got["Inbox"][1]; u.IsRead || u.IsDraft || !u.Received.Equal(day.Add(time.Hour)) {
		t.Errorf("unread message stored as %+v", u)
	}
	for _, p := range []string{"PWNED", "PWNED2", "buiten"} {
		for _, d := range []string{dir, filepath.Dir(dir), work, "."} {
			if _, err := os.Stat(filepath.Join(d, p)); err == nil {
				t.Errorf("%s appeared in %s", p, d)
			}
		}
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work directory not cleaned: %v", ents)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Errorf("a raw escape reached the output: %q", out.String())
	}

	// Debian's readpst numbers its MIME boundaries from rand(), seeded by
	// the clock: a rerun in a later second unpacks different bytes. The
	// rerun goes through a readpst that numbers them differently again.
	p, err := LoadProgress(path)
	if err != nil {
		t.Fatal(err)
	}
	o.Readpst = reseeded(t, prog)
	if err := ImportPST(ctx, file, g, p, path, o); err != nil {
		t.Fatal(err)
	}
	if n := total(tn.Messages(mailbox)); n != 7 {
		t.Errorf("rerun: %d messages, want 7", n)
	}
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

func keysOf(m map[string][]m365test.Message) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestImportPSTErrors: no readpst, or a file readpst cannot read, is a
// clear error and imports nothing.
func TestImportPSTErrors(t *testing.T) {
	prog := readpst(t)
	ctx := context.Background()
	dir := t.TempDir()
	tn, g := newTenant(t)
	bad := filepath.Join(dir, "kapot.pst")
	os.WriteFile(bad, []byte("this is not a PST file at all, just text"), 0o600)
	err := ImportPST(ctx, bad, g, &Progress{Mailbox: mailbox}, filepath.Join(dir, "p.json"), PSTOptions{Readpst: prog, WorkDir: dir})
	if err == nil || !strings.Contains(err.Error(), "readpst kapot.pst") {
		t.Fatalf("corrupt PST = %v", err)
	}
	good := pstFixture(t, dir, "goed.pst")
	err = ImportPST(ctx, good, g, &Progress{Mailbox: mailbox}, filepath.Join(dir, "q.json"), PSTOptions{Readpst: filepath.Join(dir, "no-readpst"), WorkDir: dir})
	if err == nil {
		t.Fatal("a missing readpst did not fail")
	}
	if n := total(tn.Messages(mailbox)); n != 0 {
		t.Errorf("%d messages imported", n)
	}
}

// reseeded is readpst as if it ran in another second: the same output with
// other boundary numbers.
func reseeded(t *testing.T, prog string) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "readpst")
	body := "#!/bin/sh\nout=\nprev=\nfor a in \"$@\"; do [ \"$prev\" = -o ] && out=$a; prev=$a; done\n" +
		"'" + prog + "' \"$@\" || exit $?\n" +
		"find \"$out\" -name '*.eml' -exec sed -i 's/iamunique-[0-9]*_/iamunique-98765432101_/g' {} +\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return script
}
