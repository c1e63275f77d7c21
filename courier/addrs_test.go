// SPDX-License-Identifier: MIT

package courier

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/standin"
)

// deadFrontEnd listens on addr and closes every connection at once,
// counting them: a front end of the tenant whose service is gone.
func deadFrontEnd(t *testing.T, addr string) (*atomic.Int32, error) {
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
		if dead, err = deadFrontEnd(t, fmt.Sprintf("127.0.0.2:%d", s.Port())); err == nil {
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
