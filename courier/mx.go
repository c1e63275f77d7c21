// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// MXConfig configures the MX target. Zero fields take the defaults noted.
type MXConfig struct {
	Client
	Port int // default 25; tests point it elsewhere
	// LookupMX answers MX queries; default Resolver.LookupMX. The MX hosts'
	// addresses are always looked up with Resolver.
	LookupMX func(ctx context.Context, domain string) ([]*net.MX, error)
	// AllowLoopback lets a sender's MX be on a loopback address, for tests
	// that play it there; every other non-public address is refused even so.
	AllowLoopback bool
}

// MX delivers to a recipient's mail exchangers, found by MX lookup. It is
// only ever used for DSNs dualmx generated itself and for bounces returned
// to an address recovered from a valid SRS token of ours, so the relay
// stays closed by construction. It connects to public addresses only (see
// public.go). Arbitrary senders' servers cannot be expected to present
// certificates we can verify, hence opportunistic TLS.
type MX struct {
	tmpl          dialer // helo, timeouts and the dial guard
	port          int
	lookup        func(ctx context.Context, domain string) ([]*net.MX, error)
	resolver      *net.Resolver
	allowLoopback bool
}

// NewMX prepares delivery by MX lookup.
func NewMX(cfg MXConfig) *MX {
	cfg.setDefaults()
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.LookupMX == nil {
		cfg.LookupMX = cfg.Resolver.LookupMX
	}
	tmpl := cfg.dialer()
	tmpl.control = dialGuard(cfg.AllowLoopback)
	tmpl.policy = TLSOpportunistic
	return &MX{tmpl: tmpl, port: cfg.Port, lookup: cfg.LookupMX, resolver: cfg.Resolver, allowLoopback: cfg.AllowLoopback}
}

// Start begins a transaction to the recipients' mail exchangers.
func (t *MX) Start(_ context.Context, msg Message) (Delivery, error) {
	if err := checkSender(msg.From); err != nil {
		return nil, err
	}
	return &mxDelivery{txn: txn{msg: msg}, t: t}, nil
}

type mxDelivery struct {
	txn
	t *MX
}

// Commit runs one transaction per recipient domain.
func (d *mxDelivery) Commit(ctx context.Context) Result {
	byDomain := map[string][]int{}
	var domains []string
	for i, r := range d.rcpts {
		domain := strings.ToLower(r[strings.LastIndexByte(r, '@')+1:])
		if byDomain[domain] == nil {
			domains = append(domains, domain)
		}
		byDomain[domain] = append(byDomain[domain], i)
	}
	out := d.outcomes()
	for _, domain := range domains {
		idx := byDomain[domain]
		sub := &txn{msg: d.msg, header: d.header, body: d.body}
		for _, i := range idx {
			sub.rcpts = append(sub.rcpts, d.rcpts[i])
		}
		got, err := d.t.sendDomain(ctx, sub, domain)
		for j, i := range idx {
			if got != nil {
				out[i] = got[j]
			} else {
				out[i].Err = Classify(err)
			}
		}
	}
	return Result{Rcpts: out, Header: d.header}
}

func (t *MX) sendDomain(ctx context.Context, x *txn, domain string) ([]Outcome, error) {
	if domain == "" {
		return nil, PermError("5.1.3", "recipient has no domain")
	}
	var hosts []string
	if strings.HasPrefix(domain, "[") {
		hosts = []string{domain} // an address literal: no MX to look up
	} else {
		mxs, err := t.lookup(ctx, domain)
		var dnsErr *net.DNSError
		// Go reports a name without MX records (NODATA) as not found too;
		// whether the domain exists at all is for the address lookup of
		// the implicit MX to tell.
		if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) && len(mxs) == 0 {
			return nil, TempError("4.4.3", "MX lookup for %s: %v", domain, err)
		}
		sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
		for _, mx := range mxs {
			hosts = append(hosts, strings.TrimSuffix(mx.Host, "."))
		}
		if len(hosts) == 1 && hosts[0] == "" {
			return nil, PermError("5.1.10", "domain %s accepts no mail (null MX)", domain)
		}
	}
	implicit := len(hosts) == 0
	if implicit {
		hosts = []string{domain} // RFC 5321 5.1: the implicit MX
	}
	lastErr := error(TempError("4.4.4", "no usable MX for %s", domain))
	var refused []string
	tried, unresolved := false, false
	for _, h := range hosts {
		addrs, err := t.addresses(ctx, h)
		if errors.Is(err, errNoAddress) && implicit {
			return nil, PermError("5.1.2", "domain %s does not exist (no MX, no address)", domain)
		}
		if err != nil {
			lastErr, unresolved = err, true
			continue
		}
		for _, a := range addrs {
			if why := refusal(a, t.allowLoopback); why != "" {
				refused = append(refused, fmt.Sprintf("%s %s (%s)", h, a, why))
				continue
			}
			tried = true
			d := t.tmpl
			d.addr = netip.AddrPortFrom(a, uint16(t.port)).String()
			d.serverName = h
			c, err := d.connect(ctx)
			if err != nil {
				lastErr = err
				if isReply(err) && !Classify(err).Temporary {
					return nil, err
				}
				continue
			}
			out, _, err := transact(ctx, c, x, x.msg.From, d.data)
			c.quit()
			if err == nil || isReply(err) {
				return out, err
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, lastErr
			}
		}
	}
	if !tried && !unresolved && len(refused) > 0 {
		// Looking again will not make them public: held for an admin.
		return nil, PermError("5.4.4", "the mail exchangers of %s are not at public addresses (%s): dualmx does not deliver there", domain, strings.Join(refused, ", "))
	}
	return nil, lastErr
}

// errNoAddress marks a name that has no address.
var errNoAddress = errors.New("no address")

// addresses returns the addresses of the MX host h, an address itself or a
// name looked up now.
func (t *MX) addresses(ctx context.Context, h string) ([]netip.Addr, error) {
	if a, ok := addressLiteral(h); ok {
		return []netip.Addr{a}, nil
	}
	addrs, err := t.resolver.LookupNetIP(ctx, "ip", h)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return nil, fmt.Errorf("%w: %w", TempError("4.4.4", "MX host %s has no address", h), errNoAddress)
	case err != nil:
		return nil, TempError("4.4.3", "address lookup for MX host %s: %v", h, err)
	}
	return addrs, nil
}

// addressLiteral reads an address literal, [192.0.2.1] or [IPv6:2001:db8::1]
// (RFC 5321 section 4.1.3; the tag in any case, as domains are compared), or
// an address without brackets.
func addressLiteral(h string) (netip.Addr, bool) {
	lit := strings.Trim(h, "[]")
	if len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:") {
		lit = lit[5:]
	}
	a, err := netip.ParseAddr(lit)
	return a, err == nil
}
