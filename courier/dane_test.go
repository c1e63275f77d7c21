// SPDX-License-Identifier: MIT

package courier

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/dane"
	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/standin"
)

const daneHost = "contoso-com.j-v1.mx.microsoft."

// signedTree serves a DNSSEC-signed tree shaped like Microsoft's (the root,
// microsoft., mx.microsoft.) holding the tenant host's A record and extra
// records, tampered with as the test says, and returns a DANE resolver that
// asks it and trusts its root key.
func signedTree(t *testing.T, extra []string, tamper func([]dns.RR) []dns.RR) *dane.Resolver {
	t.Helper()
	now := time.Now()
	type zone struct {
		name string
		key  *dnstest.Key
		rrs  []dns.RR
	}
	var zones []*zone
	for _, name := range []string{".", "microsoft.", "mx.microsoft."} {
		k, err := dnstest.NewKey(name, dns.ECDSAP256SHA256)
		if err != nil {
			t.Fatal(err)
		}
		zones = append(zones, &zone{name: name, key: k, rrs: []dns.RR{rr(t, name+" 3600 IN SOA ns."+strings.TrimPrefix(name, ".")+" hostmaster. 1 3600 600 86400 300")}})
	}
	zones[2].rrs = append(zones[2].rrs, rr(t, daneHost+" 300 IN A 127.0.0.1"))
	for _, s := range extra {
		zones[2].rrs = append(zones[2].rrs, rr(t, s))
	}
	var all []dns.RR
	for i, z := range zones {
		rrs := append(z.rrs, z.key.DNSKEY)
		if i+1 < len(zones) {
			ds := zones[i+1].key.DS()
			ds.Hdr.Name = zones[i+1].name
			rrs = append(rrs, ds)
		}
		signed, err := z.key.SignAll(rrs, now.Add(-time.Hour), now.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, signed...)
	}
	if tamper != nil {
		all = tamper(all)
	}
	srv := dnstest.Start(t, dnstest.Text(all))
	anchors, err := dane.ParseTrustAnchors("test anchor", []byte(zones[0].key.DS().String()))
	if err != nil {
		t.Fatal(err)
	}
	r, err := dane.New(dane.Options{Server: srv.Addr(), Anchors: anchors, Timeout: 30 * time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return r
}

// tlsaEE is a DANE-EE(3) SPKI(1) SHA-256(1) record for cert.
func tlsaEE(t *testing.T, port int, cert tls.Certificate) string {
	t.Helper()
	c, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	rec := &dns.TLSA{Hdr: dns.RR_Header{Name: fmt.Sprintf("_%d._tcp.%s", port, daneHost), Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 300}}
	if err := rec.Sign(3, 1, 1, c); err != nil {
		t.Fatal(err)
	}
	return rec.String()
}

// TestDANEDelivery: under target.tls: dane the tenant host's certificate is
// checked against its DNSSEC-validated TLSA records. Matching records
// deliver; a record for another certificate, a stripped signature or a
// target without STARTTLS defer the message, and nothing reaches the target
// without DANE.
func TestDANEDelivery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	leaf := f.tlsFor("mx.other.test") // DANE-EE: the name and the CA do not matter
	other := f.tlsFor("mx.other.test")
	for _, tc := range []struct {
		name    string
		noTLS   bool
		record  func(port int) string
		tamper  func(port int) func([]dns.RR) []dns.RR
		deliver bool
		reason  string
	}{
		{name: "matching TLSA", record: func(p int) string { return tlsaEE(t, p, leaf.Certificates[0]) }, deliver: true},
		{name: "TLSA for another certificate", record: func(p int) string { return tlsaEE(t, p, other.Certificates[0]) }, reason: "DANE"},
		{name: "TLSA signature stripped", record: func(p int) string { return tlsaEE(t, p, leaf.Certificates[0]) },
			tamper: func(p int) func([]dns.RR) []dns.RR {
				return func(rrs []dns.RR) []dns.RR {
					var out []dns.RR
					for _, r := range rrs {
						if sig, ok := r.(*dns.RRSIG); ok && sig.TypeCovered == dns.TypeTLSA {
							continue
						}
						out = append(out, r)
					}
					return out
				}
			}, reason: "bogus"},
		{name: "no TLSA records", reason: "insecure"},
		{name: "no STARTTLS", noTLS: true, record: func(p int) string { return tlsaEE(t, p, leaf.Certificates[0]) }, reason: "STARTTLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s *standin.Server
			if tc.noTLS {
				var err error
				if s, err = standin.Start(standin.Options{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
			} else {
				s = f.target(standin.Options{TLS: leaf})
			}
			var extra []string
			if tc.record != nil {
				extra = append(extra, tc.record(s.Port()))
			}
			var tamper func([]dns.RR) []dns.RR
			if tc.tamper != nil {
				tamper = tc.tamper(s.Port())
			}
			cfg := f.config(s)
			cfg.Host, cfg.TLS, cfg.RootCAs = daneHost, TLSDane, nil
			cfg.DANE = signedTree(t, extra, tamper)
			res := send(t, f.tenant(cfg), Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test")
			if tc.deliver {
				if !accepted(res) {
					t.Fatalf("not delivered: %v", failure(res))
				}
				if m := waitMsgs(t, s, 1)[0]; !m.TLS {
					t.Error("delivered without TLS")
				}
				return
			}
			e := failure(res)
			if e == nil || !e.Temporary || !strings.Contains(strings.ToLower(e.Reply()), strings.ToLower(tc.reason)) {
				t.Errorf("outcome %v, want a temporary failure saying %q", e, tc.reason)
			}
			if s.Count() != 0 {
				t.Error("a message reached the target without DANE")
			}
		})
	}
}

// TestDANENoUsableAddress: the validated lookup gives the host's addresses,
// and when none of them is of the family target.ip_family allows (here the
// signed tree has only an A record and the relay wants IPv6), the message
// is deferred saying so; nothing falls back to an unvalidated lookup.
func TestDANENoUsableAddress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	leaf := f.tlsFor("mx.other.test")
	s := f.target(standin.Options{TLS: leaf})
	cfg := f.config(s)
	cfg.Host, cfg.TLS, cfg.RootCAs, cfg.IPFamily = daneHost, TLSDane, nil, FamilyIPv6
	cfg.DANE = signedTree(t, []string{tlsaEE(t, s.Port(), leaf.Certificates[0])}, nil)
	res := send(t, f.tenant(cfg), Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test")
	e := failure(res)
	if e == nil || !e.Temporary || !strings.Contains(e.Reply(), "no ipv6 address") {
		t.Errorf("outcome %v, want a temporary failure saying the host has no ipv6 address", e)
	}
	if s.Count() != 0 {
		t.Error("a message reached the target")
	}
}

// TestUnknownPolicyRefused: a TLS policy or address family the courier does
// not know is refused, not taken for one without checks; dane needs its
// resolver.
func TestUnknownPolicyRefused(t *testing.T) {
	t.Parallel()
	for _, cfg := range []TenantConfig{
		{Host: "tenant.test", TLS: "danish"},
		{Host: "tenant.test", TLS: TLSDane},
		{Host: "tenant.test", IPFamily: "ipv5"},
	} {
		if tn, err := NewTenant(cfg); err == nil {
			tn.Close()
			t.Errorf("%+v accepted", cfg)
		}
	}
}
