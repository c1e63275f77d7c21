// SPDX-License-Identifier: MIT

package dane

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/miekg/dns"
)

// A digest that matches nothing: these tests are about the DNS side.
const someDigest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func rename(from, to string) func([]dns.RR) []dns.RR {
	return func(rrs []dns.RR) []dns.RR {
		for _, r := range rrs {
			if strings.EqualFold(r.Header().Name, from) {
				r.Header().Name = to
			}
		}
		return rrs
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	ee := tlsaAt + " 300 IN TLSA 3 1 1 " + someDigest
	const alias = "alias.mx.microsoft."
	tests := []struct {
		name    string
		host    string // default host
		setup   func(t *testing.T, w *world)
		anchors func(t *testing.T) *TrustAnchors // default: the root key's DS
		verdict Verdict
		reason  string // in Err()
		usable  int
		base    string
		names   []string
	}{
		{
			name:    "signed TLSA record",
			setup:   func(t *testing.T, w *world) { w.add(ee) },
			verdict: Secure, usable: 1, base: "contoso-com.j-v1.mx.microsoft",
			names: []string{"contoso-com.j-v1.mx.microsoft"},
		},
		{
			name:    "no TLSA records",
			verdict: Insecure, reason: "no TLSA records at _25._tcp.contoso-com.j-v1.mx.microsoft",
		},
		{
			name:    "host does not exist",
			host:    "nope.mx.microsoft.",
			verdict: Insecure, reason: "nope.mx.microsoft has no A or AAAA records",
		},
		{
			name: "only records SMTP does not use",
			setup: func(t *testing.T, w *world) {
				w.add(tlsaAt+" 300 IN TLSA 1 1 1 "+someDigest, // PKIX-EE
					tlsaAt+" 300 IN TLSA 0 0 1 "+someDigest, // PKIX-TA
					tlsaAt+" 300 IN TLSA 3 1 1 0123456789",  // a digest of the wrong length
					tlsaAt+" 300 IN TLSA 3 2 1 "+someDigest, // unknown selector
					tlsaAt+" 300 IN TLSA 3 1 9 "+someDigest) // unknown matching type
			},
			verdict: Secure, reason: "5 TLSA record(s) at _25._tcp.contoso-com.j-v1.mx.microsoft, none usable",
			base: "contoso-com.j-v1.mx.microsoft", names: []string{"contoso-com.j-v1.mx.microsoft"},
		},
		{
			name: "unsigned zone",
			setup: func(t *testing.T, w *world) {
				z := w.zone("mx.microsoft.")
				z.key, z.dsKey = nil, nil
				w.add(ee)
			},
			verdict: Insecure, reason: "mx.microsoft. is an unsigned zone",
		},
		{
			name: "signed zone without a DS in its parent",
			setup: func(t *testing.T, w *world) {
				w.zone("mx.microsoft.").dsKey = nil
				w.add(ee)
			},
			verdict: Insecure, reason: "mx.microsoft. is an unsigned zone",
		},
		{
			name: "zone signed with a refused algorithm (RSASHA1)",
			setup: func(t *testing.T, w *world) {
				z := w.zone("mx.microsoft.")
				z.key, z.dsKey = key(t, "mx-sha1"), key(t, "mx-sha1")
				w.add(ee)
			},
			verdict: Insecure, reason: "mx.microsoft. is signed only with refused algorithms (algorithm RSASHA1 (5)",
		},
		{
			name: "TLSA signed only with a refused algorithm in a zone that has a good key too",
			setup: func(t *testing.T, w *world) {
				w.zone("mx.microsoft.").extra = []*dnstest.Key{key(t, "mx-sha1")}
				w.add(ee)
				w.tamper = append(w.tamper, resign(t, key(t, "mx-sha1"), tlsaAt, dns.TypeTLSA))
			},
			verdict: Bogus, reason: "TLSA records of _25._tcp.contoso-com.j-v1.mx.microsoft.: RRSIG algorithm RSASHA1 (5) is refused",
		},
		{
			name: "wrong DS in the parent",
			setup: func(t *testing.T, w *world) {
				w.zone("mx.microsoft.").dsKey = key(t, "mx-other")
				w.add(ee)
			},
			verdict: Bogus, reason: "no DNSKEY of mx.microsoft. matches DS key tag",
		},
		{
			// RFC 5011 §2.1: a revoked key signs nothing any more, even
			// when its DS is still in the parent.
			name: "zone whose only key is revoked",
			setup: func(t *testing.T, w *world) {
				k, err := dnstest.NewKey("mx.microsoft.", dns.ECDSAP256SHA256)
				if err != nil {
					t.Fatal(err)
				}
				k.DNSKEY.Flags |= dns.REVOKE
				z := w.zone("mx.microsoft.")
				z.key, z.dsKey = k, k
				w.add(ee)
			},
			verdict: Bogus, reason: "no DNSKEY of mx.microsoft. matches DS key tag",
		},
		{
			name: "DS signature stripped",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, stripSigs("mx.microsoft.", dns.TypeDS))
			},
			verdict: Bogus, reason: "DS records of mx.microsoft.: no RRSIG",
		},
		{
			name: "DNSKEY signature corrupted",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, corruptSigs("mx.microsoft.", dns.TypeDNSKEY))
			},
			verdict: Bogus, reason: "DNSKEY records of mx.microsoft.: RRSIG (key tag",
		},
		{
			name: "TLSA signature stripped",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, stripSigs(tlsaAt, dns.TypeTLSA))
			},
			verdict: Bogus, reason: "TLSA records of _25._tcp.contoso-com.j-v1.mx.microsoft.: no RRSIG",
		},
		{
			name: "TLSA signature corrupted",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, corruptSigs(tlsaAt, dns.TypeTLSA))
			},
			verdict: Bogus, reason: "does not verify",
		},
		{
			name: "TLSA signature expired",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, resignWindow(t, key(t, "mx"), tlsaAt, dns.TypeTLSA, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
			},
			verdict: Bogus, reason: "TLSA records of _25._tcp.contoso-com.j-v1.mx.microsoft.: RRSIG valid from",
		},
		{
			name: "TLSA signature not yet valid",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, resignWindow(t, key(t, "mx"), tlsaAt, dns.TypeTLSA, time.Now().Add(time.Hour), time.Now().Add(48*time.Hour)))
			},
			verdict: Bogus, reason: "RRSIG valid from",
		},
		{
			name: "TLSA signed by the parent zone's key",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, resign(t, key(t, "tld"), tlsaAt, dns.TypeTLSA))
			},
			verdict: Bogus, reason: "RRSIG by microsoft., not by the zone mx.microsoft.",
		},
		{
			name: "wildcard-expanded TLSA record",
			setup: func(t *testing.T, w *world) {
				w.add("*._tcp." + host + " 300 IN TLSA 3 1 1 " + someDigest)
				w.tamper = append(w.tamper, rename("*._tcp."+host, tlsaAt))
			},
			verdict: Bogus, reason: "wildcard-expanded",
		},
		{
			name: "address signature stripped",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.tamper = append(w.tamper, stripSigs(host, dns.TypeA))
			},
			verdict: Bogus, reason: "address records of contoso-com.j-v1.mx.microsoft: A records of " + host + ": no RRSIG",
		},
		{
			name: "resolver that strips DNSSEC records",
			setup: func(t *testing.T, w *world) {
				w.add(ee)
				w.opts = append(w.opts, dnstest.IgnoreDO())
			},
			verdict: Bogus, reason: "does the resolver pass DNSSEC records",
		},
		{
			name:    "trust anchor that is not the root's key",
			setup:   func(t *testing.T, w *world) { w.add(ee) },
			anchors: func(t *testing.T) *TrustAnchors { return anchorsFor(t, key(t, "root-other")) },
			verdict: Bogus, reason: "trust anchor .: no DNSKEY of . matches DS key tag",
		},
		{
			name:    "no trust anchor for the host",
			setup:   func(t *testing.T, w *world) { w.add(ee) },
			anchors: func(t *testing.T) *TrustAnchors { return anchorsFor(t, key(t, "other")) },
			verdict: Insecure, reason: "no trust anchor covers " + host,
		},
		{
			// A wrong root key does not matter when a deeper anchor covers the host.
			name:  "the closest trust anchor is used",
			setup: func(t *testing.T, w *world) { w.add(ee) },
			anchors: func(t *testing.T) *TrustAnchors {
				a, err := ParseTrustAnchors("test", []byte(key(t, "root-other").DS().String()+"\n"+key(t, "tld").DNSKEY.String()))
				if err != nil {
					t.Fatal(err)
				}
				return a
			},
			verdict: Secure, usable: 1, base: "contoso-com.j-v1.mx.microsoft",
			names: []string{"contoso-com.j-v1.mx.microsoft"},
		},
		{
			// RFC 7672 §2.2.2: the end of the chain first.
			name: "CNAME to a host with TLSA records",
			host: alias,
			setup: func(t *testing.T, w *world) {
				w.add(alias+" 300 IN CNAME "+host, ee, "_25._tcp."+alias+" 300 IN TLSA 3 1 1 "+someDigest)
			},
			verdict: Secure, usable: 1, base: "contoso-com.j-v1.mx.microsoft",
			names: []string{"alias.mx.microsoft", "contoso-com.j-v1.mx.microsoft"},
		},
		{
			name: "CNAME with TLSA records at the alias only",
			host: alias,
			setup: func(t *testing.T, w *world) {
				w.add(alias+" 300 IN CNAME "+host, "_25._tcp."+alias+" 300 IN TLSA 3 1 1 "+someDigest)
			},
			verdict: Secure, usable: 1, base: "alias.mx.microsoft", names: []string{"alias.mx.microsoft"},
		},
		{
			name: "CNAME signature stripped",
			host: alias,
			setup: func(t *testing.T, w *world) {
				w.add(alias+" 300 IN CNAME "+host, ee)
				w.tamper = append(w.tamper, stripSigs(alias, dns.TypeCNAME))
			},
			verdict: Bogus, reason: "CNAME at alias.mx.microsoft.: CNAME records of alias.mx.microsoft.: no RRSIG",
		},
		{
			name: "CNAME into an unsigned zone",
			host: alias,
			setup: func(t *testing.T, w *world) {
				w.addZone("other.", nil)
				w.add(alias+" 300 IN CNAME mx.other.", "mx.other. 300 IN A 127.0.0.1", "_25._tcp.mx.other. 300 IN TLSA 3 1 1 "+someDigest)
			},
			verdict: Insecure, reason: "address records of alias.mx.microsoft are not signed: other. is an unsigned zone",
		},
		{
			name: "CNAME loop",
			host: alias,
			setup: func(t *testing.T, w *world) {
				w.add(alias+" 300 IN CNAME alias2.mx.microsoft.", "alias2.mx.microsoft. 300 IN CNAME "+alias)
			},
			verdict: Bogus, reason: "CNAME loop at " + alias,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			if tc.setup != nil {
				tc.setup(t, w)
			}
			r, _ := w.serve()
			if tc.anchors != nil {
				r.anchors = tc.anchors(t)
			}
			h := host
			if tc.host != "" {
				h = tc.host
			}
			res, err := r.Lookup(context.Background(), h, 25)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if res.Verdict != tc.verdict {
				t.Errorf("verdict %s (%s), want %s", res.Verdict, res.Reason, tc.verdict)
			}
			err = res.Err()
			switch {
			case tc.reason == "" && err != nil:
				t.Errorf("Err() = %v, want nil", err)
			case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)):
				t.Errorf("Err() = %v, want it to say %q", err, tc.reason)
			}
			if len(res.Records) != tc.usable {
				t.Errorf("%d usable records, want %d", len(res.Records), tc.usable)
			}
			if res.BaseDomain != tc.base || !slices.Equal(res.Names, tc.names) {
				t.Errorf("base %q names %q, want %q %q", res.BaseDomain, res.Names, tc.base, tc.names)
			}
			if tc.verdict == Secure && !slices.Equal(res.Addrs, []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}) {
				t.Errorf("addresses %v", res.Addrs)
			}
		})
	}
}

