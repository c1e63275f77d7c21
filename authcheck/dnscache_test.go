// SPDX-License-Identifier: MIT

package authcheck

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/internal/dnstest"
)

// cacheZone has a zone whose SOA TTL (300) is above its MINIMUM (120), one
// whose SOA TTL (60) is below its MINIMUM (600), and names under no SOA.
var cacheZone = `
$TTL 300
cache.test.            SOA   ns.cache.test. hostmaster.cache.test. 1 3600 600 86400 120
short.cache.test.   60 TXT   "v=spf1 -all"
alias.cache.test.   30 CNAME short.cache.test.
long.cache.test. 86400 TXT   "v=spf1 ?all"
zero.cache.test.     0 TXT   "v=spf1 ~all"
big.cache.test.        TXT   ` + strings.Repeat(`"`+strings.Repeat("b", 255)+`" `, 8) + `
odd.cache.test.        TXT   "say \"hi\"" "back\\slash" "caf\195\169\000"
mx.cache.test.         MX    20 two.cache.test.
mx.cache.test.         MX    10 one.cache.test.
one.cache.test.        A     192.0.2.1
one.cache.test.        AAAA  2001:db8::1
four.cache.test.       A     192.0.2.4
low.test.           60 SOA   ns.low.test. hostmaster.low.test. 1 3600 600 86400 600
low.test.              TXT   "v=spf1 -all"
mail.low.test.         A     192.0.2.5
sel._domainkey.cache.test. TXT "v=DKIM1; p="
leaf.nosoa.test.       TXT   "v=spf1 -all"
`

// clock is the cache's time, moved by the test instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testCache(s *dnstest.Server) (*Cache, *clock) {
	clk := &clock{t: time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)}
	c := NewCache(s.Addr())
	c.now = clk.now
	return c, clk
}

// errKind names what callers tell apart in a lookup error.
func errKind(err error) string {
	var de *net.DNSError
	switch {
	case err == nil:
		return "ok"
	case !errors.As(err, &de):
		return "not a *net.DNSError: " + err.Error()
	case de.IsNotFound:
		return "not found"
	case de.IsTimeout:
		return "timeout"
	case de.IsTemporary:
		return "temporary"
	}
	return "permanent"
}

func TestCacheTTL(t *testing.T) {
	s := dnstest.Start(t, cacheZone, dnstest.Rcode("servfail.cache.test", dns.RcodeServerFailure))
	tests := []struct {
		name   string
		qname  string
		maxTTL time.Duration
		kind   string
		keep   time.Duration // how long the answer is reused; 0 for not at all
	}{
		{name: "positive", qname: "short.cache.test.", kind: "ok", keep: 60 * time.Second},
		{name: "positive through a CNAME: the chain's minimum", qname: "alias.cache.test.", kind: "ok", keep: 30 * time.Second},
		{name: "TTL capped by default", qname: "long.cache.test.", kind: "ok", keep: DefaultMaxTTL},
		{name: "TTL capped by MaxTTL", qname: "long.cache.test.", maxTTL: time.Minute, kind: "ok", keep: time.Minute},
		{name: "TTL 0", qname: "zero.cache.test.", kind: "ok"},
		{name: "NXDOMAIN: SOA MINIMUM below its TTL", qname: "nope.cache.test.", kind: "not found", keep: 120 * time.Second},
		{name: "NODATA: SOA TTL below MINIMUM", qname: "mail.low.test.", kind: "not found", keep: 60 * time.Second},
		{name: "NODATA on an empty non-terminal", qname: "_domainkey.cache.test.", kind: "not found", keep: 120 * time.Second},
		{name: "negative capped by MaxTTL", qname: "nope.cache.test.", maxTTL: 10 * time.Second, kind: "not found", keep: 10 * time.Second},
		{name: "NXDOMAIN without SOA", qname: "nope.nosoa.test.", kind: "not found"},
		{name: "NODATA without SOA", qname: "nosoa.test.", kind: "not found"},
		{name: "SERVFAIL", qname: "servfail.cache.test.", kind: "temporary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, clk := testCache(s)
			c.MaxTTL = tc.maxTTL
			before := s.Count(tc.qname, dns.TypeTXT)
			queries := func() int { return s.Count(tc.qname, dns.TypeTXT) - before }
			lookup := func(when string, wantQueries int) {
				t.Helper()
				_, err := c.LookupTXT(context.Background(), tc.qname)
				if k := errKind(err); k != tc.kind {
					t.Fatalf("%s: error %v is %s, want %s", when, err, k, tc.kind)
				}
				if n := queries(); n != wantQueries {
					t.Fatalf("%s: %d queries in all, want %d", when, n, wantQueries)
				}
			}
			per := queriesPerLookup(c, tc.kind)
			lookup("first lookup", per)
			if tc.keep == 0 {
				lookup("second lookup", 2*per)
				return
			}
			lookup("second lookup", 1)
			clk.advance(tc.keep - time.Second)
			lookup("just before expiry", 1)
			clk.advance(time.Second)
			lookup("at expiry", 2)
		})
	}
}

