// SPDX-License-Identifier: MIT

package dnstest

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const zone = `
example.org.               SOA   ns.example.org. hostmaster.example.org. 1 3600 600 86400 300
example.org.               TXT   "v=spf1 -all"
example.org.               MX    10 mx.example.org.
mx.example.org.            A     192.0.2.25
sel._domainkey.example.org. TXT  "v=DKIM1; p=" "second string"
alias.example.org.         CNAME mx.example.org.
big.example.org.           TXT   "` + "%BIG%" + `"
`

func bigZone() string {
	// Several 255-byte strings make a TXT answer that cannot fit 512 bytes of UDP.
	s := strings.Repeat("a", 255)
	return strings.Replace(zone, `"%BIG%"`, strings.Repeat(`"`+s+`" `, 8), 1)
}

func TestServerAnswers(t *testing.T) {
	s := Start(t, bigZone())
	tests := []struct {
		name, qname string
		qtype       uint16
		rcode       int
		answers     int
		aa, soa     bool
	}{
		{"txt", "example.org.", dns.TypeTXT, dns.RcodeSuccess, 1, true, false},
		{"case-insensitive", "EXAMPLE.org.", dns.TypeTXT, dns.RcodeSuccess, 1, true, false},
		{"nodata", "example.org.", dns.TypeAAAA, dns.RcodeSuccess, 0, true, true},
		{"empty non-terminal is nodata", "_domainkey.example.org.", dns.TypeTXT, dns.RcodeSuccess, 0, true, true},
		{"nxdomain", "nope.example.org.", dns.TypeTXT, dns.RcodeNameError, 0, true, true},
		{"nxdomain outside any zone", "example.com.", dns.TypeA, dns.RcodeNameError, 0, true, false},
		{"cname followed", "alias.example.org.", dns.TypeA, dns.RcodeSuccess, 2, true, false},
	}
	for _, tc := range tests {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				c := &dns.Client{Net: proto, Timeout: 30 * time.Second}
				m := new(dns.Msg)
				m.SetQuestion(tc.qname, tc.qtype)
				r, _, err := c.Exchange(m, s.Addr())
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != tc.rcode || len(r.Answer) != tc.answers || r.Authoritative != tc.aa {
					t.Fatalf("rcode=%d answers=%d aa=%v, want %d %d %v:\n%v", r.Rcode, len(r.Answer), r.Authoritative, tc.rcode, tc.answers, tc.aa, r)
				}
				if tc.soa && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
					t.Errorf("negative answer without the zone's SOA in authority: %v", r.Ns)
				}
			})
		}
	}
}

func TestTruncatedOverUDP(t *testing.T) {
	s := Start(t, bigZone())
	m := new(dns.Msg)
	m.SetQuestion("big.example.org.", dns.TypeTXT)
	r, _, err := (&dns.Client{Net: "udp", Timeout: 30 * time.Second}).Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated {
		t.Fatalf("a 2 KB answer over 512-byte UDP came back untruncated")
	}
	// The Go resolver retries truncated answers over TCP, on the same port.
	txt, err := s.Resolver().LookupTXT(context.Background(), "big.example.org.")
	if err != nil || len(txt) != 1 || len(txt[0]) != 8*255 {
		t.Fatalf("LookupTXT = %d records, %v", len(txt), err)
	}
}

func TestResolver(t *testing.T) {
	s := Start(t, zone)
	ctx := context.Background()
	r := s.Resolver()

	txt, err := r.LookupTXT(ctx, "sel._domainkey.example.org.")
	if err != nil || !slices.Equal(txt, []string{"v=DKIM1; p=second string"}) {
		t.Errorf("LookupTXT = %q, %v", txt, err)
	}
	mx, err := r.LookupMX(ctx, "example.org.")
	if err != nil || len(mx) != 1 || mx[0].Host != "mx.example.org." {
		t.Errorf("LookupMX = %v, %v", mx, err)
	}
	for _, name := range []string{"nope.example.org.", "_domainkey.example.org."} {
		_, err = r.LookupTXT(ctx, name)
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("LookupTXT(%s) error = %v, want not found", name, err)
		}
	}
	if got := s.Queries(); len(got) < 4 || got[0].Name != "sel._domainkey.example.org." {
		t.Errorf("Queries() = %v", got)
	}
}