func resignWindow(t testing.TB, k *dnstest.Key, owner string, covered uint16, from, until time.Time) func([]dns.RR) []dns.RR {
	return func(rrs []dns.RR) []dns.RR {
		var set, out []dns.RR
		for _, r := range rrs {
			if _, ok := isSigOver(r, owner, covered); ok {
				continue
			}
			out = append(out, r)
			if strings.EqualFold(r.Header().Name, owner) && r.Header().Rrtype == covered {
				set = append(set, r)
			}
		}
		sig, err := k.Sign(set, from, until)
		if err != nil {
			t.Fatal(err)
		}
		return append(out, sig)
	}
}

// A resolver that cannot answer is an error (a temporary failure), not a verdict.
func TestLookupErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []dnstest.Option
		host string
		port int
		want string
	}{
		{"SERVFAIL for the TLSA records", []dnstest.Option{dnstest.Rcode(tlsaAt, dns.RcodeServerFailure)}, host, 25, "SERVFAIL"},
		{"REFUSED for the root keys", []dnstest.Option{dnstest.Rcode(".", dns.RcodeRefused)}, host, 25, "REFUSED"},
		{"an address", nil, "192.0.2.1", 25, "is an address"},
		{"not a name", nil, "a b.example", 25, "is not a host name"},
		{"bad port", nil, host, 0, "port 0 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.add(tlsaAt + " 300 IN TLSA 3 1 1 " + someDigest)
			w.opts = tc.opts
			r, _ := w.serve()
			res, err := r.Lookup(context.Background(), tc.host, tc.port)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Lookup = %+v, %v; want an error saying %q", res, err, tc.want)
			}
		})
	}
	t.Run("silent resolver", func(t *testing.T) {
		t.Parallel()
		srv := dnstest.Start(t, "", dnstest.Silent())
		r, err := New(Options{Server: srv.Addr(), Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Lookup(context.Background(), host, 25); err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Lookup: %v, want a timeout", err)
		}
	})
}

