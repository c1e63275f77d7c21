// SPDX-License-Identifier: MIT

// Package dnscheck checks the DNS records a Microsoft 365 MX cutover
// depends on, by asking every authoritative name server of the domain
// directly rather than a caching resolver: a record that one secondary
// still serves stale, or that a resolver has cached, is exactly what makes
// a cutover look done when it is not.
//
// A check runs in two steps: Run gathers the answers (an Observation),
// and Observation.Report judges them for a phase, before or after the MX
// change. The cutover package uses one observation for both phases.
package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Resolver finds name servers and their addresses. *net.Resolver is one;
// it is the only use of a recursive resolver in a check.
type Resolver interface {
	LookupNS(ctx context.Context, name string) ([]*net.NS, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Checker runs checks. The zero value asks the system resolver for the
// authoritative servers and then asks them on port 53.
type Checker struct {
	// Resolver finds authoritative servers; nil means net.DefaultResolver.
	Resolver Resolver
	// Port is the port discovered servers are asked on; "" means 53.
	Port string
	// Nameservers, when set, are asked instead of the domain's discovered
	// authoritative servers (HOST or HOST:PORT). Names outside the domain
	// are still found through Resolver.
	Nameservers []string
	// QueryTimeout bounds one attempt of one query (default 2s).
	QueryTimeout time.Duration
	// Retries is how many more attempts a query gets after a timeout: 0
	// means the default of 2, negative means none.
	Retries int
	// Now is the clock for DNSSEC validity periods; nil means time.Now.
	Now func() time.Time
}

// Observation is everything a check saw, before judging it.
type Observation struct {
	Domain   string   `json:"domain"`
	Expected Expected `json:"expected"`
	// Explicit is true when the servers came from --nameserver.
	Explicit bool         `json:"explicit"`
	Servers  []ServerInfo `json:"servers"`
	// Delegation is what the parent zone says; nil when it was not asked.
	Delegation    *Delegation `json:"delegation,omitempty"`
	DelegationErr string      `json:"delegation_error,omitempty"`
	// Sets are the answers of every server to the questions about the domain.
	Sets []*RRSetObs `json:"sets"`
	// Lookups are answers about names outside the domain's zone (or the
	// relay's), from the first server of that zone that answered.
	Lookups  map[string]Answer `json:"-"`
	SPFCount *SPFCount         `json:"spf_count,omitempty"`
	Now      time.Time         `json:"-"`
	timeout  time.Duration
	retries  int
}

// ServerInfo names one server that was asked.
type ServerInfo struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// Delegation is the parent's NS set for the domain and its DS records.
type Delegation struct {
	Parent string    `json:"parent"`
	Server string    `json:"server"`
	NS     []string  `json:"ns"`
	DS     []*dns.DS `json:"-"`
}

// RRSetObs is one question put to every server.
type RRSetObs struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Answers []Answer `json:"answers"`
}

func (s *RRSetObs) qtype() uint16 { return dns.StringToType[s.Type] }

// set returns the observation for name and type.
func (o *Observation) set(name string, t uint16) *RRSetObs {
	for _, s := range o.Sets {
		if strings.EqualFold(s.Name, dns.Fqdn(name)) && s.qtype() == t {
			return s
		}
	}
	return nil
}

// ErrCannotRun marks failures that kept the check from running at all
// (exit status 2), as opposed to findings about the domain.
var ErrCannotRun = errors.New("the check could not run")

func (c *Checker) resolver() Resolver {
	if c.Resolver != nil {
		return c.Resolver
	}
	return net.DefaultResolver
}

func (c *Checker) port() string {
	if c.Port != "" {
		return c.Port
	}
	return "53"
}

func (c *Checker) querier() *querier {
	q := &querier{timeout: c.QueryTimeout, retries: c.Retries}
	if q.timeout <= 0 {
		q.timeout = 2 * time.Second
	}
	switch {
	case q.retries < 0:
		q.retries = 0
	case q.retries == 0:
		q.retries = 2
	}
	return q
}

// run holds the state of one check.
type run struct {
	c     *Checker
	q     *querier
	obs   *Observation
	mu    sync.Mutex
	pool  map[string]*server   // by addr, so "dead" is shared between zones
	zones map[string][]*server // discovered servers by zone
}

// Run asks the domain's authoritative servers (or c.Nameservers) every
// question the check needs. It fails with ErrCannotRun when no server
// could be found or none answered at all.
func (c *Checker) Run(ctx context.Context, exp Expected) (*Observation, error) {
	domain := dns.Fqdn(strings.ToLower(exp.Domain))
	if _, ok := dns.IsDomainName(domain); !ok || domain == "." {
		return nil, fmt.Errorf("%w: %q is not a domain name", ErrCannotRun, exp.Domain)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	r := &run{c: c, q: c.querier(), pool: map[string]*server{}, zones: map[string][]*server{}}
	r.obs = &Observation{Domain: domain, Expected: exp, Lookups: map[string]Answer{}, Now: now(),
		timeout: r.q.timeout, retries: r.q.retries}

	servers, err := r.domainServers(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCannotRun, domain, err)
	}
	for _, s := range servers {
		r.obs.Servers = append(r.obs.Servers, ServerInfo{Name: s.name, Addr: s.addr})
	}
	r.zones[domain] = servers

	questions := []struct {
		name string
		t    uint16
	}{
		{domain, dns.TypeSOA}, {domain, dns.TypeNS}, {domain, dns.TypeMX}, {domain, dns.TypeTXT},
		{"selector1._domainkey." + domain, dns.TypeCNAME}, {"selector2._domainkey." + domain, dns.TypeCNAME},
		{"autodiscover." + domain, dns.TypeCNAME}, {"_dmarc." + domain, dns.TypeTXT}, {domain, dns.TypeDNSKEY},
	}
	for _, q := range questions {
		r.obs.Sets = append(r.obs.Sets, &RRSetObs{Name: q.name, Type: dns.TypeToString[q.t], Answers: make([]Answer, len(servers))})
	}
	// Servers in parallel, questions to one server in order: a dead server
	// then costs one timeout, not one per question.
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j, q := range questions {
				r.obs.Sets[j].Answers[i] = r.q.ask(ctx, s, q.name, q.t)
			}
		}()
	}
	wg.Wait()
	answered := false
	for _, set := range r.obs.Sets {
		for _, a := range set.Answers {
			answered = answered || a.Msg != nil
		}
	}
	if !answered {
		return nil, fmt.Errorf("%w: none of the %d server(s) of %s answered (%s)", ErrCannotRun, len(servers), domain, r.obs.Sets[0].Answers[0].Err)
	}

	r.lookups(ctx)
	return r.obs, nil
}