// queriesPerLookup is how many queries one uncached lookup makes: failures
// are retried, as net.Resolver retries them.
func queriesPerLookup(c *Cache, kind string) int {
	if kind == "temporary" {
		rc := c.config()
		return rc.attempts * len(rc.servers)
	}
	return 1
}

// TestCacheSameAsResolver: callers see the same values and the same kinds
// of error from the cache as from net.Resolver, cold and warm.
func TestCacheSameAsResolver(t *testing.T) {
	s := dnstest.Start(t, cacheZone, dnstest.Rcode("servfail.cache.test", dns.RcodeServerFailure))
	ctx := context.Background()
	c, _ := testCache(s)
	r := s.Resolver()
	type result struct {
		values []string
		kind   string
	}
	strs := func(v []string, err error) result { return result{v, errKind(err)} }
	mxs := func(v []*net.MX, err error) result {
		var out []string
		for _, mx := range v {
			out = append(out, mx.Host)
		}
		return result{out, errKind(err)}
	}
	ips := func(v []net.IPAddr, err error) result {
		var out []string
		for _, a := range v {
			out = append(out, a.String())
		}
		slices.Sort(out)
		return result{out, errKind(err)}
	}
	tests := []struct {
		name string
		do   func(l Lookup) result
	}{
		{"TXT", func(l Lookup) result { return strs(l.LookupTXT(ctx, "short.cache.test.")) }},
		{"TXT escapes and bytes", func(l Lookup) result { return strs(l.LookupTXT(ctx, "odd.cache.test.")) }},
		{"TXT NXDOMAIN", func(l Lookup) result { return strs(l.LookupTXT(ctx, "nope.cache.test.")) }},
		{"TXT NODATA", func(l Lookup) result { return strs(l.LookupTXT(ctx, "one.cache.test.")) }},
		{"TXT SERVFAIL", func(l Lookup) result { return strs(l.LookupTXT(ctx, "servfail.cache.test.")) }},
		{"TXT invalid name", func(l Lookup) result { return strs(l.LookupTXT(ctx, "a b.cache.test.")) }},
		{"MX sorted", func(l Lookup) result { return mxs(l.LookupMX(ctx, "mx.cache.test.")) }},
		{"MX NODATA", func(l Lookup) result { return mxs(l.LookupMX(ctx, "short.cache.test.")) }},
		{"IP A and AAAA", func(l Lookup) result { return ips(l.LookupIPAddr(ctx, "one.cache.test.")) }},
		{"IP A only", func(l Lookup) result { return ips(l.LookupIPAddr(ctx, "four.cache.test.")) }},
		{"IP NXDOMAIN", func(l Lookup) result { return ips(l.LookupIPAddr(ctx, "nope.cache.test.")) }},
		{"IP SERVFAIL", func(l Lookup) result { return ips(l.LookupIPAddr(ctx, "servfail.cache.test.")) }},
		{"IP literal", func(l Lookup) result { return ips(l.LookupIPAddr(ctx, "192.0.2.9")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.do(r)
			for _, pass := range []string{"cold", "warm"} {
				if got := tc.do(c); !slices.Equal(got.values, want.values) || got.kind != want.kind {
					t.Errorf("%s: cache %q, %s; net.Resolver %q, %s", pass, got.values, got.kind, want.values, want.kind)
				}
			}
		})
	}
}

func TestCacheTCPFallback(t *testing.T) {
	s := dnstest.Start(t, cacheZone)
	c, _ := testCache(s)
	for range 2 {
		txt, err := c.LookupTXT(context.Background(), "big.cache.test.")
		if err != nil || len(txt) != 1 || len(txt[0]) != 8*255 {
			t.Fatalf("LookupTXT = %d records, %v", len(txt), err)
		}
	}
	// One truncated answer over UDP, the whole one over TCP, then the cache.
	if n := s.Count("big.cache.test.", dns.TypeTXT); n != 2 {
		t.Errorf("%d queries, want 2", n)
	}
}

// TestCacheCoalesces: lookups of one name while its query is out wait for
// that query. The name's answer is not cacheable, so without coalescing
// each lookup would ask.
func TestCacheCoalesces(t *testing.T) {
	const n = 8
	release := make(chan struct{})
	s := dnstest.Start(t, cacheZone, dnstest.Hold(release))
	c, _ := testCache(s)
	const name = "nope.nosoa.test."
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.LookupTXT(context.Background(), name)
			errs <- err
		}()
	}
	// Answer only once every lookup is waiting, so none can come late and
	// find the flight over.
	deadline := time.Now().Add(30 * time.Second) // a failsafe: they all join
	for joined := 0; joined < n-1; {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("after 30s, %d of %d lookups wait on the first one's query (%d queries)", joined, n-1, s.Count(name, dns.TypeTXT))
		}
		time.Sleep(time.Millisecond)
		c.mu.Lock()
		if f := c.flights[cacheKey{name, dns.TypeTXT}]; f != nil {
			joined = f.waiters
		}
		c.mu.Unlock()
	}
	close(release)
	for range n {
		if err := <-errs; errKind(err) != "not found" {
			t.Errorf("error %v, want not found", err)
		}
	}
	if q := s.Count(name, dns.TypeTXT); q != 1 {
		t.Errorf("%d lookups at once made %d queries, want 1", n, q)
	}
}

