// SPDX-License-Identifier: MIT

// Package dane authenticates an SMTP server by its DNSSEC-signed TLSA records
// (DANE, RFC 6698, RFC 7671, and for SMTP RFC 7672). A Resolver looks up the
// host's addresses and its _PORT._tcp.HOST TLSA records and validates the
// answers itself from a trust anchor (the IANA root keys unless configured
// otherwise); the Result says whether they are Secure, and its TLSConfig
// checks the server's certificate chain against the records during the
// handshake.
//
// The package serves a policy in which the administrator asserted DANE for
// the host: anything but a Secure result with at least one usable record is
// an error (Result.Err), to be treated as a temporary failure, never as a
// reason to send in plain text or with an unchecked certificate.
//
// CNAMEs are followed as RFC 7672 §2.2.2 describes, each link validated on
// its own: when the host's address records are reached through a chain of
// CNAMEs that is secure at every step, TLSA records are looked up at the
// end of the chain first and then at the host itself; that name (the "TLSA
// base domain") is what SNI carries, and it and the host are the names a
// DANE-TA certificate may carry. A chain with an unsigned link makes the
// result Insecure (refused), which is stricter than RFC 7672's opportunistic
// reading, fitting a host for which DANE was asserted.
package dane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Verdict is the DNSSEC status of a lookup. The zero value is none of them
// and is refused like Bogus.
type Verdict int

const (
	// Secure: every answer the result rests on was validated from the trust anchor.
	Secure Verdict = iota + 1
	// Insecure: no TLSA records, or records from an unsigned zone (or one
	// signed only with refused algorithms), or no trust anchor for the name.
	// DANE does not apply; for a host asserted to have DANE that is a refusal.
	Insecure
	// Bogus: validation failed: a bad, expired or missing signature in a
	// signed zone, a DNSKEY that matches no DS, and the like.
	Bogus
)

func (v Verdict) String() string {
	switch v {
	case Secure:
		return "secure"
	case Insecure:
		return "insecure"
	case Bogus:
		return "bogus"
	}
	return "unknown"
}

// Result is the outcome of one lookup.
type Result struct {
	Host string // the host looked up, lower case, without the final dot
	Port int

	Verdict Verdict
	// Reason says why the verdict is not Secure; "" when it is.
	Reason string

	// BaseDomain is the name the TLSA records were found under (the host,
	// or the end of its CNAME chain), without the final dot.
	BaseDomain string
	// Names are the reference identifiers a DANE-TA certificate may carry:
	// the host and the base domain.
	Names []string
	// Records are the usable TLSA records (DANE-TA or DANE-EE, known selector
	// and matching type, after digest agility); Unusable counts the others.
	Records  []*dns.TLSA
	Unusable int
	// Addrs are the host's addresses, validated like the records.
	Addrs []netip.Addr

	// Expires is when the result should be looked up again: the smallest
	// TTL it rests on, or sooner when a signature expires.
	Expires time.Time

	now func() time.Time
}

// Error is a lookup whose result does not allow DANE to authenticate the host.
type Error struct {
	Host    string
	Verdict Verdict
	Reason  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("DANE for %s: %s: %s", e.Host, e.Verdict, e.Reason)
}

// Err returns nil when the result is Secure with at least one usable TLSA
// record, and an *Error saying why not otherwise. Under the dane policy a
// non-nil Err is a temporary delivery failure.
func (r *Result) Err() error {
	switch {
	case r.Verdict == Secure && len(r.Records) > 0:
		return nil
	case r.Verdict == Secure:
		return &Error{Host: r.Host, Verdict: r.Verdict, Reason: fmt.Sprintf(
			"%d TLSA record(s) at _%d._tcp.%s, none usable: SMTP uses only DANE-TA(2) and DANE-EE(3) with selector 0 or 1 and matching type 0, 1 or 2 (RFC 7672 §3.1.3)",
			r.Unusable, r.Port, r.BaseDomain)}
	case r.Reason == "":
		return &Error{Host: r.Host, Verdict: r.Verdict, Reason: "no verdict"}
	}
	return &Error{Host: r.Host, Verdict: r.Verdict, Reason: r.Reason}
}

// Options configure a Resolver.
type Options struct {
	// Server is the HOST:PORT of the recursive resolver asked. It need not
	// validate, but it must pass DNSSEC records on (answer queries with the
	// DO bit with their RRSIGs). Required.
	Server string
	// Anchors are the trust anchors; nil means RootAnchors().
	Anchors *TrustAnchors
	// Timeout bounds each query; 0 means 5s.
	Timeout time.Duration
	// Now is the clock for signature validity and certificate checks.
	Now func() time.Time
	// CacheSize bounds the cached results; 0 means 64, below 0 no cache.
	CacheSize int
	// MaxTTL caps how long a Secure result is reused; 0 means 1h.
	MaxTTL time.Duration
	// BadTTL is how long a result that is not Secure is reused, so that a
	// broken zone is not asked again for every message; 0 means 30s.
	BadTTL time.Duration
}

