// SPDX-License-Identifier: MIT

package m365test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dualmx/dualmx/m365"
)

// The app registration the fake tenant knows.
const (
	ClientID     = "22222222-0000-4000-8000-000000000002"
	ClientSecret = "fake-client-secret-value"
	// ServicePrincipalID is the object ID of the app's service principal,
	// the oid claim of its tokens and the principalId of its roles.
	ServicePrincipalID = "33333333-0000-4000-8000-000000000003"
)

// The audiences of the fake's tokens: the resource a scope names.
const (
	GraphAudience    = "https://graph.microsoft.com"
	ExchangeAudience = "https://outlook.office365.com"
)

// AllGraphRoles are the Graph application permissions a fully set-up
// dualmx app holds; a new tenant grants them all.
var AllGraphRoles = []string{"User.ReadWrite.All", "LicenseAssignment.ReadWrite.All", "Organization.Read.All", "Mail.Send",
	"Mail.ReadWrite", "Domain.Read.All", "AuditLog.Read.All", "RoleManagement.Read.Directory"}

// resourceAudiences maps the resource of every cloud's scope to the
// audience the fake puts in its tokens: a test pointed at the fake still
// asks for the real resource, never for the fake's own URL.
func resourceAudience(scope string) (string, bool) {
	res, ok := strings.CutSuffix(scope, "/.default")
	if !ok {
		return "", false
	}
	for _, name := range m365.CloudNames() {
		c, _ := m365.CloudByName(name)
		switch res {
		case c.GraphResource:
			return GraphAudience, true
		case c.ExchangeURL:
			return ExchangeAudience, true
		}
	}
	return "", false
}

// Claims are the claims of a token the fake issued.
type Claims struct {
	Aud   string   `json:"aud"`
	Iss   string   `json:"iss"`
	Tid   string   `json:"tid"`
	Oid   string   `json:"oid"`
	AppID string   `json:"appid"`
	Idtyp string   `json:"idtyp"`
	Roles []string `json:"roles"`
	Iat   int64    `json:"iat"`
	Nbf   int64    `json:"nbf"`
	Exp   int64    `json:"exp"`
}

// SetAppRoles sets the application permissions the app holds on a
// resource (GraphAudience or ExchangeAudience), as the roles claim of the
// tokens issued from now on carries them ("access token claims reference":
// roles holds an app-only token's application permissions).
func (tn *Tenant) SetAppRoles(audience string, roles ...string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.appRoles[audience] = append([]string(nil), roles...)
}

// SetDirectoryRoles sets the Entra roles (template IDs) the app's service
// principal holds.
func (tn *Tenant) SetDirectoryRoles(ids ...string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.dirRoles = append([]string(nil), ids...)
}

func (tn *Tenant) hasDirRole(ids ...string) bool {
	for _, id := range ids {
		if slices.Contains(tn.dirRoles, id) {
			return true
		}
	}
	return false
}

// Tokens counts the tokens the sign-in endpoint issued.
func (tn *Tenant) Tokens() int {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.tokens
}

// mint issues a signed token; the caller holds tn.mu.
func (tn *Tenant) mint(aud string) string {
	now := time.Now()
	c := Claims{Aud: aud, Iss: "https://sts.windows.net/" + TenantID + "/", Tid: TenantID, Oid: ServicePrincipalID, AppID: ClientID,
		Idtyp: "app", Roles: append([]string{}, tn.appRoles[aud]...), Iat: now.Unix(), Nbf: now.Add(-time.Minute).Unix(),
		Exp: now.Add(time.Hour).Unix()}
	head := b64(`{"alg":"HS256","typ":"JWT"}`)
	body, _ := json.Marshal(c)
	signing := head + "." + b64(string(body))
	return signing + "." + tn.sign(signing)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (tn *Tenant) sign(s string) string {
	m := hmac.New(sha256.New, tn.key)
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify checks a bearer token: signed by this tenant, for aud, in its
// lifetime. The caller holds tn.mu.
func (tn *Tenant) verify(authz, aud string) (Claims, error) {
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		return Claims{}, errors.New("no bearer token")
	}
	if !hmac.Equal([]byte(tn.sign(parts[0]+"."+parts[1])), []byte(parts[2])) {
		return Claims{}, errors.New("token signature is invalid")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, err
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return Claims{}, err
	}
	if c.Aud != aud {
		return Claims{}, fmt.Errorf("token audience %q, want %q", c.Aud, aud)
	}
	if now := time.Now().Unix(); now < c.Nbf || now >= c.Exp {
		return Claims{}, errors.New("token expired")
	}
	return c, nil
}

// ParseClaims reads the claims of a token the fake issued, for assertions.
func ParseClaims(authz string) (Claims, error) {
	tok, _ := strings.CutPrefix(authz, "Bearer ")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, err
	}
	var c Claims
	return c, json.Unmarshal(raw, &c)
}

