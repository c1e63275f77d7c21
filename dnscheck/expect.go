// SPDX-License-Identifier: MIT

package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/arc"
)

// Expected is what the domain's DNS should say. Empty fields are not
// checked against a value, only against the shape Microsoft 365 uses.
type Expected struct {
	Domain string `json:"domain"`
	// Source names where the values came from ("config" or "graph").
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

// Expectations supplies the expected values for a domain: the values the
// admin wrote down (Stated), or those overlaid with what the tenant itself
// asks the domain to publish (FromTenant), so the check compares against
// what Microsoft 365 says rather than what someone typed.
type Expectations interface {
	Expected(ctx context.Context, domain string) (Expected, error)
}

// Stated is the expected values as the admin wrote them down (dualmx takes
// them from the config's cutover and arc sections). Domain's own values
// apply to Domain only; the relay's (ForwardDomain, RelayHost, the ARC key)
// to every domain.
type Stated struct {
	Domain          string
	OldMX           []string
	TenantMX        string
	OldSPF          string
	DKIM1, DKIM2    string
	VerificationTXT string
	ForwardDomain   string
	RelayHost       string
	// ARCKeyFile is the relay's ARC signing key, published at
	// ARCSelector._domainkey.ARCDomain; "" when the relay does not seal.
	ARCKeyFile  string
	ARCDomain   string
	ARCSelector string
}

// Expected implements Expectations. A domain other than s.Domain gets only
// the values that do not depend on it (the relay's own records).
func (s Stated) Expected(_ context.Context, domain string) (Expected, error) {
	x := Expected{Domain: strings.TrimSuffix(strings.ToLower(domain), "."), Source: "config"}
	if s.Domain != "" && strings.EqualFold(strings.TrimSuffix(s.Domain, "."), x.Domain) {
		x.OldMX = append(x.OldMX, s.OldMX...)
		if s.TenantMX != "" {
			x.TenantMX = []string{s.TenantMX}
		}
		x.OldSPF = s.OldSPF
		x.DKIM1, x.DKIM2 = s.DKIM1, s.DKIM2
		x.VerificationTXT = s.VerificationTXT
	}
	x.ForwardDomain, x.RelayHost = s.ForwardDomain, s.RelayHost
	if s.ARCKeyFile != "" {
		k, err := LoadARCKey(s.ARCKeyFile)
		if err != nil {
			return Expected{}, fmt.Errorf("arc.key_file: %w", err)
		}
		k.Domain, k.Selector = s.ARCDomain, s.ARCSelector
		x.ARC = k
	}
	return x, nil
}

// TenantRecords are the records Microsoft 365 asks a domain to publish
// (Graph's serviceConfigurationRecords and verificationDnsRecords).
type TenantRecords struct {
	MX              []string
	VerificationTXT string
}

// TenantDomains answers what the tenant asks a domain to publish.
type TenantDomains interface {
	DomainRecords(ctx context.Context, domain string) (TenantRecords, error)
}

// TenantDKIM answers the CNAME targets of the domain's two DKIM selectors
// (Exchange Online's Get-DkimSigningConfig).
type TenantDKIM interface {
	DKIMSelectors(ctx context.Context, domain string) (string, string, error)
}

// FromTenant takes the expected MX, verification TXT and DKIM CNAME targets
// from the tenant itself, so a typo in the config cannot make a wrong record
// look right; everything else, and every value the tenant leaves empty,
// comes from Base. A tenant that cannot answer is an error, not a silent
// fallback to Base.
type FromTenant struct {
	Base    Expectations
	Domains TenantDomains
	DKIM    TenantDKIM
}

// Expected implements Expectations.
func (t FromTenant) Expected(ctx context.Context, domain string) (Expected, error) {
	x, err := t.Base.Expected(ctx, domain)
	if err != nil {
		return x, err
	}
	recs, err := t.Domains.DomainRecords(ctx, domain)
	if err != nil {
		return x, fmt.Errorf("expected records from Microsoft 365: %w", err)
	}
	x.Source = "graph"
	if len(recs.MX) > 0 {
		x.TenantMX = recs.MX
	}
	if recs.VerificationTXT != "" {
		x.VerificationTXT = recs.VerificationTXT
	}
	s1, s2, err := t.DKIM.DKIMSelectors(ctx, domain)
	if err != nil {
		return x, fmt.Errorf("DKIM selectors from Exchange Online: %w", err)
	}
	if s1 != "" {
		x.DKIM1 = s1
	}
	if s2 != "" {
		x.DKIM2 = s2
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
