// SPDX-License-Identifier: MIT

package smtpd

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"::1", "::/64"},
	} {
		if got := clientKey(netip.MustParseAddr(tc.a)); got != netip.MustParsePrefix(tc.b) {
			t.Errorf("clientKey(%s) = %s, want %s", tc.a, got, tc.b)
		}
	}
}

var errBad = errors.New("bad_hash")

// elsewhere is a list of return sources none of the test clients is in.
var elsewhere = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}

func invalid() (bool, error) { return true, errBad }
func valid() (bool, error)   { return false, nil }

// TestGuardPerNetwork: the allowance is per client network: stepping
// through the addresses of one IPv6 /64 gains nothing; another /64 or IPv4
// address has its own; the penalty ends, and the allowance is fresh.
func TestGuardPerNetwork(t *testing.T) {
	g := newGuard(&ReturnPolicy{InvalidPerHour: 1000, Sources: elsewhere})
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	net1 := []string{"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1", "2001:db8::9"}
	want := []verdict{vInvalid, vInvalid, vLimit, vPenalised}
	for i, a := range net1 {
		if v := g.check(netip.MustParseAddr(a), now, invalid).v; v != want[i] {
			t.Fatalf("guess %d from %s: verdict %d, want %d", i, a, v, want[i])
		}
	}
	if v := g.check(netip.MustParseAddr("2001:db8:0:1::1"), now, valid).v; v != vValid {
		t.Errorf("another /64: verdict %d, want valid", v)
	}
	if !g.penalised(netip.MustParseAddr("2001:db8::abcd"), now.Add(59*time.Minute)) {
		t.Error("penalty over before its hour")
	}
	later := now.Add(time.Hour)
	if v := g.check(netip.MustParseAddr("2001:db8::1"), later, invalid).v; v != vInvalid {
		t.Errorf("after the penalty: verdict %d, want a fresh allowance", v)
	}
	// Invalid addresses spread out more than a penalty apart never add up.
	for i := range 10 {
		at := now.Add(time.Duration(i) * 61 * time.Minute)
		if v := g.check(netip.MustParseAddr("192.0.2.7"), at, invalid).v; v != vInvalid {
			t.Fatalf("guess %d an hour after the last: verdict %d", i, v)
		}
	}
}

// TestGuardTableBounded: the table of client networks never grows past its
// bound; entries that carry nothing any more make room, and when none do,
// SRS addresses from new networks are refused unchecked rather than letting
// the table grow.
func TestGuardTableBounded(t *testing.T) {
	g := newGuard(&ReturnPolicy{InvalidPerHour: 1 << 20, Sources: elsewhere})
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i), 0, 15: 1})
	}
	for i := range maxGuardClients {
		g.check(addr(i), now, invalid)
	}
	if v := g.check(addr(maxGuardClients), now, valid).v; v != vBudget {
		t.Fatalf("table full of live entries: verdict %d, want the address refused unchecked", v)
	}
	if len(g.clients) != maxGuardClients {
		t.Fatalf("%d entries, want %d", len(g.clients), maxGuardClients)
	}
	// An hour later every entry is spent: room is made.
	later := now.Add(time.Hour)
	if v := g.check(addr(maxGuardClients), later, invalid).v; v != vInvalid {
		t.Fatalf("after the period: verdict %d, want the address checked", v)
	}
	if len(g.clients) != 1 {
		t.Errorf("%d entries after the sweep, want 1", len(g.clients))
	}
	// A valid address makes no entry.
	g.check(addr(maxGuardClients+1), later, valid)
	if len(g.clients) != 1 {
		t.Errorf("a valid address made an entry: %d", len(g.clients))
	}
}

// TestGuardSources: clients inside the return sources do not draw on the
// budget and do not find it spent; their network's penalty is the shorter
// source penalty. An empty list makes every client a source.
func TestGuardSources(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	src := []netip.Prefix{netip.MustParsePrefix("2a01:111:f403::/48"), netip.MustParsePrefix("40.107.0.0/16")}
	g := newGuard(&ReturnPolicy{InvalidPerHour: 2, Sources: src, SourcePenalty: 5 * time.Minute})
	// Six source networks, three guesses each: cut, never the budget.
	for i := range 6 {
		ip := netip.AddrFrom4([4]byte{40, 107, byte(i), 1})
		for j, want := range []verdict{vInvalid, vInvalid, vLimit} {
			if a := g.check(ip, now, invalid); a.v != want || !a.source || (a.v == vLimit && a.penalty != 5*time.Minute) {
				t.Fatalf("source %s guess %d: %+v, want verdict %d", ip, j, a, want)
			}
		}
	}
	if g.tokens != 2 {
		t.Errorf("source guesses spent the budget: %v of 2 left", g.tokens)
	}
	// Outside: two guesses spend it; then outside is deferred, sources are not.
	g.check(netip.MustParseAddr("192.0.2.1"), now, invalid)
	g.check(netip.MustParseAddr("192.0.2.2"), now, invalid)
	a := g.check(netip.MustParseAddr("192.0.2.3"), now, valid)
	if a.v != vBudget || !a.spent || !a.valid || !a.logOutside || a.lastGuess != netip.MustParsePrefix("192.0.2.2/32") {
		t.Errorf("outside after the budget: %+v", a)
	}
	if a := g.check(netip.MustParseAddr("2a01:111:f403:c000::1"), now, valid); a.v != vValid || !a.source {
		t.Errorf("source after the budget: %+v", a)
	}
	if g.penalised(netip.AddrFrom4([4]byte{40, 107, 0, 1}), now.Add(5*time.Minute)) {
		t.Error("a source network penalised past its 5 minutes")
	}
	// No list: every client is a source.
	g = newGuard(&ReturnPolicy{InvalidPerHour: 1})
	for i := range 5 {
		if a := g.check(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), now, invalid); a.v != vInvalid || !a.source {
			t.Fatalf("guess %d without a source list: %+v", i, a)
		}
	}
}