func TestCacheBounded(t *testing.T) {
	s := dnstest.Start(t, cacheZone)
	c, _ := testCache(s)
	c.MaxEntries = 3
	names := []string{"short.cache.test.", "long.cache.test.", "odd.cache.test.", "low.test.", "leaf.nosoa.test."}
	for _, name := range names {
		if _, err := c.LookupTXT(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.entries) != 3 || c.order.Len() != 3 {
		t.Fatalf("%d entries (%d in order), want 3", len(c.entries), c.order.Len())
	}
	for _, tc := range []struct {
		name    string
		queries int
	}{{names[4], 1}, {names[0], 2}} { // the newest stays, the oldest went
		c.LookupTXT(context.Background(), tc.name)
		if q := s.Count(tc.name, dns.TypeTXT); q != tc.queries {
			t.Errorf("%s: %d queries, want %d", tc.name, q, tc.queries)
		}
	}
}

// TestCacheCallerDeadline: a caller's deadline ends its wait with a timeout,
// even while the query it waits on is still out.
func TestCacheCallerDeadline(t *testing.T) {
	s := dnstest.Start(t, "", dnstest.Silent())
	c, _ := testCache(s)
	for range 2 { // the second joins the first's flight
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		_, err := c.LookupTXT(ctx, "example.org.")
		cancel()
		if errKind(err) != "timeout" || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want a timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("lookup took %v with a 100ms deadline", d)
		}
	}
	if q := s.Count("example.org.", dns.TypeTXT); q != 1 {
		t.Errorf("%d queries, want 1", q)
	}
}

func TestNewCacheResolvConf(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.53\nnameserver ::1\noptions timeout:1 attempts:3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCache("", conf)
	if want, rc := []string{"127.0.0.53:53", "[::1]:53"}, c.config(); !slices.Equal(rc.servers, want) || rc.timeout != time.Second || rc.attempts != 3 {
		t.Errorf("servers %q timeout %v attempts %d; want %q 1s 3", rc.servers, rc.timeout, rc.attempts, want)
	}
	// Without the file, lookups go to the system's resolver as before, uncached.
	if c := newCache("", filepath.Join(dir, "missing")); len(c.config().servers) != 0 || c.fallback == nil || c.fallback.Dial != nil {
		t.Errorf("without resolv.conf: servers %q, fallback %+v", c.config().servers, c.fallback)
	}
}

// TestCacheResolvConfChanges: a changed resolv.conf (DHCP, a VPN) is read
// again within confCheckEvery, as net.Resolver does; a broken or missing one
// leaves the servers as they were.
func TestCacheResolvConfChanges(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	write := func(text string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(conf, mod, mod)
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	write("nameserver 192.0.2.1\n", t0)
	c := newCache("", conf)
	now := t0
	c.now, c.confChecked = func() time.Time { return now }, now
	servers := func() []string { return c.config().servers }
	if got := servers(); !slices.Equal(got, []string{"192.0.2.1:53"}) {
		t.Fatalf("servers %q", got)
	}
	write("nameserver 192.0.2.2\nnameserver 192.0.2.3\n", t0.Add(time.Minute))
	if got := servers(); !slices.Equal(got, []string{"192.0.2.1:53"}) {
		t.Errorf("read again before confCheckEvery: %q", got)
	}
	now = now.Add(confCheckEvery)
	if got := servers(); !slices.Equal(got, []string{"192.0.2.2:53", "192.0.2.3:53"}) {
		t.Errorf("after the change: %q", got)
	}
	os.Remove(conf)
	now = now.Add(confCheckEvery)
	if got := servers(); !slices.Equal(got, []string{"192.0.2.2:53", "192.0.2.3:53"}) {
		t.Errorf("after the file went away: %q, want the last servers kept", got)
	}
	// A file that appears later is used from then on.
	c2 := newCache("", filepath.Join(dir, "later"))
	c2.now, c2.confChecked = func() time.Time { return now }, now
	if len(c2.config().servers) != 0 {
		t.Fatal("servers without a file")
	}
	os.WriteFile(filepath.Join(dir, "later"), []byte("nameserver 192.0.2.9\n"), 0o644)
	now = now.Add(confCheckEvery)
	if got := c2.config().servers; !slices.Equal(got, []string{"192.0.2.9:53"}) {
		t.Errorf("file written after start: %q", got)
	}
}
