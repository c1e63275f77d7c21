// SPDX-License-Identifier: MIT

package m365_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
	"github.com/dualmx/dualmx/mailmsg"
)

const shared = "scriba@example.nl"

func importTenant(t *testing.T) (*m365test.Tenant, *m365.Graph) {
	t.Helper()
	tn := m365test.New(t, domain)
	tn.AddSharedMailbox(shared, "Scriba")
	s := &sleeps{}
	g, _ := tn.Clients(m365.Retry{Attempts: 3, Sleep: s.sleep})
	return tn, g
}

func only(t *testing.T, tn *m365test.Tenant, folder string) m365test.Message {
	t.Helper()
	msgs := tn.Messages(shared)[folder]
	if len(msgs) != 1 {
		t.Fatalf("%s holds %d messages, want 1 (all: %v)", folder, len(msgs), tn.Messages(shared))
	}
	return msgs[0]
}

// TestImportMessageIsReceivedNotDraft: an imported message is created with
// PidTagMessageFlags without mfUnsent, so it is not a draft, and keeps its
// received and sent time, read state, flag, sender and recipients; the
// read-back check passes. A message that was a draft at the old host stays
// one.
func TestImportMessageIsReceivedNotDraft(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	received := time.Date(2019, 3, 4, 10, 5, 7, 0, time.UTC)
	sent := received.Add(-time.Minute)
	m := &m365.MailImport{Message: mailmsg.Message{Subject: "Kerkdienst", From: &mailmsg.Address{Name: "Anna", Addr: "anna@example.org"},
		To: []mailmsg.Address{{Addr: "scriba@example.nl"}}, Cc: []mailmsg.Address{{Name: "Bert", Addr: "bert@example.org"}},
		InternetMessageID: "<1@example.org>", Body: "<p>Hallo</p>", HTML: true, Sent: sent, Importance: "high",
		Attachments: []mailmsg.Attachment{{Name: "a.txt", ContentType: "text/plain", Data: []byte("attached")}}},
		Received: received, Read: true, Flagged: true, Key: "k1"}
	folder, err := g.EnsureFolder(ctx, shared, m365.FolderInbox, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := g.ImportMessage(ctx, shared, folder, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.VerifyImport(ctx, shared, id, m); err != nil {
		t.Fatalf("verify: %v", err)
	}
	got := only(t, tn, "Inbox")
	if got.IsDraft || !got.IsRead || !got.Received.Equal(received) || !got.Sent.Equal(sent) || got.FlagStatus != "flagged" ||
		got.From != "anna@example.org" || len(got.Cc) != 1 || got.BodyType != "html" || got.Importance != "high" ||
		got.InternetMessageID != "<1@example.org>" || len(got.Attachments) != 1 || got.Attachments[0].Via != "create" {
		t.Errorf("stored %+v", got)
	}
	if found, err := g.FindImported(ctx, shared, folder, "k1"); err != nil || found != id {
		t.Errorf("FindImported = %q, %v; want %q", found, err, id)
	}

	draft := &m365.MailImport{Message: mailmsg.Message{Subject: "concept", Body: "half"}, Draft: true, Received: received, Key: "k2"}
	dfolder, _ := g.EnsureFolder(ctx, shared, m365.FolderDrafts, nil)
	id, err = g.ImportMessage(ctx, shared, dfolder, draft)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.VerifyImport(ctx, shared, id, draft); err != nil {
		t.Fatalf("verify draft: %v", err)
	}
	if d := only(t, tn, "Drafts"); !d.IsDraft || d.IsRead {
		t.Errorf("draft stored as %+v", d)
	}
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// TestVerifyImportCatchesATenantThatKeepsDrafts: where the tenant does not
// honour PidTagMessageFlags, the read-back says so, names the place to fix,
// and removes the message.
func TestVerifyImportCatchesATenantThatKeepsDrafts(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	tn.IgnoreMessageFlags(true)
	m := &m365.MailImport{Message: mailmsg.Message{Subject: "x", Body: "y"}, Received: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), Key: "k"}
	id, err := g.ImportMessage(ctx, shared, m365.FolderInbox, m)
	if err != nil {
		t.Fatal(err)
	}
	err = g.VerifyImport(ctx, shared, id, m)
	var nh *m365.NotHonouredError
	if !errors.As(err, &nh) || !strings.Contains(err.Error(), "isDraft is true") || !strings.Contains(err.Error(), "importProperties") {
		t.Fatalf("verify = %v", err)
	}
	if n := len(tn.Messages(shared)["Inbox"]); n != 0 {
		t.Errorf("the draft was left behind (%d messages)", n)
	}
}

// TestImportLargeMessage: attachments that do not fit in one request go
// after the create, 3 MB and more through an upload session in ranges under
// 4 MB, without our bearer token; nothing is over Graph's request limit.
func TestImportLargeMessage(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 7<<20/16) // 7 MiB: three ranges
	mid := bytes.Repeat([]byte("m"), 5<<19)                   // 2.5 MiB: too big to ride along, under 3 MB
	small := []byte("small")
	m := &m365.MailImport{Received: time.Now().UTC().Truncate(time.Second), Key: "big", Message: mailmsg.Message{Subject: "groot", Body: "zie bijlagen",
		Attachments: []mailmsg.Attachment{
			{Name: "big.bin", ContentType: "application/octet-stream", Data: big},
			{Name: "mid.bin", Data: mid},
			{Name: "logo.png", ContentType: "image/png", ContentID: "logo@x", Inline: true, Data: small},
		}}}
	if _, err := g.ImportMessage(ctx, shared, m365.FolderInbox, m); err != nil {
		t.Fatal(err)
	}
	got := only(t, tn, "Inbox")
	via := map[string]string{}
	for _, a := range got.Attachments {
		via[a.Name] = a.Via
		want := map[string][]byte{"big.bin": big, "mid.bin": mid, "logo.png": small}[a.Name]
		if !bytes.Equal(a.Data, want) {
			t.Errorf("%s: %d bytes stored, want %d", a.Name, len(a.Data), len(want))
		}
	}
	if via["big.bin"] != "session" || via["mid.bin"] != "post" || via["logo.png"] != "create" || len(via) != 3 {
		t.Errorf("attachments arrived via %v", via)
	}
	puts := 0
	for _, r := range tn.Requests() {
		if strings.HasPrefix(r.Path, "/upload/") {
			puts++
			if r.Auth != "" {
				t.Errorf("upload PUT carried Authorization %q", r.Auth)
			}
		}
	}
	if puts != 3 {
		t.Errorf("%d upload PUTs, want 3", puts)
	}
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// TestImportGiantBody: a body that alone exceeds one request becomes an
// attachment instead of failing the message.
func TestImportGiantBody(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	body := strings.Repeat("<p>lang verhaal</p>\n", 5<<20/20)
	m := &m365.MailImport{Message: mailmsg.Message{Subject: "lang", Body: body, HTML: true}, Key: "giant"}
	if _, err := g.ImportMessage(ctx, shared, m365.FolderInbox, m); err != nil {
		t.Fatal(err)
	}
	got := only(t, tn, "Inbox")
	if len(got.Attachments) != 1 || got.Attachments[0].Name != "message.html" || string(got.Attachments[0].Data) != body ||
		!strings.Contains(got.Body, "message.html") {
		t.Errorf("stored body %q, attachments %d", got.Body[:min(80, len(got.Body))], len(got.Attachments))
	}
}

// TestImportIsWholeOrNothing: when an attachment cannot be added, the
// message is removed again and the error is Microsoft's; the upload URL's
// token is in no error.
func TestImportIsWholeOrNothing(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	m := &m365.MailImport{Key: "w", Message: mailmsg.Message{Subject: "s", Body: "b", Attachments: []mailmsg.Attachment{{Name: "big.bin", Data: make([]byte, 4<<20)}}}}
	tn.SetMaxMessageSize(1 << 20)
	_, err := g.ImportMessage(ctx, shared, m365.FolderInbox, m)
	var ge *m365.GraphError
	if !errors.As(err, &ge) || ge.Code != "ErrorMessageSizeExceeded" {
		t.Fatalf("import over the size limit = %v", err)
	}
	if n := len(tn.Messages(shared)["Inbox"]); n != 0 {
		t.Fatalf("%d messages left after a failed attachment", n)
	}
	tn.SetMaxMessageSize(0)
	tn.BreakUploads()
	_, err = g.ImportMessage(ctx, shared, m365.FolderInbox, m)
	if err == nil || strings.Contains(err.Error(), "authtoken") || strings.Contains(err.Error(), "tok") {
		t.Fatalf("import with an unreachable upload URL = %v", err)
	}
	if n := len(tn.Messages(shared)["Inbox"]); n != 0 {
		t.Fatalf("%d messages left after a failed upload", n)
	}
}

// TestImportRetryMakesNoSecondCopy: a create whose answer was lost (stored,
// then 503) is looked up by its key before it is tried again.
func TestImportRetryMakesNoSecondCopy(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	tn.FailAfterCreate(1)
	m := &m365.MailImport{Message: mailmsg.Message{Subject: "een keer", Body: "b"}, Key: "once"}
	id, err := g.ImportMessage(ctx, shared, m365.FolderInbox, m)
	if err != nil {
		t.Fatal(err)
	}
	if got := only(t, tn, "Inbox"); got.ID != id {
		t.Errorf("returned id %s, stored %s", id, got.ID)
	}
}

// TestEnsureFolderUnderWellKnown: nested folders are made under a
// well-known folder and found again on a rerun, not made twice.
func TestEnsureFolderUnderWellKnown(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	a, err := g.EnsureFolder(ctx, shared, m365.FolderSent, []string{"2019", "Q1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.EnsureFolder(ctx, shared, m365.FolderSent, []string{"2019", "q1"})
	if err != nil || a != b {
		t.Fatalf("second EnsureFolder = %q, %v; want %q", b, err, a)
	}
	top, err := g.EnsureFolder(ctx, shared, "", []string{"Kerkenraad"})
	if err != nil {
		t.Fatal(err)
	}
	paths := strings.Join(tn.FolderPaths(shared), ",")
	if !strings.Contains(paths, "Sent Items/2019/Q1") || !strings.Contains(paths, "Kerkenraad") || top == a {
		t.Errorf("folders: %s", paths)
	}
}

// TestCopyRefusalNamesMailReadWrite: every call of the Graph copy that the
// tenant refuses for want of Mail.ReadWrite (Graph's mail calls answer 403
// ErrorAccessDenied) says what to grant, as the other calls do.
func TestCopyRefusalNamesMailReadWrite(t *testing.T) {
	ctx := context.Background()
	tn, g := importTenant(t)
	inbox, err := g.EnsureFolder(ctx, shared, m365.FolderInbox, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &m365.MailImport{Message: mailmsg.Message{Subject: "s", Body: "b"}, Key: "k"}
	id, err := g.ImportMessage(ctx, shared, inbox, m)
	if err != nil {
		t.Fatal(err)
	}
	var without []string
	for _, r := range m365test.AllGraphRoles {
		if r != "Mail.ReadWrite" {
			without = append(without, r)
		}
	}
	tn.SetAppRoles(m365test.GraphAudience, without...)
	calls := []struct {
		name string
		call func() error
	}{
		{"EnsureFolder", func() error { _, err := g.EnsureFolder(ctx, shared, m365.FolderInbox, []string{"Nieuw"}); return err }},
		{"ImportMessage", func() error { _, err := g.ImportMessage(ctx, shared, inbox, m); return err }},
		{"FindImported", func() error { _, err := g.FindImported(ctx, shared, inbox, "k"); return err }},
		{"VerifyImport", func() error { return g.VerifyImport(ctx, shared, id, m) }},
		{"DeleteMessage", func() error { return g.DeleteMessage(ctx, shared, id) }},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, m365.ErrNotPermitted) || !strings.Contains(err.Error(), "Microsoft Graph application permission Mail.ReadWrite") ||
			!strings.Contains(err.Error(), "Application permissions › Mail.ReadWrite; then Grant admin consent") ||
			strings.Count(err.Error(), "needs ") != 1 {
			t.Errorf("%s without Mail.ReadWrite: %v", c.name, err)
		}
	}
}
