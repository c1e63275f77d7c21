// SPDX-License-Identifier: MIT

package m365_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

const domain = "example.nl"

// sleeps records the waits the retry loop asks for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return nil
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func setup(t *testing.T) (*m365test.Tenant, *m365.Graph, *m365.Exchange, *sleeps) {
	t.Helper()
	tn := m365test.New(t, domain)
	s := &sleeps{}
	g, x := tn.Clients(m365.Retry{Sleep: s.sleep, Poll: time.Second, NotFoundWait: 10 * time.Second, MailboxWait: 10 * time.Second})
	t.Cleanup(func() {
		if v := tn.Violations(); len(v) > 0 {
			t.Errorf("requests not in the documented shape: %q", v)
		}
	})
	return tn, g, x, s
}

func body(t *testing.T, r m365test.Request) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body of %s %s: %v", r.Method, r.Path, err)
	}
	return m
}

func last(t *testing.T, tn *m365test.Tenant, method, path string) m365test.Request {
	t.Helper()
	rs := tn.Requests()
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Method == method && rs[i].Path == path {
			return rs[i]
		}
	}
	t.Fatalf("no %s %s among %d requests", method, path, len(rs))
	return m365test.Request{}
}

func TestCreateUserRequestShape(t *testing.T) {
	tn, g, _, _ := setup(t)
	ctx := context.Background()
	u, err := g.CreateUser(ctx, m365.NewUser{UPN: "anna.devries@" + domain, MailNickname: "anna.devries", DisplayName: "Anna de Vries",
		GivenName: "Anna", Surname: "de Vries", UsageLocation: "NL", Password: "Tmp-Pass-123456"})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" {
		t.Fatal("no id from create")
	}
	r := last(t, tn, "POST", "/v1.0/users")
	if c, err := m365test.ParseClaims(r.Auth); err != nil || c.Aud != m365test.GraphAudience {
		t.Errorf("auth %q: %+v %v", r.Auth, c, err)
	}
	b := body(t, r)
	pp, _ := b["passwordProfile"].(map[string]any)
	if b["usageLocation"] != "NL" || b["accountEnabled"] != true || pp["forceChangePasswordNextSignIn"] != true || b["mailNickname"] != "anna.devries" {
		t.Errorf("create body %v", b)
	}
	got, err := g.GetUser(ctx, "anna.devries@"+domain)
	if err != nil {
		t.Fatal(err)
	}
	// usageLocation comes back only when selected.
	if got.UsageLocation != "NL" || got.ID != u.ID || !got.AccountEnabled {
		t.Errorf("get %+v", got)
	}
	if r := last(t, tn, "GET", "/v1.0/users/anna.devries@"+domain); !strings.Contains(r.Query, "usageLocation") {
		t.Errorf("GET user without usageLocation in $select: %q", r.Query)
	}
	if _, err := g.GetUser(ctx, "nobody@"+domain); !errors.Is(err, m365.ErrNotFound) {
		t.Errorf("missing user: %v, want ErrNotFound", err)
	}
}

func TestGraphRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fault     m365test.Fault
		wantErr   bool
		wantCalls int
		wantSleep []time.Duration // nil: only check the count
	}{
		{name: "429 obeys Retry-After", fault: m365test.Fault{Match: "GET /subscribedSkus", Status: 429, RetryAfter: "7", Times: 2},
			wantCalls: 3, wantSleep: []time.Duration{7 * time.Second, 7 * time.Second}},
		{name: "500 retried with backoff", fault: m365test.Fault{Match: "GET /subscribedSkus", Status: 500, Times: 1}, wantCalls: 2},
		{name: "503 retried", fault: m365test.Fault{Match: "GET /subscribedSkus", Status: 503, Times: 1}, wantCalls: 2},
		{name: "400 not retried", fault: m365test.Fault{Match: "GET /subscribedSkus", Status: 400, Code: "Request_BadRequest", Times: 1},
			wantErr: true, wantCalls: 1},
		{name: "500 forever gives up", fault: m365test.Fault{Match: "GET /subscribedSkus", Status: 500}, wantErr: true, wantCalls: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, g, _, s := setup(t)
			tn.AddSKU("c42b9cae-ea4f-4ab7-9717-81576235ccac", "O365_BUSINESS_PREMIUM", 10)
			tn.Inject(tc.fault)
			skus, err := g.SubscribedSKUs(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && (len(skus) != 1 || skus[0].PartNumber != "O365_BUSINESS_PREMIUM" || skus[0].Free() != 10) {
				t.Errorf("skus %+v", skus)
			}
			if n := tn.Count("GET /subscribedSkus"); n != tc.wantCalls {
				t.Errorf("%d calls, want %d", n, tc.wantCalls)
			}
			if got := s.all(); len(got) != tc.wantCalls-1 {
				t.Errorf("slept %v, want %d waits", got, tc.wantCalls-1)
			} else if tc.wantSleep != nil && !equalDurations(got, tc.wantSleep) {
				t.Errorf("slept %v, want %v", got, tc.wantSleep)
			}
			var ge *m365.GraphError
			if tc.wantErr && (!errors.As(err, &ge) || ge.Status != tc.fault.Status) {
				t.Errorf("error %v is not a GraphError with status %d", err, tc.fault.Status)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDuplicateUPNIsConflict(t *testing.T) {
	tn, g, _, _ := setup(t)
	tn.AddUser("anna.devries@"+domain, "Anna de Vries")
	_, err := g.CreateUser(context.Background(), m365.NewUser{UPN: "anna.devries@" + domain, MailNickname: "anna.devries",
		DisplayName: "Anna de Vries", UsageLocation: "NL", Password: "x-Y-1234567890"})
	if !errors.Is(err, m365.ErrConflict) {
		t.Fatalf("err %v, want ErrConflict (from error.details)", err)
	}
	var ge *m365.GraphError
	if !errors.As(err, &ge) || ge.Code != "Request_BadRequest" || !strings.Contains(err.Error(), "ObjectConflict") {
		t.Errorf("error %v should carry the top-level code and the details code", err)
	}
	if tn.Count("POST /users") != 1 {
		t.Error("a conflict must not be retried")
	}
}

func TestReadAfterCreateRetries404ByID(t *testing.T) {
	tn, g, _, s := setup(t)
	tn.LagAfterCreate(3)
	u, err := g.CreateUser(context.Background(), m365.NewUser{UPN: "piet.jansen@" + domain, MailNickname: "piet.jansen",
		DisplayName: "Piet Jansen", UsageLocation: "NL", Password: "x-Y-1234567890"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.WaitUser(context.Background(), u.ID)
	if err != nil {
		t.Fatalf("WaitUser: %v", err)
	}
	if got.UPN != "piet.jansen@"+domain {
		t.Errorf("got %+v", got)
	}
	if n := tn.Count("GET /users/" + u.ID); n != 4 {
		t.Errorf("%d reads by id, want 4 (3 lagging 404s, then found)", n)
	}
	if len(s.all()) != 3 {
		t.Errorf("waits %v", s.all())
	}

	// The wait is bounded: a user that never appears is reported.
	tn2, g2, _, _ := setup(t)
	_ = tn2
	if _, err := g2.WaitUser(context.Background(), "11111111-0000-4000-8000-999999999999"); !errors.Is(err, m365.ErrNotFound) {
		t.Errorf("never-appearing user: %v", err)
	}
}

func TestAssignLicenseSendsEmptyRemoveLicenses(t *testing.T) {
	tn, g, _, _ := setup(t)
	const sku = "c42b9cae-ea4f-4ab7-9717-81576235ccac"
	tn.AddSKU(sku, "O365_BUSINESS_PREMIUM", 1)
	u, err := g.CreateUser(context.Background(), m365.NewUser{UPN: "a.b@" + domain, MailNickname: "a.b", DisplayName: "A B",
		Password: "x-Y-1234567890"}) // no usage location
	if err != nil {
		t.Fatal(err)
	}
	err = g.AssignLicense(context.Background(), u.ID, sku)
	if err == nil || !strings.Contains(err.Error(), "invalid usage location") {
		t.Fatalf("licence without usage location: %v, want Graph's message", err)
	}
	if err := g.SetUsageLocation(context.Background(), u.ID, "NL"); err != nil {
		t.Fatal(err)
	}
	if err := g.AssignLicense(context.Background(), u.ID, sku); err != nil {
		t.Fatal(err)
	}
	b := body(t, last(t, tn, "POST", "/v1.0/users/"+u.ID+"/assignLicense"))
	rl, ok := b["removeLicenses"].([]any)
	if !ok || len(rl) != 0 {
		t.Errorf("removeLicenses = %#v, want present and empty", b["removeLicenses"])
	}
	if _, _, skus, _, _ := tn.User("a.b@" + domain); len(skus) != 1 || skus[0] != sku {
		t.Errorf("skus %v", skus)
	}
}

func TestSendMail202(t *testing.T) {
	tn, g, _, _ := setup(t)
	tn.AddUser("ithelp@"+domain, "IT help")
	err := g.SendMail(context.Background(), "ithelp@"+domain, m365.Mail{To: "anna@private.example", Subject: "Welkom", Body: "Hallo"})
	if err != nil {
		t.Fatalf("202 with an empty body must be success: %v", err)
	}
	m := tn.Mails()
	if len(m) != 1 || m[0].To != "anna@private.example" || m[0].SaveToSentItems || m[0].ContentType != "text" {
		t.Errorf("mails %+v", m)
	}
}

func TestExchangePagingFollowsNextLink(t *testing.T) {
	tn, _, x, _ := setup(t)
	tn.PageSize(2)
	for _, a := range []string{"a", "b", "c", "d", "e"} {
		tn.AddSharedMailbox(a+"@"+domain, strings.ToUpper(a))
	}
	mbs, err := x.SharedMailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(mbs) != 5 || mbs[4].PrimarySmtpAddress != "e@"+domain {
		t.Errorf("got %d mailboxes: %+v", len(mbs), mbs)
	}
	var bodies []string
	for _, r := range tn.Requests() {
		if r.Cmdlet == "Get-Mailbox" {
			bodies = append(bodies, string(r.Body))
		}
	}
	if len(bodies) != 3 || bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Errorf("want 3 pages with the same body, got %q", bodies)
	}
}

func TestExchangeErrorDetails(t *testing.T) {
	tn, _, x, _ := setup(t)
	tn.GetsReturnAll(false) // the not-found error, as the EXO module shows it
	_, err := x.GetMailbox(context.Background(), "nobody@"+domain)
	var xe *m365.ExchangeError
	if !errors.As(err, &xe) {
		t.Fatalf("err %T %v", err, err)
	}
	if xe.Code != "Ex6F9304" || !strings.HasSuffix(xe.Exception, "ManagementObjectNotFoundException") || !strings.Contains(xe.Text, "couldn't be found") {
		t.Errorf("parts %+v", xe)
	}
	if !errors.Is(err, m365.ErrNotFound) {
		t.Error("not mapped to ErrNotFound")
	}
	for _, part := range []string{"Get-Mailbox", "Ex6F9304", "ManagementObjectNotFoundException", "couldn't be found"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("message %q lacks %q", err, part)
		}
	}

	// A plain-text body is kept as the text.
	tn.Inject(m365test.Fault{Match: "Get-Mailbox", Status: 403, Message: "Forbidden: role missing", Times: 1})
	_, err = x.GetMailbox(context.Background(), "x@"+domain)
	if !errors.As(err, &xe) || xe.Text != "Forbidden: role missing" {
		t.Errorf("plain text error: %v", err)
	}
}

func TestExchangeRetries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault m365test.Fault
		calls int
		sleep time.Duration
	}{
		{"429 Retry-After", m365test.Fault{Match: "Get-Mailbox", Status: 429, RetryAfter: "4", Times: 1}, 2, 4 * time.Second},
		{"500", m365test.Fault{Match: "Get-Mailbox", Status: 500, Code: "Ex1", Exception: "System.Exception", Message: "oops", Times: 2}, 3, 0},
		{"concurrency text", m365test.Fault{Match: "Get-Mailbox", Status: 400, Code: "Ex2", Exception: "Microsoft.Exchange.Throttling",
			Message: "You have reached the maximum number of concurrent requests per tenant. Please wait and try again", Times: 1}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, _, x, s := setup(t)
			tn.AddSharedMailbox("scriba@"+domain, "Scriba")
			tn.Inject(tc.fault)
			if _, err := x.GetMailbox(context.Background(), "scriba@"+domain); err != nil {
				t.Fatal(err)
			}
			if n := tn.Count("Get-Mailbox"); n != tc.calls {
				t.Errorf("%d calls, want %d", n, tc.calls)
			}
			if tc.sleep != 0 && (len(s.all()) != 1 || s.all()[0] != tc.sleep) {
				t.Errorf("slept %v, want [%v]", s.all(), tc.sleep)
			}
		})
	}
}

func TestGrantReadsBeforeWriteAndWaitsForMailbox(t *testing.T) {
	tn, g, x, s := setup(t)
	ctx := context.Background()
	const sku = "c42b9cae-ea4f-4ab7-9717-81576235ccac"
	tn.AddSKU(sku, "O365_BUSINESS_PREMIUM", 5)
	tn.AddSharedMailbox("scriba@"+domain, "Scriba")
	tn.MailboxDelay(2)
	u, err := g.CreateUser(ctx, m365.NewUser{UPN: "anna.devries@" + domain, MailNickname: "anna.devries", DisplayName: "Anna",
		UsageLocation: "NL", Password: "x-Y-1234567890"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.AssignLicense(ctx, u.ID, sku); err != nil {
		t.Fatal(err)
	}
	changed, err := x.Grant(ctx, "scriba@"+domain, u.UPN, m365.FullAccess)
	if err != nil || !changed {
		t.Fatalf("grant: %v %v", changed, err)
	}
	if len(s.all()) != 2 {
		t.Errorf("waited %v for the mailbox, want 2 polls", s.all())
	}
	changed, err = x.Grant(ctx, "scriba@"+domain, u.UPN, m365.FullAccess)
	if err != nil || changed {
		t.Fatalf("second grant changed=%v err=%v, want no change", changed, err)
	}
	if n := tn.Count("Add-MailboxPermission"); n != 1 {
		t.Errorf("%d Add-MailboxPermission calls, want 1 (read before write)", n)
	}
	if tn.DuplicateAdds != 0 {
		t.Error("an existing grant was added again")
	}
	if _, err := x.Grant(ctx, "scriba@"+domain, u.UPN, m365.SendAs); err != nil {
		t.Fatal(err)
	}
	gs, err := x.Grants(ctx, "scriba@"+domain)
	if err != nil || len(gs) != 2 {
		t.Fatalf("grants %v %v (SELF must be filtered)", gs, err)
	}
	if ok, err := x.Revoke(ctx, "scriba@"+domain, u.UPN, m365.SendAs); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	if ok, err := x.Revoke(ctx, "scriba@"+domain, u.UPN, m365.SendAs); ok || err != nil {
		t.Fatalf("second revoke: %v %v, want no change", ok, err)
	}
	if got := tn.Grants("scriba@" + domain); len(got) != 1 || got[0] != "anna.devries@"+domain+" FullAccess" {
		t.Errorf("grants left %v", got)
	}
}

func TestNextLinkToOtherHostRefused(t *testing.T) {
	calls := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"value":[{"Identity":"a"}],"@odata.nextLink":"https://attacker.example/adminapi/beta/t/InvokeCommand?$skiptoken=1"}`)
	}))
	defer srv.Close()
	c, err := m365.NewExchange(&m365test.Credential{}, m365.ExchangeOptions{BaseURL: srv.URL, TenantID: "t", Transport: srv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(context.Background(), "Get-Mailbox", nil); err == nil || !strings.Contains(err.Error(), "attacker.example") {
		t.Errorf("a next link to another host was followed: %v", err)
	}
	if calls != 1 {
		t.Errorf("%d calls", calls)
	}
}

// TestEndpointsOnlyOverTLS: every endpoint gets a secret or a bearer token,
// so plain http is refused, loopback included.
func TestEndpointsOnlyOverTLS(t *testing.T) {
	for _, u := range []string{"http://example.com", "http://127.0.0.1:8080", "outlook.office365.com"} {
		if _, err := m365.NewExchange(&m365test.Credential{}, m365.ExchangeOptions{BaseURL: u, TenantID: "t"}); err == nil {
			t.Errorf("exchange url %s accepted", u)
		}
		if _, err := m365.NewGraph(&m365test.Credential{}, m365.GraphOptions{BaseURL: u}); err == nil {
			t.Errorf("graph url %s accepted", u)
		}
		c, _ := m365.CloudByName("global")
		if _, err := m365.Credential(m365.App{TenantID: "t", ClientID: "c", ClientSecretFile: "s",
			Endpoints: m365.Endpoints{Cloud: c, AuthorityURL: u}}); err == nil {
			t.Errorf("authority url %s accepted", u)
		}
	}
}

func TestRelaySetup(t *testing.T) {
	tn, _, x, _ := setup(t)
	ctx := context.Background()
	tn.SetArcSealers("forwarder.example,lists.example")
	s := m365.RelaySetup{ConnectorName: "dualmx relay", RelayIPs: []string{"203.0.113.10"}, OldHostIPs: []string{"198.51.100.0/24", "2001:db8::25"},
		ArcDomain: "relay.example.nl", PilotUsers: []string{"scriba@" + domain}}
	p, err := x.PlanRelaySetup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 2 || p.Changes[0].Cmdlet != "New-InboundConnector" || p.Changes[1].Cmdlet != "Set-ArcConfig" || p.DKIM != nil {
		t.Fatalf("changes %+v", p.Changes)
	}
	if got := fmt.Sprint(p.Changes[1].Params["ArcTrustedSealers"]); got != "[forwarder.example lists.example relay.example.nl]" {
		t.Errorf("sealers %v: the existing ones must be kept", got)
	}
	if tn.Count("New-") != 0 || tn.Count("Set-") != 0 {
		t.Error("plan changed the tenant")
	}
	if _, err := x.ApplyRelaySetup(ctx, s, p); err != nil {
		t.Fatal(err)
	}
	c := tn.Connector("dualmx relay")
	skip := fmt.Sprint(c["EFSkipIPs"])
	if c["ConnectorType"] != "Partner" || !strings.Contains(skip, "203.0.113.10") || !strings.Contains(skip, "198.51.100.0/24") {
		t.Errorf("connector %v: EFSkipIPs must hold both hops", c)
	}
	// The connector matches every partner sender (SenderDomains *), so
	// RequireTls $true would refuse their plaintext mail too.
	if c["RequireTls"] != false {
		t.Errorf("connector RequireTls %v, want false, written explicitly", c["RequireTls"])
	}
	checks, err := x.CheckRelaySetup(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range checks {
		if !ch.OK {
			t.Errorf("read back %+v", ch)
		}
	}
	if again, _ := x.PlanRelaySetup(ctx, s); len(again.Changes) != 0 {
		t.Errorf("second plan %+v", again.Changes)
	}

	// A connector someone set up skipping only the last hop is corrected.
	tn2, _, x2, _ := setup(t)
	tn2.SetArcSealers("relay.example.nl")
	if err := x2.ApplyChanges(ctx, []m365.SetupChange{{Cmdlet: "New-InboundConnector", Params: map[string]any{"Name": "dualmx relay",
		"ConnectorType": "Partner", "SenderDomains": []string{"*"}, "SenderIPAddresses": []string{"203.0.113.10"}, "RequireTls": true,
		"EFSkipLastIP": true}}}); err != nil {
		t.Fatal(err)
	}
	s.PilotUsers = nil
	p, err = x2.PlanRelaySetup(ctx, s)
	if err != nil || len(p.Changes) != 1 || p.Changes[0].Cmdlet != "Set-InboundConnector" || !strings.Contains(p.Changes[0].What, "EFSkipIPs") ||
		p.Changes[0].Params["EFSkipLastIP"] != false {
		t.Fatalf("changes %+v %v", p, err)
	}
	// The connector above asks for TLS, as an earlier dualmx set it up:
	// the same plan turns that off, and applying it converges.
	if !strings.Contains(p.Changes[0].What, "RequireTls") || p.Changes[0].Params["RequireTls"] != false {
		t.Errorf("change %+v: a connector with RequireTls $true must be set to $false", p.Changes[0])
	}
	if _, err := x2.ApplyRelaySetup(ctx, s, p); err != nil {
		t.Fatal(err)
	}
	if c := tn2.Connector("dualmx relay"); c["RequireTls"] != false {
		t.Errorf("after apply RequireTls %v", c["RequireTls"])
	}
	if again, err := x2.PlanRelaySetup(ctx, s); err != nil || len(again.Changes) != 0 {
		t.Errorf("second plan %+v %v", again, err)
	}
}

func TestRelaySetupValidate(t *testing.T) {
	ok := m365.RelaySetup{ConnectorName: "c", RelayIPs: []string{"203.0.113.10"}, OldHostIPs: []string{"198.51.100.1"}, ArcDomain: "r.example"}
	for _, tc := range []struct {
		name string
		edit func(*m365.RelaySetup)
		want string
	}{
		{"ipv6 relay", func(s *m365.RelaySetup) { s.RelayIPs = []string{"2001:db8::1"} }, "IPv4"},
		{"wide range", func(s *m365.RelaySetup) { s.RelayIPs = []string{"203.0.0.0/16"} }, "/24 to /32"},
		{"no old host", func(s *m365.RelaySetup) { s.OldHostIPs = nil }, "both hops"},
		{"no arc", func(s *m365.RelaySetup) { s.ArcDomain = "" }, "ARC"},
		{"nothing identifies the relay", func(s *m365.RelaySetup) { s.RelayIPs = nil }, "certificate name"},
	} {
		s := ok
		tc.edit(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

func TestCredentialReadsSecretOnlyWhenNeededAndNeverEchoesIt(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.secret")
	cred, err := m365.Credential(m365.App{TenantID: "t", ClientID: "c", ClientSecretFile: missing})
	if err != nil {
		t.Fatalf("construction must not read the file: %v", err)
	}
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{m365.GraphScope}})
	if err == nil || !strings.Contains(err.Error(), "missing.secret") {
		t.Errorf("missing secret file: %v", err)
	}
	loose := filepath.Join(dir, "loose.secret")
	if err := os.WriteFile(loose, []byte("SUPERSECRETVALUE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cred, _ = m365.Credential(m365.App{TenantID: "t", ClientID: "c", ClientSecretFile: loose})
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{m365.GraphScope}})
	if err == nil || !strings.Contains(err.Error(), "group or others") || strings.Contains(err.Error(), "SUPERSECRET") {
		t.Errorf("secret file others can read: %v", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nSUPERSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cred, _ = m365.Credential(m365.App{TenantID: "t", ClientID: "c", CertificateFile: bad})
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{m365.GraphScope}})
	if err == nil || strings.Contains(err.Error(), "SUPERSECRET") {
		t.Errorf("bad certificate: %v", err)
	}
	if _, err := m365.Credential(m365.App{TenantID: "t", ClientID: "c"}); err == nil {
		t.Error("no secret and no certificate accepted")
	}
}