// serveLogin is the sign-in endpoint: the OpenID configuration MSAL reads
// first and the client-credentials token request, as the Microsoft identity
// platform documents them (learn.microsoft.com/entra/identity-platform/
// v2-oauth2-client-creds-grant-flow: "Get a token", success and error
// responses; v2-protocols-oidc: the openid-configuration document).
func (tn *Tenant) serveLogin(w http.ResponseWriter, r *http.Request) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	// The form is not recorded: it holds the client secret. Only the
	// scope is, without the OpenID scopes MSAL adds.
	scope := ""
	if r.Method == http.MethodPost && r.ParseForm() == nil {
		for _, sc := range strings.Fields(r.PostForm.Get("scope")) {
			if sc != "openid" && sc != "profile" && sc != "offline_access" {
				scope = strings.TrimSpace(scope + " " + sc)
			}
		}
	}
	tn.requests = append(tn.requests, Request{Service: "login", Method: r.Method, Path: r.URL.Path, Query: scope})
	tenant, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	base := tn.LoginSrv.URL + "/" + tenant
	switch {
	case r.Method == http.MethodGet && rest == "v2.0/.well-known/openid-configuration":
		if tenant != TenantID {
			loginError(w, 400, "invalid_tenant", 90002, "Tenant '"+tenant+"' not found.")
			return
		}
		writeJSON(w, 200, map[string]any{"token_endpoint": base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize", "issuer": tn.LoginSrv.URL + "/" + TenantID + "/v2.0",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"}})
	case r.Method == http.MethodPost && rest == "oauth2/v2.0/token":
		tn.token(w, r, tenant)
	default:
		loginError(w, 404, "invalid_request", 900561, "The endpoint only accepts POST requests.")
	}
}

func (tn *Tenant) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := r.ParseForm(); err != nil {
		loginError(w, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	f := r.PostForm
	switch {
	case tenant != TenantID:
		loginError(w, 400, "invalid_tenant", 90002, "Tenant '"+tenant+"' not found.")
	case f.Get("grant_type") != "client_credentials":
		loginError(w, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
	case f.Get("client_id") != ClientID:
		loginError(w, 400, "unauthorized_client", 700016, "Application with identifier '"+f.Get("client_id")+"' was not found in the directory.")
	case f.Get("client_assertion") != "" || f.Get("client_assertion_type") != "":
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			loginError(w, 400, "invalid_request", 50027, "Invalid client_assertion_type.")
			return
		}
		if err := tn.verifyAssertion(f.Get("client_assertion"), tn.LoginSrv.URL+"/"+tenant+"/oauth2/v2.0/token"); err != nil {
			loginError(w, 401, "invalid_client", 700027, "Client assertion failed signature validation: "+err.Error())
			return
		}
		tn.issue(w, f.Get("scope"))
	case f.Get("client_secret") != tn.secret:
		loginError(w, 401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
	default:
		tn.issue(w, f.Get("scope"))
	}
}

// issue answers a token request whose client was proved.
func (tn *Tenant) issue(w http.ResponseWriter, scope string) {
	aud, ok := "", false
	n := 0
	// MSAL adds the OpenID scopes to every request; Entra ignores them in
	// the client-credentials flow. One resource/.default must remain.
	for _, sc := range strings.Fields(scope) {
		if sc != "openid" && sc != "profile" && sc != "offline_access" {
			aud, ok = resourceAudience(sc)
			n++
		}
	}
	if !ok || n != 1 {
		loginError(w, 400, "invalid_scope", 1002012, "The provided value for scope "+scope+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
		return
	}
	tn.tokens++
	writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tn.mint(aud)})
}

// SetClientCertificate registers the app's certificate, as uploaded under
// Certificates & secrets: a client assertion signed with its key then signs
// the app in.
func (tn *Tenant) SetClientCertificate(c *x509.Certificate) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.cert = c
}

// verifyAssertion checks a client assertion as the Microsoft identity
// platform's "certificate credentials" page describes it: a JWT signed
// (PS256, or RS256) with the registered certificate's key, named by its
// x5t#S256 (or x5t) thumbprint, for the token endpoint as aud, with the
// client ID as iss and sub, not expired.
func (tn *Tenant) verifyAssertion(a, endpoint string) error {
	if tn.cert == nil {
		return errors.New("no certificate is registered for the app")
	}
	parts := strings.Split(a, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var head struct {
		Alg     string `json:"alg"`
		X5tS256 string `json:"x5t#S256"`
		X5t     string `json:"x5t"`
	}
	var claims struct {
		Aud, Iss, Sub string
		Exp           int64
	}
	for i, v := range []any{&head, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(raw, v) != nil {
			return errors.New("undecodable JWT")
		}
	}
	s256, s1 := sha256.Sum256(tn.cert.Raw), sha1.Sum(tn.cert.Raw)
	if head.X5tS256 != base64.StdEncoding.EncodeToString(s256[:]) && head.X5t != base64.StdEncoding.EncodeToString(s1[:]) {
		return errors.New("the thumbprint names no registered certificate")
	}
	pub, ok := tn.cert.PublicKey.(*rsa.PublicKey)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if !ok || err != nil {
		return errors.New("unreadable signature")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch head.Alg {
	case "PS256":
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	case "RS256":
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	default:
		err = fmt.Errorf("alg %q", head.Alg)
	}
	switch {
	case err != nil:
		return err
	case claims.Aud != endpoint || claims.Iss != ClientID || claims.Sub != ClientID:
		return fmt.Errorf("aud %q iss %q sub %q", claims.Aud, claims.Iss, claims.Sub)
	case time.Now().Unix() >= claims.Exp:
		return errors.New("expired")
	}
	return nil
}

func loginError(w http.ResponseWriter, status int, code string, aadsts int, text string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": fmt.Sprintf("AADSTS%d: %s", aadsts, text),
		"error_codes": []int{aadsts}, "timestamp": time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id": "00000000-0000-0000-0000-000000000000", "correlation_id": "00000000-0000-0000-0000-000000000000"})
}