// Resolver looks up and validates TLSA records. It is safe for concurrent
// use; concurrent lookups of the same host and port share one walk.
type Resolver struct {
	server  string
	anchors *TrustAnchors
	timeout time.Duration
	now     func() time.Time
	size    int
	maxTTL  time.Duration
	badTTL  time.Duration

	mu       sync.Mutex
	cache    map[cacheKey]*Result
	inflight map[cacheKey]*call
	waiters  int // callers waiting for another's lookup, for tests
}

type cacheKey struct {
	host string
	port int
}

type call struct {
	done chan struct{}
	res  *Result
	err  error
}

// New returns a Resolver.
func New(o Options) (*Resolver, error) {
	if o.Server == "" {
		return nil, errors.New("dane: no resolver address")
	}
	if _, _, err := net.SplitHostPort(o.Server); err != nil {
		return nil, fmt.Errorf("dane: resolver %q: %w", o.Server, err)
	}
	r := &Resolver{
		server:   o.Server,
		anchors:  o.Anchors,
		timeout:  o.Timeout,
		now:      o.Now,
		size:     o.CacheSize,
		maxTTL:   o.MaxTTL,
		badTTL:   o.BadTTL,
		cache:    map[cacheKey]*Result{},
		inflight: map[cacheKey]*call{},
	}
	if r.anchors == nil {
		r.anchors = RootAnchors()
	}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.size == 0 {
		r.size = 64
	}
	if r.maxTTL <= 0 {
		r.maxTTL = time.Hour
	}
	if r.badTTL <= 0 {
		r.badTTL = 30 * time.Second
	}
	return r, nil
}

