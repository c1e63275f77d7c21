// SPDX-License-Identifier: MIT

package authcheck

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Lookup is what the arrival checks ask of DNS: spf.DNSResolver's methods.
// *net.Resolver satisfies it, and so does *Cache.
type Lookup interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

const (
	// DefaultMaxTTL bounds how long an answer is reused when Cache.MaxTTL is
	// zero: a sender fixing a broken SPF record should not wait a day for us.
	DefaultMaxTTL = 5 * time.Minute
	// DefaultMaxEntries bounds the cache when Cache.MaxEntries is zero.
	DefaultMaxEntries = 10000
)

// Cache answers TXT, MX, A and AAAA lookups from memory for as long as their
// TTLs allow, and asks the server otherwise. Every message costs an SPF and a
// DMARC lookup, mostly for the same few sender domains; net.Resolver caches
// nothing and opens a socket per query.
//
// Errors have the shapes net.Resolver (with StrictErrors) gives, because the
// SPF, DMARC and DKIM libraries tell "none" from temperror by them: a
// *net.DNSError with IsNotFound for NXDOMAIN and NODATA, IsTemporary (and
// IsTimeout) for SERVFAIL, timeouts and unreachable servers.
type Cache struct {
	// MaxTTL caps every TTL; 0 means DefaultMaxTTL, below 0 keeps nothing.
	// Set it and MaxEntries before first use.
	MaxTTL     time.Duration
	MaxEntries int // 0 or below means DefaultMaxEntries

	conf atomic.Pointer[resolvConf]
	// confPath, when the servers come from resolv.conf, is read again
	// when it changes (DHCP, a VPN), looked at most every confCheckEvery,
	// as net.Resolver does.
	confPath    string
	confMu      sync.Mutex
	confChecked time.Time
	confStamp   fileStamp
	// fallback answers PTR lookups, which only the deprecated SPF ptr
	// mechanism makes, and everything when there are no servers to ask.
	fallback *net.Resolver
	now      func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*list.Element // of *cacheEntry
	order   *list.List                 // oldest first, for eviction
	flights map[cacheKey]*flight
}

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	rrs     []dns.RR      // records of the asked type; nil with err
	err     *net.DNSError // a not-found answer
	expires time.Time
}

// flight is one query on the wire; lookups of the same name while it is out
// wait for it instead of asking again.
type flight struct {
	done    chan struct{}
	rrs     []dns.RR
	err     *net.DNSError
	waiters int // lookups that joined after the first
}

// resolvConf is where and how the cache asks.
type resolvConf struct {
	servers  []string // host:port, asked in turn
	timeout  time.Duration
	attempts int
}

type fileStamp struct {
	mod  time.Time
	size int64
}

const confCheckEvery = 5 * time.Second

// config returns the current servers, reading resolv.conf again if it
// changed since it was last read.
func (c *Cache) config() *resolvConf {
	if c.confPath != "" {
		c.confMu.Lock()
		if now := c.now(); now.Sub(c.confChecked) >= confCheckEvery {
			c.confChecked = now
			c.loadConf()
		}
		c.confMu.Unlock()
	}
	return c.conf.Load()
}

// loadConf reads confPath if it changed; a file that cannot be read or
// parsed leaves the servers as they were. The caller holds confMu.
func (c *Cache) loadConf() {
	fi, err := os.Stat(c.confPath)
	if err != nil {
		return
	}
	stamp := fileStamp{fi.ModTime(), fi.Size()}
	if stamp == c.confStamp {
		return
	}
	cfg, err := dns.ClientConfigFromFile(c.confPath)
	if err != nil {
		return
	}
	rc := &resolvConf{timeout: 5 * time.Second, attempts: 2} // the resolv.conf defaults
	for _, s := range cfg.Servers {
		rc.servers = append(rc.servers, net.JoinHostPort(s, cfg.Port))
	}
	if cfg.Timeout > 0 {
		rc.timeout = time.Duration(cfg.Timeout) * time.Second
	}
	if cfg.Attempts > 0 {
		rc.attempts = cfg.Attempts
	}
	c.conf.Store(rc)
	c.confStamp = stamp
}

