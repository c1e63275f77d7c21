package main

import (
	"context"
	"fmt"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/m365"
)

// tenantRecords is what the DNS gate needs from Microsoft 365.
type tenantRecords interface {
	DomainRecords(ctx context.Context, domain string) (m365.DomainRecords, error)
}

type tenantDKIM interface {
	DKIMSelectors(ctx context.Context, domain string) (string, string, error)
}

// tenantExpectations takes the expected MX, verification TXT and DKIM CNAME
// targets from the tenant itself (Graph and Exchange), so a typo in the config
// cannot make a wrong record look right; everything else, and every value the
// tenant cannot give, comes from the config.
type tenantExpectations struct {
	base  dnscheck.ConfigExpectations
	graph tenantRecords
	exo   tenantDKIM
}

func (t tenantExpectations) Expected(ctx context.Context, domain string) (dnscheck.Expected, error) {
	x, err := t.base.Expected(ctx, domain)
	if err != nil {
		return x, err
	}
	recs, err := t.graph.DomainRecords(ctx, domain)
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
	s1, s2, err := t.exo.DKIMSelectors(ctx, domain)
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

// expectationsFor picks the tenant as the source of expected values when
// Microsoft 365 credentials are configured, else the config.
func expectationsFor(cfg *config.Config) (dnscheck.Expectations, error) {
	base := dnscheck.ConfigExpectations{Config: cfg}
	if !cfg.M365.Enabled {
		return base, nil
	}
	gr, exo, err := m365Clients(cfg)
	if err != nil {
		return nil, err
	}
	return tenantExpectations{base: base, graph: gr, exo: exo}, nil
}
