// SPDX-License-Identifier: MIT

package dnscheck

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/dnscheck/internal/authtest"
)

// fakeResolver stands in for the system resolver: the only thing a check
// asks it is who serves a zone and where those servers are.
type fakeResolver struct {
	ns    map[string][]string
	hosts map[string][]string
}

func (f *fakeResolver) LookupNS(_ context.Context, name string) ([]*net.NS, error) {
	names, ok := f.ns[strings.ToLower(dns.Fqdn(name))]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	var out []*net.NS
	for _, n := range names {
		out = append(out, &net.NS{Host: n})
	}
	return out, nil
}

func (f *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	a, ok := f.hosts[strings.ToLower(dns.Fqdn(host))]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return a, nil
}

const (
	ipParent = "127.0.0.10"
	ipNS1    = "127.0.0.11"
	ipNS2    = "127.0.0.12"
	ipExt    = "127.0.0.13"
)

const parentZone = `
@ SOA ns.nl. hostmaster.nl. 1 3600 600 86400 300
@ NS ns.nl.
example NS ns1.example.nl.
example NS ns2.example.nl.
`

// exampleZone is example.nl before the cutover, with every Microsoft 365
// record already in place and the MX still at the old host.
const exampleZone = `
@ SOA ns1 hostmaster 2026010101 3600 600 86400 300
@ NS ns1
@ NS ns2
ns1 A 127.0.0.11
ns2 A 127.0.0.12
@ 300 MX 10 mx1.solcon.nl.
@ TXT "v=spf1 include:spf.solcon.nl include:spf.protection.outlook.com -all"
@ TXT "MS=ms12345678"
selector1._domainkey CNAME selector1-example-nl._domainkey.example.onmicrosoft.com.
selector2._domainkey CNAME selector2-example-nl._domainkey.example.onmicrosoft.com.
autodiscover CNAME autodiscover.outlook.com.
_dmarc TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.nl"
fwd MX 10 relay.example.nl.
relay A 192.0.2.25
`

const outlookZone = `
@ SOA ns.ext.test. hostmaster.ext.test. 1 3600 600 86400 300
@ NS ns.ext.test.
spf.protection TXT "v=spf1 ip4:40.92.0.0/15 ip4:52.100.0.0/14 -all"
example-nl.mail.protection A 52.101.68.1
`

const solconZone = `
@ SOA ns.ext.test. hostmaster.ext.test. 1 3600 600 86400 300
@ NS ns.ext.test.
spf TXT "v=spf1 ip4:212.45.32.0/19 -all"
mx1 A 212.45.32.10
`

const mxMicrosoftZone = `
@ SOA ns.ext.test. hostmaster.ext.test. 1 3600 600 86400 300
@ NS ns.ext.test.
example-nl.j-v1 A 52.101.68.2
`

const reverseZone = `
@ SOA ns.ext.test. hostmaster.ext.test. 1 3600 600 86400 300
@ NS ns.ext.test.
25 PTR relay.example.nl.
`

// arcSeed makes the test ARC key the same on every run, so golden files
// can hold its public half.
var arcSeed = []byte("dualmx-dnscheck-test-arc-key-32b")

