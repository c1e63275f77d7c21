// SPDX-License-Identifier: MIT

package e2e

// The built binary's import commands, against the fake tenant (reached only
// through the config's m365 keys) and a real IMAP server on loopback.

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/dualmx/dualmx/internal/psttest"
	"github.com/dualmx/dualmx/m365/m365test"
)

const oldPassword = "oud-wachtwoord-42"

// oldIMAPHost is the old host: go-imap's in-memory server on loopback with
// one account, filled through a real IMAP client.
func oldIMAPHost(t *testing.T) (port string, c *imapclient.Client) {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser("scriba", oldPassword))
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
	c, err = imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("scriba", oldPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"INBOX", "Verzonden", "Archief", "Archief/2019"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, c
}

var received = time.Date(2019, 3, 4, 9, 30, 0, 0, time.UTC)

func appendMsg(t *testing.T, c *imapclient.Client, folder, id, subject, extra string, flags ...imap.Flag) {
	t.Helper()
	msg := "From: Anna <anna@example.org>\r\nTo: scriba@hervormdputten.nl\r\nSubject: " + subject + "\r\nMessage-ID: <" + id + ">\r\n" +
		"Date: Mon, 4 Mar 2019 10:00:00 +0100\r\n\r\n" + subject + "\r\n" + extra
	cmd := c.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: received})
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func passwordFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "old.pw")
	if err := os.WriteFile(p, []byte(oldPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type statusJSON struct {
	Mailbox string
	Imports []struct {
		Method, Reason, File string
		Running              bool
		Finished             *time.Time
		Run                  struct {
			Moved     int
			PerMinute float64 `json:"per_minute"`
		}
		Totals  struct{ Found, Moved, Skipped int }
		Folders []struct {
			Name, Target          string
			Found, Moved, Skipped int
		}
		Skipped []struct{ Folder, Subject, Reason string }
		Batch   *struct {
			Name, Status string
			Completing   bool
		}
	}
}

func (e *tenantEnv) status(t *testing.T, mailbox string) statusJSON {
	t.Helper()
	var s statusJSON
	out := e.mustM365("import", "status", mailbox, "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("import status --json: %v\n%s", err, out)
	}
	return s
}

// TestImportCopyIntoSharedMailbox: "import start" for a shared mailbox
// takes the Graph copy and says why; messages arrive not as drafts, with
// their received time, read state and flag, in the right folders; one too
// large for the mailbox is skipped and listed with Microsoft's reason; the
// progress and the rate show in "import status"; a rerun copies nothing
// twice; the password is nowhere.
func TestImportCopyIntoSharedMailbox(t *testing.T) {
	e := newTenantEnv(t, tenantOptions{})
	const mb = "scriba@" + tenantDomain
	e.tn.AddSharedMailbox(mb, "Scriba")
	e.tn.SetMaxMessageSize(64 << 10)
	port, c := oldIMAPHost(t)
	appendMsg(t, c, "INBOX", "1@example.org", "Rooster", "", imap.FlagSeen, imap.FlagFlagged)
	appendMsg(t, c, "INBOX", "2@example.org", "Ongelezen", "")
	appendMsg(t, c, "INBOX", "3@example.org", "Te groot", strings.Repeat("x", 100<<10))
	appendMsg(t, c, "Verzonden", "4@example.org", "Antwoord", "", imap.FlagSeen)
	appendMsg(t, c, "Archief/2019", "5@example.org", "Oud", "", imap.FlagSeen)
	pw := passwordFile(t)
	args := []string{"import", "start", mb, "--imap-host", "127.0.0.1", "--imap-port", port, "--imap-user", "scriba",
		"--imap-tls", "none", "--password-file", pw}

	out := e.mustM365(args...)
	for _, want := range []string{"method: imap-copy (" + mb + " is a shared mailbox", "INBOX -> Inbox: 2 of 3 moved, 1 skipped",
		"Verzonden -> Sent Items: 1 of 1 moved", "Archief/2019 -> Archive/2019: 1 of 1 moved", "done: 4 messages moved in this run, 1 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("import start output lacks %q:\n%s", want, out)
		}
	}
	msgs := e.tn.Messages(mb)
	if len(msgs["Inbox"]) != 2 || len(msgs["Sent Items"]) != 1 || len(msgs["Archive/2019"]) != 1 {
		t.Fatalf("tenant holds %v", msgs)
	}
	for folder, ms := range msgs {
		for _, m := range ms {
			if m.IsDraft || !m.Received.Equal(received) {
				t.Errorf("%s/%s: draft %v, received %v", folder, m.Subject, m.IsDraft, m.Received)
			}
		}
	}
	if r := msgs["Inbox"][0]; !r.IsRead || r.FlagStatus != "flagged" {
		t.Errorf("read and flagged message stored as %+v", r)
	}
	if u := msgs["Inbox"][1]; u.IsRead || u.FlagStatus != "" {
		t.Errorf("unread message stored as %+v", u)
	}

	s := e.status(t, mb)
	if len(s.Imports) != 1 {
		t.Fatalf("status: %+v", s)
	}
	im := s.Imports[0]
	if im.Method != "imap-copy" || im.Running || im.Finished == nil || im.Totals.Found != 5 || im.Totals.Moved != 4 || im.Totals.Skipped != 1 ||
		im.Run.Moved != 4 || im.Run.PerMinute <= 0 || len(im.Skipped) != 1 || im.Skipped[0].Subject != "Te groot" ||
		!strings.Contains(im.Skipped[0].Reason, "ErrorMessageSizeExceeded") {
		t.Errorf("status: %+v", im)
	}
	text := e.mustM365("import", "status", mb)
	if !strings.Contains(text, `INBOX UID 3 "Te groot": `) || !strings.Contains(text, "messages/minute") {
		t.Errorf("import status:\n%s", text)
	}

	// A rerun moves nothing twice; the skipped message is tried again.
	out = e.mustM365(args...)
	if !strings.Contains(out, "done: 0 messages moved in this run, 1 skipped") {
		t.Errorf("rerun output:\n%s", out)
	}
	n := 0
	for _, ms := range e.tn.Messages(mb) {
		n += len(ms)
	}
	if n != 4 {
		t.Errorf("%d messages after the rerun, want 4", n)
	}
	assertNowhere(t, oldPassword, e.dir, out, text)
}

// TestImportStatusAsGroupMember: the progress files are readable by the
// state's group (0640, like the state), so a member of it can follow an
// import with "import status", as docs/install.md says. Only the group
// changes here, no mode: what the member may read is what dualmx wrote.
func TestImportStatusAsGroupMember(t *testing.T) {
	requireRoot(t)
	e := newTenantEnv(t, tenantOptions{})
	const mb = "scriba@" + tenantDomain
	e.tn.AddSharedMailbox(mb, "Scriba")
	e.tn.SetMaxMessageSize(64 << 10)
	port, c := oldIMAPHost(t)
	appendMsg(t, c, "INBOX", "1@example.org", "Rooster", "")
	appendMsg(t, c, "INBOX", "2@example.org", "Te groot", strings.Repeat("x", 100<<10))
	e.mustM365("import", "start", mb, "--imap-host", "127.0.0.1", "--imap-port", port, "--imap-user", "scriba",
		"--imap-tls", "none", "--password-file", passwordFile(t))

	groupToNobody(t, filepath.Join(e.dir, "state"))
	groupToNobody(t, e.cfgPath)
	if err := os.Chmod(e.cfgPath, 0o640); err != nil { // as install.md has it: root:dualmx 0640
		t.Fatal(err)
	}
	openToNobody(t, filepath.Dir(binary))
	out, errOut, code := e.cliAs("import", "status", mb)
	if code != 0 || !strings.Contains(out, `INBOX UID 2 "Te groot": `) || !strings.Contains(out, "(all)") {
		t.Errorf("as a member of the state's group, import status: exit %d\n%s%s", code, out, errOut)
	}
}

func assertNowhere(t *testing.T, secret, dir string, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		if strings.Contains(o, secret) {
			t.Errorf("the password is in the output:\n%s", o)
		}
	}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && !strings.HasSuffix(p, ".pw") {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
				t.Errorf("%s holds the password", p)
			}
		}
		return nil
	})
}