// domainServers returns the servers to ask about domain: the explicit ones,
// or the union of the parent's delegation and the zone's own NS set as the
// system resolver sees it, each at every address it has.
func (r *run) domainServers(ctx context.Context, domain string) ([]*server, error) {
	if len(r.c.Nameservers) > 0 {
		r.obs.Explicit = true
		var out []*server
		for _, ns := range r.c.Nameservers {
			addr := ns
			if _, _, err := net.SplitHostPort(ns); err != nil {
				addr = net.JoinHostPort(strings.Trim(ns, "[]"), "53")
			}
			host, _, _ := net.SplitHostPort(addr)
			if net.ParseIP(host) == nil {
				addrs, err := r.c.resolver().LookupHost(ctx, host)
				if err != nil || len(addrs) == 0 {
					return nil, fmt.Errorf("--nameserver %s: %v", ns, err)
				}
				_, port, _ := net.SplitHostPort(addr)
				for _, a := range addrs {
					out = append(out, r.server(ns, net.JoinHostPort(a, port)))
				}
				continue
			}
			out = append(out, r.server(ns, addr))
		}
		return out, nil
	}
	res := r.c.resolver()
	names := map[string]bool{}
	if nss, err := res.LookupNS(ctx, domain); err == nil {
		for _, ns := range nss {
			names[strings.ToLower(dns.Fqdn(ns.Host))] = true
		}
	} else if ctx.Err() != nil {
		return nil, err
	}
	r.delegation(ctx, domain)
	if d := r.obs.Delegation; d != nil {
		for _, n := range d.NS {
			names[n] = true
		}
	}
	if len(names) == 0 {
		return nil, errNoServers
	}
	return r.addrs(ctx, names)
}

