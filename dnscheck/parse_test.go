// SPDX-License-Identifier: MIT

package dnscheck

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseSPF(t *testing.T) {
	for _, tc := range []struct {
		rec     string
		wantErr string
		lookups int
	}{
		{"v=spf1 -all", "", 0},
		{"v=spf1 include:spf.protection.outlook.com -all", "", 1},
		{"V=SPF1 a mx ptr exists:%{i}.x.example ?all", "", 4},
		{"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a/24 mx:example.com//64 ~all", "", 2},
		{"v=spf1 redirect=_spf.example.com", "", 1},
		{"v=spf1 redirect=_spf.example.com -all", "", 0}, // redirect is ignored next to all
		{"v=spf1  include:a.example   include:b.example  -all ", "", 2},
		{"v=spf1 exp=explain.example -all", "", 0},
		{"v=spf10 -all", "does not start with v=spf1", 0},
		{"spf1 -all", "does not start", 0},
		{"v=spf1 include -all", "needs :domain", 0},
		{"v=spf1 ip4:300.0.0.1 -all", "bad address", 0},
		{"v=spf1 ip4:2001:db8::1 -all", "not IPv4", 0},
		{"v=spf1 ip6:192.0.2.1 -all", "not IPv6", 0},
		{"v=spf1 ip4:192.0.2.0/33", "bad prefix", 0},
		{"v=spf1 a/99", "bad CIDR", 0},
		{"v=spf1 all:x", "takes no argument", 0},
		{"v=spf1 foo:bar", "unknown mechanism", 0},
		{"v=spf1 redirect=a.example redirect=b.example", "appears twice", 0},
	} {
		s, err := ParseSPF(tc.rec)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseSPF(%q) = %v, want error containing %q", tc.rec, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseSPF(%q): %v", tc.rec, err)
		case err == nil:
			n := 0
			for _, term := range s.Terms {
				if term.Lookups() && (term.Name != "redirect" || s.Redirect() != "") {
					n++
				}
			}
			if n != tc.lookups {
				t.Errorf("ParseSPF(%q): %d lookup terms, want %d", tc.rec, n, tc.lookups)
			}
		}
	}
}

func TestCountSPFLookupsStopsOnLoops(t *testing.T) {
	recs := map[string]string{
		"a.example": "v=spf1 include:b.example -all",
		"b.example": "v=spf1 include:a.example -all",
	}
	fetch := func(_ context.Context, name string) ([]string, error) {
		if r, ok := recs[name]; ok {
			return []string{r, "unrelated"}, nil
		}
		return nil, errors.New("NXDOMAIN")
	}
	top, _ := ParseSPF("v=spf1 include:a.example include:gone.example -all")
	c := CountSPFLookups(context.Background(), top, fetch)
	if c.Lookups != 4 {
		t.Errorf("lookups = %d, want 4 (a, gone, b, a again)", c.Lookups)
	}
	if len(c.Problems) != 2 {
		t.Errorf("problems = %q, want the loop and the missing include", c.Problems)
	}
}

func TestParseDMARC(t *testing.T) {
	for _, tc := range []struct {
		rec, wantErr, policy string
	}{
		{"v=DMARC1; p=none; rua=mailto:d@example.nl", "", "none"},
		{"v=DMARC1;p=Reject;sp=quarantine;pct=20;adkim=s;aspf=r", "", "reject"},
		{"v=DMARC1; p=quarantine; ", "", "quarantine"},
		{"v=DMARC1; p=none; unknown=tag", "", "none"},
		{"v=DMARC1", "no p= tag", ""},
		{"p=none; v=DMARC1", "must start with v=DMARC1", ""},
		{"v=DMARC1; p=block", "not none, quarantine or reject", ""},
		{"v=DMARC1; p=none; pct=101", "pct", ""},
		{"v=DMARC1; p=none; p=reject", "appears twice", ""},
		{"v=DMARC1; p=none; rua=d@example.nl", "not a URI", ""},
		{"v=DMARC1; p=none; adkim=x", "not r or s", ""},
		{"v=DMARC1; p=none; novalue", "not tag=value", ""},
		{"", "empty", ""},
	} {
		d, err := ParseDMARC(tc.rec)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseDMARC(%q) = %v, want error containing %q", tc.rec, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseDMARC(%q): %v", tc.rec, err)
		case err == nil && d.Policy != tc.policy:
			t.Errorf("ParseDMARC(%q).Policy = %q, want %q", tc.rec, d.Policy, tc.policy)
		}
	}
}

