// SPDX-License-Identifier: MIT

package e2e

// The built binary against the fake Microsoft 365 tenant (m365/m365test),
// reached only through the config's m365 keys: authority_url (sign-in),
// graph_url and exchange_url, all https, trusted through SSL_CERT_FILE.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

const tenantDomain = "hervormdputten.nl"

// tenantEnv is an env whose config has an m365 section pointing at a fake
// tenant. The binary trusts the fake's CA through SSL_CERT_FILE and nothing
// else, so every request it makes to Microsoft 365 is verified TLS to the
// fake.
type tenantEnv struct {
	*env
	tn      *m365test.Tenant
	caFile  string
	desired string // the desired-state file, $DUALMX_PROVISION_FILE
}

type tenantOptions struct {
	extraConfig string // appended YAML (e.g. a cutover section)
	desired     string // the desired-state file's YAML; "" writes none
	secret      string // the secret in client_secret_file; "" is the right one
	cloud       string // m365.cloud; "" leaves it out
}

// newTenantEnv starts a fake tenant for hervormdputten.nl with the licence
// and the welcome sender, and an env whose config reaches it.
func newTenantEnv(t *testing.T, o tenantOptions) *tenantEnv {
	t.Helper()
	tn := m365test.New(t, tenantDomain)
	tn.AddSKU("c42b9cae-ea4f-4ab7-9717-81576235ccac", "O365_BUSINESS_PREMIUM", 25)
	tn.AddUser("ithelp@"+tenantDomain, "IT help")
	dir := t.TempDir()
	secret := o.secret
	if secret == "" {
		secret = m365test.ClientSecret
	}
	secretFile := filepath.Join(dir, "m365.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf("m365:\n  tenant_id: %s\n  client_id: %s\n  client_secret_file: %q\n  authority_url: %q\n  graph_url: %q\n  exchange_url: %q\n",
		m365test.TenantID, m365test.ClientID, secretFile, tn.AuthorityURL(), tn.GraphURL(), tn.ExchangeURL())
	if o.cloud != "" {
		section += "  cloud: " + o.cloud + "\n"
	}
	e := &tenantEnv{env: newEnv(t, envOptions{extraConfig: section + o.extraConfig}), tn: tn, caFile: tn.WriteCAFile(dir),
		desired: filepath.Join(dir, "provision.yaml")}
	if o.desired != "" {
		if err := os.WriteFile(e.desired, []byte(o.desired), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if v := tn.Violations(); len(v) > 0 {
			t.Errorf("the binary sent requests not in the documented shape: %q", v)
		}
	})
	return e
}

// m365 runs the binary with this env's config, trusting the fake's CA.
func (e *tenantEnv) m365(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.m365Trusting(e.caFile, args...)
}

// m365Trusting runs the binary trusting the roots in caFile only.
func (e *tenantEnv) m365Trusting(caFile string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.cliEnv([]string{"SSL_CERT_FILE=" + caFile, "DUALMX_PROVISION_FILE=" + e.desired}, args...)
}

