// SPDX-License-Identifier: MIT

package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

func exchange(t *testing.T, tn *m365test.Tenant) *m365.InvokeCommandClient {
	t.Helper()
	c, err := m365.NewExchange(tn.Cred, m365.ExchangeOptions{BaseURL: tn.ExchangeURL(), TenantID: m365test.TenantID, Transport: tn.Transport(), Retry: m365.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSecurityFromTLSMode: the endpoint's Security follows how the old host
// is reached (None, Ssl, Tls), and each setting gets its own endpoint.
func TestSecurityFromTLSMode(t *testing.T) {
	for _, c := range []struct {
		flag string
		port int
		want string
	}{{"", 993, "Ssl"}, {"", 143, "Tls"}, {"implicit", 993, "Ssl"}, {"starttls", 143, "Tls"}, {"none", 143, "None"}, {"ssl", 993, "Ssl"}} {
		m, err := ParseTLSMode(c.flag, c.port)
		if err != nil || Security(m) != c.want {
			t.Errorf("ParseTLSMode(%q, %d) = %v, %v: Security %s, want %s", c.flag, c.port, m, err, Security(m), c.want)
		}
	}
	if _, err := ParseTLSMode("maybe", 993); err == nil {
		t.Error("bad --imap-tls accepted")
	}
	if EndpointName("imap.solcon.nl", 993, TLSImplicit) == EndpointName("imap.solcon.nl", 143, TLSStartTLS) {
		t.Error("two settings share one endpoint name")
	}
	long := BatchName(strings.Repeat("a", 80)+"@hervormdputten.nl", time.Now())
	if len(long) > 64 || !strings.HasPrefix(long, BatchPrefix) {
		t.Errorf("batch name %q (%d characters)", long, len(long))
	}
}

// TestBatchLifecycle: a batch is created with the endpoint's Security from
// the port, without AutoComplete (IMAP batches do not take it); a rerun
// while it runs makes no second batch; when synced it is completed; a rerun
// after it finished replaces it under a new name; Microsoft's error, an
// object, is read; the password is in no error.
func TestBatchLifecycle(t *testing.T) {
	ctx := context.Background()
	tn := m365test.New(t, "hervormdputten.nl")
	tn.AddUser("anna.devries@hervormdputten.nl", "Anna de Vries")
	c := exchange(t, tn)
	user := "anna.devries@hervormdputten.nl"
	if _, err := GetBatchStatus(ctx, c, user, ""); !errors.Is(err, ErrNoBatch) {
		t.Fatalf("status before start = %v", err)
	}
	req := BatchRequest{Mailbox: user, Host: "imap.solcon.nl", Port: 143, Mode: TLSStartTLS, User: "anna", Password: secret}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	name, err := StartBatch(ctx, c, req, t0)
	if err != nil {
		t.Fatal(err)
	}
	eps := tn.MigrationEndpoints()
	ep := eps[strings.ToLower(EndpointName("imap.solcon.nl", 143, TLSStartTLS))]
	if ep.Security != "Tls" || ep.Port != 143 || ep.RemoteServer != "imap.solcon.nl" {
		t.Errorf("endpoints = %+v", eps)
	}
	b, _ := tn.Batch(name)
	if b.Status != "Syncing" || !strings.Contains(b.CSV, `"`+strings.ReplaceAll(secret, `"`, `""`)+`"`) || b.User != user {
		t.Errorf("batch = %+v", b)
	}

	// A rerun while the batch runs leaves it alone.
	again, err := StartBatch(ctx, c, req, t0.Add(time.Hour))
	if !errors.Is(err, ErrBatchRunning) || again != name || strings.Contains(err.Error(), secret) {
		t.Fatalf("rerun while syncing = %q, %v", again, err)
	}
	if n := len(tn.Batches()); n != 1 {
		t.Fatalf("%d batches after a rerun", n)
	}

	tn.SetMigrationBatch(name, "Synced", "", 120, 120)
	st, err := GetBatchStatus(ctx, c, user, "")
	if err != nil || !st.Synced() || st.Found != 120 || st.Moved != 120 || st.Name != name {
		t.Fatalf("synced status = %+v %v", st, err)
	}
	if err := CompleteBatch(ctx, c, name); err != nil {
		t.Fatal(err)
	}
	// Exchange Online sets CompleteAfter; the service completes in its own
	// time, and a second call meanwhile does no harm.
	if b, _ := tn.Batch(name); b.Status != "Synced" || b.Completions != 1 || b.CompleteAfter.IsZero() {
		t.Fatalf("after Complete-MigrationBatch: %+v", b)
	}
	if st, err := GetBatchStatus(ctx, c, user, ""); err != nil || st.CompleteAfter == "" {
		t.Errorf("status after Complete-MigrationBatch: %+v, %v", st, err)
	}
	if err := CompleteBatch(ctx, c, name); err != nil {
		t.Errorf("completing again: %v", err)
	}

	tn.SetMigrationBatch(name, "Failed", "Error: AuthenticationFailedTransientException: The IMAP server rejected the login.", 0, 0)
	st, err = GetBatchStatus(ctx, c, user, name)
	if err != nil || !st.Failed || !strings.Contains(st.Error, "rejected the login") {
		t.Fatalf("failed status = %+v %v", st, err)
	}
	// A rerun after it failed (a wrong password, say) replaces the batch.
	renamed, err := StartBatch(ctx, c, req, t0.Add(2*time.Hour))
	if err != nil || renamed == name {
		t.Fatalf("rerun after failure = %q, %v", renamed, err)
	}
	if got := tn.Batches(); len(got) != 1 || got[0] != renamed {
		t.Fatalf("batches after the rerun: %v", got)
	}
	if n := tn.Count("New-MigrationEndpoint"); n != 1 {
		t.Errorf("endpoint created %d times", n)
	}

	// Ended with errors: started again (it keeps what it moved), not
	// replaced.
	tn.SetMigrationBatch(renamed, "CompletedWithErrors", "one folder failed", 10, 9)
	again, err = StartBatch(ctx, c, req, t0.Add(3*time.Hour))
	if !errors.Is(err, ErrBatchRestarted) || again != renamed {
		t.Fatalf("rerun after CompletedWithErrors = %q, %v", again, err)
	}
	if b, _ := tn.Batch(renamed); b.Status != "Syncing" || b.Starts != 1 || len(tn.Batches()) != 1 {
		t.Fatalf("after the restart: %+v, batches %v", b, tn.Batches())
	}
	// Completed: the mail is in; a rerun changes nothing.
	tn.SetMigrationBatch(renamed, "Completed", "", 10, 10)
	if again, err = StartBatch(ctx, c, req, t0.Add(4*time.Hour)); !errors.Is(err, ErrBatchCompleted) || again != renamed || len(tn.Batches()) != 1 {
		t.Fatalf("rerun after Completed = %q, %v; batches %v", again, err, tn.Batches())
	}
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// TestCompleteOnlyWhenSynced: Microsoft refuses to complete a batch that is
// still syncing; the error comes back as Exchange's.
func TestCompleteOnlyWhenSynced(t *testing.T) {
	ctx := context.Background()
	tn := m365test.New(t, "hervormdputten.nl")
	c := exchange(t, tn)
	tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "dualmx-imap-x-993-ssl", RemoteServer: "x", Security: "Ssl", Port: 993})
	tn.AddMigrationBatch(m365test.MigrationBatch{Name: "dualmx-a", Endpoint: "dualmx-imap-x-993-ssl", Status: "Syncing", User: "a@x"})
	if err := CompleteBatch(ctx, c, "dualmx-a"); err == nil || !strings.Contains(err.Error(), "can't be completed") {
		t.Fatalf("complete while syncing = %v", err)
	}
}

// TestErrorText reads Microsoft's error whichever shape it comes in.
func TestErrorText(t *testing.T) {
	for raw, want := range map[string]string{
		`"plain"`:                            "plain",
		`{"Message":"as object"}`:            "as object",
		`{"Value":"wrapped"}`:                "wrapped",
		`{"InnerException":{"Message":"x"}}`: "x",
		`[{"Message":"a"},"b"]`:              "a; b",
		`null`:                               "",
		`{"HResult":5}`:                      "",
	} {
		if got := text([]byte(raw)); got != want {
			t.Errorf("text(%s) = %q, want %q", raw, got, want)
		}
	}
}

// TestTeardownSteps: finished dualmx batches and then their endpoints are
// removed; a running batch and its endpoint are kept and named; a dualmx
// endpoint that someone else's batch uses is kept and names that batch,
// rather than failing the teardown; what another tool made is never
// touched.
func TestTeardownSteps(t *testing.T) {
	ctx := context.Background()
	tn := m365test.New(t, "hervormdputten.nl")
	c := exchange(t, tn)
	tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "dualmx-imap-a-993-ssl", RemoteServer: "a", Security: "Ssl", Port: 993})
	tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "dualmx-imap-b-993-ssl", RemoteServer: "b", Security: "Ssl", Port: 993})
	tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "dualmx-imap-d-993-ssl", RemoteServer: "d", Security: "Ssl", Port: 993})
	tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "ImapEndpoint1", RemoteServer: "c", Security: "Ssl", Port: 993})
	tn.AddMigrationBatch(m365test.MigrationBatch{Name: "dualmx-done", Endpoint: "dualmx-imap-a-993-ssl", Status: "Completed", User: "a@x"})
	tn.AddMigrationBatch(m365test.MigrationBatch{Name: "dualmx-busy", Endpoint: "dualmx-imap-b-993-ssl", Status: "Syncing", User: "b@x"})
	tn.AddMigrationBatch(m365test.MigrationBatch{Name: "theirs", Endpoint: "imapendpoint1", Status: "Completed", User: "c@x"})
	// An admin's own batch, finished, on the endpoint dualmx made for d.
	tn.AddMigrationBatch(m365test.MigrationBatch{Name: "staff-move", Endpoint: "dualmx-imap-d-993-ssl", Status: "Completed", User: "d@x"})
	steps, kept, err := TeardownSteps(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	var what []string
	for _, s := range steps {
		what = append(what, s.What)
		if err := s.Do(ctx); err != nil {
			t.Fatalf("%s: %v", s.What, err)
		}
	}
	joined := strings.Join(what, "\n")
	if len(steps) != 2 || !strings.Contains(joined, "batch dualmx-done") || !strings.Contains(joined, "endpoint dualmx-imap-a-993-ssl") {
		t.Errorf("steps:\n%s", joined)
	}
	notes := strings.Join(kept, "\n")
	if len(kept) != 3 || !strings.Contains(notes, "dualmx-busy is Syncing") ||
		!strings.Contains(notes, "migration endpoint dualmx-imap-b-993-ssl: still used by migration batch dualmx-busy") ||
		!strings.Contains(notes, "migration endpoint dualmx-imap-d-993-ssl: still used by migration batch staff-move") {
		t.Errorf("kept:\n%s", notes)
	}
	if got := strings.Join(tn.Batches(), ","); got != "dualmx-busy,staff-move,theirs" {
		t.Errorf("batches left: %s", got)
	}
	eps := tn.MigrationEndpoints()
	if _, ok := eps["imapendpoint1"]; !ok {
		t.Error("another tool's endpoint was removed")
	}
	if _, ok := eps["dualmx-imap-d-993-ssl"]; !ok {
		t.Error("an endpoint in use was removed")
	}

	// A batch made between the plan and the apply: the endpoint stays,
	// the teardown goes on, and the next plan names the batch.
	tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "dualmx-imap-e-993-ssl", RemoteServer: "e", Security: "Ssl", Port: 993})
	steps, _, err = TeardownSteps(ctx, c)
	if err != nil || len(steps) != 1 || !strings.Contains(steps[0].What, "dualmx-imap-e-993-ssl") {
		t.Fatalf("steps %v, %v", steps, err)
	}
	tn.AddMigrationBatch(m365test.MigrationBatch{Name: "late", Endpoint: "dualmx-imap-e-993-ssl", Status: "Syncing", User: "e@x"})
	if err := steps[0].Do(ctx); err != nil {
		t.Errorf("removing an endpoint a new batch uses: %v", err)
	}
	if _, kept, _ = TeardownSteps(ctx, c); !strings.Contains(strings.Join(kept, "\n"), "dualmx-imap-e-993-ssl: still used by migration batch late") {
		t.Errorf("kept after the late batch: %v", kept)
	}
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// TestLookUpsIgnoreOtherMailboxes: the migration Get-* cmdlets answer
// every object for an identity that does not exist (their pages' Caution),
// so another mailbox's finished batch, or another host's endpoint, must not
// pass for this mailbox's.
func TestLookUpsIgnoreOtherMailboxes(t *testing.T) {
	ctx := context.Background()
	tn := m365test.New(t, "hervormdputten.nl")
	c := exchange(t, tn)
	tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "staff-imap", RemoteServer: "imap.example.org", Security: "Ssl", Port: 993})
	tn.AddMigrationBatch(m365test.MigrationBatch{Name: "staff-move", Endpoint: "staff-imap", Status: "Completed", User: "bert@hervormdputten.nl"})
	user := "anna.devries@hervormdputten.nl"
	if st, err := GetBatchStatus(ctx, c, user, ""); !errors.Is(err, ErrNoBatch) {
		t.Fatalf("status of a mailbox without a batch = %+v, %v", st, err)
	}
	req := BatchRequest{Mailbox: user, Host: "imap.solcon.nl", User: "anna", Password: secret}
	name, err := StartBatch(ctx, c, req, time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatalf("start beside another mailbox's completed batch: %q, %v", name, err)
	}
	if b, ok := tn.Batch(name); !ok || b.User != user || b.Endpoint != strings.ToLower(EndpointName("imap.solcon.nl", 993, TLSImplicit)) {
		t.Errorf("batch %+v", b)
	}
	if n := tn.Count("New-MigrationEndpoint"); n != 1 {
		t.Errorf("endpoint created %d times", n)
	}
	st, err := GetBatchStatus(ctx, c, user, "")
	if err != nil || st.Name != name || st.Status != "Syncing" {
		t.Errorf("status = %+v, %v", st, err)
	}
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// TestChooseMethod: a user mailbox gets Microsoft's migration, a shared
// one the Graph copy, each with the reason.
func TestChooseMethod(t *testing.T) {
	if m, why := ChooseMethod("anna@x", "UserMailbox"); m != MethodMicrosoft || !strings.Contains(why, "user mailbox") {
		t.Errorf("user mailbox: %s (%s)", m, why)
	}
	if m, why := ChooseMethod("scriba@x", "SharedMailbox"); m != MethodCopy || !strings.Contains(why, "shared mailbox") {
		t.Errorf("shared mailbox: %s (%s)", m, why)
	}
	if m, _ := ChooseMethod("zaal@x", "RoomMailbox"); m != MethodCopy {
		t.Errorf("room mailbox: %s", m)
	}
}

