// SPDX-License-Identifier: MIT

package main

import (
	"context"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/m365"
)

// statedExpectations are the config's cutover and arc sections as the DNS
// check's expected values.
func statedExpectations(cfg *config.Config) dnscheck.Stated {
	var s dnscheck.Stated
	if c := cfg.Cutover; c.Enabled {
		s = dnscheck.Stated{Domain: c.Domain, OldMX: c.OldMX, TenantMX: c.TenantMX, OldSPF: c.OldSPF,
			DKIM1: c.DKIMSelector1, DKIM2: c.DKIMSelector2, VerificationTXT: c.VerificationTXT,
			ForwardDomain: c.ForwardDomain, RelayHost: c.RelayHost}
	}
	if a := cfg.ARC; a.Enabled {
		s.ARCKeyFile, s.ARCDomain, s.ARCSelector = a.KeyFile, a.Domain, a.Selector
	}
	return s
}

// expectationsFor picks the tenant as the source of expected values when
// Microsoft 365 credentials are configured, else the config.
func expectationsFor(cfg *config.Config) (dnscheck.Expectations, error) {
	base := statedExpectations(cfg)
	if !cfg.M365.Enabled {
		return base, nil
	}
	gr, exo, err := m365Clients(cfg)
	if err != nil {
		return nil, err
	}
	return dnscheck.FromTenant{Base: base, Domains: graphDomains{gr}, DKIM: exo}, nil
}

// graphDomains hands Graph's domain records to the DNS check.
type graphDomains struct{ g *m365.Graph }

func (a graphDomains) DomainRecords(ctx context.Context, domain string) (dnscheck.TenantRecords, error) {
	r, err := a.g.DomainRecords(ctx, domain)
	return dnscheck.TenantRecords{MX: r.MX, VerificationTXT: r.VerificationTXT}, err
}
