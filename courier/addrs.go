// SPDX-License-Identifier: MIT

package courier

import (
	"context"
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
// message.
type addrBook struct {
	host     string
	family   string
	resolver *net.Resolver
	badFor   time.Duration
	now      func() time.Time

	mu       sync.Mutex
	bad      map[netip.Addr]time.Time // until when
	cached   []netip.Addr
	cachedAt time.Time
}

// resolveEvery bounds how long resolved addresses are used: net.Resolver
// does not say the records' TTL, and Microsoft's are short.
const resolveEvery = 30 * time.Second

func (b *addrBook) wants(a netip.Addr) bool {
	switch b.family {
	case FamilyIPv4:
		return a.Unmap().Is4()
	case FamilyIPv6:
		return a.Is6() && !a.Is4In6()
	}
	return true
}

// list returns the addresses to try, in order: those not known bad in the
// order given (fixed, when DANE validated them) or resolved, then the bad
// ones, the one whose mark runs out first first.
func (b *addrBook) list(ctx context.Context, fixed []netip.Addr) ([]netip.Addr, error) {
	var all []netip.Addr
	switch {
	case fixed != nil:
		all = fixed
	default:
		if ip, err := netip.ParseAddr(strings.TrimSuffix(b.host, ".")); err == nil {
			all = []netip.Addr{ip}
			break
		}
		b.mu.Lock()
		if b.cached != nil && b.now().Sub(b.cachedAt) < resolveEvery {
			all = b.cached
		}
		b.mu.Unlock()
		if all == nil {
			ips, err := b.resolver.LookupNetIP(ctx, "ip", b.host)
			if err != nil {
				return nil, &Error{Status: "4.4.3", Message: fmt.Sprintf("resolve %s: %v", b.host, err), Temporary: true, Err: err}
			}
			all = ips
			b.mu.Lock()
			b.cached, b.cachedAt = ips, b.now()
			b.mu.Unlock()
		}
	}
	var good, bad []netip.Addr
	now := b.now()
	b.mu.Lock()
	for _, a := range all {
		a = a.Unmap()
		if !b.wants(a) || slices.Contains(good, a) || slices.Contains(bad, a) {
			continue
		}
		if until, ok := b.bad[a]; ok && now.Before(until) {
			bad = append(bad, a)
		} else {
			good = append(good, a)
		}
	}
	slices.SortStableFunc(bad, func(x, y netip.Addr) int { return b.bad[x].Compare(b.bad[y]) })
	b.mu.Unlock()
	if len(good)+len(bad) == 0 {
		return nil, TempError("4.4.3", "%s has no %s address", b.host, b.family)
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