// Results are reused until their TTL runs out, the cache stays within its
// bound, and concurrent lookups of one host share one walk.
func TestLookupCache(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.add(tlsaAt+" 120 IN TLSA 3 1 1 "+someDigest, "b.mx.microsoft. 300 IN A 127.0.0.2", "c.mx.microsoft. 300 IN A 127.0.0.3")
	r, srv := w.serve()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	r.now = clock
	r.size = 2
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if res, err := r.Lookup(ctx, host, 25); err != nil || res.Err() != nil {
				t.Errorf("Lookup: %v %v", err, res.Err())
			}
		})
	}
	wg.Wait()
	tlsaQueries := func() int { return srv.Count(tlsaAt, dns.TypeTLSA) }
	if n := tlsaQueries(); n != 1 {
		t.Fatalf("4 concurrent lookups asked for the TLSA records %d times, want 1", n)
	}
	res, _ := r.Lookup(ctx, host, 25)
	if n := tlsaQueries(); n != 1 {
		t.Fatalf("a fresh result was looked up again (%d queries)", n)
	}
	if want := now.Add(120 * time.Second); !res.Expires.Equal(want) {
		t.Errorf("expires %v, want the TLSA TTL later, %v", res.Expires, want)
	}
	advance(121 * time.Second)
	if _, err := r.Lookup(ctx, host, 25); err != nil {
		t.Fatal(err)
	}
	if n := tlsaQueries(); n != 2 {
		t.Fatalf("an expired result was not looked up again (%d queries)", n)
	}

	// Not Secure: kept for BadTTL (30s), not for the records' TTL.
	bad, err := r.Lookup(ctx, "b.mx.microsoft.", 25)
	if err != nil || bad.Verdict != Insecure {
		t.Fatalf("b: %+v %v", bad, err)
	}
	if want := now.Add(30 * time.Second); !bad.Expires.Equal(want) {
		t.Errorf("an insecure result expires %v, want %v", bad.Expires, want)
	}
	if _, err := r.Lookup(ctx, "c.mx.microsoft.", 25); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n > 2 {
		t.Errorf("cache holds %d results, bound is 2", n)
	}
}