// TestMigrationRefusalNamesTheRole: with only Exchange Recipient
// Administrator the migration cmdlets are not in the app's session; the
// error names the role dualmx asks for, and that the lesser role is not
// verified.
func TestMigrationRefusalNamesTheRole(t *testing.T) {
	ctx := context.Background()
	tn := m365test.New(t, "hervormdputten.nl")
	tn.SetDirectoryRoles(m365.RoleExchangeRecipientAdministrator)
	c := exchange(t, tn)
	req := BatchRequest{Mailbox: "anna.devries@hervormdputten.nl", Host: "imap.solcon.nl", User: "anna", Password: secret}
	_, err := StartBatch(ctx, c, req, time.Now())
	if !errors.Is(err, m365.ErrNotPermitted) || !strings.Contains(err.Error(), "needs Entra role Exchange Administrator") ||
		!strings.Contains(err.Error(), "unverified: whether Exchange Recipient Administrator") || strings.Contains(err.Error(), secret) {
		t.Errorf("start without the role: %v", err)
	}
	if _, err := GetBatchStatus(ctx, c, req.Mailbox, "dualmx-x"); !errors.Is(err, m365.ErrNotPermitted) {
		t.Errorf("status without the role: %v", err)
	}
	if err := CompleteBatch(ctx, c, "dualmx-x"); !errors.Is(err, m365.ErrNotPermitted) {
		t.Errorf("complete without the role: %v", err)
	}
	if _, _, err := TeardownSteps(ctx, c); !errors.Is(err, m365.ErrNotPermitted) || strings.Count(err.Error(), "needs ") != 2 {
		t.Errorf("teardown without the role: %v", err)
	}
}
