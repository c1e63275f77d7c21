// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/standin"
)

func TestRefusal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr     string
		loopback bool   // allowLoopback
		want     string // "" for public
	}{
		{"192.0.32.10", false, ""},
		{"2a00:1450:4001:80b::201a", false, ""},
		{"10.1.2.3", false, "private"},
		{"172.31.255.255", false, "private"},
		{"192.168.0.1", false, "private"},
		{"127.0.0.1", false, "loopback"},
		{"127.0.0.1", true, ""},
		{"127.9.9.9", true, ""},
		{"::1", false, "loopback"},
		{"::1", true, ""},
		{"169.254.169.254", false, "link-local"},
		{"fe80::1", false, "link-local"},
		{"100.64.0.1", false, "shared address space"},
		{"100.127.255.254", false, "shared address space"},
		{"0.0.0.0", false, "this network"},
		{"::", false, "unspecified"},
		{"224.0.0.1", false, "multicast"},
		{"ff02::1", false, "multicast"},
		{"255.255.255.255", false, "reserved"},
		{"fd12:3456::1", false, "unique local"},
		{"::ffff:10.0.0.1", false, "private"},
		{"::ffff:127.0.0.1", true, ""},
		{"64:ff9b::a00:1", false, "private (10.0.0.1 inside)"},
		{"64:ff9b::c000:200a", false, ""},
		{"2002:7f00:1::1", false, "loopback (127.0.0.1 inside)"},
		{"2001::1", false, "IETF protocol assignments"},
		{"2001:db8::1", false, "documentation"},
		{"192.0.2.1", false, "documentation"},
		{"198.18.0.1", false, "benchmarking"},
		{"10.0.0.1", true, "private"},
	} {
		if got := refusal(netip.MustParseAddr(tc.addr), tc.loopback); !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("refusal(%s, loopback %v) = %q, want %q", tc.addr, tc.loopback, got, tc.want)
		}
	}
}

// TestDialGuard: whatever was checked before, the address actually dialled
// is checked again, before the connection is made.
func TestDialGuard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		address  string
		loopback bool
		ok       bool
	}{
		{"192.0.32.10:25", false, true},
		{"10.0.0.1:25", false, false},
		{"127.0.0.1:25", false, false},
		{"127.0.0.1:25", true, true},
		{"[::1]:25", false, false},
		{"[fe80::1%eth0]:25", false, false},
		{"169.254.169.254:25", true, false},
	} {
		err := dialGuard(tc.loopback)("tcp", tc.address, nil)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errNonPublic)) {
			t.Errorf("guard(%s, loopback %v) = %v", tc.address, tc.loopback, err)
		}
	}
	// Through a dialer: the listener never sees the connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	c := newFixture(t).client()
	d := c.dialer()
	d.addr, d.policy, d.control = ln.Addr().String(), TLSNone, dialGuard(false)
	if _, err := d.connect(context.Background()); !errors.Is(err, errNonPublic) {
		t.Errorf("connect to a loopback address: %v", err)
	}
	select {
	case <-accepted:
		t.Error("the guarded dial reached the listener")
	default:
	}
}

