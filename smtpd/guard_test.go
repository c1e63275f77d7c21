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

func invalid() (bool, error) { return true, errBad }
func valid() (bool, error)   { return false, nil }

// TestGuardPerNetwork: the allowance is per client network: stepping
// through the addresses of one IPv6 /64 gains nothing; another /64 or IPv4
// address has its own; the penalty ends, and the allowance is fresh.
func TestGuardPerNetwork(t *testing.T) {
	g := newGuard(&Returns{InvalidPerHour: 1000})
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	net1 := []string{"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1", "2001:db8::9"}
	want := []verdict{vInvalid, vInvalid, vLimit, vPenalised}
	for i, a := range net1 {
		v, first, _ := g.check(netip.MustParseAddr(a), now, invalid)
		if v != want[i] || first != (v == vLimit) {
			t.Fatalf("guess %d from %s: verdict %d (first %v), want %d", i, a, v, first, want[i])
		}
	}
	if v, _, _ := g.check(netip.MustParseAddr("2001:db8:0:1::1"), now, valid); v != vValid {
		t.Errorf("another /64: verdict %d, want valid", v)
	}
	if !g.penalised(netip.MustParseAddr("2001:db8::abcd"), now.Add(59*time.Minute)) {
		t.Error("penalty over before its hour")
	}
	later := now.Add(time.Hour)
	if v, _, _ := g.check(netip.MustParseAddr("2001:db8::1"), later, invalid); v != vInvalid {
		t.Errorf("after the penalty: verdict %d, want a fresh allowance", v)
	}
	// Invalid addresses spread out more than a penalty apart never add up.
	for i := range 10 {
		at := now.Add(time.Duration(i) * 61 * time.Minute)
		if v, _, _ := g.check(netip.MustParseAddr("192.0.2.7"), at, invalid); v != vInvalid {
			t.Fatalf("guess %d an hour after the last: verdict %d", i, v)
		}
	}
}

// TestGuardTableBounded: the table of client networks never grows past its
// bound; entries that carry nothing any more make room, and when none do,
// SRS addresses from new networks are refused unchecked rather than letting
// the table grow.
func TestGuardTableBounded(t *testing.T) {
	g := newGuard(&Returns{InvalidPerHour: 1 << 20})
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i), 0, 15: 1})
	}
	for i := range maxGuardClients {
		g.check(addr(i), now, invalid)
	}
	if v, _, _ := g.check(addr(maxGuardClients), now, valid); v != vBudget {
		t.Fatalf("table full of live entries: verdict %d, want the address refused unchecked", v)
	}
	if len(g.clients) != maxGuardClients {
		t.Fatalf("%d entries, want %d", len(g.clients), maxGuardClients)
	}
	// An hour later every entry is spent: room is made.
	later := now.Add(time.Hour)
	if v, _, _ := g.check(addr(maxGuardClients), later, invalid); v != vInvalid {
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
