// SPDX-License-Identifier: MIT

package dane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/internal/testca"
	"github.com/miekg/dns"
)

// The tests build a signed DNS tree shaped like Microsoft's: a root, the
// TLD microsoft. and the zone mx.microsoft. holding the tenant host, served
// by an in-process server on loopback that answers like a recursive
// resolver would (every zone from one place, RRSIGs when asked with DO).

const (
	host   = "contoso-com.j-v1.mx.microsoft."
	tlsaAt = "_25._tcp." + host
)

// Keys are made once per test binary: RSA keys take a while to generate,
// and a key is only data.
var (
	keysOnce sync.Once
	keys     map[string]*dnstest.Key
	keysErr  error
)

func key(t testing.TB, name string) *dnstest.Key {
	t.Helper()
	keysOnce.Do(func() {
		keys = map[string]*dnstest.Key{}
		for _, k := range []struct {
			name string
			zone string
			alg  uint8
		}{
			{"root", ".", dns.RSASHA256}, // as the real root
			{"tld", "microsoft.", dns.ED25519},
			{"mx", "mx.microsoft.", dns.ECDSAP256SHA256},
			{"mx-other", "mx.microsoft.", dns.ECDSAP256SHA256}, // for a wrong DS
			{"mx-sha1", "mx.microsoft.", dns.RSASHA1},
			{"other", "other.", dns.ECDSAP256SHA256},
			{"root-other", ".", dns.ECDSAP256SHA256}, // an anchor that is not the root's
		} {
			keys[k.name], keysErr = dnstest.NewKey(k.zone, k.alg)
			if keysErr != nil {
				return
			}
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	k, ok := keys[name]
	if !ok {
		t.Fatalf("no test key %q", name)
	}
	return k
}

// zone is one zone of the tree.
type zone struct {
	name string
	key  *dnstest.Key // nil: an unsigned zone
	// dsKey is the key whose DS the parent publishes; nil: none (with key
	// set, that makes an island of security, which validates as unsigned).
	dsKey *dnstest.Key
	// extra keys are published (DNSKEY, and DS in the parent) but sign
	// nothing unless a test makes them.
	extra       []*dnstest.Key
	rrs         []dns.RR
	from, until time.Time // signature validity
}

type world struct {
	t      *testing.T
	zones  []*zone
	tamper []func([]dns.RR) []dns.RR
	opts   []dnstest.Option
}

// newWorld makes the signed tree with the host's A and AAAA records in it;
// tests add TLSA records and break things before serve.
func newWorld(t *testing.T) *world {
	t.Helper()
	now := time.Now()
	w := &world{t: t}
	for _, z := range []struct{ name, key string }{
		{".", "root"}, {"microsoft.", "tld"}, {"mx.microsoft.", "mx"},
	} {
		k := key(t, z.key)
		w.zones = append(w.zones, &zone{
			name: z.name, key: k, dsKey: k,
			rrs:  []dns.RR{rr(t, z.name+" 3600 IN SOA ns."+strings.TrimPrefix(z.name, ".")+" hostmaster. 1 3600 600 86400 300")},
			from: now.Add(-time.Hour), until: now.Add(24 * time.Hour),
		})
	}
	w.add(host+" 300 IN A 127.0.0.1", host+" 300 IN AAAA ::1")
	return w
}

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("record %q: %v", s, err)
	}
	return r
}

func (w *world) zone(name string) *zone {
	for _, z := range w.zones {
		if z.name == name {
			return z
		}
	}
	w.t.Fatalf("no zone %s", name)
	return nil
}

// add puts records into the zone that encloses them most closely.
func (w *world) add(records ...string) {
	for _, s := range records {
		r := rr(w.t, s)
		var best *zone
		for _, z := range w.zones {
			if dns.IsSubDomain(z.name, r.Header().Name) && (best == nil || dns.CountLabel(z.name) > dns.CountLabel(best.name)) {
				best = z
			}
		}
		best.rrs = append(best.rrs, r)
	}
}

// addZone adds a zone (signed with k unless nil, its DS published unless k is nil).
func (w *world) addZone(name string, k *dnstest.Key) *zone {
	now := time.Now()
	z := &zone{name: name, key: k, dsKey: k, from: now.Add(-time.Hour), until: now.Add(24 * time.Hour),
		rrs: []dns.RR{rr(w.t, name+" 3600 IN SOA ns."+name+" hostmaster. 1 3600 600 86400 300")}}
	w.zones = append(w.zones, z)
	return z
}

func (w *world) parent(c *zone) *zone {
	var best *zone
	for _, z := range w.zones {
		if z != c && dns.IsSubDomain(z.name, c.name) && (best == nil || dns.CountLabel(z.name) > dns.CountLabel(best.name)) {
			best = z
		}
	}
	return best
}

// records signs every zone and returns the whole tree, tampered with.
func (w *world) records() []dns.RR {
	var all []dns.RR
	for _, z := range w.zones {
		rrs := append([]dns.RR(nil), z.rrs...)
		for _, c := range w.zones {
			if w.parent(c) != z || c.dsKey == nil {
				continue
			}
			for _, k := range append([]*dnstest.Key{c.dsKey}, c.extra...) {
				ds := k.DS()
				ds.Hdr.Name = c.name
				rrs = append(rrs, ds)
			}
		}
		if z.key != nil {
			rrs = append(rrs, z.key.DNSKEY)
			for _, k := range z.extra {
				rrs = append(rrs, k.DNSKEY)
			}
			var err error
			if rrs, err = z.key.SignAll(rrs, z.from, z.until); err != nil {
				w.t.Fatal(err)
			}
		}
		all = append(all, rrs...)
	}
	for _, f := range w.tamper {
		all = f(all)
	}
	return all
}

// serve starts the DNS server and returns a Resolver that asks it, trusting
// the root key.
func (w *world) serve() (*Resolver, *dnstest.Server) {
	w.t.Helper()
	srv := dnstest.Start(w.t, dnstest.Text(w.records()), w.opts...)
	r, err := New(Options{Server: srv.Addr(), Anchors: anchorsFor(w.t, key(w.t, "root")), Timeout: 30 * time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	return r, srv
}

func anchorsFor(t testing.TB, k *dnstest.Key) *TrustAnchors {
	t.Helper()
	a, err := ParseTrustAnchors("test anchor", []byte(k.DS().String()))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Tampering, as an attacker on the path or a broken signer would.

func isSigOver(r dns.RR, owner string, covered uint16) (*dns.RRSIG, bool) {
	sig, ok := r.(*dns.RRSIG)
	return sig, ok && strings.EqualFold(sig.Hdr.Name, owner) && sig.TypeCovered == covered
}

func stripSigs(owner string, covered uint16) func([]dns.RR) []dns.RR {
	return func(rrs []dns.RR) []dns.RR {
		var out []dns.RR
		for _, r := range rrs {
			if _, ok := isSigOver(r, owner, covered); !ok {
				out = append(out, r)
			}
		}
		return out
	}
}

func corruptSigs(owner string, covered uint16) func([]dns.RR) []dns.RR {
	return func(rrs []dns.RR) []dns.RR {
		for _, r := range rrs {
			if sig, ok := isSigOver(r, owner, covered); ok {
				b, _ := base64.StdEncoding.DecodeString(sig.Signature)
				b[len(b)/2] ^= 0x55
				sig.Signature = base64.StdEncoding.EncodeToString(b)
			}
		}
		return rrs
	}
}

// resign replaces the signatures over one RRset by signatures of k.
func resign(t testing.TB, k *dnstest.Key, owner string, covered uint16) func([]dns.RR) []dns.RR {
	return resignWindow(t, k, owner, covered, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// TLS on loopback with certificates from the test CA.

func newCA(t testing.TB) *testca.CA {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// tlsServer accepts connections and completes handshakes with cert until
// the test ends, and returns its address.
func tlsServer(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				c.(*tls.Conn).Handshake()
			})
		}
	})
	return ln.Addr().String()
}

// handshake dials addr and runs a TLS handshake with cfg.
func handshake(addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// tlsaFor returns the presentation of a TLSA record for cert.
func tlsaFor(t testing.TB, owner string, usage, selector, mtype uint8, cert []byte) string {
	t.Helper()
	c, err := x509.ParseCertificate(cert)
	if err != nil {
		t.Fatal(err)
	}
	rec := &dns.TLSA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 300}}
	if err := rec.Sign(int(usage), int(selector), int(mtype), c); err != nil {
		t.Fatal(err)
	}
	return rec.String()
}
