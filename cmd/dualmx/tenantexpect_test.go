// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

// TestTenantExpectations: with Microsoft 365 configured, the MX, the MS=
// verification record and the DKIM CNAME targets the DNS gate expects come
// from Graph and Exchange (through the real clients against the fakes), and
// override what the config says.
func TestTenantExpectations(t *testing.T) {
	tn := m365test.New(t, "hervormdputten.nl")
	tn.SetDomainDNS("hervormdputten.nl", m365test.DomainDNS{MX: "hervormdputten-nl.c-v1.mx.microsoft", VerificationTXT: "MS=ms31415926",
		DKIM1: "selector1-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft",
		DKIM2: "selector2-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft"})
	g, x := tn.Clients(m365.Retry{})
	cfg := &config.Config{Cutover: config.Cutover{Enabled: true, Domain: "hervormdputten.nl", OldMX: []string{"mx.solcon.nl"},
		TenantMX: "typo.mail.protection.outlook.com", OldSPF: "include:spf.solcon.nl"}}
	exp := dnscheck.FromTenant{Base: statedExpectations(cfg), Domains: graphDomains{g}, DKIM: x}
	got, err := exp.Expected(context.Background(), "hervormdputten.nl")
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "graph" || len(got.TenantMX) != 1 || got.TenantMX[0] != "hervormdputten-nl.c-v1.mx.microsoft" ||
		got.VerificationTXT != "MS=ms31415926" || !strings.HasPrefix(got.DKIM1, "selector1-") || !strings.HasPrefix(got.DKIM2, "selector2-") {
		t.Errorf("expected values %+v", got)
	}
	if len(got.OldMX) != 1 || got.OldSPF != "include:spf.solcon.nl" {
		t.Errorf("config-only values lost: %+v", got)
	}
	if tn.Count("GET /domains/hervormdputten.nl/serviceConfigurationRecords") != 1 ||
		tn.Count("GET /domains/hervormdputten.nl/verificationDnsRecords") != 1 {
		t.Errorf("Graph requests: %+v", tn.Requests())
	}
	if v := tn.Violations(); len(v) > 0 {
		t.Errorf("request shape: %v", v)
	}

	// A domain the tenant does not know is an error the gate reports, not a silent fallback.
	if _, err := exp.Expected(context.Background(), "unknown.example"); err == nil || !strings.Contains(err.Error(), "Microsoft 365") {
		t.Errorf("unknown domain: %v", err)
	}
}

// TestStatedExpectations: the config's sections become the DNS check's
// plain values; a section that is absent gives none of its values.
func TestStatedExpectations(t *testing.T) {
	cut := config.Cutover{Enabled: true, Domain: "example.nl", OldMX: []string{"mx.solcon.nl"}, TenantMX: "example-nl.mail.protection.outlook.com",
		OldSPF: "include:spf.solcon.nl", DKIMSelector1: "s1", DKIMSelector2: "s2", VerificationTXT: "MS=ms1",
		ForwardDomain: "fwd.example.nl", RelayHost: "relay.example.nl"}
	arc := config.ARC{Enabled: true, Domain: "relay.example.nl", Selector: "arc1", KeyFile: "/etc/dualmx/arc.key"}
	for _, tc := range []struct {
		name string
		cfg  config.Config
		want dnscheck.Stated
	}{
		{"none", config.Config{Cutover: config.Cutover{Domain: "example.nl", OldSPF: "x"}, ARC: config.ARC{KeyFile: "k"}}, dnscheck.Stated{}},
		{"cutover", config.Config{Cutover: cut}, dnscheck.Stated{Domain: "example.nl", OldMX: cut.OldMX, TenantMX: cut.TenantMX, OldSPF: cut.OldSPF,
			DKIM1: "s1", DKIM2: "s2", VerificationTXT: "MS=ms1", ForwardDomain: "fwd.example.nl", RelayHost: "relay.example.nl"}},
		{"arc", config.Config{ARC: arc}, dnscheck.Stated{ARCKeyFile: "/etc/dualmx/arc.key", ARCDomain: "relay.example.nl", ARCSelector: "arc1"}},
	} {
		if got := statedExpectations(&tc.cfg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
