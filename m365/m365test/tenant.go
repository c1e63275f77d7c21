// SPDX-License-Identifier: MIT

// Package m365test is a local stand-in for the parts of Microsoft 365 that
// dualmx talks to: the Microsoft Entra sign-in endpoint (client
// credentials), Microsoft Graph (users, subscribedSkus, assignLicense,
// sendMail, role assignments) and the Exchange Online InvokeCommand endpoint
// (mailboxes, permissions, ARC config, inbound connectors, DKIM). All three
// are TLS servers on loopback with certificates from one test CA, sharing one
// tenant state, so a licence assigned through Graph makes a mailbox appear in
// Exchange, as it does in a real tenant.
//
// The fakes check each request's shape (method, path, headers, JSON body)
// and its bearer token (issued by the fake's sign-in endpoint for the right
// resource, its roles claim holding the permission the call needs) against
// what Microsoft documents, and answer a malformed one the way the service
// does, so a client that drifts from the documented shape fails its tests.
// Each reply shape names the page it follows. They can be told to answer
// 429, 500 or an error for chosen calls.
package m365test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/m365"
)

// Tokens a Credential without a tenant hands out, for clients pointed at
// servers other than the fakes.
const (
	GraphToken    = "graph-token-for-test"
	ExchangeToken = "exo-token-for-test"
	TenantID      = "00000000-0000-4000-8000-000000000001"
)

// Credential is an azcore.TokenCredential that never leaves the process.
// Tenant.Cred mints the same tokens the tenant's sign-in endpoint would; a
// Credential{} returns fixed strings that no fake accepts.
type Credential struct {
	tenant *Tenant
	mu     sync.Mutex
	Scopes []string // every scope asked for, in order
}

// GetToken returns a token for the one scope asked for.
func (c *Credential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	c.Scopes = append(c.Scopes, o.Scopes...)
	c.mu.Unlock()
	if len(o.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("m365test: want exactly one scope, got %q", o.Scopes)
	}
	aud, ok := resourceAudience(o.Scopes[0])
	if !ok {
		return azcore.AccessToken{}, fmt.Errorf("m365test: unknown scope %q", o.Scopes[0])
	}
	if c.tenant == nil {
		tok := GraphToken
		if aud == ExchangeAudience {
			tok = ExchangeToken
		}
		return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Hour)}, nil
	}
	c.tenant.mu.Lock()
	defer c.tenant.mu.Unlock()
	return azcore.AccessToken{Token: c.tenant.mint(aud), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// Request is one call a fake received, body decompressed.
type Request struct {
	Service string // "login", "graph" or "exchange"
	Method  string
	Path    string
	Query   string
	Cmdlet  string // exchange only
	Body    []byte
	Auth    string
}

// Fault makes the matching calls fail. Match is a Graph "METHOD /path"
// prefix after /v1.0 (e.g. "POST /users") or an Exchange cmdlet name.
type Fault struct {
	Match      string
	Status     int
	RetryAfter string // Retry-After header value
	Code       string // Graph error.code or the first part of Exchange's details
	Exception  string // Exchange exception type
	Message    string
	Details    []string // Graph error.details codes
	Times      int      // how many calls fail; 0 means every one
	// Effect lets the call take effect before the fault is answered: the
	// service did the work and the reply was lost (a 5xx or a timeout
	// after the commit), so a retry meets the object it created.
	Effect bool
}

// Tenant is the shared state of the fakes.
type Tenant struct {
	t        testing.TB
	Domain   string
	Cred     *Credential
	CA       *testca.CA
	LoginSrv *httptest.Server
	GraphSrv *httptest.Server
	ExoSrv   *httptest.Server

	mu       sync.Mutex
	requests []Request
	faults   []*Fault
	users    map[string]*user // by id
	skus     []sku
	mails    []SentMail
	nextID   int
	// lag404 counts reads of a user by ID that still answer 404 after the
	// create (replica lag); set by LagAfterCreate.
	lagAfterCreate int
	lag            map[string]int

	mailboxes      map[string]*mailbox // by lower-case primary address
	mailboxDelay   int                 // Get-Mailbox polls before a licensed user's mailbox appears
	perms          []perm
	arcSealers     string
	connectors     map[string]map[string]any
	pageSize       int
	DuplicateAdds  int // Add-*Permission calls for a grant that already existed
	exoViolations  []string
	graphViolation []string
	domainDNS      map[string]DomainDNS
	// signIns holds users' sign-in activity; without any (and without
	// SetPremium) the tenant answers 403 as one without Entra ID P1.
	signIns map[string]signIn
	// Sign-in: the app's secret, the key tokens are signed with, the
	// application permissions per audience and the Entra roles it holds.
	secret   string
	cert     *x509.Certificate // the app's certificate, when one is registered
	key      []byte
	tokens   int
	appRoles map[string][]string
	dirRoles []string
	premium  bool // the tenant reports sign-in activity (Entra ID P1)
	// getsAll makes Get-* cmdlets answer every object for an identity
	// that does not exist, as the cmdlet pages warn.
	getsAll bool
	dkim    map[string]*dkimConfig // by lower-case domain
	dkimNS  string                 // where the DKIM CNAMEs are looked up, if anywhere
	// Migration endpoints (name → remote server) and batches, by lower-case name.
	migEndpoints map[string]*MigrationEndpoint
	migBatches   map[string]*MigrationBatch
	// Mail folders, messages and upload sessions (mailfolders.go).
	mail mailState
}

type signIn struct{ attempt, success time.Time }

// SetSignIn makes the tenant report upn's last successful sign-in (zero:
// never), and makes it a tenant that reports sign-ins.
func (tn *Tenant) SetSignIn(upn string, at time.Time) { tn.SetSignInAttempts(upn, at, at) }

// SetSignInAttempts sets upn's last interactive sign-in attempt, which
// may have failed, and its last successful sign-in.
func (tn *Tenant) SetSignInAttempts(upn string, attempt, success time.Time) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.premium = true
	tn.signIns[strings.ToLower(upn)] = signIn{attempt, success}
}