// FuzzParseSPF checks that parsing never panics and that a parsed record
// prints back to something that parses to the same terms.
func FuzzParseSPF(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 include:spf.protection.outlook.com include:spf.solcon.nl ~all",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a/24 mx:example.com//64 ?all", "v=spf1 redirect=_spf.example.com exp=x.example",
		"v=spf1 exists:%{i}.%{h}._spf.example +a:x.example/16", "v=spf1 ptr:example.com -ptr"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		s, err := ParseSPF(rec)
		if err != nil {
			return
		}
		again, err := ParseSPF(s.String())
		if err != nil {
			t.Fatalf("%q parsed, but its String %q does not: %v", rec, s.String(), err)
		}
		if again.String() != s.String() {
			t.Fatalf("round trip changed %q to %q", s.String(), again.String())
		}
	})
}

// FuzzParseDMARC checks that parsing never panics and round-trips.
func FuzzParseDMARC(f *testing.F) {
	for _, s := range []string{"v=DMARC1; p=none; rua=mailto:d@example.nl", "v=DMARC1;p=reject;sp=none;pct=5;adkim=s;aspf=s;fo=1;ri=86400",
		"v=DMARC1; p=quarantine; rua=mailto:a@x.example,mailto:b@y.example; ruf=mailto:f@x.example", "v=DMARC1; p=none;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		d, err := ParseDMARC(rec)
		if err != nil {
			return
		}
		again, err := ParseDMARC(d.String())
		if err != nil {
			t.Fatalf("%q parsed, but its String %q does not: %v", rec, d.String(), err)
		}
		if fmt.Sprint(again) != fmt.Sprint(d) {
			t.Fatalf("round trip changed %v to %v", d, again)
		}
	})
}

func TestLoadARCKey(t *testing.T) {
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	p8, _ := x509.MarshalPKCS8PrivateKey(rk)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	e8, _ := x509.MarshalPKCS8PrivateKey(ek)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		file, kind, pub string
	}{
		{write("pkcs1.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), "rsa", base64.StdEncoding.EncodeToString(pkix)},
		{write("pkcs8.pem", "PRIVATE KEY", p8), "rsa", base64.StdEncoding.EncodeToString(pkix)},
		{write("ed.pem", "PRIVATE KEY", e8), "ed25519", base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey))},
	} {
		k, err := LoadARCKey(tc.file)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if k.KeyType != tc.kind || k.PublicKey != tc.pub {
			t.Errorf("%s: got %s %s…, want %s", filepath.Base(tc.file), k.KeyType, k.PublicKey[:12], tc.kind)
		}
	}
	if _, err := LoadARCKey(write("cert.pem", "CERTIFICATE", []byte{1})); err == nil || !strings.Contains(err.Error(), "no PEM private key") {
		t.Errorf("a file without a key: err = %v", err)
	}
}

