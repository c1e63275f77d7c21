// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/standin"
)

// frontEnd listens on addr and, to every connection, says greeting (if
// any) and closes it, counting them: a front end of the tenant whose
// service is gone ("") or that is busy or closing ("421 ...").
func frontEnd(t *testing.T, addr, greeting string) (*atomic.Int32, error) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			if greeting != "" {
				c.Write([]byte(greeting + "\r\n"))
			}
			c.Close()
		}
	}()
	return &n, nil
}

// TestEveryAddressOfTheTarget: the tenant host resolves (through the
// configured resolver) to 127.0.0.1, where the service answers, 127.0.0.2,
// a dead front end, and ::1, where nothing listens. Whatever the order,
// the message goes out; a dead address is tried once and then only after
// the others until its mark runs out; target.ip_family keeps to one family.
func TestEveryAddressOfTheTarget(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var s *standin.Server
	var dead *atomic.Int32
	for try := 0; ; try++ {
		s = f.target(standin.Options{TLS: f.tlsFor("tenant.test")})
		var err error
		if dead, err = frontEnd(t, fmt.Sprintf("127.0.0.2:%d", s.Port()), ""); err == nil {
			break
		}
		if try == 5 {
			t.Fatal(err)
		}
	}
	dns := dnstest.Start(t, "tenant.test. A 127.0.0.2\ntenant.test. A 127.0.0.1\ntenant.test. AAAA ::1\n")
	tenant := func(family string, badFor time.Duration) *Tenant {
		cfg := f.config(s)
		cfg.Host, cfg.IPFamily, cfg.BadAddressFor = "tenant.test", family, badFor
		cfg.Resolver = dns.Resolver()
		cfg.IdleTimeout = time.Nanosecond // every message on a new connection
		return f.tenant(cfg)
	}

	tn := tenant(FamilyAny, time.Hour)
	for i := range 5 {
		if res := send(t, tn, Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test"); !accepted(res) {
			t.Fatalf("message %d: %v", i, failure(res))
		}
	}
	if n := dead.Load(); n > 1 {
		t.Errorf("the dead front end saw %d connections for 5 messages, want at most 1", n)
	}
	if got := s.Count(); got != 5 {
		t.Errorf("delivered %d", got)
	}

	// Its mark runs out: tried again, first or after the others.
	tn = tenant(FamilyIPv4, 100*time.Millisecond)
	before := dead.Load()
	for range 3 {
		send(t, tn, Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test")
		time.Sleep(150 * time.Millisecond)
	}
	if n := dead.Load() - before; n != 3 {
		t.Errorf("with a 100ms mark, the dead front end saw %d connections for 3 messages 150ms apart, want 3", n)
	}

	// IPv6 only: ::1 alone, where nothing listens.
	tn = tenant(FamilyIPv6, time.Hour)
	before, delivered := dead.Load(), s.Count()
	res := send(t, tn, Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test")
	if e := failure(res); e == nil || !e.Temporary || !strings.Contains(e.Reply(), "[::1]") {
		t.Errorf("IPv6 only: %v, want a temporary failure to connect to [::1]", e)
	}
	if dead.Load() != before || s.Count() != delivered {
		t.Error("ip_family ipv6 reached an IPv4 address")
	}
}

// TestResolverFailureFallsBackToLastAddresses: when the lookup of the
// tenant host fails (a local resolver restarting), the addresses of the
// last good lookup stand in: a target that answers there is not taken for
// dead. Without any good lookup the message is deferred (4.4.3), counted
// as a DNS failure, not as a failed connection.
func TestResolverFailureFallsBackToLastAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		lookedUp     bool // a lookup succeeded before the resolver broke
		wantAccepted bool
	}{
		{"after a good lookup", true, true},
		{"before any good lookup", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			s := f.target(standin.Options{TLS: f.tlsFor("tenant.test")})
			dns := dnstest.Start(t, "tenant.test. A 127.0.0.1\n")
			var broken atomic.Bool
			res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				if broken.Load() {
					return nil, errors.New("resolver down")
				}
				var d net.Dialer
				return d.DialContext(ctx, network, dns.Addr())
			}}
			var mu sync.Mutex
			now := time.Now()
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			cfg := f.config(s)
			cfg.Host, cfg.Resolver, cfg.Now = "tenant.test", res, clock
			cfg.IdleTimeout = time.Nanosecond // every message on a new connection, which needs the address
			tn := f.tenant(cfg)
			if tc.lookedUp {
				if r := send(t, tn, Message{From: "a@sender.test"}, "", testBody, "scriba@domain.test"); !accepted(r) {
					t.Fatal(failure(r))
				}
			}
			broken.Store(true)
			mu.Lock()
			now = now.Add(resolveEvery + time.Second) // the last answer is due for renewal
			mu.Unlock()
			const n = 5
			lookups := uint64(0) // deliveries that failed to look the host up
			for i := range n {
				r := send(t, tn, Message{From: "a@sender.test"}, "", testBody, "scriba@domain.test")
				if accepted(r) != tc.wantAccepted {
					t.Fatalf("message %d with the resolver down: %v", i, failure(r))
				}
				if e := failure(r); e != nil && e.Status == "4.4.3" {
					lookups++
					if !e.Temporary {
						t.Errorf("message %d: %v, want a temporary failure", i, e)
					}
				}
			}
			st := tn.Health().Status()
			if st.ConnectionsFailed != 0 {
				t.Errorf("%d failed connections counted for a resolver that failed", st.ConnectionsFailed)
			}
			if st.ConnectionsDNSFailed != lookups || tc.wantAccepted != (lookups == 0) {
				t.Errorf("%d DNS failures counted, %d deliveries failed to look the host up", st.ConnectionsDNSFailed, lookups)
			}
			if tc.wantAccepted && st.Suspended {
				t.Errorf("a resolver failure suspended a target that answers at its last address: %+v", st)
			}
		})
	}
}

