// SPDX-License-Identifier: MIT

package courier

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// errNonPublic marks a connection refused because of where it would go.
var errNonPublic = errors.New("refused: not a public address")

// A DSN or a returned bounce goes wherever the sender's DNS points, and the
// sender may be anybody: dualmx must not become a way into the networks
// around it. So the MX target delivers to public addresses only, checked
// after resolution for every address of every MX, and checked again for the
// address actually dialled (see dialGuard), so that no later answer of a
// name server changes where it connects.

// nonPublic are the ranges of IANA's special-purpose registries (RFC 6890
// and its updates) that are not globally reachable, or that lead into one
// (NAT64, 6to4 and Teredo are looked at for the IPv4 address inside).
var nonPublic = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (carrier-grade NAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (deprecated)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// refusal says why a is not an address the MX target delivers to, or ""
// when it is a public one. Loopback passes when allowLoopback (tests).
func refusal(a netip.Addr, allowLoopback bool) string {
	a = a.Unmap().WithZone("")
	if allowLoopback && a.IsLoopback() {
		return ""
	}
	for _, n := range nonPublic {
		if n.prefix.Contains(a) {
			return n.what
		}
	}
	// Addresses that lead to an IPv4 address inside them are as public as
	// that address.
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return inner(netip.AddrFrom4([4]byte(b[12:16])), allowLoopback)
	case sixTo4.Contains(a):
		return inner(netip.AddrFrom4([4]byte(b[2:6])), allowLoopback)
	}
	if !a.IsGlobalUnicast() {
		return "not a global unicast address"
	}
	return ""
}

func inner(v4 netip.Addr, allowLoopback bool) string {
	if why := refusal(v4, allowLoopback); why != "" {
		return why + " (" + v4.String() + " inside)"
	}
	return ""
}

// dialGuard is a net.Dialer's Control for the MX target: it refuses the
// connection when the address about to be dialled is not public, whatever
// was checked before.
func dialGuard(allowLoopback bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial %s %s: %w", network, address, err)
		}
		if why := refusal(ap.Addr(), allowLoopback); why != "" {
			return fmt.Errorf("dial %s: %s is a %s address: %w", address, ap.Addr(), why, errNonPublic)
		}
		return nil
	}
}