// SystemServer returns the first name server of a resolv.conf file (such as
// /etc/resolv.conf) as HOST:PORT, for a Resolver when no resolver is configured.
func SystemServer(path string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("dane: %w", err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("dane: %s names no name server", path)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// Lookup returns the validated TLSA records of host for port, from the
// cache while they are fresh. The Result may be shared with other callers:
// treat it as read-only. An error means the lookup could not be made
// (the resolver did not answer, answered SERVFAIL, ...): a temporary
// failure. A Result whose Err is not nil is a refusal with a reason.
func (r *Resolver) Lookup(ctx context.Context, host string, port int) (*Result, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("dane: port %d out of range", port)
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if _, err := netip.ParseAddr(h); err == nil {
		return nil, fmt.Errorf("dane: %q is an address; DANE needs a host name", host)
	}
	if _, ok := dns.IsDomainName(h); !ok || h == "" || strings.ContainsAny(h, " \\") {
		return nil, fmt.Errorf("dane: %q is not a host name", host)
	}
	k := cacheKey{h, port}
	for {
		r.mu.Lock()
		if res, ok := r.cache[k]; ok && r.now().Before(res.Expires) {
			r.mu.Unlock()
			return res, nil
		}
		c, ok := r.inflight[k]
		if !ok {
			break // with r.mu held
		}
		r.waiters++
		r.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		r.mu.Lock()
		r.waiters--
		r.mu.Unlock()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The lookup ended because its caller gave up: ask again, if we
		// have not given up too.
		if errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded) {
			continue
		}
		return c.res, c.err
	}
	c := &call{done: make(chan struct{})}
	r.inflight[k] = c
	r.mu.Unlock()

	c.res, c.err = r.lookup(ctx, h, port)

	r.mu.Lock()
	delete(r.inflight, k)
	if c.err == nil && r.size > 0 {
		r.store(k, c.res)
	}
	r.mu.Unlock()
	close(c.done)
	return c.res, c.err
}

// store keeps res, making room by dropping expired results, then the one
// that expires first. r.mu is held.
func (r *Resolver) store(k cacheKey, res *Result) {
	now := r.now()
	if len(r.cache) >= r.size {
		for key, old := range r.cache {
			if !now.Before(old.Expires) {
				delete(r.cache, key)
			}
		}
	}
	for len(r.cache) >= r.size {
		var first cacheKey
		var at time.Time
		for key, old := range r.cache {
			if at.IsZero() || old.Expires.Before(at) {
				first, at = key, old.Expires
			}
		}
		delete(r.cache, first)
	}
	r.cache[k] = res
}

func (r *Resolver) lookup(ctx context.Context, host string, port int) (*Result, error) {
	now := r.now()
	v := newValidator(r.exchange, r.anchors, now)
	res, err := resolve(ctx, v, host, port)
	if err != nil {
		return nil, fmt.Errorf("dane: lookup for %s port %d: %w", host, port, err)
	}
	res.now = r.now
	ttl := r.badTTL
	if res.Verdict == Secure {
		ttl = min(r.maxTTL, time.Duration(v.ttl)*time.Second)
	}
	res.Expires = now.Add(ttl)
	if !v.expire.IsZero() && v.expire.Before(res.Expires) {
		res.Expires = v.expire
	}
	return res, nil
}

// resolve does one lookup with a fresh validator: the host's addresses,
// then its TLSA records (RFC 7672 §2.2).
func resolve(ctx context.Context, v *validator, host string, port int) (*Result, error) {
	name := dns.Fqdn(host)
	res := &Result{Host: host, Port: port}
	refuse := func(verdict Verdict, format string, args ...any) (*Result, error) {
		res.Verdict, res.Reason = verdict, fmt.Sprintf(format, args...)
		return res, nil
	}

	// RFC 7672 §2.2.1-2: DANE applies only to a host whose address records
	// are secure.
	final := name
	found := false
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := v.lookup(ctx, name, qtype)
		if err != nil {
			return nil, err
		}
		switch {
		case a.verdict == Bogus:
			return refuse(Bogus, "address records of %s: %s", host, a.reason)
		case a.neg:
			continue
		case a.verdict != Secure:
			return refuse(Insecure, "address records of %s are not signed: %s", host, a.reason)
		}
		found, final = true, a.final
		for _, rr := range a.rrs {
			switch rr := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					res.Addrs = append(res.Addrs, ip)
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
					res.Addrs = append(res.Addrs, ip)
				}
			}
		}
	}
	if !found {
		return refuse(Insecure, "%s has no A or AAAA records", host)
	}

	// RFC 7672 §2.2.2: the end of a secure CNAME chain first, then the host.
	bases := []string{final}
	if final != name {
		bases = append(bases, name)
	}
	var tried []string
	for _, base := range bases {
		qname := "_" + strconv.Itoa(port) + "._tcp." + base
		tried = append(tried, strings.TrimSuffix(qname, "."))
		a, err := v.lookup(ctx, qname, dns.TypeTLSA)
		if err != nil {
			return nil, err
		}
		switch {
		case a.verdict == Bogus:
			return refuse(Bogus, "TLSA records of %s: %s", strings.TrimSuffix(base, "."), a.reason)
		case a.neg:
			continue
		case a.verdict != Secure:
			return refuse(Insecure, "TLSA records of %s are not signed: %s", strings.TrimSuffix(base, "."), a.reason)
		}
		res.Verdict = Secure
		res.BaseDomain = strings.TrimSuffix(base, ".")
		res.Names = []string{host}
		if res.BaseDomain != host {
			res.Names = append(res.Names, res.BaseDomain)
		}
		var all []*dns.TLSA
		for _, rr := range a.rrs {
			if t, ok := rr.(*dns.TLSA); ok {
				all = append(all, t)
			}
		}
		res.Records = usable(all)
		res.Unusable = len(all) - len(res.Records)
		return res, nil
	}
	return refuse(Insecure, "no TLSA records at %s", strings.Join(tried, " or "))
}

// exchange asks the resolver one question over UDP, and over TCP when the
// answer is truncated (signed answers often are).
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	// CD: hand over what you have, unchecked; we validate it ourselves.
	m.CheckingDisabled = true
	m.SetEdns0(1232, true)
	resp, err := r.exchangeOn(ctx, "udp", m)
	if err == nil && resp.Truncated {
		resp, err = r.exchangeOn(ctx, "tcp", m)
	}
	qs := name + " " + dns.TypeToString[qtype]
	if err != nil {
		return nil, fmt.Errorf("query %s at %s: %w", qs, r.server, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, name) || resp.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("query %s at %s: the answer is for another question", qs, r.server)
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("query %s at %s: %s", qs, r.server, dns.RcodeToString[resp.Rcode])
	}
	return resp, nil
}

// exchangeOn sends m over network and waits for the answer, until the
// timeout or until ctx is done: miekg/dns heeds only a context's deadline,
// so a cancelled query is left to run out its timeout on its own.
func (r *Resolver) exchangeOn(ctx context.Context, network string, m *dns.Msg) (*dns.Msg, error) {
	type reply struct {
		resp *dns.Msg
		err  error
	}
	ch := make(chan reply, 1)
	go func() {
		c := &dns.Client{Net: network, Timeout: r.timeout, UDPSize: 1232}
		resp, _, err := c.ExchangeContext(ctx, m, r.server)
		ch <- reply{resp, err}
	}()
	select {
	case a := <-ch:
		return a.resp, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
