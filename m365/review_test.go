// SPDX-License-Identifier: MIT

package m365_test

// Tests for the findings of the review of every Microsoft 365 call against
// Microsoft's documentation (../shared/reference/microsoft-365-review.md),
// each against the fake tenant answering as the page it names.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

func relaySetup() m365.RelaySetup {
	return m365.RelaySetup{ConnectorName: "dualmx relay", RelayIPs: []string{"203.0.113.10"}, OldHostIPs: []string{"198.51.100.0/24"},
		ArcDomain: "relay.example.nl"}
}

// Finding 2: Get-InboundConnector shows SenderDomains as address spaces
// (smtp:*;1); setup must read that as * and converge.
func TestSetupConvergesWithAddressSpaceSenderDomains(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	tn.SetArcSealers("relay.example.nl") // only the connector is to do
	s := relaySetup()
	p, err := x.PlanRelaySetup(ctx, s)
	if err != nil || len(p.Changes) != 1 || p.Changes[0].Cmdlet != "New-InboundConnector" {
		t.Fatalf("plan %+v %v", p, err)
	}
	if _, err := x.ApplyRelaySetup(ctx, s, p); err != nil {
		t.Fatal(err)
	}
	checks, err := x.CheckRelaySetup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("read back %+v (Get-InboundConnector shows SenderDomains as smtp:*;1)", c)
		}
	}
	if p, err := x.PlanRelaySetup(ctx, s); err != nil || len(p.Changes) != 0 {
		t.Errorf("second plan on a set-up tenant: %+v %v", p, err)
	}
	if n := tn.Count("Set-InboundConnector"); n != 0 {
		t.Errorf("%d Set-InboundConnector calls on a correct connector", n)
	}
}

// Finding 3: Set-ArcConfig -ArcTrustedSealers is a String[], not one
// comma-joined string.
func TestArcTrustedSealersSentAsList(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	tn.SetArcSealers("forwarder.example,lists.example")
	s := relaySetup()
	p, err := x.PlanRelaySetup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.ApplyRelaySetup(ctx, s, p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got := tn.ArcSealers(); got != "forwarder.example,lists.example,relay.example.nl" {
		t.Errorf("sealers %q", got)
	}
	b := body(t, lastCmdlet(t, tn, "Set-ArcConfig"))
	in := b["CmdletInput"].(map[string]any)["Parameters"].(map[string]any)
	if l, ok := in["ArcTrustedSealers"].([]any); !ok || len(l) != 3 {
		t.Errorf("ArcTrustedSealers sent as %#v, want a list of 3", in["ArcTrustedSealers"])
	}
}

func lastCmdlet(t *testing.T, tn *m365test.Tenant, cmdlet string) m365test.Request {
	t.Helper()
	rs := tn.Requests()
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Cmdlet == cmdlet {
			return rs[i]
		}
	}
	t.Fatalf("no %s among %d requests", cmdlet, len(rs))
	return m365test.Request{}
}

// Finding 5: the account behind a shared mailbox must not sign in.
// (provisioning's tests show the plan step; this is the call.)
func TestBlockSignInWaitsForTheNewUser(t *testing.T) {
	tn, _, x, s := setup(t)
	ctx := context.Background()
	g, _ := tn.Clients(m365.Retry{Sleep: s.sleep, Poll: time.Second, NotFoundWait: 10 * time.Second})
	tn.LagAfterCreate(2)
	mb, err := x.NewSharedMailbox(ctx, "scriba@"+domain, "Scriba")
	if err != nil || mb.ExternalDirectoryObjectID == "" {
		t.Fatalf("new mailbox %+v %v", mb, err)
	}
	if !tn.SignInEnabled("scriba@" + domain) {
		t.Fatal("the fake creates the user enabled, as New-Mailbox does")
	}
	if err := g.BlockSignIn(ctx, mb.ExternalDirectoryObjectID); err != nil {
		t.Fatal(err)
	}
	if tn.SignInEnabled("scriba@" + domain) {
		t.Error("sign-in still enabled")
	}
	b := body(t, last(t, tn, "PATCH", "/v1.0/users/"+mb.ExternalDirectoryObjectID))
	delete(b, "@odata.type")
	if b["accountEnabled"] != false || len(b) != 1 {
		t.Errorf("PATCH body %v", b)
	}
	if n := tn.Count("PATCH /users/" + mb.ExternalDirectoryObjectID); n != 3 {
		t.Errorf("%d PATCHes, want 3 (two 404s while the directory catches up)", n)
	}
}