func TestSilent(t *testing.T) {
	s := Start(t, zone, Silent())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Resolver().LookupTXT(ctx, "example.org.")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout {
		t.Fatalf("error = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("lookup took %v, not bounded by the context", d)
	}
	if len(s.Queries()) == 0 {
		t.Error("silent server saw no query")
	}
}

func TestBadZoneFailsTest(t *testing.T) {
	ft := &fakeTB{TB: t}
	func() {
		defer func() { recover() }() // Fatalf in fakeTB panics to stop Start like runtime.Goexit would
		Start(ft, "example.org. IN TXT")
	}()
	if !ft.failed {
		t.Fatal("a zone that does not parse did not fail the test")
	}
}

type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Fatalf(string, ...any) { f.failed = true; panic("fatal") }

func TestRcodeAndCount(t *testing.T) {
	s := Start(t, zone, Rcode("broken.example.org", dns.RcodeServerFailure))
	c := &dns.Client{Timeout: 30 * time.Second}
	for _, qname := range []string{"broken.example.org.", "BROKEN.example.org.", "example.org."} {
		m := new(dns.Msg)
		m.SetQuestion(qname, dns.TypeTXT)
		r, _, err := c.Exchange(m, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		want := dns.RcodeServerFailure
		if qname == "example.org." {
			want = dns.RcodeSuccess
		}
		if r.Rcode != want || (want != dns.RcodeSuccess && len(r.Answer) != 0) {
			t.Errorf("%s: rcode %s, %d answers; want %s", qname, dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[want])
		}
	}
	if n := s.Count("broken.example.org", dns.TypeTXT); n != 2 {
		t.Errorf("Count(broken.example.org, TXT) = %d, want 2", n)
	}
	if n := s.Count("example.org.", dns.TypeA); n != 0 {
		t.Errorf("Count(example.org., A) = %d, want 0", n)
	}
}

func TestHold(t *testing.T) {
	release := make(chan struct{})
	s := Start(t, zone, Hold(release))
	done := make(chan error, 1)
	go func() {
		_, err := s.Resolver().LookupTXT(context.Background(), "example.org.")
		done <- err
	}()
	for s.Count("example.org.", dns.TypeTXT) == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("answered before release: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A signed zone's answers carry their RRSIGs only for a query with the DO
// bit, and not at all from a server told to ignore it.
func TestServerDNSSEC(t *testing.T) {
	k, err := NewKey("example.org.", dns.ECDSAP256SHA256)
	if err != nil {
		t.Fatal(err)
	}
	a, err := dns.NewRR("www.example.org. 300 IN A 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	soa, err := dns.NewRR("example.org. 300 IN SOA ns.example.org. h.example.org. 1 3600 600 86400 300")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	signed, err := k.SignAll([]dns.RR{soa, a, k.DNSKEY}, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(signed) != 6 {
		t.Fatalf("SignAll made %d records, want 3 and 3 signatures", len(signed))
	}
	for _, rr := range signed[3:] {
		sig := rr.(*dns.RRSIG)
		var set []dns.RR
		for _, r := range signed[:3] {
			if r.Header().Rrtype == sig.TypeCovered {
				set = append(set, r)
			}
		}
		if err := sig.Verify(k.DNSKEY, set); err != nil {
			t.Errorf("signature over %s does not verify: %v", dns.TypeToString[sig.TypeCovered], err)
		}
	}

	plain := Start(t, Text(signed))
	blind := Start(t, Text(signed), IgnoreDO())
	tests := []struct {
		name         string
		srv          *Server
		qname        string
		do           bool
		answer, auth int // records in the answer and authority sections
	}{
		{"with DO", plain, "www.example.org.", true, 2, 0},
		{"without DO", plain, "www.example.org.", false, 1, 0},
		{"negative answer with DO", plain, "nope.example.org.", true, 0, 2},
		{"server ignoring DO", blind, "www.example.org.", true, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, dns.TypeA)
			if tc.do {
				m.SetEdns0(1232, true)
			}
			r, _, err := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, tc.srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Answer) != tc.answer || len(r.Ns) != tc.auth {
				t.Fatalf("answer %d, authority %d records, want %d and %d:\n%v", len(r.Answer), len(r.Ns), tc.answer, tc.auth, r)
			}
		})
	}
}
