// SPDX-License-Identifier: MIT

package migrate

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

const (
	mailbox = "scriba@hervormdputten.nl"
	secret  = "Sup3r-s3cret,pw\"x"
)

// oldHost is a real IMAP server (go-imap's in-memory backend) on loopback,
// with SPECIAL-USE, and a client to fill it.
type oldHost struct {
	t    *testing.T
	addr string
	c    *imapclient.Client
}

func startOldHost(t *testing.T) *oldHost {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser("scriba", secret))
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapSpecialUse: {}, imap.CapCreateSpecialUse: {}, imap.CapListExtended: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("scriba", secret).Wait(); err != nil {
		t.Fatal(err)
	}
	// The in-memory backend starts without an INBOX; a real server has one.
	if err := c.Create("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return &oldHost{t: t, addr: ln.Addr().String(), c: c}
}

func (h *oldHost) create(name string, use ...imap.MailboxAttr) {
	h.t.Helper()
	var opts *imap.CreateOptions
	if len(use) > 0 {
		opts = &imap.CreateOptions{SpecialUse: use}
	}
	if err := h.c.Create(name, opts).Wait(); err != nil {
		h.t.Fatalf("create %s: %v", name, err)
	}
}

func (h *oldHost) put(folder, msg string, at time.Time, flags ...imap.Flag) {
	h.t.Helper()
	cmd := h.c.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: at})
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		h.t.Fatalf("append to %s: %v", folder, err)
	}
}

func msg(id, subject string) string {
	s := "From: Anna de Vries <anna@example.org>\r\nTo: scriba@hervormdputten.nl\r\nSubject: " + subject + "\r\n" +
		"Date: Mon, 4 Mar 2019 10:00:00 +0100\r\n"
	if id != "" {
		s += "Message-ID: <" + id + ">\r\n"
	}
	return s + "\r\nbody of " + subject + "\r\n"
}

var day = time.Date(2019, 3, 4, 9, 30, 0, 0, time.UTC)

// fill gives the old mailbox the folders a congregation's function address
// has: INBOX, Sent and Drafts marked SPECIAL-USE, a Dutch "Prullenbak" and
// "Archief" known by name only, and a custom nested folder.
func (h *oldHost) fill() {
	h.create("Sent", imap.MailboxAttrSent)
	h.create("Drafts", imap.MailboxAttrDrafts)
	h.create("Prullenbak")
	h.create("Archief")
	h.create("Archief/2019")
	h.create("Projecten")
	h.create("Projecten/Orgel")
	h.put("INBOX", msg("1@example.org", "gelezen en gemarkeerd"), day, imap.FlagSeen, imap.FlagFlagged)
	h.put("INBOX", msg("2@example.org", "ongelezen"), day.Add(time.Hour))
	h.put("INBOX", msg("", "zonder id"), day.Add(2*time.Hour), imap.FlagSeen)
	h.put("Sent", msg("3@example.org", "verzonden"), day.Add(3*time.Hour), imap.FlagSeen)
	h.put("Drafts", msg("", "concept"), day.Add(4*time.Hour), imap.FlagDraft)
	h.put("Prullenbak", msg("4@example.org", "weg"), day.Add(5*time.Hour), imap.FlagSeen)
	h.put("Archief/2019", msg("5@example.org", "oud"), day.Add(6*time.Hour), imap.FlagSeen)
	h.put("Projecten/Orgel", msg("6@example.org", "orgel"), day.Add(7*time.Hour), imap.FlagSeen)
}

func (h *oldHost) source() IMAPSource {
	return IMAPSource{Addr: h.addr, User: "scriba", Password: secret, Mode: TLSNone}
}

func newTenant(t *testing.T) (*m365test.Tenant, *m365.Graph) {
	t.Helper()
	tn := m365test.New(t, "hervormdputten.nl")
	tn.AddSharedMailbox(mailbox, "Scriba")
	g, _ := tn.Clients(m365.Retry{Attempts: 1, Sleep: func(context.Context, time.Duration) error { return nil }})
	return tn, g
}

func subjects(msgs []m365test.Message) string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.Subject)
	}
	return strings.Join(s, ",")
}

func total(all map[string][]m365test.Message) int {
	n := 0
	for _, m := range all {
		n += len(m)
	}
	return n
}