// Finding 6: New-Mailbox's Name is at most 64 characters and takes no ö, ü,
// ä in the cloud; the display name keeps them.
func TestSharedMailboxNameFolded(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	long := "Commissie van Beheer voor de Financiën en de Kerkelijke Goederen der Gemeente"
	for _, tc := range []struct{ addr, display, name string }{
		{"financien@" + domain, "Financiën", "Financien"},
		{"koster@" + domain, "Köster & Hülp", "Koster Hulp"},
		{"beheer@" + domain, long, "Commissie van Beheer voor de Financien en de Kerkelijke Goederen"},
		{"x@" + domain, "✉✉", "x"},
	} {
		mb, err := x.NewSharedMailbox(ctx, tc.addr, tc.display)
		if err != nil {
			t.Errorf("%s: %v", tc.display, err)
			continue
		}
		got, _ := tn.Mailbox(tc.addr)
		if got.Name != tc.name || got.DisplayName != tc.display || mb.PrimarySmtpAddress != tc.addr || len(got.Name) > 64 {
			t.Errorf("%s: name %q display %q, want %q", tc.display, got.Name, got.DisplayName, tc.name)
		}
	}
}

// Finding 7: for an identity that does not exist, Get-* may answer every
// object; dualmx must not take the first one.
func TestIdentityLookupsIgnoreEverythingElse(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	tn.GetsReturnAll(true)
	tn.AddSharedMailbox("penningmeester@"+domain, "Penningmeester")
	tn.AddGrant("penningmeester@"+domain, "bert@"+domain, m365.FullAccess)
	tn.AddDKIMConfig("example.onmicrosoft.com", true, "selector1-example-onmicrosoft-com._domainkey.example.onmicrosoft.com",
		"selector2-example-onmicrosoft-com._domainkey.example.onmicrosoft.com")
	if err := x.ApplyChanges(ctx, []m365.SetupChange{{Cmdlet: "New-InboundConnector", Params: map[string]any{"Name": "Other partner",
		"ConnectorType": "Partner", "SenderDomains": []string{"partner.example"}, "RequireTls": false}}}); err != nil {
		t.Fatal(err)
	}

	if mb, err := x.GetMailbox(ctx, "scriba@"+domain); !errors.Is(err, m365.ErrNotFound) {
		t.Errorf("missing mailbox read as %+v, %v", mb, err)
	}
	if gs, err := x.Grants(ctx, "scriba@"+domain); !errors.Is(err, m365.ErrNotFound) {
		t.Errorf("grants of a missing mailbox: %v %v", gs, err)
	}
	if s1, s2, err := x.DKIMSelectors(ctx, domain); err != nil || s1 != "" || s2 != "" {
		t.Errorf("DKIM selectors of a domain without a config: %q %q %v (the onmicrosoft.com ones must not be taken)", s1, s2, err)
	}
	tn.SetArcSealers("relay.example.nl")
	p, err := x.PlanRelaySetup(ctx, relaySetup())
	if err != nil || len(p.Changes) != 1 || p.Changes[0].Cmdlet != "New-InboundConnector" {
		t.Errorf("plan with someone else's connector: %+v %v", p, err)
	}
	// The look-ups still find what exists.
	if mb, err := x.GetMailbox(ctx, "penningmeester@"+domain); err != nil || mb.PrimarySmtpAddress != "penningmeester@"+domain {
		t.Errorf("existing mailbox: %+v %v", mb, err)
	}
	if gs, err := x.Grants(ctx, "penningmeester@"+domain); err != nil || len(gs) != 1 {
		t.Errorf("existing grants: %+v %v", gs, err)
	}
}

