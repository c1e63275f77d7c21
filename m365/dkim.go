// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DKIM for the custom domain, as Microsoft's "Use Exchange Online
// PowerShell to configure DKIM signing" steps (defender-office-365/
// email-authentication-dkim-configure) do it: only the initial
// onmicrosoft.com domain signs by default; New-DkimSigningConfig
// -DomainName D -Enabled $false creates the keys and shows the two CNAME
// targets (Selector1CNAME, Selector2CNAME), the domain publishes them, and
// Set-DkimSigningConfig -Identity D -Enabled $true turns signing on once
// Microsoft 365 finds them.

// dkimKeySize is the key length of the signing configs dualmx creates.
const dkimKeySize = 2048

// dkimConfig is the part of Get-DkimSigningConfig dualmx reads.
type dkimConfig struct {
	Identity       string `json:"Identity"`
	Name           string `json:"Name"`
	Domain         string `json:"Domain"`
	Enabled        bool   `json:"Enabled"`
	Status         string `json:"Status"` // CnameMissing, Valid (the DKIM page's PowerShell steps)
	Selector1CNAME string `json:"Selector1CNAME"`
	Selector2CNAME string `json:"Selector2CNAME"`
}

// DKIMState is where a domain's DKIM signing stands.
type DKIMState struct {
	Domain  string `json:"domain"`
	Exists  bool   `json:"exists"`
	Enabled bool   `json:"enabled"`
	Status  string `json:"status,omitempty"`
	// Selector1 and Selector2 are the CNAME targets Microsoft 365 gave.
	Selector1 string `json:"selector1_cname,omitempty"`
	Selector2 string `json:"selector2_cname,omitempty"`
	// Published: both CNAMEs resolve to those targets on every
	// authoritative server; Why says what is missing when not.
	Published bool   `json:"published"`
	Why       string `json:"why,omitempty"`
	// Pending says why signing is not on after an apply.
	Pending string `json:"pending,omitempty"`
}

// Records are the two CNAME records to publish, in zone-file form.
func (d DKIMState) Records() []string {
	if d.Selector1 == "" {
		return nil
	}
	return []string{
		"selector1._domainkey." + d.Domain + ". 3600 IN CNAME " + d.Selector1 + ".",
		"selector2._domainkey." + d.Domain + ". 3600 IN CNAME " + d.Selector2 + ".",
	}
}

// change is the next command for DKIM, nil when there is none to run now.
func (d DKIMState) change() *SetupChange {
	switch {
	case !d.Exists:
		// KeySize: "1024 (this is the default value)" or 2048
		// (New-DkimSigningConfig); Microsoft gives the onmicrosoft.com
		// domain 2048-bit keys, and RFC 8301 asks signers for 2048.
		return &SetupChange{What: "create the DKIM signing config of " + d.Domain + " (2048-bit keys, disabled until its two CNAMEs are published)",
			Cmdlet: "New-DkimSigningConfig", Params: map[string]any{"DomainName": d.Domain, "Enabled": false, "KeySize": dkimKeySize}}
	case !d.Enabled && d.Published:
		return &SetupChange{What: "turn on DKIM signing for " + d.Domain + " (its CNAMEs are published)",
			Cmdlet: "Set-DkimSigningConfig", Params: map[string]any{"Identity": d.Domain, "Enabled": true}}
	}
	return nil
}

// DKIM reads a domain's signing config; Exists is false when it has none.
// The reply is filtered on the domain: for a domain without a config,
// Get-DkimSigningConfig may answer every config, the onmicrosoft.com one
// included (identity.go), whose selectors are not the domain's.
func (x *Exchange) DKIM(ctx context.Context, domain string) (DKIMState, error) {
	st := DKIMState{Domain: domain}
	raw, err := x.Cmd.Invoke(ctx, "Get-DkimSigningConfig", map[string]any{"Identity": domain})
	if err == nil {
		var c dkimConfig
		c, err = pick("Get-DkimSigningConfig", domain, raw, func(c dkimConfig) bool { return anyEqual(domain, c.Domain, c.Name, c.Identity) })
		if err == nil {
			st.Exists, st.Enabled, st.Status = true, c.Enabled, c.Status
			st.Selector1, st.Selector2 = strings.TrimSuffix(c.Selector1CNAME, "."), strings.TrimSuffix(c.Selector2CNAME, ".")
		}
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return st, withNeed(err, NeedManageAsApp, NeedExchangeAdministrator)
	}
	return st, nil
}

// planDKIM reads the config and, for one that does not sign yet, whether
// its CNAMEs are published.
func (x *Exchange) planDKIM(ctx context.Context, s RelaySetup) (DKIMState, error) {
	st, err := x.DKIM(ctx, s.DKIMDomain)
	if err != nil || !st.Exists || st.Enabled {
		return st, err
	}
	if st.Selector1 == "" || st.Selector2 == "" {
		st.Why = "Get-DkimSigningConfig shows no CNAME values for " + s.DKIMDomain
		return st, nil
	}
	if s.DKIMPublished == nil {
		st.Why = "not checked"
		return st, nil
	}
	st.Published, st.Why, err = s.DKIMPublished(ctx, s.DKIMDomain, st.Selector1, st.Selector2)
	if err != nil {
		return st, fmt.Errorf("m365: checking the DKIM CNAMEs of %s: %w", s.DKIMDomain, err)
	}
	return st, nil
}

// DKIMSelectors reads the CNAME targets Microsoft 365 signs with for domain
// (Get-DkimSigningConfig). A domain without a signing config yet answers
// empty strings, not an error: the gate then reports the records as unknown.
func (x *Exchange) DKIMSelectors(ctx context.Context, domain string) (string, string, error) {
	st, err := x.DKIM(ctx, domain)
	return st.Selector1, st.Selector2, err
}