// TestImportMicrosoftBatchForUserMailbox: for a user mailbox "import start"
// takes Microsoft's IMAP migration and says why; the endpoint's security
// follows the port; "import status" shows the batch and completes it once
// synced; a second start while it runs makes no second batch; switching a
// mailbox to the other method is refused.
func TestImportMicrosoftBatchForUserMailbox(t *testing.T) {
	e := newTenantEnv(t, tenantOptions{})
	const mb = "anna.devries@" + tenantDomain
	e.tn.AddUser(mb, "Anna de Vries")
	pw := passwordFile(t)
	args := []string{"import", "start", mb, "--imap-host", "imap.solcon.nl", "--imap-user", "anna", "--password-file", pw}
	out := e.mustM365(args...)
	if !strings.Contains(out, "method: microsoft ("+mb+" is a user mailbox") || !strings.Contains(out, "started for "+mb+" from imap.solcon.nl (endpoint security Ssl)") {
		t.Fatalf("import start:\n%s", out)
	}
	var ep m365test.MigrationEndpoint
	for _, v := range e.tn.MigrationEndpoints() {
		ep = v
	}
	if ep.Security != "Ssl" || ep.Port != 993 || ep.RemoteServer != "imap.solcon.nl" {
		t.Errorf("endpoint %+v", ep)
	}
	batches := e.tn.Batches()
	if len(batches) != 1 {
		t.Fatalf("batches: %v", batches)
	}
	name := batches[0]

	if s := e.status(t, mb); s.Imports[0].Batch == nil || s.Imports[0].Batch.Status != "Syncing" || s.Imports[0].Batch.Completing {
		t.Errorf("status while syncing: %+v", s.Imports[0])
	}
	if out := e.mustM365(args...); !strings.Contains(out, "already running") || len(e.tn.Batches()) != 1 {
		t.Errorf("second start:\n%s\nbatches %v", out, e.tn.Batches())
	}
	e.tn.SetMigrationBatch(name, "Synced", "", 40, 40)
	text := e.mustM365("import", "status", mb)
	if !strings.Contains(text, "Synced, 40 of 40 items synced") || !strings.Contains(text, "completion asked for now (Complete-MigrationBatch)") {
		t.Errorf("status when synced:\n%s", text)
	}
	// Exchange Online only sets CompleteAfter; the batch stays Synced until
	// Microsoft completes it, and status says when completion was asked.
	if b, _ := e.tn.Batch(name); b.Status != "Synced" || b.Completions != 1 || b.CompleteAfter.IsZero() {
		t.Errorf("batch after status: %+v", b)
	}
	if text := e.mustM365("import", "status", mb); !strings.Contains(text, "completion asked for at "+func() string { b, _ := e.tn.Batch(name); return b.CompleteAfter.Format(time.RFC3339) }()) {
		t.Errorf("status while Microsoft completes:\n%s", text)
	}
	e.tn.SetMigrationBatch(name, "Completed", "", 40, 40)
	if text := e.mustM365("import", "status", mb); !strings.Contains(text, "Completed, 40 of 40") || strings.Contains(text, "completion asked") {
		t.Errorf("status when completed:\n%s", text)
	}
	if _, errOut, code := e.m365(append(args, "--method", "imap-copy")...); code == 0 || !strings.Contains(errOut, "already has an import by microsoft") {
		t.Errorf("switching methods: exit %d\n%s", code, errOut)
	}
	e.tn.SetMigrationBatch(name, "Failed", "The IMAP server rejected the login.", 0, 0)
	if _, errOut, code := e.m365("import", "status", mb); code != 1 || !strings.Contains(errOut, "rejected the login") {
		t.Errorf("status of a failed batch: exit %d\n%s", code, errOut)
	}
	assertNowhere(t, oldPassword, e.dir)
}