// Finding 8: lastSignInDateTime counts failed attempts; the evidence is the
// last successful sign-in.
func TestLastSignInIsTheLastSuccess(t *testing.T) {
	tn, g, _, _ := setup(t)
	ctx := context.Background()
	tn.AddUser("anna@"+domain, "Anna")
	ok := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	failed := ok.Add(48 * time.Hour)
	tn.SetSignInAttempts("anna@"+domain, failed, time.Time{})
	if at, err := g.LastSignIn(ctx, "anna@"+domain); err != nil || !at.IsZero() {
		t.Errorf("only a failed attempt: %v %v, want never", at, err)
	}
	tn.SetSignInAttempts("anna@"+domain, failed, ok)
	if at, err := g.LastSignIn(ctx, "anna@"+domain); err != nil || !at.Equal(ok) {
		t.Errorf("last success %v, got %v %v", ok, at, err)
	}
	tn.SetPremium(false)
	if _, err := g.LastSignIn(ctx, "anna@"+domain); !errors.Is(err, m365.ErrSignInUnknown) || !strings.Contains(err.Error(), "P1") {
		t.Errorf("tenant without Entra ID P1: %v", err)
	}
}

// Finding 9: what the docs leave out is named when Microsoft refuses:
// User Administrator for a password reset, AuditLog.Read.All for sign-ins.
func TestRefusalsNameWhatToGrant(t *testing.T) {
	tn, g, _, _ := setup(t)
	ctx := context.Background()
	id := tn.AddUser("anna@"+domain, "Anna")
	tn.SetDirectoryRoles(m365.RoleExchangeAdministrator)
	err := g.ResetPassword(ctx, id, "Tmp-Pass-123456789")
	if !errors.Is(err, m365.ErrNotPermitted) || !strings.Contains(err.Error(), "User Administrator") ||
		!strings.Contains(err.Error(), "Roles & admins") {
		t.Errorf("reset without User Administrator: %v", err)
	}
	tn.SetDirectoryRoles(m365.RoleUserAdministrator, m365.RoleExchangeAdministrator)
	if err := g.ResetPassword(ctx, id, "Tmp-Pass-123456789"); err != nil {
		t.Errorf("reset with the role: %v", err)
	}

	tn.SetSignIn("anna@"+domain, time.Now())
	tn.SetAppRoles(m365test.GraphAudience, "User.ReadWrite.All")
	_, err = g.LastSignIn(ctx, "anna@"+domain)
	if !errors.Is(err, m365.ErrNotPermitted) || errors.Is(err, m365.ErrSignInUnknown) || !strings.Contains(err.Error(), "AuditLog.Read.All") {
		t.Errorf("sign-in without AuditLog.Read.All: %v", err)
	}
	tn.AddSKU("c42b9cae-ea4f-4ab7-9717-81576235ccac", "O365_BUSINESS_PREMIUM", 1)
	if _, err := g.SubscribedSKUs(ctx); !strings.Contains(err.Error(), "LicenseAssignment.Read.All") {
		t.Errorf("SKUs without a permission: %v", err)
	}
}