// TestAddressFamilyRefusals: a refusal of the relay's address family
// (4.7.25, 5.7.25: an IPv6 address without reverse DNS; 5.7.510: no mail
// over IPv6) is a failure of the target over that family: with IPv6 the
// only family allowed, repeated refusals suspend it. 4.7.26 (this message
// must pass SPF or DKIM over IPv6) is about the message: never a failure.
func TestAddressFamilyRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reply         *smtp.SMTPError
		wantSuspended bool
	}{
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 25}, Message: "Service unavailable, sending IPv6 address [::1] must have reverse DNS record."}, true},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 25}, Message: "The sending IPv6 address [::1] must have a reverse DNS record."}, true},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 510}, Message: "Access denied, domain.test does not accept email over IPv6."}, true},
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 26}, Message: "Service unavailable, message sent over IPv6 [::1] must pass either SPF or DKIM validation."}, false},
	} {
		t.Run(fmt.Sprintf("%d %d.%d.%d", tc.reply.Code, tc.reply.EnhancedCode[0], tc.reply.EnhancedCode[1], tc.reply.EnhancedCode[2]), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			s := f.target(standin.Options{Addr: "[::1]:0", TLS: f.tlsFor("::1"), Hook: func(e standin.Event) error {
				if e.Stage == standin.StageRcpt {
					return tc.reply
				}
				return nil
			}})
			cfg := f.config(s)
			cfg.Host, cfg.IPFamily = "::1", FamilyIPv6
			cfg.Health = HealthConfig{MaxConcurrency: 8}
			tn := f.tenant(cfg)
			for i := range 10 {
				r := send(t, tn, Message{From: "a@sender.test"}, "", testBody, "scriba@domain.test")
				if e := failure(r); e == nil || !e.Temporary {
					t.Fatalf("message %d: %v, want a temporary failure", i, e)
				}
			}
			st := tn.Health().Status()
			t.Logf("10 messages refused: %d connections, suspended %v, window %d", s.Connections(), st.Suspended, st.Window)
			if st.Suspended != tc.wantSuspended {
				t.Errorf("suspended: %v, want %v", st.Suspended, tc.wantSuspended)
			}
		})
	}
}