// TestCopyIMAP copies a mailbox the way the issue asks: no drafts but the
// draft, each message's received time (INTERNALDATE), read state and flag,
// special folders into the well-known ones (by SPECIAL-USE or by their
// Dutch name), other folders recreated with their nesting, and a rerun
// moves nothing twice. The password is in no file and no error.
func TestCopyIMAP(t *testing.T) {
	ctx := context.Background()
	h := startOldHost(t)
	h.fill()
	tn, g := newTenant(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "import", "scriba.json")
	p := &Progress{Mailbox: mailbox, Method: MethodCopy}
	var out bytes.Buffer
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{Out: &out}); err != nil {
		t.Fatal(err)
	}
	got := tn.Messages(mailbox)
	want := map[string]string{
		"Inbox":           "gelezen en gemarkeerd,ongelezen,zonder id",
		"Sent Items":      "verzonden",
		"Drafts":          "concept",
		"Deleted Items":   "weg",
		"Archive/2019":    "oud",
		"Projecten/Orgel": "orgel",
	}
	for folder, subj := range want {
		if s := subjects(got[folder]); s != subj {
			t.Errorf("%s holds %q, want %q", folder, s, subj)
		}
	}
	if n := total(got); n != 8 {
		t.Errorf("%d messages in all, want 8: %v", n, got)
	}
	for folder, msgs := range got {
		for _, m := range msgs {
			if m.IsDraft != (folder == "Drafts") {
				t.Errorf("%s/%q isDraft %v", folder, m.Subject, m.IsDraft)
			}
		}
	}
	inbox := got["Inbox"]
	if m := inbox[0]; !m.IsRead || m.FlagStatus != "flagged" || !m.Received.Equal(day) || m.InternetMessageID != "<1@example.org>" {
		t.Errorf("first message stored as %+v", m)
	}
	if m := inbox[1]; m.IsRead || m.FlagStatus != "" || !m.Received.Equal(day.Add(time.Hour)) {
		t.Errorf("second message stored as %+v", m)
	}
	if !strings.Contains(out.String(), "INBOX -> Inbox: 3 of 3 moved") || !strings.Contains(out.String(), "messages/minute") {
		t.Errorf("progress output:\n%s", out.String())
	}

	// A rerun finds everything done.
	p, err := LoadProgress(path)
	if err != nil || p == nil {
		t.Fatalf("progress: %v", err)
	}
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := total(tn.Messages(mailbox)); n != 8 {
		t.Fatalf("rerun: %d messages in all, want 8", n)
	}
	p, _ = LoadProgress(path)
	counts := map[string][2]int{}
	for _, f := range p.Folders {
		counts[f.Name] = [2]int{f.Found, f.Moved}
	}
	if counts["INBOX"] != [2]int{3, 3} || counts["Archief/2019"] != [2]int{1, 1} || counts["Archief"] != [2]int{0, 0} {
		t.Errorf("folder counts %v", counts)
	}
	if p.Finished.IsZero() || p.Run.Moved != 0 {
		t.Errorf("after rerun: finished %v, moved in run %d", p.Finished, p.Run.Moved)
	}
	assertNoSecret(t, dir)
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// assertNoSecret reads every file under dir.
func assertNoSecret(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the IMAP password", p)
			}
		}
		return nil
	})
}

// TestCopyResumesWithoutDuplicates: a run stopped by Microsoft (503), and
// one stopped right after a create whose answer was lost, both resume
// without storing any message twice.
func TestCopyResumesWithoutDuplicates(t *testing.T) {
	ctx := context.Background()
	h := startOldHost(t)
	h.fill()
	tn, g := newTenant(t)
	path := filepath.Join(t.TempDir(), "scriba.json")
	p := &Progress{Mailbox: mailbox, Method: MethodCopy}

	// The fourth create is refused by an unavailable service.
	n := 0
	fault := m365test.Fault{Match: "POST /users/" + mailbox + "/mailFolders/", Status: 503, Times: 1}
	err := CopyIMAP(ctx, h.source(), faultAfter{g, tn, &n, 3, fault}, p, path, Options{})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("first run = %v; want a failure that does not name the password", err)
	}
	if got := total(tn.Messages(mailbox)); got != 3 {
		t.Fatalf("first run stored %d, want 3", got)
	}
	// The next run: the create is stored and its answer lost.
	tn.FailAfterCreate(1)
	p, _ = LoadProgress(path)
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{}); err == nil {
		t.Fatal("second run did not stop on the lost answer")
	}
	p, _ = LoadProgress(path)
	if len(p.Pending) != 1 {
		t.Fatalf("pending after a lost answer: %v", p.Pending)
	}
	// The last run looks the uncertain one up and finishes.
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := total(tn.Messages(mailbox)); n != 8 {
		t.Fatalf("%d messages in all after three runs, want 8: %v", n, tn.Messages(mailbox))
	}
}

