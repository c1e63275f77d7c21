// SPDX-License-Identifier: MIT

package migrate

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// oldIMAP starts go-imap's in-memory server on loopback with one account
// holding INBOX (3 messages, one without Message-ID), Archief/2019 (2) and
// an empty Drafts.
func oldIMAP(t *testing.T) string {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("scriba", secret)
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
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
	defer c.Close()
	if err := c.Login("scriba", secret).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"INBOX", "Archief", "Archief/2019", "Drafts"} {
		if err := c.Create(f, nil).Wait(); err != nil && f != "INBOX" {
			t.Fatal(err)
		}
	}
	put := func(folder, id, subject string) {
		msg := "From: a@example.org\r\nSubject: " + subject + "\r\n"
		if id != "" {
			msg += "Message-ID: <" + id + ">\r\n"
		}
		msg += "\r\nbody of " + subject + "\r\n"
		cmd := c.Append(folder, int64(len(msg)), nil)
		cmd.Write([]byte(msg))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	put("INBOX", "1@example.org", "one")
	put("INBOX", "2@example.org", "two")
	put("INBOX", "", "no id")
	put("Archief/2019", "3@example.org", "three")
	put("Archief/2019", "4@example.org", "four")
	return ln.Addr().String()
}

func countAll(f map[string][][]byte) int {
	n := 0
	for _, m := range f {
		n += len(m)
	}
	return n
}

// TestCopyResumableNoDuplicates copies every folder into the Graph fake with
// the structure kept; a run cut short by a failure resumes; a re-run copies
// nothing twice; the password is in no file and no error.
func TestCopyResumableNoDuplicates(t *testing.T) {
	ctx := context.Background()
	addr := oldIMAP(t)
	tn := m365test.New(t, "hervormdputten.nl")
	tn.AddSharedMailbox(mailbox, "Scriba")
	g, _ := tn.Clients(m365.Retry{Attempts: 1})
	dir := t.TempDir()
	path := filepath.Join(dir, "import", "scriba.json")
	src := Source{Addr: addr, User: "scriba", Password: secret, Plain: true}

	// The third message store fails: the run stops, keeping what it moved.
	tn.Inject(m365test.Fault{Match: "POST /users/" + mailbox + "/mailFolders/", Status: 400, Code: "ErrorInvalidRequest", Times: 3})
	p := &Progress{Mailbox: mailbox, Method: "imap-copy"}
	err := Copy(ctx, src, g, mailbox, p, path)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("first run = %v; want a failure that does not name the password", err)
	}
	tn.ClearFaults()
	p, err = LoadProgress(path)
	if err != nil || p == nil {
		t.Fatalf("progress after failure: %v", err)
	}
	if err := Copy(ctx, src, g, mailbox, p, path); err != nil {
		t.Fatal(err)
	}
	folders := tn.Folders(mailbox)
	if len(folders["Inbox"]) != 3 || len(folders["Archief/2019"]) != 2 || countAll(folders) != 5 {
		t.Fatalf("folders after copy: %v", keys(folders))
	}
	if !bytes.Contains(folders["Archief/2019"][0], []byte("Subject: three")) {
		t.Errorf("message not stored whole: %q", folders["Archief/2019"][0])
	}
	// Re-running copies nothing.
	p, _ = LoadProgress(path)
	if err := Copy(ctx, src, g, mailbox, p, path); err != nil {
		t.Fatal(err)
	}
	if n := countAll(tn.Folders(mailbox)); n != 5 {
		t.Fatalf("re-run stored %d messages in all, want 5", n)
	}
	p, _ = LoadProgress(path)
	want := map[string][2]int{"INBOX": {3, 3}, "Archief/2019": {2, 2}, "Drafts": {0, 0}}
	for _, f := range p.Folders {
		if w, ok := want[f.Name]; ok && (f.Found != w[0] || f.Moved != w[1]) {
			t.Errorf("folder %s found %d moved %d, want %v", f.Name, f.Found, f.Moved, w)
		}
	}
	assertNoSecret(t, dir)
}

func keys(m map[string][][]byte) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+":"+string(rune('0'+len(v))))
	}
	return out
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

func TestPlainRefusedOffLoopback(t *testing.T) {
	err := Copy(context.Background(), Source{Addr: "192.0.2.1:143", Plain: true, Password: secret}, nil, mailbox, &Progress{}, filepath.Join(t.TempDir(), "p.json"))
	if err == nil || !strings.Contains(err.Error(), "unencrypted") {
		t.Fatalf("Copy = %v", err)
	}
}

// TestBatch creates the endpoint and batch through the Exchange fake, reports
// progress, and reports a failed batch with Microsoft's reason.
func TestBatch(t *testing.T) {
	ctx := context.Background()
	tn := m365test.New(t, "hervormdputten.nl")
	tn.AddSharedMailbox(mailbox, "Scriba")
	c, err := m365.NewExchange(tn.Cred, m365.ExchangeOptions{BaseURL: tn.ExchangeURL(), TenantID: m365test.TenantID, Transport: tn.Transport(), Retry: m365.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GetBatchStatus(ctx, c, mailbox); !errors.Is(err, ErrNoBatch) {
		t.Fatalf("status before start = %v", err)
	}
	name, err := StartBatch(ctx, c, BatchRequest{Mailbox: mailbox, Host: "imap.solcon.nl", User: "scriba", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	if eps := tn.MigrationEndpoints(); eps[strings.ToLower(EndpointName("imap.solcon.nl"))] != "imap.solcon.nl" {
		t.Errorf("endpoints = %v", eps)
	}
	b, _ := tn.Batch(name)
	if b.Status != "Syncing" || !strings.Contains(b.CSV, `"`+strings.ReplaceAll(secret, `"`, `""`)+`"`) || b.User != mailbox {
		t.Errorf("batch = %+v", b)
	}
	// A second mailbox on the same host reuses the endpoint.
	if _, err := StartBatch(ctx, c, BatchRequest{Mailbox: "koster@hervormdputten.nl", Host: "imap.solcon.nl", User: "koster", Password: "x"}); err != nil {
		t.Fatal(err)
	}
	if n := tn.Count("New-MigrationEndpoint"); n != 1 {
		t.Errorf("endpoint created %d times", n)
	}
	tn.SetMigrationBatch(name, "Syncing", "", 120, 45)
	st, err := GetBatchStatus(ctx, c, mailbox)
	if err != nil || st.Failed || st.Found != 120 || st.Moved != 45 || st.Status != "Syncing" {
		t.Fatalf("syncing status = %+v %v", st, err)
	}
	tn.SetMigrationBatch(name, "Failed", "Error: AuthenticationFailedTransientException: The IMAP server rejected the login.", 0, 0)
	st, err = GetBatchStatus(ctx, c, mailbox)
	if err != nil || !st.Failed || !strings.Contains(st.Error, "rejected the login") {
		t.Fatalf("failed status = %+v %v", st, err)
	}
	if _, err := StartBatch(ctx, c, BatchRequest{Mailbox: mailbox, Host: "imap.solcon.nl", User: "scriba", Password: secret}); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("duplicate batch = %v; want an error without the password", err)
	}
}