// Finding 10: DKIM for the custom domain: created disabled, its CNAMEs
// shown, signing on once they resolve; a second run changes nothing.
func TestDKIMForTheCustomDomain(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	tn.SetArcSealers("relay.example.nl")
	var mu sync.Mutex
	published := false
	asked := 0
	s := relaySetup()
	s.DKIMDomain = domain
	s.DKIMPublished = func(_ context.Context, d, s1, s2 string) (bool, string, error) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		if d != domain || !strings.HasPrefix(s1, "selector1-example-nl._domainkey.") || !strings.HasPrefix(s2, "selector2-") {
			return false, "", fmt.Errorf("asked about %s %s %s", d, s1, s2)
		}
		if !published {
			return false, "selector1._domainkey." + d + " CNAME: not published", nil
		}
		return true, "", nil
	}
	p, err := x.PlanRelaySetup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if p.DKIM == nil || p.DKIM.Exists || p.Changes[len(p.Changes)-1].Cmdlet != "New-DkimSigningConfig" ||
		p.Changes[len(p.Changes)-1].Params["Enabled"] != false {
		t.Fatalf("plan %+v", p)
	}
	st, err := x.ApplyRelaySetup(ctx, s, p)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exists || st.Enabled || st.Published || st.Status != "CnameMissing" || len(st.Records()) != 2 ||
		!strings.HasPrefix(st.Records()[0], "selector1._domainkey.example.nl. 3600 IN CNAME selector1-example-nl._domainkey.") {
		t.Fatalf("after the first apply: %+v %q", st, st.Records())
	}
	// Created with 2048-bit keys; New-DkimSigningConfig's default is 1024.
	if n := tn.DKIMKeySize(domain); n != 2048 {
		t.Errorf("key size %d", n)
	}
	if p, _ := x.PlanRelaySetup(ctx, s); len(p.Changes) != 0 || p.DKIM.Enabled {
		t.Errorf("nothing to do until the records resolve: %+v", p)
	}

	// Published, but Microsoft 365 has not seen them yet: pending, no error.
	published = true
	p, _ = x.PlanRelaySetup(ctx, s)
	if len(p.Changes) != 1 || p.Changes[0].Cmdlet != "Set-DkimSigningConfig" || p.Changes[0].Params["Enabled"] != true {
		t.Fatalf("plan once published: %+v", p.Changes)
	}
	st, err = x.ApplyRelaySetup(ctx, s, p)
	if err != nil || st.Enabled || !strings.Contains(st.Pending, "not found them yet") {
		t.Fatalf("Microsoft 365 not yet seeing them: %+v %v", st, err)
	}
	tn.SeeDKIMCNAMEs(domain)
	p, _ = x.PlanRelaySetup(ctx, s)
	if st, err = x.ApplyRelaySetup(ctx, s, p); err != nil || !st.Enabled || st.Status != "Valid" {
		t.Fatalf("enable: %+v %v", st, err)
	}
	if _, _, on, _ := tn.DKIM(domain); !on {
		t.Error("the tenant does not sign")
	}
	n := tn.Count("")
	if p, _ := x.PlanRelaySetup(ctx, s); len(p.Changes) != 0 || !p.DKIM.Enabled {
		t.Errorf("after signing: %+v", p)
	}
	for _, r := range tn.Requests()[n:] {
		if !strings.HasPrefix(r.Cmdlet, "Get-") {
			t.Errorf("a plan ran %s", r.Cmdlet)
		}
	}
}