// faultAfter injects a fault into the tenant just before create number
// after+1, so the first run stops halfway.
type faultAfter struct {
	*m365.Graph
	tn    *m365test.Tenant
	n     *int
	after int
	f     m365test.Fault
}

func (c faultAfter) ImportMessage(ctx context.Context, mb, folder string, m *m365.MailImport) (string, error) {
	if *c.n++; *c.n == c.after+1 {
		c.tn.Inject(c.f)
	}
	return c.Graph.ImportMessage(ctx, mb, folder, m)
}

// TestCopySkipsARefusedMessage: a message Microsoft refuses is recorded
// with its reason and the import goes on; the next run tries it again.
func TestCopySkipsARefusedMessage(t *testing.T) {
	ctx := context.Background()
	h := startOldHost(t)
	h.put("INBOX", msg("1@example.org", "klein"), day)
	big := msg("2@example.org", "te groot") + strings.Repeat("x", 300<<10)
	h.put("INBOX", big, day)
	h.put("INBOX", msg("3@example.org", "ook klein"), day)
	tn, g := newTenant(t)
	tn.SetMaxMessageSize(100 << 10)
	path := filepath.Join(t.TempDir(), "scriba.json")
	p := &Progress{Mailbox: mailbox, Method: MethodCopy}
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{}); err != nil {
		t.Fatal(err)
	}
	if s := subjects(tn.Messages(mailbox)["Inbox"]); s != "klein,ook klein" {
		t.Fatalf("inbox: %q", s)
	}
	p, _ = LoadProgress(path)
	f := p.folder("INBOX")
	if len(f.Skips) != 1 || f.Skips[0].Subject != "te groot" || !strings.Contains(f.Skips[0].Reason, "ErrorMessageSizeExceeded") || f.Moved != 2 {
		t.Fatalf("INBOX state %+v", f)
	}
	tn.SetMaxMessageSize(0)
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{}); err != nil {
		t.Fatal(err)
	}
	p, _ = LoadProgress(path)
	if f := p.folder("INBOX"); len(f.Skips) != 0 || f.Moved != 3 || total(tn.Messages(mailbox)) != 3 {
		t.Fatalf("after the rerun: %+v, %d messages", f, total(tn.Messages(mailbox)))
	}
}

// TestCopyUIDValidityChange: the old host renumbers a folder (a new
// UIDVALIDITY, UIDs from 1 again); the rerun recognises the messages it
// moved by their content and moves only the new one.
func TestCopyUIDValidityChange(t *testing.T) {
	ctx := context.Background()
	h := startOldHost(t)
	h.create("Archief")
	h.put("Archief", msg("a@example.org", "a"), day)
	h.put("Archief", msg("", "zonder id"), day)
	tn, g := newTenant(t)
	path := filepath.Join(t.TempDir(), "scriba.json")
	p := &Progress{Mailbox: mailbox, Method: MethodCopy}
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{}); err != nil {
		t.Fatal(err)
	}
	before := p.folder("Archief").Validity
	if err := h.c.Delete("Archief").Wait(); err != nil {
		t.Fatal(err)
	}
	h.create("Archief")
	h.put("Archief", msg("", "nieuw"), day)
	h.put("Archief", msg("", "zonder id"), day)
	h.put("Archief", msg("a@example.org", "a"), day)
	p, _ = LoadProgress(path)
	if err := CopyIMAP(ctx, h.source(), g, p, path, Options{}); err != nil {
		t.Fatal(err)
	}
	if s := subjects(tn.Messages(mailbox)["Archive"]); s != "a,zonder id,nieuw" {
		t.Fatalf("archive holds %q", s)
	}
	if p.folder("Archief").Validity == before {
		t.Error("UIDVALIDITY not updated")
	}
}