// A lookup whose caller gives up ends at once, and another caller waiting
// for the same lookup asks again instead of inheriting the cancellation.
func TestLookupCancelled(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.add(tlsaAt + " 300 IN TLSA 3 1 1 " + someDigest)
	release := make(chan struct{})
	w.opts = []dnstest.Option{dnstest.Hold(release)}
	r, srv := w.serve()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() {
		_, err := r.Lookup(ctx, host, 25)
		leader <- err
	}()
	waitFor("the first query", func() bool { return len(srv.Queries()) > 0 })
	type outcome struct {
		res *Result
		err error
	}
	waiter := make(chan outcome, 1)
	go func() {
		res, err := r.Lookup(context.Background(), host, 25)
		waiter <- outcome{res, err}
	}()
	waitFor("the second caller to wait", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.waiters == 1 })

	cancel()
	select {
	case err := <-leader:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled lookup: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second): // the held query is never answered before this
		t.Fatal("a cancelled lookup waited for its held query")
	}
	close(release)
	released = true
	select {
	case o := <-waiter:
		if o.err != nil || o.res.Err() != nil {
			t.Fatalf("waiting caller: %v / %v", o.err, o.res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting caller got no result")
	}
}

func TestNewAndSystemServer(t *testing.T) {
	for _, tc := range []struct {
		server, want string
	}{
		{"", "no resolver address"},
		{"127.0.0.1", "missing port"},
	} {
		if _, err := New(Options{Server: tc.server}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q): %v, want %q", tc.server, err, tc.want)
		}
	}
	r, err := New(Options{Server: "127.0.0.1:53"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.anchors.Zones(), []string{"."}) || len(r.anchors.ds["."]) != 2 {
		t.Errorf("default anchors %v, want the root's", r.anchors.Zones())
	}

	dir := t.TempDir()
	for _, tc := range []struct {
		conf, want, err string
	}{
		{"# stub\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions edns0\n", "127.0.0.53:53", ""},
		{"nameserver ::1\n", "[::1]:53", ""},
		{"search example.net\n", "", "names no name server"},
	} {
		path := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(path, []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := SystemServer(path)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %q, %v; want an error saying %q", tc.conf, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.conf, got, err, tc.want)
		}
	}
}