// TestImportPST: "import pst" reads an Outlook file with readpst and
// imports it like the copy; "import status" lists it.
func TestImportPST(t *testing.T) {
	if _, err := exec.LookPath("readpst"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("readpst not found; CI must install Debian's pst-utils")
		}
		t.Skip("readpst not found (apt-get install pst-utils); skipped outside CI")
	}
	e := newTenantEnv(t, tenantOptions{})
	const mb = "scriba@" + tenantDomain
	e.tn.AddSharedMailbox(mb, "Scriba")
	hdr := func(id, subject string) string {
		return "Received: from mx.example.org by mail.solcon.nl; Mon, 4 Mar 2019 09:30:00 +0000\r\nFrom: Anna <anna@example.org>\r\n" +
			"Subject: " + subject + "\r\nMessage-ID: <" + id + ">\r\n\r\n"
	}
	b, err := psttest.Build("Persoonlijke mappen", []psttest.Folder{
		{Name: "Inbox", Messages: []psttest.Message{{Headers: hdr("p1@x", "Rooster"), Subject: "Rooster", Body: "maart\r\n", Read: true}}},
		{Name: "Verzonden items", Messages: []psttest.Message{{Headers: hdr("p2@x", "Antwoord"), Subject: "Antwoord", Body: "goed\r\n", Read: true}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "scriba 2019; $(echo oud).pst")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.mustM365("import", "pst", file, "--to", mb)
	if !strings.Contains(out, "done: 2 messages moved in this run") {
		t.Errorf("import pst:\n%s", out)
	}
	msgs := e.tn.Messages(mb)
	if len(msgs["Inbox"]) != 1 || len(msgs["Sent Items"]) != 1 || msgs["Inbox"][0].IsDraft || !msgs["Inbox"][0].Received.Equal(received) {
		t.Errorf("tenant holds %v", msgs)
	}
	s := e.status(t, mb)
	if len(s.Imports) != 1 || s.Imports[0].Method != "pst" || s.Imports[0].File != file || s.Imports[0].Totals.Moved != 2 {
		t.Errorf("status: %+v", s)
	}
	e.mustM365("import", "pst", file, "--to", mb)
	if n := len(e.tn.Messages(mb)["Inbox"]); n != 1 {
		t.Errorf("rerun: %d messages in Inbox", n)
	}
}