// SetPremium says whether the tenant has Entra ID P1, which sign-in
// activity needs.
func (tn *Tenant) SetPremium(on bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.premium = on
}

// GetsReturnAll says whether Get-* cmdlets answer every object of their
// kind for an identity that does not exist, as the Caution on the Identity
// parameter of their pages says ("a non-existent value for the Identity
// parameter returns *all* objects"); that is the default. Off, they answer
// ManagementObjectNotFoundException, as the EXO module is seen to.
func (tn *Tenant) GetsReturnAll(on bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.getsAll = on
}

type user struct {
	ID, UPN, DisplayName, GivenName, Surname, MailNickname, UsageLocation string
	Shared                                                                bool // the user object behind a shared mailbox
	Enabled                                                               bool
	Password                                                              string
	ForceChange                                                           bool
	SKUs                                                                  []string
}

type sku struct {
	ID, PartNumber string
	Enabled, Used  int
}

// SentMail is a message accepted by sendMail.
type SentMail struct {
	From, To, Subject, ContentType, Body string
	SaveToSentItems                      bool
}

type mailbox struct {
	m365.Mailbox
	pendingPolls int // Get-Mailbox answers not found this many more times
}

type perm struct {
	mailbox, user string
	right         m365.Right
}

// New starts the fakes for domain; they stop when the test ends. The app
// holds every permission and role dualmx needs until a test takes some away.
func New(t testing.TB, domain string) *Tenant {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	tn := &Tenant{t: t, Domain: domain, CA: ca, users: map[string]*user{}, lag: map[string]int{},
		mailboxes: map[string]*mailbox{}, connectors: map[string]map[string]any{}, nextID: 1, signIns: map[string]signIn{},
		secret: ClientSecret, key: key, dkim: map[string]*dkimConfig{}, getsAll: true,
		appRoles: map[string][]string{GraphAudience: AllGraphRoles, ExchangeAudience: {"Exchange.ManageAsApp"}},
		dirRoles: []string{m365.RoleUserAdministrator, m365.RoleExchangeAdministrator}}
	tn.Cred = &Credential{tenant: tn}
	tn.LoginSrv = tn.start(tn.serveLogin)
	tn.GraphSrv = tn.start(tn.serveGraph)
	tn.ExoSrv = tn.start(tn.serveExchange)
	return tn
}

// start serves h over TLS on 127.0.0.1 with a certificate of the tenant's CA.
func (tn *Tenant) start(h http.HandlerFunc) *httptest.Server {
	tn.t.Helper()
	cfg, err := tn.CA.ServerTLS("127.0.0.1", "localhost")
	if err != nil {
		tn.t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.StartTLS()
	tn.t.Cleanup(srv.Close)
	return srv
}

// Transport trusts the fakes' CA and nothing else.
func (tn *Tenant) Transport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: tn.CA.Pool(), MinVersion: tls.VersionTLS12}
	return tr
}

