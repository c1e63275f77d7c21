// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Address families for TenantConfig.IPFamily.
const (
	FamilyAny  = "any"
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// addrBook knows the tenant host's addresses and which of them failed
// lately. A failed address is tried after the others until badFor has
// passed, so one dead front end costs one failed connection, not one per
// message; an address family the target refuses is tried after the other
// family the same way.
type addrBook struct {
	host     string
	family   string
	resolver *net.Resolver
	badFor   time.Duration
	now      func() time.Time

	mu        sync.Mutex
	bad       map[netip.Addr]time.Time // until when
	badFamily [2]time.Time             // until when IPv4 [0] and IPv6 [1] are refused
	cached    []netip.Addr
	cachedAt  time.Time
}

// resolveEvery bounds how long resolved addresses are used: net.Resolver
// does not say the records' TTL, and Microsoft's are short.
const resolveEvery = 30 * time.Second

// staleFor bounds how long the last addresses a lookup gave stand in when
// the next lookup fails for any reason but the name not existing (a local
// resolver restarting, a time-out): the tenant's front ends change far
// more slowly than that, and a resolver hiccup must not make a target that
// answers look dead.
const staleFor = time.Hour

func (b *addrBook) wants(a netip.Addr) bool {
	switch b.family {
	case FamilyIPv4:
		return a.Unmap().Is4()
	case FamilyIPv6:
		return a.Is6() && !a.Is4In6()
	}
	return true
}

// familyOf indexes badFamily.
func familyOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 0
	}
	return 1
}

// lookupFailed marks an error as a failure to learn the host's addresses,
// which is counted apart from failed connections.
type lookupFailed struct{ err error }

func (l *lookupFailed) Error() string { return l.err.Error() }
func (l *lookupFailed) Unwrap() error { return l.err }

// isLookupFailure reports whether err is a failure to learn the host's
// addresses rather than to connect to one.
func isLookupFailure(err error) bool {
	var lf *lookupFailed
	return errors.As(err, &lf)
}

// lookupError is a temporary failure (4.4.3) to learn the host's
// addresses; cause, when not nil, is the lookup's error.
func lookupError(cause error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if cause == nil {
		cause = errors.New(msg)
	}
	return &Error{Status: "4.4.3", Message: msg, Temporary: true, Err: &lookupFailed{cause}}
}

// resolve returns the host's addresses: an IP literal as it is, else those
// of a lookup at most resolveEvery old. When a new lookup fails for any
// reason but the name not existing, the last good answer stands in for up
// to staleFor after it was taken.
func (b *addrBook) resolve(ctx context.Context) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.TrimSuffix(b.host, ".")); err == nil {
		return []netip.Addr{ip}, nil
	}
	b.mu.Lock()
	cached, at := b.cached, b.cachedAt
	b.mu.Unlock()
	now := b.now()
	if cached != nil && now.Sub(at) < resolveEvery {
		return cached, nil
	}
	ips, err := b.resolver.LookupNetIP(ctx, "ip", b.host)
	if err != nil {
		var dnsErr *net.DNSError
		notFound := errors.As(err, &dnsErr) && dnsErr.IsNotFound
		if cached != nil && !notFound && now.Sub(at) < staleFor && ctx.Err() == nil {
			return cached, nil
		}
		return nil, lookupError(err, "resolve %s: %v", b.host, err)
	}
	b.mu.Lock()
	b.cached, b.cachedAt = ips, now
	b.mu.Unlock()
	return ips, nil
}

// order returns the addresses to try, from all: those not known bad (nor
// of a refused family) in the order given, then the bad ones, the one
// whose mark runs out first first. None left (none of the configured
// family) is an error.
func (b *addrBook) order(all []netip.Addr) ([]netip.Addr, error) {
	var good, bad []netip.Addr
	now := b.now()
	b.mu.Lock()
	until := func(a netip.Addr) time.Time {
		u := b.bad[a]
		if f := b.badFamily[familyOf(a)]; f.After(u) {
			u = f
		}
		return u
	}
	for _, a := range all {
		a = a.Unmap()
		if !b.wants(a) || slices.Contains(good, a) || slices.Contains(bad, a) {
			continue
		}
		if now.Before(until(a)) {
			bad = append(bad, a)
		} else {
			good = append(good, a)
		}
	}
	slices.SortStableFunc(bad, func(x, y netip.Addr) int { return until(x).Compare(until(y)) })
	b.mu.Unlock()
	if len(good)+len(bad) == 0 {
		family := b.family
		if family == "" || family == FamilyAny {
			family = "usable"
		}
		return nil, lookupError(nil, "%s has no %s address", b.host, family)
	}
	return append(good, bad...), nil
}

func (b *addrBook) markBad(a netip.Addr) {
	b.mu.Lock()
	if b.bad == nil {
		b.bad = map[netip.Addr]time.Time{}
	}
	b.bad[a.Unmap()] = b.now().Add(b.badFor)
	b.mu.Unlock()
}

// markFamilyBad marks every address of a's family: the target refuses mail
// over it, whichever front end answers.
func (b *addrBook) markFamilyBad(a netip.Addr) {
	b.mu.Lock()
	b.badFamily[familyOf(a)] = b.now().Add(b.badFor)
	b.mu.Unlock()
}

func (b *addrBook) markGood(a netip.Addr) {
	b.mu.Lock()
	delete(b.bad, a.Unmap())
	b.mu.Unlock()
}

// remoteIP is the address a connection reached.
func remoteIP(c net.Conn) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