// TestCopyStopsWhenTheTenantKeepsDrafts: the first message of a run is read
// back; a tenant that stored it as a draft stops the run with a clear error,
// and nothing is left or recorded as moved.
func TestCopyStopsWhenTheTenantKeepsDrafts(t *testing.T) {
	ctx := context.Background()
	h := startOldHost(t)
	h.fill()
	tn, g := newTenant(t)
	tn.IgnoreMessageFlags(true)
	path := filepath.Join(t.TempDir(), "scriba.json")
	p := &Progress{Mailbox: mailbox, Method: MethodCopy}
	err := CopyIMAP(ctx, h.source(), g, p, path, Options{})
	var nh *m365.NotHonouredError
	if !errors.As(err, &nh) {
		t.Fatalf("copy into a tenant that keeps drafts = %v", err)
	}
	if n := total(tn.Messages(mailbox)); n != 0 {
		t.Errorf("%d messages left behind", n)
	}
	p, _ = LoadProgress(path)
	for _, f := range p.Folders {
		if f.Moved != 0 {
			t.Errorf("%s recorded %d moved", f.Name, f.Moved)
		}
	}
}

// TestCopyLargeMessage: a message over Graph's request size arrives whole,
// its attachment through an upload session.
func TestCopyLargeMessage(t *testing.T) {
	ctx := context.Background()
	h := startOldHost(t)
	payload := bytes.Repeat([]byte{0, 1, 2, 3, 250, 251, 252, 253}, 5<<20/8)
	h.put("INBOX", multipart("groot@example.org", "notulen.pdf", payload), day, imap.FlagSeen)
	tn, g := newTenant(t)
	path := filepath.Join(t.TempDir(), "scriba.json")
	if err := CopyIMAP(ctx, h.source(), g, &Progress{Mailbox: mailbox, Method: MethodCopy}, path, Options{}); err != nil {
		t.Fatal(err)
	}
	in := tn.Messages(mailbox)["Inbox"]
	if len(in) != 1 || len(in[0].Attachments) != 1 || !bytes.Equal(in[0].Attachments[0].Data, payload) ||
		in[0].Attachments[0].Via != "session" || in[0].IsDraft {
		t.Fatalf("stored %d messages; %+v", len(in), in)
	}
}

func multipart(id, name string, data []byte) string {
	var b strings.Builder
	b.WriteString("From: a@example.org\r\nSubject: met bijlage\r\nMessage-ID: <" + id + ">\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nzie bijlage\r\n" +
		"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64Lines(data)
	b.WriteString(enc)
	b.WriteString("\r\n--b1--\r\n")
	return b.String()
}

func TestPlainRefusedOffLoopback(t *testing.T) {
	err := CopyIMAP(context.Background(), IMAPSource{Addr: "192.0.2.1:143", Mode: TLSNone, Password: secret}, nil,
		&Progress{}, filepath.Join(t.TempDir(), "p.json"), Options{})
	if err == nil || !strings.Contains(err.Error(), "unencrypted") {
		t.Fatalf("Copy = %v", err)
	}
}

// TestLockedAgainstASecondRun: two imports into one mailbox at once would
// race on the progress file; the second is refused, and status sees one
// running.
func TestLockedAgainstASecondRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scriba.json")
	unlock, err := lockProgress(path)
	if err != nil {
		t.Fatal(err)
	}
	if !Running(path) {
		t.Error("Running is false while an import holds the lock")
	}
	if err := copyAll(context.Background(), nil, nil, &Progress{}, path, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second run = %v", err)
	}
	unlock()
	if Running(path) {
		t.Error("Running is true after the import let go")
	}
}

func base64Lines(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var sb strings.Builder
	for len(enc) > 76 {
		sb.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	sb.WriteString(enc)
	return sb.String()
}

// TestCopyStopsWhenEveryMessageIsRefused: when the first messages of a run
// are all refused, the run stops and blames the import shape, rather than
// skipping a whole mailbox one message at a time.
func TestCopyStopsWhenEveryMessageIsRefused(t *testing.T) {
	ctx := context.Background()
	h := startOldHost(t)
	for i := range 7 {
		h.put("INBOX", msg(fmt.Sprintf("%d@example.org", i), "m"), day)
	}
	tn, g := newTenant(t)
	tn.Inject(m365test.Fault{Match: "POST /users/" + mailbox + "/mailFolders/inbox/messages", Status: 400, Code: "ErrorInvalidProperty"})
	path := filepath.Join(t.TempDir(), "scriba.json")
	err := CopyIMAP(ctx, h.source(), g, &Progress{Mailbox: mailbox, Method: MethodCopy}, path, Options{})
	if err == nil || !strings.Contains(err.Error(), "refused the first 5 messages") || !strings.Contains(err.Error(), "ErrorInvalidProperty") {
		t.Fatalf("copy = %v", err)
	}
	p, _ := LoadProgress(path)
	if f := p.folder("INBOX"); len(f.Skips) != 5 {
		t.Errorf("%d skips recorded, want 5", len(f.Skips))
	}
}
