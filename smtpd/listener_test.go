// SPDX-License-Identifier: MIT

package smtpd

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestContinuesReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"250-relay.test Hello c\r\n", true},
		{"250-8BITMIME\r\n", true},
		{"250 SMTPUTF8\r\n", false},          // the last line of a reply
		{"250-PIPELINING", false},            // not a whole line
		{"250-A\r\n250 B\r\n", false},        // more than one line
		{"25-A\r\n", false},                  // not a reply code
		{"2x0-A\r\n", false},                 // not a reply code
		{"\x17\x03\x03\x00\x20-\r\n", false}, // a TLS record
		{"", false},
	} {
		if got := continuesReply([]byte(tc.in)); got != tc.want {
			t.Errorf("continuesReply(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// writes records each Write that reaches the connection under conn.
type writes struct {
	net.Conn
	got []string
	err error
}

func (w *writes) Write(p []byte) (int, error) {
	w.got = append(w.got, string(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func TestConnWritesRepliesWhole(t *testing.T) {
	w := &writes{}
	c := &conn{Conn: w}
	for _, line := range []string{"220 relay.test ESMTP\r\n", "250-relay.test Hello\r\n", "250-PIPELINING\r\n", "250 8BITMIME\r\n", "250 2.0.0 OK\r\n"} {
		if n, err := c.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	want := []string{"220 relay.test ESMTP\r\n", "250-relay.test Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n", "250 2.0.0 OK\r\n"}
	if !slices.Equal(w.got, want) {
		t.Errorf("segments %q, want %q", w.got, want)
	}

	// A failure sending the reply is reported on its last line.
	w.got, w.err = nil, net.ErrClosed
	c.Write([]byte("250-A\r\n"))
	if n, err := c.Write([]byte("250 B\r\n")); n != 0 || err == nil {
		t.Errorf("failed write = %d, %v", n, err)
	}
	if len(c.held) != 0 {
		t.Errorf("%q still held after the failure", c.held)
	}
}

// remote is a connection that only tells where it comes from.
type remote struct {
	net.Conn
	addr net.Addr
}

func (r remote) RemoteAddr() net.Addr { return r.addr }

// TestPerIPCapCountsNetworks: the cap per client counts a client network as
// the SRS guard does: the IPv6 addresses of one /64 share it (one host
// commonly owns the whole /64), another /64 has its own, IPv4 addresses are
// counted each. Only loopback may be dialled in tests, and IPv6 loopback is
// one address, so the listener's check is given the addresses directly.
func TestPerIPCapCountsNetworks(t *testing.T) {
	l := &listener{maxPerIP: 2, conns: make(map[*conn]struct{})}
	for _, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2:aaaa::9", "192.0.2.1"} {
		ip := netip.MustParseAddr(a)
		l.conns[&conn{ip: ip, key: clientKey(ip)}] = struct{}{}
	}
	for _, tc := range []struct {
		from   string
		reason string
	}{
		{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:4000", "too_many_connections_per_ip"}, // a third from the /64
		{"[2001:db8:1:3::1]:4000", ""},                                             // the next /64
		{"192.0.2.1:4000", ""},                                                     // one of two
		{"192.0.2.2:4000", ""},
		{"[::ffff:192.0.2.1]:4000", ""}, // the same IPv4 address, mapped
	} {
		ap := netip.MustParseAddrPort(tc.from)
		_, reason := l.refuse(remote{addr: net.TCPAddrFromAddrPort(ap)})
		if reason != tc.reason {
			t.Errorf("connection from %s: refused %q, want %q", tc.from, reason, tc.reason)
		}
	}
}