// NewCache returns a cache that asks server ("HOST:PORT"), or for "" the
// servers in /etc/resolv.conf. When that file cannot be read, it caches
// nothing and passes every lookup to NewResolver(server).
func NewCache(server string) *Cache { return newCache(server, "/etc/resolv.conf") }

func newCache(server, confPath string) *Cache {
	c := &Cache{
		fallback: NewResolver(server),
		now:      time.Now,
		entries:  map[cacheKey]*list.Element{},
		order:    list.New(),
		flights:  map[cacheKey]*flight{},
	}
	c.conf.Store(&resolvConf{timeout: 5 * time.Second, attempts: 2})
	if server != "" {
		c.conf.Store(&resolvConf{servers: []string{server}, timeout: 5 * time.Second, attempts: 2})
		return c
	}
	c.confPath = confPath
	c.confMu.Lock()
	c.confChecked = c.now()
	c.loadConf()
	c.confMu.Unlock()
	return c
}

// LookupTXT returns each TXT record's strings joined, as net.Resolver does.
func (c *Cache) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if len(c.config().servers) == 0 {
		return c.fallback.LookupTXT(ctx, name)
	}
	rrs, err := c.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	txts := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			txts = append(txts, unescape(strings.Join(t.Txt, "")))
		}
	}
	return txts, nil
}

// LookupMX returns the MX records sorted by preference. Like net.Resolver,
// it drops hosts that are not valid names and says so beside the rest.
func (c *Cache) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if len(c.config().servers) == 0 {
		return c.fallback.LookupMX(ctx, name)
	}
	rrs, err := c.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	mxs := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		if mx, ok := rr.(*dns.MX); ok && (validName(mx.Mx) || net.ParseIP(strings.TrimSuffix(mx.Mx, ".")) != nil) {
			mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	if len(mxs) != len(rrs) {
		return mxs, &net.DNSError{Err: "DNS response contained records which contain invalid names", Name: name}
	}
	return mxs, nil
}

// LookupIPAddr asks for A and AAAA at once. As with StrictErrors, a temporary
// failure of either half fails the whole: SPF must not see half an answer.
func (c *Cache) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IPAddr{{IP: ip}}, nil
	}
	if len(c.config().servers) == 0 {
		return c.fallback.LookupIPAddr(ctx, host)
	}
	a, aaaa := c.begin(ctx, host, dns.TypeA), c.begin(ctx, host, dns.TypeAAAA)
	rrsA, errA := a.wait(ctx)
	rrsAAAA, errAAAA := aaaa.wait(ctx)
	for _, err := range []*net.DNSError{errA, errAAAA} {
		if err != nil && (err.IsTemporary || err.IsTimeout) {
			return nil, err
		}
	}
	var addrs []net.IPAddr
	for _, rrs := range [][]dns.RR{rrsA, rrsAAAA} { // not append: the slices are the cache's
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *dns.A:
				addrs = append(addrs, net.IPAddr{IP: slices.Clone(rr.A)})
			case *dns.AAAA:
				addrs = append(addrs, net.IPAddr{IP: slices.Clone(rr.AAAA)})
			}
		}
	}
	switch {
	case len(addrs) > 0:
		return addrs, nil
	case errA != nil:
		return nil, errA
	case errAAAA != nil:
		return nil, errAAAA
	}
	return nil, notFound(host, "")
}

// LookupAddr is not cached; see Cache.fallback.
func (c *Cache) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return c.fallback.LookupAddr(ctx, addr)
}

func (c *Cache) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	rrs, err := c.begin(ctx, name, qtype).wait(ctx)
	if err != nil {
		return nil, err // not a typed nil: err is checked first
	}
	return rrs, nil
}