func (e *tenantEnv) mustM365(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.m365(args...)
	if code != 0 {
		e.t.Fatalf("dualmx %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// changesDuring counts the requests that change the tenant while f runs.
func (e *tenantEnv) changesDuring(f func()) []string {
	n := len(e.tn.Requests())
	f()
	var out []string
	for _, r := range e.tn.Requests()[n:] {
		switch {
		case r.Service == "exchange" && !strings.HasPrefix(r.Cmdlet, "Get-"):
			out = append(out, r.Cmdlet)
		case r.Service == "graph" && r.Method != "GET":
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

const desiredState = `domain: hervormdputten.nl
organisation: Hervormde Gemeente Putten
licence: O365_BUSINESS_PREMIUM
welcome:
  from: ithelp@hervormdputten.nl
  help: ithelp@hervormdputten.nl
people:
  anna:
    given_name: Anna
    surname: de Vries
    private_email: anna@private.example
functions:
  - address: financien@hervormdputten.nl
    name: Financiën
    holders:
      - person: anna
        from: 2026-01-01
`

func TestTenantProvisionAndAccessReport(t *testing.T) {
	e := newTenantEnv(t, tenantOptions{desired: desiredState})
	e.mustCLI("address", "add", "financien@"+tenantDomain, "--alias", "financien@fwd."+tenantDomain)
	// Lists come a page at a time, and both services throttle once.
	e.tn.PageSize(1)
	e.tn.Inject(m365test.Fault{Match: "GET /subscribedSkus", Status: 429, RetryAfter: "1", Times: 1})
	e.tn.Inject(m365test.Fault{Match: "Get-MailboxPermission", Status: 429, RetryAfter: "1", Times: 1})

	out := e.mustM365("provision", "plan")
	for _, want := range []string{"create account anna.devries@hervormdputten.nl", "create shared mailbox financien@hervormdputten.nl (Financiën)",
		"block sign-in for the account of shared mailbox financien@hervormdputten.nl", "grant FullAccess to anna.devries@hervormdputten.nl"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if e.tn.Tokens() == 0 {
		t.Error("no token came from the fake's sign-in endpoint")
	}
	out = e.mustM365("provision", "apply", "--yes")
	if !strings.Contains(out, "Applied 8 of 8 steps.") {
		t.Errorf("apply:\n%s", out)
	}
	if _, _, _, _, ok := e.tn.User("anna.devries@" + tenantDomain); !ok {
		t.Error("no account")
	}
	if mb, ok := e.tn.Mailbox("financien@" + tenantDomain); !ok || mb.Name != "Financien" || mb.DisplayName != "Financiën" {
		t.Errorf("shared mailbox %+v", mb)
	}
	if e.tn.SignInEnabled("financien@" + tenantDomain) {
		t.Error("the shared mailbox's account can sign in")
	}
	if g := e.tn.Grants("financien@" + tenantDomain); len(g) != 2 {
		t.Errorf("grants %v", g)
	}
	if m := e.tn.Mails(); len(m) != 1 || m[0].To != "anna@private.example" {
		t.Errorf("welcome mails %+v", m)
	}
	if got := e.mustCLI("address", "show", "financien@"+tenantDomain); !strings.Contains(got, "provisioned") {
		t.Errorf("address not provisioned:\n%s", got)
	}
	if changes := e.changesDuring(func() {
		if out := e.mustM365("provision", "plan"); !strings.Contains(out, "0 changes") {
			t.Errorf("second plan:\n%s", out)
		}
	}); len(changes) != 0 {
		t.Errorf("plan changed the tenant: %v", changes)
	}

	if n := e.tn.Count("GET /subscribedSkus"); n < 2 {
		t.Errorf("%d reads of subscribedSkus: the 429 was not retried", n)
	}
	e.tn.AddSharedMailbox("kosters@"+tenantDomain, "Kosters")
	out = e.mustM365("access", "report")
	if !strings.Contains(out, "financien@hervormdputten.nl") || !strings.Contains(out, "FullAccess+SendAs") ||
		!strings.Contains(out, "kosters@hervormdputten.nl") || !strings.Contains(out, "1 difference from the desired state.") {
		t.Errorf("access report:\n%s", out)
	}
	paged := false
	for _, r := range e.tn.Requests() {
		paged = paged || (r.Service == "exchange" && strings.Contains(r.Query, "skiptoken"))
	}
	if !paged {
		t.Error("no Exchange list was followed to its next page")
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(e.mustM365("access", "report", "--json")), &rows); err != nil || len(rows) != 2 || rows[0]["status"] != "ok" ||
		rows[1]["status"] != "not in file" {
		t.Errorf("access report --json: %v %v", rows, err)
	}
}

func TestTenantCheck(t *testing.T) {
	e := newTenantEnv(t, tenantOptions{})
	e.tn.SetPremium(true)
	out := e.mustM365("m365", "check")
	if !strings.Contains(out, "Signed in to tenant "+m365test.TenantID) || !strings.Contains(out, "Nothing needed is missing.") ||
		!strings.Contains(out, "Entra roles: User Administrator, Exchange Administrator") {
		t.Errorf("check of a complete app:\n%s", out)
	}
	// Before the daemon's first start there is no state: a command that
	// only shows reads it as empty and does not create it.
	if _, err := os.Stat(filepath.Join(e.dir, "state")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("m365 check made state_dir: %v", err)
	}

	e.tn.SetAppRoles(m365test.GraphAudience, "User.ReadWrite.All", "Organization.Read.All", "RoleManagement.Read.Directory")
	e.tn.SetDirectoryRoles(m365.RoleExchangeRecipientAdministrator)
	out, errOut, code := e.m365("m365", "check")
	if code != 1 || !strings.Contains(errOut, "requirement(s) missing") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"missing Microsoft Graph application permission Mail.Send (not in the Graph token's roles claim)",
		"grant: Entra admin center › App registrations › dualmx › API permissions › Add a permission › Microsoft Graph › Application permissions › Mail.Send; then Grant admin consent",
		"missing Entra role User Administrator (not assigned to the app)",
		"missing Entra role Exchange Administrator",
		"ok      Entra role Exchange Recipient Administrator",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	var rep m365.CheckReport
	out, _, _ = e.m365("m365", "check", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Missing() == 0 {
		t.Errorf("--json: %v %+v", err, rep)
	}

	// TLS is verified: with roots that do not include the fake's CA, the
	// sign-in fails and nothing reaches Graph or Exchange.
	other, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	otherFile, err := other.WriteCAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := len(e.tn.Requests())
	out, errOut, code = e.m365Trusting(otherFile, "m365", "check")
	if code != 1 || !strings.Contains(errOut, "certificate signed by unknown authority") || len(e.tn.Requests()) != before {
		t.Errorf("untrusted certificate: exit %d\n%s%s", code, out, errOut)
	}

	// A wrong secret: sign-in fails, exit 1, and the secret is not shown.
	bad := newTenantEnv(t, tenantOptions{secret: "wrong-secret-value"})
	out, errOut, code = bad.m365("m365", "check")
	if code != 1 || !strings.Contains(errOut, "AADSTS7000215") || strings.Contains(out+errOut, "wrong-secret-value") {
		t.Errorf("wrong secret: exit %d\n%s%s", code, out, errOut)
	}
}

// dkimZone publishes the two DKIM CNAMEs the fake tenant gives the domain.
func dkimZone(t *testing.T) *dnstest.Server {
	s1 := "selector1-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft."
	s2 := "selector2-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft."
	return dnstest.Start(t, "selector1._domainkey.hervormdputten.nl. 3600 IN CNAME "+s1+"\n"+
		"selector2._domainkey.hervormdputten.nl. 3600 IN CNAME "+s2+"\n")
}

func TestTenantSetupTwiceAndTeardown(t *testing.T) {
	cutover := "cutover:\n  domain: hervormdputten.nl\n  old_mx: [mx.solcon.nl]\n"
	e := newTenantEnv(t, tenantOptions{extraConfig: cutover})
	e.tn.SetArcSealers("forwarder.example")
	e.tn.SetDomainDNS(tenantDomain, m365test.DomainDNS{MX: "hervormdputten-nl.mail.protection.outlook.com", VerificationTXT: "MS=ms31415926"})
	empty := dnstest.Start(t, "")
	e.tn.LookUpDKIMAt(empty.Addr())
	relay := []string{"--relay-ip", "203.0.113.10", "--old-host-ip", "198.51.100.0/24", "--arc-domain", "relay.hervormdputten.nl"}
	setup := func(verb, ns string, more ...string) []string {
		return append(append(append([]string{"m365", "setup", verb}, relay...), "--nameserver", ns), more...)
	}

	out := e.mustM365(setup("--plan", empty.Addr())...)
	for _, want := range []string{"New-InboundConnector", `"SenderDomains":["*"]`, "Set-ArcConfig", `"ArcTrustedSealers":["forwarder.example","relay.hervormdputten.nl"]`,
		"New-DkimSigningConfig", "DKIM for hervormdputten.nl: not set up"} {
		if !strings.Contains(out, want) {
			t.Errorf("first plan lacks %q:\n%s", want, out)
		}
	}
	// The CNAMEs are not published yet: the config is made, the records shown.
	out = e.mustM365(setup("--apply", empty.Addr())...)
	if strings.Contains(out, "MISMATCH") || !strings.Contains(out, "not signing yet") ||
		!strings.Contains(out, "selector1._domainkey.hervormdputten.nl. 3600 IN CNAME selector1-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft.") {
		t.Errorf("first apply:\n%s", out)
	}
	// dns check now expects exactly those records.
	out, _, _ = e.m365("dns", "check", "--nameserver", empty.Addr())
	if !strings.Contains(out, "publish: selector2._domainkey.hervormdputten.nl. 3600 IN CNAME selector2-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft.") {
		t.Errorf("dns check does not expect the tenant's DKIM records:\n%s", out)
	}

	// Published: the next apply turns signing on, and only that.
	zone := dkimZone(t)
	e.tn.LookUpDKIMAt(zone.Addr())
	out = e.mustM365(setup("--plan", zone.Addr())...)
	if !strings.Contains(out, "Set-DkimSigningConfig") || strings.Contains(out, "InboundConnector") || strings.Contains(out, "Set-ArcConfig") {
		t.Errorf("plan once published:\n%s", out)
	}
	var out2 string
	changes := e.changesDuring(func() { out2 = e.mustM365(setup("--apply", zone.Addr())...) })
	if strings.Join(changes, ",") != "Set-DkimSigningConfig" || !strings.Contains(out2, "DKIM for hervormdputten.nl: signing (Valid)") {
		t.Errorf("second apply changed %v:\n%s", changes, out2)
	}
	if _, _, on, _ := e.tn.DKIM(tenantDomain); !on {
		t.Error("the tenant does not sign for the domain")
	}
	out, _, _ = e.m365("dns", "check", "--nameserver", zone.Addr())
	if !strings.Contains(out, "as the tenant expects") {
		t.Errorf("dns check with the records published:\n%s", out)
	}

	// A set-up tenant: plan and apply change nothing.
	changes = e.changesDuring(func() {
		if out := e.mustM365(setup("--plan", zone.Addr())...); !strings.Contains(out, "nothing to change") {
			t.Errorf("plan on a set-up tenant:\n%s", out)
		}
		if out := e.mustM365(setup("--apply", zone.Addr())...); !strings.Contains(out, "nothing to change") || strings.Contains(out, "MISMATCH") {
			t.Errorf("apply on a set-up tenant:\n%s", out)
		}
	})
	if len(changes) != 0 {
		t.Errorf("a set-up tenant was changed: %v", changes)
	}

	// Teardown: others' entries stay; refused before the cutover is done.
	// An import left a finished batch and its endpoint; someone else's
	// batch is not dualmx's to remove.
	e.tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "dualmx-imap-mail.solcon.nl-993-ssl", RemoteServer: "mail.solcon.nl", Security: "Ssl", Port: 993})
	e.tn.AddMigrationBatch(m365test.MigrationBatch{Name: "dualmx-scriba-at-hervormdputten-nl", Endpoint: "dualmx-imap-mail.solcon.nl-993-ssl", Status: "Completed"})
	e.tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "staff-imap", RemoteServer: "imap.example.org", Security: "Ssl", Port: 993})
	e.tn.AddMigrationBatch(m365test.MigrationBatch{Name: "staff-move", Endpoint: "staff-imap", Status: "Completed"})
	teardown := func(verb string, more ...string) []string {
		return append(append(append([]string{"m365", "teardown", verb}, relay...), "--nameserver", zone.Addr()), more...)
	}
	out = e.mustM365(teardown("--plan")...)
	if !strings.Contains(out, "remove 198.51.100.0/24, 203.0.113.10 from the Enhanced Filtering skip list") ||
		!strings.Contains(out, `"ArcTrustedSealers":["forwarder.example"]`) ||
		!strings.Contains(out, "- remove migration batch dualmx-scriba-at-hervormdputten-nl (Completed)") ||
		!strings.Contains(out, "- remove migration endpoint dualmx-imap-mail.solcon.nl-993-ssl") || strings.Contains(out, "staff-move") {
		t.Errorf("teardown plan:\n%s", out)
	}
	changes = e.changesDuring(func() {
		out, errOut, code := e.m365(teardown("--apply")...)
		if code != 1 || !strings.Contains(errOut, "not done") || !strings.Contains(errOut, "--force") {
			t.Errorf("teardown before the cutover: exit %d\n%s%s", code, out, errOut)
		}
	})
	if len(changes) != 0 {
		t.Errorf("a refused teardown changed %v", changes)
	}
	out = e.mustM365(teardown("--apply", "--force", "--reason", "test tenant")...)
	if !strings.Contains(out, "nothing of dualmx's left") {
		t.Errorf("teardown apply:\n%s", out)
	}
	if got := e.tn.ArcSealers(); got != "forwarder.example" {
		t.Errorf("sealers after teardown %q", got)
	}
	if c := e.tn.Connector("dualmx relay"); c["EFSkipIPs"] != nil {
		t.Errorf("skip list after teardown %v", c["EFSkipIPs"])
	}
	if b := e.tn.Batches(); strings.Join(b, ",") != "staff-move" {
		t.Errorf("batches after teardown %v", b)
	}
}

// TestTenantSetupNeedsDomain: DKIM is part of m365 setup, so without
// --domain or cutover.domain it stops before asking the tenant anything and
// says what to add, and --domain is enough.
func TestTenantSetupNeedsDomain(t *testing.T) {
	e := newTenantEnv(t, tenantOptions{})
	relay := []string{"m365", "setup", "--plan", "--relay-ip", "203.0.113.10", "--old-host-ip", "198.51.100.0/24", "--arc-domain", "relay.hervormdputten.nl"}
	before := len(e.tn.Requests())
	out, errOut, code := e.m365(relay...)
	if code != 2 || !strings.Contains(errOut, "pass --domain DOMAIN") || !strings.Contains(errOut, e.cfgPath) ||
		!strings.Contains(errOut, "  cutover:\n    domain: example.nl") || len(e.tn.Requests()) != before {
		t.Errorf("setup without a domain: exit %d\n%s%s", code, out, errOut)
	}
	if out := e.mustM365(append(relay, "--domain", tenantDomain, "--nameserver", dnstest.Start(t, "").Addr())...); !strings.Contains(out, "New-DkimSigningConfig") {
		t.Errorf("setup with --domain:\n%s", out)
	}
}

// TestTenantNationalCloud: with cloud: usgovhigh the binary asks for the
// US Government resources' tokens while the requests go where the config
// points.
func TestTenantNationalCloud(t *testing.T) {
	e := newTenantEnv(t, tenantOptions{cloud: "usgovhigh"})
	e.tn.SetPremium(true)
	e.mustM365("m365", "check")
	scopes := map[string]bool{}
	for _, r := range e.tn.Requests() {
		if r.Service == "login" && r.Method == "POST" {
			scopes[r.Query] = true
		}
	}
	if !scopes["https://graph.microsoft.us/.default"] || !scopes["https://outlook.office365.us/.default"] || len(scopes) != 2 {
		t.Errorf("token scopes %v", scopes)
	}
}