func (r *run) addrs(ctx context.Context, names map[string]bool) ([]*server, error) {
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out []*server
	var errs []string
	for _, n := range sorted {
		addrs, err := r.c.resolver().LookupHost(ctx, n)
		if err != nil || len(addrs) == 0 {
			errs = append(errs, fmt.Sprintf("%s: no address (%v)", n, err))
			continue
		}
		sort.Strings(addrs)
		for _, a := range addrs {
			out = append(out, r.server(strings.TrimSuffix(n, "."), net.JoinHostPort(a, r.c.port())))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", errNoServers, strings.Join(errs, "; "))
	}
	return out, nil
}

func (r *run) server(name, addr string) *server {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.pool[addr]; ok {
		return s
	}
	s := &server{name: name, addr: addr}
	r.pool[addr] = s
	return s
}

// delegation asks the parent zone's servers for the domain's NS and DS.
func (r *run) delegation(ctx context.Context, domain string) {
	parent, servers, err := r.zoneOf(ctx, parentName(domain))
	if err != nil {
		r.obs.DelegationErr = fmt.Sprintf("could not find the parent zone's servers: %v", err)
		return
	}
	var last string
	for _, s := range servers {
		a := r.q.ask(ctx, s, domain, dns.TypeNS)
		if !a.ok() {
			last = s.label() + ": " + a.Err
			continue
		}
		d := &Delegation{Parent: parent, Server: s.label()}
		for _, rr := range append(append([]dns.RR{}, a.Msg.Answer...), a.Msg.Ns...) {
			if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, domain) {
				d.NS = append(d.NS, strings.ToLower(dns.Fqdn(ns.Ns)))
			}
		}
		sort.Strings(d.NS)
		d.NS = slices.Compact(d.NS)
		if len(d.NS) == 0 {
			last = s.label() + ": no delegation for " + domain + " (rcode " + a.Rcode + ")"
			continue
		}
		if ds := r.q.ask(ctx, s, domain, dns.TypeDS); ds.ok() {
			for _, rr := range ds.Msg.Answer {
				if x, ok := rr.(*dns.DS); ok {
					d.DS = append(d.DS, x)
				}
			}
		}
		r.obs.Delegation = d
		return
	}
	r.obs.DelegationErr = "no server of " + parent + " answered with a delegation: " + last
}

func parentName(name string) string {
	i, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[i:]
}

// zoneOf finds the zone name belongs to and its servers, walking up from
// name until the resolver knows an NS set.
func (r *run) zoneOf(ctx context.Context, name string) (string, []*server, error) {
	name = strings.ToLower(dns.Fqdn(name))
	for z := name; ; z = parentName(z) {
		r.mu.Lock()
		s, ok := r.zones[z]
		r.mu.Unlock()
		if ok {
			return z, s, nil
		}
		nss, err := r.c.resolver().LookupNS(ctx, z)
		if err == nil && len(nss) > 0 {
			names := map[string]bool{}
			for _, ns := range nss {
				names[strings.ToLower(dns.Fqdn(ns.Host))] = true
			}
			servers, err := r.addrs(ctx, names)
			if err != nil {
				return "", nil, fmt.Errorf("zone %s: %w", z, err)
			}
			r.mu.Lock()
			r.zones[z] = servers
			r.mu.Unlock()
			return z, servers, nil
		}
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		if z == "." {
			return "", nil, fmt.Errorf("no NS found for %s or any parent", name)
		}
	}
}