// pending is a lookup answered from the cache, or waiting on a flight.
type pending struct {
	name string
	rrs  []dns.RR
	err  *net.DNSError
	f    *flight
}

// begin answers from the cache, or joins or starts the flight for the name.
// The flight runs apart from ctx so that a caller giving up does not fail
// the others waiting on it, and a late answer is still kept for the next.
func (c *Cache) begin(ctx context.Context, name string, qtype uint16) pending {
	if !validName(name) {
		return pending{name: name, err: notFound(name, "")} // net.Resolver never asks for these
	}
	k := cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		e := el.Value.(*cacheEntry)
		if c.now().Before(e.expires) {
			return pending{name: name, rrs: e.rrs, err: e.err}
		}
		c.order.Remove(el)
		delete(c.entries, k)
	}
	if f, ok := c.flights[k]; ok {
		f.waiters++
		return pending{name: name, f: f}
	}
	f := &flight{done: make(chan struct{})}
	c.flights[k] = f
	go c.fly(context.WithoutCancel(ctx), k, f)
	return pending{name: name, f: f}
}

func (p pending) wait(ctx context.Context) ([]dns.RR, *net.DNSError) {
	if p.f == nil {
		return p.rrs, copyErr(p.err)
	}
	select {
	case <-p.f.done:
		return p.f.rrs, copyErr(p.f.err)
	case <-ctx.Done():
		// The words net.Resolver uses, so logs read the same.
		err := &net.DNSError{Err: "operation was canceled", Name: p.name, IsTemporary: true, UnwrapErr: ctx.Err()}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err.Err, err.IsTimeout = "i/o timeout", true
		}
		return nil, err
	}
}

// copyErr hands each caller its own error, as a shared one could be altered.
func copyErr(err *net.DNSError) *net.DNSError {
	if err == nil {
		return nil
	}
	e := *err
	return &e
}

func (c *Cache) fly(ctx context.Context, k cacheKey, f *flight) {
	rrs, ttl, err := c.resolve(ctx, k.name, k.qtype)
	c.mu.Lock()
	delete(c.flights, k)
	if ttl = min(ttl, cmp.Or(c.MaxTTL, DefaultMaxTTL)); ttl > 0 {
		c.store(&cacheEntry{key: k, rrs: rrs, err: err, expires: c.now().Add(ttl)})
	}
	f.rrs, f.err = rrs, err
	c.mu.Unlock()
	close(f.done)
}

// store adds e, evicting the oldest entries to make room. TTLs are capped,
// so the oldest are also the likeliest to have expired.
func (c *Cache) store(e *cacheEntry) {
	if el, ok := c.entries[e.key]; ok {
		c.order.Remove(el)
	}
	limit := c.MaxEntries
	if limit <= 0 {
		limit = DefaultMaxEntries
	}
	for len(c.entries) >= limit {
		oldest := c.order.Front()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cacheEntry).key)
	}
	c.entries[e.key] = c.order.PushBack(e)
}