// WriteCAFile writes the fakes' CA certificate to dir/ca.pem, for a process
// that trusts it through SSL_CERT_FILE.
func (tn *Tenant) WriteCAFile(dir string) string {
	tn.t.Helper()
	p, err := tn.CA.WriteCAFile(dir)
	if err != nil {
		tn.t.Fatal(err)
	}
	return p
}

// AuthorityURL is the fake sign-in host (the config's m365.authority_url).
func (tn *Tenant) AuthorityURL() string { return tn.LoginSrv.URL + "/" }

// GraphURL is the fake's Graph base URL including /v1.0.
func (tn *Tenant) GraphURL() string { return tn.GraphSrv.URL + "/v1.0" }

// ExchangeURL is the fake's Exchange host URL.
func (tn *Tenant) ExchangeURL() string { return tn.ExoSrv.URL }

// Endpoints points the global cloud's clients at the fakes.
func (tn *Tenant) Endpoints() m365.Endpoints {
	c, _ := m365.CloudByName("global")
	return m365.Endpoints{Cloud: c, AuthorityURL: tn.AuthorityURL(), GraphURL: tn.GraphURL(), ExchangeURL: tn.ExchangeURL()}
}

// Clients returns the real clients pointed at the fakes.
func (tn *Tenant) Clients(r m365.Retry) (*m365.Graph, *m365.Exchange) {
	tn.t.Helper()
	g, err := m365.NewGraph(tn.Cred, m365.GraphOptions{BaseURL: tn.GraphURL(), Transport: tn.Transport(), Retry: r})
	if err != nil {
		tn.t.Fatal(err)
	}
	c, err := m365.NewExchange(tn.Cred, m365.ExchangeOptions{BaseURL: tn.ExchangeURL(), TenantID: TenantID, Transport: tn.Transport(), Retry: r})
	if err != nil {
		tn.t.Fatal(err)
	}
	return g, m365.NewExchangeOps(c, r)
}

// Inject adds a fault.
func (tn *Tenant) Inject(f Fault) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.faults = append(tn.faults, &f)
}

// ClearFaults removes every fault.
func (tn *Tenant) ClearFaults() {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.faults = nil
}

func (tn *Tenant) fault(match string) *Fault {
	for i, f := range tn.faults {
		if strings.HasPrefix(match, f.Match) {
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					tn.faults = append(tn.faults[:i:i], tn.faults[i+1:]...)
				}
			}
			return f
		}
	}
	return nil
}

// Requests returns a copy of every request so far.
func (tn *Tenant) Requests() []Request {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return append([]Request(nil), tn.requests...)
}

// Count returns how many Graph requests matched "METHOD /path" prefix, or
// Exchange requests ran a cmdlet.
func (tn *Tenant) Count(match string) int {
	n := 0
	for _, r := range tn.Requests() {
		key := r.Cmdlet
		if r.Service == "graph" {
			key = r.Method + " " + strings.TrimPrefix(r.Path, "/v1.0")
		}
		if strings.HasPrefix(key, match) {
			n++
		}
	}
	return n
}

// Violations lists requests that did not have the documented shape.
func (tn *Tenant) Violations() []string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return append(append([]string(nil), tn.graphViolation...), tn.exoViolations...)
}

// AddSKU adds a subscribed licence.
func (tn *Tenant) AddSKU(id, partNumber string, units int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.skus = append(tn.skus, sku{ID: id, PartNumber: partNumber, Enabled: units})
}

// AddUser adds an existing licensed user with a mailbox; it returns the ID.
func (tn *Tenant) AddUser(upn, displayName string) string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	id := tn.newID()
	tn.users[id] = &user{ID: id, UPN: upn, DisplayName: displayName, Enabled: true, UsageLocation: "NL"}
	tn.mailboxes[strings.ToLower(upn)] = &mailbox{Mailbox: m365.Mailbox{Identity: upn, Name: strings.SplitN(upn, "@", 2)[0],
		PrimarySmtpAddress: upn, UserPrincipalName: upn, DisplayName: displayName, Alias: strings.SplitN(upn, "@", 2)[0],
		RecipientTypeDetails: "UserMailbox", ExternalDirectoryObjectID: id}}
	return id
}