func TestStatedExpectations(t *testing.T) {
	s := Stated{Domain: "Example.NL", OldMX: []string{"mx1.solcon.nl"}, TenantMX: "example-nl.mail.protection.outlook.com",
		OldSPF: "include:spf.solcon.nl", ForwardDomain: "fwd.example.nl", RelayHost: "relay.example.nl",
		DKIM1: "s1", DKIM2: "s2", VerificationTXT: "MS=ms1"}
	x, err := s.Expected(context.Background(), "example.nl.")
	if err != nil {
		t.Fatal(err)
	}
	if x.Source != "config" || x.TenantMX[0] != s.TenantMX || x.OldMX[0] != "mx1.solcon.nl" || x.DKIM2 != "s2" || x.RelayHost != "relay.example.nl" || x.ARC != nil {
		t.Errorf("Expected = %+v", x)
	}
	other, _ := s.Expected(context.Background(), "other.example")
	if len(other.TenantMX) != 0 || other.RelayHost != "relay.example.nl" {
		t.Errorf("another domain got the configured domain's values: %+v", other)
	}
	s.ARCKeyFile, s.ARCDomain, s.ARCSelector = filepath.Join(t.TempDir(), "missing.pem"), "example.nl", "arc"
	if _, err := s.Expected(context.Background(), "example.nl"); err == nil || !strings.Contains(err.Error(), "arc.key_file") {
		t.Errorf("missing ARC key: err = %v", err)
	}
}

type tenantStub struct {
	recs       TenantRecords
	s1, s2     string
	recErr     error
	dkimErr    error
	recsAsked  int
	dkimsAsked int
}

func (s *tenantStub) DomainRecords(context.Context, string) (TenantRecords, error) {
	s.recsAsked++
	return s.recs, s.recErr
}

func (s *tenantStub) DKIMSelectors(context.Context, string) (string, string, error) {
	s.dkimsAsked++
	return s.s1, s.s2, s.dkimErr
}

// TestFromTenant: what the tenant says overrides what was typed; what it
// leaves empty keeps the typed value; a tenant that cannot answer is an
// error naming the service, never a quiet fallback.
func TestFromTenant(t *testing.T) {
	base := Stated{Domain: "example.nl", OldMX: []string{"mx1.solcon.nl"}, TenantMX: "typo.mail.protection.outlook.com",
		OldSPF: "include:spf.solcon.nl", DKIM1: "typed1", DKIM2: "typed2", VerificationTXT: "MS=typed"}
	tests := []struct {
		name    string
		stub    tenantStub
		want    Expected
		wantErr string
	}{
		{name: "tenant wins", stub: tenantStub{recs: TenantRecords{MX: []string{"example-nl.c-v1.mx.microsoft"}, VerificationTXT: "MS=ms1"}, s1: "selector1-x", s2: "selector2-x"},
			want: Expected{Source: "graph", TenantMX: []string{"example-nl.c-v1.mx.microsoft"}, VerificationTXT: "MS=ms1", DKIM1: "selector1-x", DKIM2: "selector2-x"}},
		{name: "tenant silent", stub: tenantStub{},
			want: Expected{Source: "graph", TenantMX: []string{"typo.mail.protection.outlook.com"}, VerificationTXT: "MS=typed", DKIM1: "typed1", DKIM2: "typed2"}},
		{name: "graph fails", stub: tenantStub{recErr: errors.New("403")}, wantErr: "expected records from Microsoft 365: 403"},
		{name: "exchange fails", stub: tenantStub{dkimErr: errors.New("401")}, wantErr: "DKIM selectors from Exchange Online: 401"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.stub
			got, err := FromTenant{Base: base, Domains: &st, DKIM: &st}.Expected(context.Background(), "example.nl")
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != tc.want.Source || !slices.Equal(got.TenantMX, tc.want.TenantMX) || got.VerificationTXT != tc.want.VerificationTXT ||
				got.DKIM1 != tc.want.DKIM1 || got.DKIM2 != tc.want.DKIM2 {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if len(got.OldMX) != 1 || got.OldSPF != "include:spf.solcon.nl" {
				t.Errorf("typed-only values lost: %+v", got)
			}
			if st.recsAsked != 1 || st.dkimsAsked != 1 {
				t.Errorf("asked Graph %d, Exchange %d times", st.recsAsked, st.dkimsAsked)
			}
		})
	}
}