// resolve asks the servers in turn, as net.Resolver does: a network error,
// SERVFAIL or other refusal moves on to the next server or attempt, while
// an answer or a negative answer ends the search. The duration is how long
// the result may be reused, 0 for not at all.
func (c *Cache) resolve(ctx context.Context, name string, qtype uint16) ([]dns.RR, time.Duration, *net.DNSError) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false) // the size net.Resolver advertises; larger answers come over TCP
	var last *net.DNSError
	rc := c.config()
	for range rc.attempts {
		for _, server := range rc.servers {
			m, err := c.exchange(ctx, q, server, rc.timeout)
			if err != nil {
				var ne net.Error
				timeout := errors.As(err, &ne) && ne.Timeout()
				last = &net.DNSError{Err: err.Error(), Name: name, Server: server, IsTimeout: timeout, IsTemporary: true}
				continue
			}
			switch {
			case m.Rcode == dns.RcodeServerFailure:
				last = &net.DNSError{Err: "server misbehaving", Name: name, Server: server, IsTemporary: true}
				continue
			case m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError:
				last = &net.DNSError{Err: "server misbehaving", Name: name, Server: server}
				continue
			case m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0 && !m.Authoritative && !m.RecursionAvailable && len(m.Extra) == 0:
				last = &net.DNSError{Err: "lame referral", Name: name, Server: server}
				continue
			}
			var rrs []dns.RR
			for _, rr := range m.Answer {
				if rr.Header().Rrtype == qtype {
					rrs = append(rrs, rr)
				}
			}
			if len(rrs) > 0 && m.Rcode == dns.RcodeSuccess {
				return rrs, minTTL(m.Answer), nil
			}
			// RFC 2308 §5: a negative answer lives as long as the SOA that
			// came with it allows, and without one it is not kept at all.
			return nil, min(minTTL(m.Answer), negativeTTL(m)), notFound(name, server)
		}
	}
	return nil, 0, last
}

// exchange asks one server over UDP, and again over TCP if the answer was
// truncated: a truncated answer is incomplete and must not be read as NODATA.
func (c *Cache) exchange(ctx context.Context, q *dns.Msg, server string, timeout time.Duration) (*dns.Msg, error) {
	m, _, err := (&dns.Client{Net: "udp", Timeout: timeout}).ExchangeContext(ctx, q, server)
	if err == nil && m.Truncated {
		m, _, err = (&dns.Client{Net: "tcp", Timeout: timeout}).ExchangeContext(ctx, q, server)
	}
	switch {
	case err != nil:
		return nil, err
	case m.Truncated:
		return nil, errors.New("answer truncated over TCP")
	case len(m.Question) != 1 || m.Question[0].Qtype != q.Question[0].Qtype || !strings.EqualFold(m.Question[0].Name, q.Question[0].Name):
		// Keeping an answer to another question would poison the cache.
		return nil, errors.New("answer to a different question")
	}
	return m, nil
}

func minTTL(rrs []dns.RR) time.Duration {
	ttl := uint32(1<<32 - 1)
	for _, rr := range rrs {
		ttl = min(ttl, rr.Header().Ttl)
	}
	return time.Duration(ttl) * time.Second
}

// negativeTTL is min(SOA TTL, SOA MINIMUM) from the authority section, or 0.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return 0
}

func notFound(name, server string) *net.DNSError {
	return &net.DNSError{Err: "no such host", Name: name, Server: server, IsNotFound: true}
}

// unescape undoes miekg/dns's presentation escapes (\" \\ \DDD), so that a
// TXT string comes back as the bytes that were published, as from net.Resolver.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	digit := func(i int) bool { return i < len(s) && '0' <= s[i] && s[i] <= '9' }
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			if digit(i) && digit(i+1) && digit(i+2) {
				b = append(b, (s[i]-'0')*100+(s[i+1]-'0')*10+(s[i+2]-'0'))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

// validName is net's isDomainName: letters, digits, '-' and '_' in labels
// of 1 to 63 bytes, not all numeric. net.Resolver answers "no such host"
// for anything else without asking, and SPF macros can build such names
// from a sender's local part.
func validName(s string) bool {
	if s == "." {
		return true
	}
	if l := len(s); l == 0 || l > 254 || l == 254 && s[l-1] != '.' {
		return false
	}
	last, partlen, nonNumeric := byte('.'), 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_':
			nonNumeric = true
			partlen++
		case '0' <= c && c <= '9':
			partlen++
		case c == '-':
			if last == '.' {
				return false
			}
			nonNumeric = true
			partlen++
		case c == '.':
			if last == '.' || last == '-' || partlen > 63 || partlen == 0 {
				return false
			}
			partlen = 0
		default:
			return false
		}
		last = c
	}
	return last != '-' && partlen <= 63 && nonNumeric
}
