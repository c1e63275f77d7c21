// SPDX-License-Identifier: MIT

package m365_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

// signIn builds the real credential (azidentity, MSAL) against the fake
// tenant's sign-in endpoint, as the config's authority_url points it.
func signIn(t *testing.T, tn *m365test.Tenant, cloud, secret string) (*m365.Graph, m365.Endpoints, policy.Transporter) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "m365.secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := m365.CloudByName(cloud)
	if err != nil {
		t.Fatal(err)
	}
	ends := m365.Endpoints{Cloud: c, AuthorityURL: tn.AuthorityURL(), GraphURL: tn.GraphURL(), ExchangeURL: tn.ExchangeURL()}
	hc := &http.Client{Transport: tn.Transport()}
	cred, err := m365.Credential(m365.App{TenantID: m365test.TenantID, ClientID: m365test.ClientID, ClientSecretFile: file,
		Endpoints: ends, Transport: hc})
	if err != nil {
		t.Fatal(err)
	}
	g, err := m365.NewGraph(cred, m365.GraphOptions{BaseURL: ends.Graph(), Scope: c.GraphScope(), Transport: tn.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	return g, ends, hc
}

// TestSignInAtTheConfiguredAuthority: the real credential signs in at the
// fake's token endpoint (no instance discovery at login.microsoftonline.com,
// which a test cannot reach) and asks for the real resource's scope of the
// configured cloud, whatever URL the requests go to.
func TestSignInAtTheConfiguredAuthority(t *testing.T) {
	for _, tc := range []struct{ cloud, scope string }{
		{"global", "https://graph.microsoft.com/.default"},
		{"usgovhigh", "https://graph.microsoft.us/.default"},
		{"china", "https://microsoftgraph.chinacloudapi.cn/.default"},
	} {
		t.Run(tc.cloud, func(t *testing.T) {
			tn := m365test.New(t, domain)
			tn.AddSKU("c42b9cae-ea4f-4ab7-9717-81576235ccac", "O365_BUSINESS_PREMIUM", 3)
			g, _, _ := signIn(t, tn, tc.cloud, m365test.ClientSecret)
			if skus, err := g.SubscribedSKUs(context.Background()); err != nil || len(skus) != 1 {
				t.Fatalf("skus %v %v", skus, err)
			}
			var scopes []string
			for _, r := range tn.Requests() {
				if r.Service == "login" && r.Method == "POST" {
					scopes = append(scopes, r.Query)
				}
			}
			if len(scopes) != 1 || scopes[0] != tc.scope {
				t.Errorf("token requests with scopes %q, want [%s]", scopes, tc.scope)
			}
		})
	}

	tn := m365test.New(t, domain)
	g, _, _ := signIn(t, tn, "global", "not-the-secret")
	_, err := g.SubscribedSKUs(context.Background())
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") || strings.Contains(err.Error(), "not-the-secret") {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestConfigKnowsTheClouds(t *testing.T) {
	if strings.Join(config.M365Clouds, ",") != strings.Join(m365.CloudNames(), ",") {
		t.Errorf("config %v, m365 %v", config.M365Clouds, m365.CloudNames())
	}
}

func statuses(r *m365.CheckReport) map[string]string {
	out := map[string]string{}
	for _, row := range r.Rows {
		out[row.Command+" | "+row.Need] = row.Status
	}
	return out
}

// TestCheckFindsWhatIsMissing: m365 check reads the permissions from the
// tokens' roles claims, the Entra roles from the role assignments (or, when
// it may not read them, from what Exchange lets the app do), and whether
// the tenant reports sign-ins; it names the step for what is missing.
func TestCheckFindsWhatIsMissing(t *testing.T) {
	ctx := context.Background()
	tn := m365test.New(t, domain)
	tn.AddUser("ithelp@"+domain, "IT help")
	tn.SetPremium(true)
	g, x := tn.Clients(m365.Retry{Attempts: 1})
	env := m365.CheckEnv{Cred: tn.Cred, Endpoints: tn.Endpoints(), Graph: g, Exchange: x}
	r, err := m365.RunCheck(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if r.Missing() != 0 || r.ObjectID != m365test.ServicePrincipalID || len(r.EntraRoles) != 2 {
		t.Fatalf("a fully set-up app: %+v", r)
	}

	// Without Mail.Send, with only the recipient role, without P1, and
	// allowed to read role assignments.
	tn.SetAppRoles(m365test.GraphAudience, "User.ReadWrite.All", "Organization.Read.All", "RoleManagement.Read.Directory")
	tn.SetDirectoryRoles(m365.RoleExchangeRecipientAdministrator)
	tn.SetPremium(false)
	r, err = m365.RunCheck(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	st := statuses(r)
	prov, setup := m365.Commands[0].Command, m365.Commands[1].Command
	for need, want := range map[string]string{
		prov + " | Microsoft Graph application permission Mail.Send":                                      m365.CheckMissing,
		prov + " | Microsoft Graph application permission User.ReadWrite.All":                             m365.CheckOK,
		prov + " | Microsoft Graph application permission LicenseAssignment.ReadWrite.All":                m365.CheckOK, // User.ReadWrite.All will do
		prov + " | Entra role User Administrator":                                                         m365.CheckMissing,
		prov + " | Entra role Exchange Recipient Administrator":                                           m365.CheckOK,
		setup + " | Entra role Exchange Administrator":                                                    m365.CheckMissing,
		"address checklist (sign-in evidence) | Microsoft Graph application permission AuditLog.Read.All": m365.CheckMissing,
		"import | Microsoft Graph application permission Mail.ReadWrite":                                  m365.CheckMissing,
		"import | Entra role Exchange Administrator":                                                      m365.CheckMissing,
		"address checklist (sign-in evidence) | Microsoft Entra ID P1":                                    m365.CheckUnknown, // cannot ask without AuditLog.Read.All
	} {
		if st[need] != want {
			t.Errorf("%s: %q, want %q", need, st[need], want)
		}
	}
	for _, row := range r.Rows {
		if row.Status != m365.CheckOK && row.Grant == "" {
			t.Errorf("%+v has no step to grant it", row)
		}
		// The import's role is what Microsoft365DSC asks for; whether the
		// recipient role would do is not verified, and check says so.
		if row.Command == "import" && strings.HasPrefix(row.Need, "Entra role") &&
			(row.Need != "Entra role Exchange Administrator" || !strings.Contains(row.Unverified, "Exchange Recipient Administrator") ||
				!strings.Contains(row.Unverified, "not verified")) {
			t.Errorf("import's role row %+v", row)
		}
	}

	// Not allowed to read role assignments: Exchange's answers decide.
	tn.SetAppRoles(m365test.GraphAudience, m365test.AllGraphRoles[:7]...) // all but RoleManagement.Read.Directory
	r, err = m365.RunCheck(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	st = statuses(r)
	if st[setup+" | Entra role Exchange Administrator"] != m365.CheckMissing || st[prov+" | Entra role Exchange Recipient Administrator"] != m365.CheckOK ||
		st[prov+" | Entra role User Administrator"] != m365.CheckUnknown || r.EntraRoles != nil ||
		st["address checklist (sign-in evidence) | Microsoft Entra ID P1"] != m365.CheckMissing {
		t.Errorf("judged by probes: %v", st)
	}

	// No Exchange role at all: every Exchange row is missing.
	tn.SetDirectoryRoles()
	r, _ = m365.RunCheck(ctx, env)
	if st := statuses(r); st[prov+" | Entra role Exchange Recipient Administrator"] != m365.CheckMissing {
		t.Errorf("without an Exchange role: %v", st)
	}
}

// TestDocsListEveryRequirement: docs/microsoft-365.md's table of section 2
// names every permission and role of m365.Commands, so the documentation
// and what m365 check checks stay one list.
func TestDocsListEveryRequirement(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "microsoft-365.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start, end := strings.Index(doc, "## 2. Permissions and roles"), strings.Index(doc, "## 3.")
	if start < 0 || end < start {
		t.Fatal("docs/microsoft-365.md has no section 2 on permissions")
	}
	section := doc[start:end]
	for _, c := range m365.Commands {
		// A need that is not verified is marked so in its command's row.
		row := ""
		for _, line := range strings.Split(section, "\n") {
			if strings.HasPrefix(line, "| `"+strings.Fields(c.Command)[0]) {
				row = line
			}
		}
		for _, n := range c.Needs {
			if n.Unverified != "" && !strings.Contains(row, "not verified") {
				t.Errorf("%s: the table row does not say that %s is not verified: %q", c.Command, m365.RoleName(n.AnyOf[0]), row)
			}
			name := n.AnyOf[0]
			if n.Kind == m365.EntraRole {
				name = m365.RoleName(name)
			}
			if !strings.Contains(section, name) {
				t.Errorf("%s: %s is not in the documented table", c.Command, name)
			}
		}
	}
}

// TestSignInWithCertificate: certificate_file signs in with a client
// assertion that the fake verifies against the registered certificate.
func TestSignInWithCertificate(t *testing.T) {
	tn := m365test.New(t, domain)
	tn.AddSKU("c42b9cae-ea4f-4ab7-9717-81576235ccac", "O365_BUSINESS_PREMIUM", 3)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dualmx"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "m365.pem")
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})...)
	if err := os.WriteFile(file, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := m365.CloudByName("global")
	ends := tn.Endpoints()
	ends.Cloud = c
	cred, err := m365.Credential(m365.App{TenantID: m365test.TenantID, ClientID: m365test.ClientID, CertificateFile: file,
		Endpoints: ends, Transport: &http.Client{Transport: tn.Transport()}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := m365.NewGraph(cred, m365.GraphOptions{BaseURL: ends.Graph(), Transport: tn.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	// Not registered yet: refused.
	if _, err := g.SubscribedSKUs(context.Background()); err == nil || !strings.Contains(err.Error(), "AADSTS700027") {
		t.Errorf("unregistered certificate: %v", err)
	}
	tn.SetClientCertificate(cert)
	cred, _ = m365.Credential(m365.App{TenantID: m365test.TenantID, ClientID: m365test.ClientID, CertificateFile: file,
		Endpoints: ends, Transport: &http.Client{Transport: tn.Transport()}})
	g, _ = m365.NewGraph(cred, m365.GraphOptions{BaseURL: ends.Graph(), Transport: tn.Transport()})
	if skus, err := g.SubscribedSKUs(context.Background()); err != nil || len(skus) != 1 {
		t.Errorf("registered certificate: %v %v", skus, err)
	}
}