// TestNextAddressAfterBusyGreetingOrTLSFailure: the tenant host resolves
// to 127.0.0.2, whose front end greets with 421 or offers no STARTTLS, and
// to 127.0.0.1, which works: the failure is one of that front end, and the
// message goes out through the next address in the same attempt.
func TestNextAddressAfterBusyGreetingOrTLSFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// start runs the bad front end at addr; tried counts its connections.
		start func(t *testing.T, addr string) (tried func() int, err error)
	}{
		{"421 greeting", func(t *testing.T, addr string) (func() int, error) {
			n, err := frontEnd(t, addr, "421 4.3.2 Service not available, closing transmission channel")
			if err != nil {
				return nil, err
			}
			return func() int { return int(n.Load()) }, nil
		}},
		{"no STARTTLS", func(t *testing.T, addr string) (func() int, error) {
			s, err := standin.Start(standin.Options{Addr: addr})
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { s.Close() })
			return func() int { return int(s.Connections()) }, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var s *standin.Server
			var tried func() int
			for try := 0; ; try++ {
				s = f.target(standin.Options{TLS: f.tlsFor("tenant.test")})
				var err error
				if tried, err = tc.start(t, fmt.Sprintf("127.0.0.2:%d", s.Port())); err == nil {
					break
				}
				if try == 5 {
					t.Fatal(err)
				}
			}
			dns := dnstest.Start(t, "tenant.test. A 127.0.0.2\ntenant.test. A 127.0.0.1\n")
			cfg := f.config(s)
			cfg.Host, cfg.Resolver = "tenant.test", dns.Resolver()
			cfg.BadAddressFor = time.Nanosecond // the bad front end first every time
			cfg.IdleTimeout = time.Nanosecond   // every message on a new connection
			tn := f.tenant(cfg)
			const n = 3
			for i := range n {
				if r := send(t, tn, Message{From: "a@sender.test"}, "", testBody, "scriba@domain.test"); !accepted(r) {
					t.Fatalf("message %d: %v", i, failure(r))
				}
			}
			if tried() == 0 {
				t.Fatal("the bad front end was never tried: the test shows nothing")
			}
			t.Logf("%d messages delivered; the bad front end was tried %d times", n, tried())
		})
	}
}

// TestFamilySwitchOnADualStackHost: the tenant host has an IPv6 and an IPv4
// front end on one port (::1 and 127.0.0.1). Over IPv6 the service refuses
// mail (5.7.510: the domain does not accept email over IPv6). That message
// is deferred, and the next ones go out over IPv4 without touching IPv6
// again while the family's mark lasts.
func TestFamilySwitchOnADualStackHost(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	refuse := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 510}, Message: "Access denied, domain.test does not accept email over IPv6."}
	tlsConf := f.tlsFor("tenant.test")
	var s6, s4 *standin.Server
	for try := 0; ; try++ {
		s6 = f.target(standin.Options{Addr: "[::1]:0", TLS: tlsConf, Hook: func(e standin.Event) error {
			if e.Stage == standin.StageRcpt {
				return refuse
			}
			return nil
		}})
		var err error
		if s4, err = standin.Start(standin.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s6.Port()), TLS: tlsConf}); err == nil {
			t.Cleanup(func() { s4.Close() })
			break
		}
		if try == 5 {
			t.Fatalf("no port free on both loopbacks: %v", err)
		}
	}
	dns := dnstest.Start(t, "tenant.test. AAAA ::1\ntenant.test. A 127.0.0.1\n")
	cfg := f.config(s4)
	cfg.Host, cfg.IPFamily, cfg.BadAddressFor = "tenant.test", FamilyAny, time.Hour
	cfg.Resolver = dns.Resolver()
	cfg.IdleTimeout = time.Nanosecond // every message on a new connection
	tn := f.tenant(cfg)

	res := send(t, tn, Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test")
	if s6.Connections() == 0 {
		t.Fatal("the resolver's order put IPv4 first: the switch away from IPv6 is not exercised")
	}
	if e := failure(res); e == nil || !e.Temporary || !strings.Contains(e.Reply(), "5.7.510") {
		t.Fatalf("first message: %v, want a temporary failure with 5.7.510", e)
	}
	for i := range 5 {
		if res := send(t, tn, Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test"); !accepted(res) {
			t.Fatalf("message %d after the refusal: %v", i+1, failure(res))
		}
	}
	if n := s6.Connections(); n != 1 {
		t.Errorf("the IPv6 front end saw %d connections, want 1: its family is marked after the refusal", n)
	}
	if got := s4.Count(); got != 5 {
		t.Errorf("IPv4 front end got %d messages, want 5", got)
	}
}