// AddSharedMailbox adds an existing shared mailbox, with the user object
// behind it enabled, as New-Mailbox leaves it; it returns the user's ID.
func (tn *Tenant) AddSharedMailbox(addr, displayName string) string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.addShared(addr, displayName, displayName, strings.SplitN(addr, "@", 2)[0])
}

// addShared creates a shared mailbox and its user; the caller holds tn.mu.
func (tn *Tenant) addShared(addr, name, displayName, alias string) string {
	id := tn.newID()
	tn.users[id] = &user{ID: id, UPN: addr, DisplayName: displayName, MailNickname: alias, Enabled: true, Shared: true}
	tn.lag[id] = tn.lagAfterCreate
	tn.mailboxes[strings.ToLower(addr)] = &mailbox{Mailbox: m365.Mailbox{Identity: name, Name: name, Alias: alias,
		DisplayName: displayName, PrimarySmtpAddress: addr, UserPrincipalName: addr, RecipientTypeDetails: "SharedMailbox",
		ExternalDirectoryObjectID: id}}
	return id
}

// SignInEnabled reports whether the user behind addr can sign in.
func (tn *Tenant) SignInEnabled(addr string) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	for _, u := range tn.users {
		if strings.EqualFold(u.UPN, addr) {
			return u.Enabled
		}
	}
	return false
}

// Mailbox returns a mailbox as Get-Mailbox shows it.
func (tn *Tenant) Mailbox(addr string) (m365.Mailbox, bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	mb, ok := tn.mailboxes[strings.ToLower(addr)]
	if !ok {
		return m365.Mailbox{}, false
	}
	return mb.Mailbox, true
}

// AddGrant adds a permission directly, as an admin in the portal would.
func (tn *Tenant) AddGrant(mailbox, upn string, r m365.Right) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.perms = append(tn.perms, perm{strings.ToLower(mailbox), strings.ToLower(upn), r})
}

// Grants lists the explicit grants on a mailbox as "user right".
func (tn *Tenant) Grants(mailbox string) []string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var out []string
	for _, p := range tn.perms {
		if p.mailbox == strings.ToLower(mailbox) {
			out = append(out, p.user+" "+string(p.right))
		}
	}
	return out
}

// LagAfterCreate makes the next n reads of each newly created user by ID
// answer 404, as Graph's replicas do right after a create.
func (tn *Tenant) LagAfterCreate(n int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.lagAfterCreate = n
}

// MailboxDelay makes a licensed user's mailbox appear only after n
// Get-Mailbox polls for it.
func (tn *Tenant) MailboxDelay(n int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.mailboxDelay = n
}

// PageSize makes list cmdlets answer in pages of n with @odata.nextLink.
func (tn *Tenant) PageSize(n int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.pageSize = n
}

// Mails returns the messages sendMail accepted.
func (tn *Tenant) Mails() []SentMail {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return append([]SentMail(nil), tn.mails...)
}

// Password returns a user's current password, as only the test may know it.
func (tn *Tenant) Password(upn string) string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	for _, u := range tn.users {
		if strings.EqualFold(u.UPN, upn) {
			return u.Password
		}
	}
	return ""
}

// User returns the stored user, for assertions.
func (tn *Tenant) User(upn string) (id, usageLocation string, skus []string, forceChange, ok bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	for _, u := range tn.users {
		if strings.EqualFold(u.UPN, upn) {
			return u.ID, u.UsageLocation, append([]string(nil), u.SKUs...), u.ForceChange, true
		}
	}
	return "", "", nil, false, false
}

// ArcSealers is the tenant's trusted ARC sealer list as stored.
func (tn *Tenant) ArcSealers() string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.arcSealers
}

// SetArcSealers sets the list as an admin would have.
func (tn *Tenant) SetArcSealers(v string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.arcSealers = v
}

// Connector returns an inbound connector's stored parameters.
func (tn *Tenant) Connector(name string) map[string]any {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	c := tn.connectors[strings.ToLower(name)]
	if c == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	return out
}

func (tn *Tenant) newID() string {
	id := fmt.Sprintf("11111111-0000-4000-8000-%012d", tn.nextID)
	tn.nextID++
	return id
}

// readBody decompresses a gzip body (the SDK compresses requests).
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// SetUserState changes a stored user as an admin in the portal would:
// its usage location and its licences.
func (tn *Tenant) SetUserState(upn, usageLocation string, skus ...string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	for _, u := range tn.users {
		if strings.EqualFold(u.UPN, upn) {
			u.UsageLocation = usageLocation
			u.SKUs = append([]string(nil), skus...)
		}
	}
}