// Finding 11: teardown takes away the relay's skip-listing and trusted
// sealer, read-modify-write, and keeps what others added.
func TestTeardownKeepsOthersEntries(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	tn.SetArcSealers("forwarder.example")
	s := relaySetup()
	p, err := x.PlanRelaySetup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.ApplyRelaySetup(ctx, s, p); err != nil {
		t.Fatal(err)
	}
	// Someone adds an address of their own to the skip list.
	if err := x.ApplyChanges(ctx, []m365.SetupChange{{Cmdlet: "Set-InboundConnector", Params: map[string]any{"Identity": "dualmx relay",
		"EFSkipIPs": []string{"192.0.2.7", "198.51.100.0/24", "203.0.113.10"}}}}); err != nil {
		t.Fatal(err)
	}
	steps := x.RelayTeardown(s)
	planned, err := m365.PlanTeardown(ctx, steps)
	if err != nil || len(planned) != 2 || len(planned[0].Changes) != 1 || len(planned[1].Changes) != 1 {
		t.Fatalf("teardown plan %+v %v", planned, err)
	}
	for _, ps := range planned {
		if err := x.ApplyChanges(ctx, ps.Changes); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(tn.Connector("dualmx relay")["EFSkipIPs"]); got != "[192.0.2.7]" {
		t.Errorf("skip list after teardown %s", got)
	}
	if got := tn.ArcSealers(); got != "forwarder.example" {
		t.Errorf("sealers after teardown %q", got)
	}
	if again, err := m365.PlanTeardown(ctx, steps); err != nil || len(again[0].Changes)+len(again[1].Changes) != 0 {
		t.Errorf("second teardown plan %+v %v", again, err)
	}

	// The last sealer goes with the documented " ", and an empty skip list
	// is cleared.
	tn.SetArcSealers("relay.example.nl")
	if err := x.ApplyChanges(ctx, []m365.SetupChange{{Cmdlet: "Set-InboundConnector", Params: map[string]any{"Identity": "dualmx relay",
		"EFSkipIPs": []string{"203.0.113.10"}}}}); err != nil {
		t.Fatal(err)
	}
	planned, _ = m365.PlanTeardown(ctx, steps)
	if v := planned[0].Changes[0].Params["EFSkipIPs"]; v != nil {
		t.Errorf("emptied skip list sent as %#v, want null", v)
	}
	if v := fmt.Sprintf("%q", planned[1].Changes[0].Params["ArcTrustedSealers"]); v != `[" "]` {
		t.Errorf("emptied sealer list sent as %s", v)
	}
	for _, ps := range planned {
		if err := x.ApplyChanges(ctx, ps.Changes); err != nil {
			t.Fatal(err)
		}
	}
	if tn.ArcSealers() != "" {
		t.Errorf("sealers %q", tn.ArcSealers())
	}
}

// Finding 12: a create retried after a 5xx that the service had carried
// out meets its own object; that is success, not a conflict.
func TestRetriedCreateConflictIsLookedUp(t *testing.T) {
	tn, g, x, _ := setup(t)
	ctx := context.Background()
	tn.Inject(m365test.Fault{Match: "POST /users", Status: 500, Times: 1, Effect: true})
	u, err := g.CreateUser(ctx, m365.NewUser{UPN: "anna@" + domain, MailNickname: "anna", DisplayName: "Anna", UsageLocation: "NL",
		Password: "x-Y-1234567890"})
	if err != nil || u.UPN != "anna@"+domain || u.ID == "" {
		t.Fatalf("retried create: %+v %v", u, err)
	}
	if n := tn.Count("POST /users"); n != 2 {
		t.Errorf("%d creates, want 2", n)
	}
	// A conflict on the first attempt is someone else's account.
	if _, err := g.CreateUser(ctx, m365.NewUser{UPN: "anna@" + domain, MailNickname: "anna", DisplayName: "Anna", Password: "x-Y-1234567890"}); !errors.Is(err, m365.ErrConflict) {
		t.Errorf("plain conflict: %v", err)
	}

	tn.Inject(m365test.Fault{Match: "New-Mailbox", Status: 503, Code: "Ex0", Exception: "System.Exception", Message: "try later", Times: 1, Effect: true})
	mb, err := x.NewSharedMailbox(ctx, "scriba@"+domain, "Scriba")
	if err != nil || mb.PrimarySmtpAddress != "scriba@"+domain {
		t.Fatalf("retried New-Mailbox: %+v %v", mb, err)
	}
	if n := tn.Count("New-Mailbox"); n != 2 {
		t.Errorf("%d New-Mailbox calls, want 2", n)
	}
}

// @adminapi.warnings reach the admin: Exchange reports there what a cmdlet
// did not do.
func TestExchangeWarningsReachTheAdmin(t *testing.T) {
	tn := m365test.New(t, domain)
	var got []string
	c, err := m365.NewExchange(tn.Cred, m365.ExchangeOptions{BaseURL: tn.ExchangeURL(), TenantID: m365test.TenantID, Transport: tn.Transport(),
		Warn: func(cmdlet, text string) { got = append(got, cmdlet+": "+text) }})
	if err != nil {
		t.Fatal(err)
	}
	x := m365.NewExchangeOps(c, m365.Retry{})
	set := []m365.SetupChange{{Cmdlet: "New-InboundConnector", Params: map[string]any{"Name": "c", "ConnectorType": "Partner",
		"SenderDomains": []string{"*"}, "RequireTls": false}}, {Cmdlet: "Set-InboundConnector", Params: map[string]any{"Identity": "c", "RequireTls": false}}}
	if err := x.ApplyChanges(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0], "Set-InboundConnector: The command completed successfully but no settings") {
		t.Errorf("warnings %q", got)
	}
}

