// SPDX-License-Identifier: MIT

package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/arc"
	"github.com/dualmx/dualmx/config"
)

// Expected is what the domain's DNS should say. Empty fields are not
// checked against a value, only against the shape Microsoft 365 uses.
type Expected struct {
	Domain string `json:"domain"`
	// Source names where the values came from ("config", later "graph").
	Source string `json:"source"`
	// OldMX are the old host's MX targets, expected before the cutover.
	OldMX []string `json:"old_mx,omitempty"`
	// TenantMX are the Microsoft 365 MX targets expected after it, in
	// either the mail.protection.outlook.com or the mx.microsoft form.
	TenantMX []string `json:"tenant_mx,omitempty"`
	// OldSPF is the SPF term that authorises the old host during the window.
	OldSPF string `json:"old_spf,omitempty"`
	// DKIM1 and DKIM2 are the CNAME targets of selector1 and selector2.
	DKIM1 string `json:"dkim_selector1,omitempty"`
	DKIM2 string `json:"dkim_selector2,omitempty"`
	// VerificationTXT is the MS=ms… value proving the domain to the tenant.
	VerificationTXT string  `json:"verification_txt,omitempty"`
	ForwardDomain   string  `json:"forward_domain,omitempty"`
	RelayHost       string  `json:"relay_host,omitempty"`
	ARC             *ARCKey `json:"arc,omitempty"`
}

// ARCKey is the relay's ARC signing key as it should be published.
type ARCKey struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	// KeyType is the k= tag value, "rsa" or "ed25519".
	KeyType string `json:"key_type"`
	// PublicKey is the p= tag value (base64).
	PublicKey string `json:"public_key"`
}

// Name is where the key's TXT record lives.
func (k *ARCKey) Name() string { return k.Selector + "._domainkey." + dns.Fqdn(k.Domain) }

// Record is the TXT value to publish.
func (k *ARCKey) Record() string { return "v=DKIM1; k=" + k.KeyType + "; p=" + k.PublicKey }

// Expectations supplies the expected values for a domain. The config is one
// source; the tenant itself (Graph serviceConfigurationRecords and
// verificationDnsRecords, Exchange Get-DkimSigningConfig) is meant to be
// another, so the check compares against what Microsoft 365 says rather
// than what someone typed.
type Expectations interface {
	Expected(ctx context.Context, domain string) (Expected, error)
}

// ConfigExpectations reads the expected values from the cutover and arc
// sections of the configuration.
type ConfigExpectations struct {
	Config *config.Config
}

// Expected implements Expectations. A domain other than the configured one
// gets only the values that do not depend on it (the relay's own records).
func (e ConfigExpectations) Expected(_ context.Context, domain string) (Expected, error) {
	c := e.Config
	x := Expected{Domain: strings.TrimSuffix(strings.ToLower(domain), "."), Source: "config"}
	if c.Cutover.Enabled && strings.EqualFold(strings.TrimSuffix(c.Cutover.Domain, "."), x.Domain) {
		x.OldMX = append(x.OldMX, c.Cutover.OldMX...)
		if c.Cutover.TenantMX != "" {
			x.TenantMX = []string{c.Cutover.TenantMX}
		}
		x.OldSPF = c.Cutover.OldSPF
		x.DKIM1, x.DKIM2 = c.Cutover.DKIMSelector1, c.Cutover.DKIMSelector2
		x.VerificationTXT = c.Cutover.VerificationTXT
	}
	if c.Cutover.Enabled {
		x.ForwardDomain, x.RelayHost = c.Cutover.ForwardDomain, c.Cutover.RelayHost
	}
	if c.ARC.Enabled {
		k, err := LoadARCKey(c.ARC.KeyFile)
		if err != nil {
			return Expected{}, fmt.Errorf("arc.key_file: %w", err)
		}
		k.Domain, k.Selector = c.ARC.Domain, c.ARC.Selector
		x.ARC = k
	}
	return x, nil
}

// LoadARCKey reads the ARC private key as the daemon does (arc.LoadKey: PEM,
// PKCS#1 or PKCS#8, RSA or Ed25519, refused when others can read it) and
// returns its public half in the form a DKIM key record carries.
func LoadARCKey(path string) (*ARCKey, error) {
	key, err := arc.LoadKey(path)
	if err != nil {
		return nil, err
	}
	kind, p, err := arc.PublicKeyTags(key.Public())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &ARCKey{KeyType: kind, PublicKey: p}, nil
}

// MXForm says which kind of Microsoft 365 inbound endpoint an MX target is.
type MXForm string

// MX target forms. Both Microsoft forms are recognised by suffix only; the
// token in front belongs to the tenant and is compared, never derived.
const (
	MXOther      MXForm = "other"
	MXProtection MXForm = "mail.protection.outlook.com"
	MXMicrosoft  MXForm = "mx.microsoft" // the DNSSEC/DANE form
)

// ClassifyMX tells the Microsoft 365 forms apart from anything else.
func ClassifyMX(target string) MXForm {
	t := strings.ToLower(strings.TrimSuffix(target, "."))
	switch {
	case strings.HasSuffix(t, ".mail.protection.outlook.com"):
		return MXProtection
	case strings.HasSuffix(t, ".mx.microsoft"):
		return MXMicrosoft
	}
	return MXOther
}

// DKIMForm says which Microsoft 365 DKIM CNAME form a target has.
type DKIMForm string

// DKIM CNAME forms: the older one under the tenant's onmicrosoft.com
// domain, and the one Microsoft uses for domains added since May 2025.
const (
	DKIMOther         DKIMForm = "other"
	DKIMOnMicrosoft   DKIMForm = "onmicrosoft.com"
	DKIMMailMicrosoft DKIMForm = "dkim.mail.microsoft"
)

// ClassifyDKIM recognises the two Microsoft 365 CNAME target forms for
// selector ("selector1" or "selector2").
func ClassifyDKIM(selector, target string) DKIMForm {
	t := strings.ToLower(strings.TrimSuffix(target, "."))
	labels := strings.Split(t, ".")
	if len(labels) < 4 || !strings.HasPrefix(labels[0], selector+"-") || labels[1] != "_domainkey" {
		return DKIMOther
	}
	rest := strings.Join(labels[2:], ".")
	switch {
	case strings.HasSuffix(rest, ".onmicrosoft.com") && len(labels) == 5:
		return DKIMOnMicrosoft
	case strings.HasSuffix(rest, ".dkim.mail.microsoft") && len(labels) == 7 && strings.HasSuffix(labels[3], "-v1"):
		return DKIMMailMicrosoft
	}
	return DKIMOther
}

var errNoServers = errors.New("no authoritative name servers found")