// world is a small internet on loopback: the nl. parent, two servers for
// example.nl, and one server for everything else.
type world struct {
	t        *testing.T
	port     int
	parent   *authtest.Zone
	zone     *authtest.Zone // served by ns1, and by ns2 unless replaced
	zone2    *authtest.Zone // what ns2 serves
	ext      []*authtest.Zone
	servers  map[string]*authtest.Server
	resolver *fakeResolver
	exp      Expected
	modes    map[string]authtest.Mode
	keys     *authtest.Keys
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, modes: map[string]authtest.Mode{}, servers: map[string]*authtest.Server{}}
	w.parent = authtest.NewZone(t, "nl.", parentZone)
	w.zone = authtest.NewZone(t, "example.nl.", exampleZone)
	w.zone2 = w.zone
	w.ext = []*authtest.Zone{
		authtest.NewZone(t, "outlook.com.", outlookZone),
		authtest.NewZone(t, "solcon.nl.", solconZone),
		authtest.NewZone(t, "mx.microsoft.", mxMicrosoftZone),
		authtest.NewZone(t, "2.0.192.in-addr.arpa.", reverseZone),
	}
	w.resolver = &fakeResolver{
		ns: map[string][]string{
			"nl.":                   {"ns.nl."},
			"example.nl.":           {"ns1.example.nl.", "ns2.example.nl."},
			"outlook.com.":          {"ns.ext.test."},
			"solcon.nl.":            {"ns.ext.test."},
			"mx.microsoft.":         {"ns.ext.test."},
			"2.0.192.in-addr.arpa.": {"ns.ext.test."},
		},
		hosts: map[string][]string{
			"ns.nl.":           {ipParent},
			"ns1.example.nl.":  {ipNS1},
			"ns2.example.nl.":  {ipNS2},
			"ns.ext.test.":     {ipExt},
			"relay.example.nl": {"192.0.2.25"},
		},
	}
	priv := ed25519.NewKeyFromSeed(arcSeed)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "arc.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	arc, err := LoadARCKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	arc.Domain, arc.Selector = "example.nl", "arc2026"
	w.zone.Add(t, `arc2026._domainkey TXT "`+arc.Record()+`"`)
	w.exp = Expected{
		Domain: "example.nl", Source: "test",
		OldMX:           []string{"mx1.solcon.nl"},
		TenantMX:        []string{"example-nl.mail.protection.outlook.com"},
		OldSPF:          "include:spf.solcon.nl",
		DKIM1:           "selector1-example-nl._domainkey.example.onmicrosoft.com",
		DKIM2:           "selector2-example-nl._domainkey.example.onmicrosoft.com",
		VerificationTXT: "MS=ms12345678",
		ForwardDomain:   "fwd.example.nl",
		RelayHost:       "relay.example.nl",
		ARC:             arc,
	}
	return w
}

// start runs the servers; call it after changing zones or modes.
func (w *world) start() {
	w.t.Helper()
	var servers []*authtest.Server
	w.port, servers = authtest.StartShared(w.t,
		authtest.Spec{IP: ipParent, Mode: w.modes["parent"], Zones: []*authtest.Zone{w.parent}},
		authtest.Spec{IP: ipNS1, Mode: w.modes["ns1"], Zones: []*authtest.Zone{w.zone}},
		authtest.Spec{IP: ipNS2, Mode: w.modes["ns2"], Zones: []*authtest.Zone{w.zone2}},
		authtest.Spec{IP: ipExt, Mode: w.modes["ext"], Zones: w.ext},
	)
	for i, name := range []string{"parent", "ns1", "ns2", "ext"} {
		w.servers[name] = servers[i]
	}
}

func (w *world) checker() *Checker {
	return &Checker{Resolver: w.resolver, Port: strconv.Itoa(w.port), QueryTimeout: 300 * time.Millisecond, Retries: 1,
		Now: func() time.Time { return testNow }}
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func (w *world) check(phase Phase) *Report {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := w.checker().Check(ctx, w.exp, phase)
	if err != nil {
		w.t.Fatalf("check: %v", err)
	}
	return r
}

// findings returns the findings of one check.
func findings(r *Report, check string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

// wantLevel fails unless the worst finding of check has level l and some
// finding of it mentions every one of words.
func wantLevel(t *testing.T, r *Report, check string, l Level, words ...string) {
	t.Helper()
	fs := findings(r, check)
	if got := r.Worst()[check]; got != l || len(fs) == 0 {
		t.Errorf("%s: worst level %v, want %v; findings:\n%s", check, got, l, dump(fs))
		return
	}
	for _, f := range fs {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(f.Message+" "+f.Publish+" "+f.Server, w)
		}
		if ok {
			return
		}
	}
	t.Errorf("%s: no finding mentions %q; findings:\n%s", check, words, dump(fs))
}

func dump(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.Level.String() + " " + f.Name + " " + f.Type + " @" + f.Server + ": " + f.Message + " | " + f.Publish + "\n")
	}
	return b.String()
}