// lookup asks the authoritative servers of name's zone, in order, until
// one answers. Names inside the checked domain go to the domain's servers;
// a referral from them (a delegated subzone) is followed once.
func (r *run) lookup(ctx context.Context, name string, t uint16) Answer {
	name = strings.ToLower(dns.Fqdn(name))
	key := name + " " + dns.TypeToString[t]
	r.mu.Lock()
	if a, ok := r.obs.Lookups[key]; ok {
		r.mu.Unlock()
		return a
	}
	r.mu.Unlock()
	var servers []*server
	if dns.IsSubDomain(r.obs.Domain, name) {
		servers = r.zones[r.obs.Domain]
	} else {
		_, s, err := r.zoneOf(ctx, name)
		if err != nil {
			return r.remember(key, Answer{Outcome: OutcomeError, Err: err.Error()})
		}
		servers = s
	}
	a := r.first(ctx, servers, name, t)
	if a.ok() && !a.AA && len(a.Msg.Answer) == 0 && hasNS(a.Msg.Ns) {
		if _, s, err := r.zoneOf(ctx, name); err == nil {
			a = r.first(ctx, s, name, t)
		}
	}
	return r.remember(key, a)
}

func (r *run) first(ctx context.Context, servers []*server, name string, t uint16) Answer {
	a := Answer{Outcome: OutcomeError, Err: "no servers"}
	var errs []string
	for _, s := range servers {
		a = r.q.ask(ctx, s, name, t)
		if a.ok() {
			return a
		}
		errs = append(errs, a.Server+": "+a.Err)
	}
	if len(errs) > 0 {
		a.Err = strings.Join(errs, "; ")
	}
	return a
}

func (r *run) remember(key string, a Answer) Answer {
	r.mu.Lock()
	r.obs.Lookups[key] = a
	r.mu.Unlock()
	return a
}

func hasNS(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeNS {
			return true
		}
	}
	return false
}

// lookups gathers what the records point at: SPF includes, the MX
// targets' addresses, the relay's forward and reverse records, the ARC key.
func (r *run) lookups(ctx context.Context) {
	o := r.obs
	fetch := func(ctx context.Context, name string) ([]string, error) {
		a := r.lookup(ctx, name, dns.TypeTXT)
		if !a.ok() {
			return nil, errors.New(a.Err)
		}
		return txtStrings(a.rrs(name, dns.TypeTXT)), nil
	}
	if set := o.set(o.Domain, dns.TypeTXT); set != nil {
		if a, ok := consensus(set); ok {
			var recs []string
			for _, s := range txtStrings(a.rrs(o.Domain, dns.TypeTXT)) {
				if IsSPF(s) {
					recs = append(recs, s)
				}
			}
			if len(recs) == 1 {
				if spf, err := ParseSPF(recs[0]); err == nil {
					cnt := CountSPFLookups(ctx, spf, fetch)
					o.SPFCount = &cnt
				}
			}
		}
	}
	for _, mx := range append(append([]string{}, o.Expected.TenantMX...), o.Expected.OldMX...) {
		r.lookup(ctx, mx, dns.TypeA)
	}
	if d := o.Expected.ForwardDomain; d != "" {
		r.lookup(ctx, d, dns.TypeMX)
	}
	if h := o.Expected.RelayHost; h != "" {
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
			a := r.lookup(ctx, h, t)
			for _, ip := range addrsOf(a, h) {
				if rev, err := dns.ReverseAddr(ip); err == nil {
					r.lookup(ctx, rev, dns.TypePTR)
				}
			}
		}
	}
	if k := o.Expected.ARC; k != nil {
		r.lookup(ctx, k.Name(), dns.TypeTXT)
	}
}

// lookupAnswer returns a stored lookup.
func (o *Observation) lookupAnswer(name string, t uint16) (Answer, bool) {
	a, ok := o.Lookups[strings.ToLower(dns.Fqdn(name))+" "+dns.TypeToString[t]]
	return a, ok
}

func addrsOf(a Answer, name string) []string {
	var out []string
	for _, rr := range append(a.rrs(name, dns.TypeA), a.rrs(name, dns.TypeAAAA)...) {
		switch x := rr.(type) {
		case *dns.A:
			out = append(out, x.A.String())
		case *dns.AAAA:
			out = append(out, x.AAAA.String())
		}
	}
	return out
}

func txtStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out
}

// Check runs a check and judges it for phase.
func (c *Checker) Check(ctx context.Context, exp Expected, phase Phase) (*Report, error) {
	o, err := c.Run(ctx, exp)
	if err != nil {
		return nil, err
	}
	return o.Report(phase), nil
}