func TestCloudsAreComplete(t *testing.T) {
	names := m365.CloudNames()
	if !slices.Equal(names, []string{"china", "dod", "global", "usgov", "usgovhigh"}) {
		t.Errorf("clouds %v", names)
	}
	for _, n := range names {
		c, err := m365.CloudByName(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{c.Authority, c.GraphURL, c.GraphScope(), c.ExchangeURL, c.ExchangeScope()} {
			if !strings.HasPrefix(u, "https://") {
				t.Errorf("%s: %s", n, u)
			}
		}
	}
	if _, err := m365.CloudByName("germany"); err == nil {
		t.Error("unknown cloud accepted")
	}
}

// Enhanced Filtering's EFUsers: blank ($null) applies it to all recipients
// (enhanced-filtering-for-connectors). A setup without --pilot after one
// with it clears the list, rather than leave the pilot in place for good.
func TestSetupWithoutPilotClearsEFUsers(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	s := relaySetup()
	s.PilotUsers = []string{"scriba@" + domain}
	p, err := x.PlanRelaySetup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.ApplyRelaySetup(ctx, s, p); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tn.Connector("dualmx relay")["EFUsers"]); got != "[scriba@"+domain+"]" {
		t.Fatalf("pilot EFUsers %s", got)
	}
	s.PilotUsers = nil
	p, err = x.PlanRelaySetup(ctx, s)
	if err != nil || len(p.Changes) != 1 || p.Changes[0].Cmdlet != "Set-InboundConnector" || !strings.Contains(p.Changes[0].What, "EFUsers") {
		t.Fatalf("plan after the pilot: %+v %v", p, err)
	}
	if v, ok := p.Changes[0].Params["EFUsers"]; !ok || v != nil {
		t.Errorf("Set-InboundConnector EFUsers %v, want $null", v)
	}
	if _, err := x.ApplyRelaySetup(ctx, s, p); err != nil {
		t.Fatal(err)
	}
	if c := tn.Connector("dualmx relay"); c["EFUsers"] != nil {
		t.Errorf("EFUsers after setup without --pilot: %v", c["EFUsers"])
	}
	if p, err := x.PlanRelaySetup(ctx, s); err != nil || len(p.Changes) != 0 {
		t.Errorf("third plan %+v %v", p, err)
	}
}

// New-Mailbox's Name is "the unique name of the mailbox": when another
// recipient carries it already, the shared mailbox gets the name with its
// alias, and its display name stays as given.
func TestSharedMailboxNameTaken(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	tn.AddSharedMailbox("financien-oud@"+domain, "Financien")
	mb, err := x.NewSharedMailbox(ctx, "financien@"+domain, "Financiën")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := tn.Mailbox("financien@" + domain)
	if got.Name != "Financien (financien)" || got.DisplayName != "Financiën" || mb.PrimarySmtpAddress != "financien@"+domain {
		t.Errorf("mailbox %+v", got)
	}
	long := strings.Repeat("Kerkrentmeester ", 5)
	tn.AddSharedMailbox("krm-oud@"+domain, m365.MailboxName(long, "krm"))
	if _, err := x.NewSharedMailbox(ctx, "krm@"+domain, long); err != nil {
		t.Fatal(err)
	}
	if got, _ := tn.Mailbox("krm@" + domain); len(got.Name) > 64 || !strings.HasSuffix(got.Name, " (krm)") {
		t.Errorf("long name %q (%d characters)", got.Name, len(got.Name))
	}
}