// mxWorld is a sender's domain whose MX records point where a test says,
// and a sender's server on loopback.
func mxWorld(t *testing.T, zone string) (*dnstest.Server, *standin.Server) {
	t.Helper()
	s, err := standin.Start(standin.Options{Domain: "mx.sender.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return dnstest.Start(t, zone), s
}

func newMX(t *testing.T, dns *dnstest.Server, s *standin.Server, allowLoopback bool) *MX {
	c := newFixture(t).client()
	c.Resolver = dns.Resolver()
	return NewMX(MXConfig{Client: c, Port: s.Port(), AllowLoopback: allowLoopback})
}

// TestMXRefusesNonPublicAddresses (issue 15.5): a DSN whose recipient's
// mail exchangers resolve only to loopback, private, link-local, shared,
// unspecified or multicast addresses fails permanently, saying which and
// why, and nothing is connected to.
func TestMXRefusesNonPublicAddresses(t *testing.T) {
	t.Parallel()
	zone := "" +
		"private.test. 300 IN MX 10 mx.private.test.\nmx.private.test. 300 IN A 10.1.2.3\n" +
		"loopback.test. 300 IN MX 10 mx.loopback.test.\nmx.loopback.test. 300 IN A 127.0.0.1\n" +
		"loopback6.test. 300 IN MX 10 mx.loopback6.test.\nmx.loopback6.test. 300 IN AAAA ::1\n" +
		"linklocal.test. 300 IN MX 10 mx.linklocal.test.\nmx.linklocal.test. 300 IN A 169.254.169.254\n" +
		"cgnat.test. 300 IN MX 10 mx.cgnat.test.\nmx.cgnat.test. 300 IN A 100.64.0.1\n" +
		"unspecified.test. 300 IN MX 10 mx.unspecified.test.\nmx.unspecified.test. 300 IN A 0.0.0.0\n" +
		"multicast.test. 300 IN MX 10 mx.multicast.test.\nmx.multicast.test. 300 IN A 224.0.0.1\n" +
		"ula.test. 300 IN MX 10 mx.ula.test.\nmx.ula.test. 300 IN AAAA fd00::25\n" +
		"both.test. 300 IN MX 10 mx.both.test.\nmx.both.test. 300 IN A 10.0.0.25\nmx.both.test. 300 IN AAAA fe80::25\n" +
		"implicit.test. 300 IN A 192.168.1.25\n"
	dns, s := mxWorld(t, zone)
	mx := newMX(t, dns, s, false)
	for _, tc := range []struct{ rcpt, want string }{
		{"a@private.test", "10.1.2.3 (private)"},
		{"a@loopback.test", "127.0.0.1 (loopback)"},
		{"a@loopback6.test", "::1 (loopback)"},
		{"a@linklocal.test", "169.254.169.254 (link-local)"},
		{"a@cgnat.test", "100.64.0.1 (shared address space"},
		{"a@unspecified.test", "0.0.0.0 (this network)"},
		{"a@multicast.test", "224.0.0.1 (multicast)"},
		{"a@ula.test", "fd00::25 (unique local"},
		{"a@both.test", "fe80::25 (link-local)"},
		{"a@implicit.test", "192.168.1.25 (private)"},
		{"a@[10.9.8.7]", "10.9.8.7 (private)"},
		// RFC 5321's IPv6 literal carries a tag, in any case.
		{"a@[IPv6:fd00::25]", "fd00::25 (unique local"},
		{"a@[ipv6:::1]", "::1 (loopback)"},
		{"a@[IPV6:fe80::1]", "fe80::1 (link-local)"},
		{"a@[IPv6:::ffff:10.0.0.1]", "(private)"},
	} {
		res := send(t, mx, Message{}, "", "Subject: DSN\r\n\r\nx\r\n", tc.rcpt)
		e := failure(res)
		if e == nil || e.Temporary || e.Status != "5.4.4" || !strings.Contains(e.Reply(), tc.want) || !strings.Contains(e.Reply(), "not at public addresses") {
			t.Errorf("%s: outcome %v, want a permanent refusal naming %q", tc.rcpt, e, tc.want)
		}
	}
	if n := s.Connections(); n != 0 {
		t.Errorf("%d connections to the loopback server", n)
	}
}

// TestMXSkipsNonPublicAddresses: a non-public MX, or a non-public address
// of an MX, is passed over for the next; here loopback plays the public
// address.
func TestMXSkipsNonPublicAddresses(t *testing.T) {
	t.Parallel()
	zone := "" +
		"two.test. 300 IN MX 10 inside.two.test.\ntwo.test. 300 IN MX 20 mx.two.test.\n" +
		"inside.two.test. 300 IN A 10.0.0.25\nmx.two.test. 300 IN A 127.0.0.1\n" +
		"mixed.test. 300 IN MX 10 mx.mixed.test.\nmx.mixed.test. 300 IN A 192.168.7.7\nmx.mixed.test. 300 IN A 127.0.0.1\n"
	dns, s := mxWorld(t, zone)
	mx := newMX(t, dns, s, true)
	for _, rcpt := range []string{"a@two.test", "a@mixed.test"} {
		if res := send(t, mx, Message{}, "", "Subject: DSN\r\n\r\nx\r\n", rcpt); !accepted(res) {
			t.Errorf("%s: %v", rcpt, failure(res))
		}
	}
	if n := s.Count(); n != 2 {
		t.Errorf("%d DSNs at the sender's server, want 2", n)
	}
}

// TestMXDeliversToIPv6Literal: a sender at an IPv6 address literal gets its
// DSN at that address; here ::1 plays the public address.
func TestMXDeliversToIPv6Literal(t *testing.T) {
	t.Parallel()
	s, err := standin.Start(standin.Options{Domain: "mx.sender.test", Addr: "[::1]:0"})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	mx := newMX(t, dnstest.Start(t, ""), s, true)
	for _, rcpt := range []string{"a@[IPv6:::1]", "b@[ipv6:0::1]"} {
		if res := send(t, mx, Message{}, "", "Subject: DSN\r\n\r\nx\r\n", rcpt); !accepted(res) {
			t.Errorf("%s: %v", rcpt, failure(res))
		}
	}
	if n := s.Count(); n != 2 {
		t.Errorf("%d DSNs at the sender's server, want 2", n)
	}
}
