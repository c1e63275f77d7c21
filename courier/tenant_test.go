// SPDX-License-Identifier: MIT

package courier

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/testnet"
	"github.com/dualmx/dualmx/standin"
)

func TestTLSPolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := newFixture(t)
	now := time.Now()
	expired, err := f.ca.LeafWith(now.Add(-48*time.Hour), now.Add(-time.Hour), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	plain := &tls.Config{} // marker: no STARTTLS
	for _, tc := range []struct {
		name    string
		srvTLS  *tls.Config
		policy  string
		deliver bool
		wantTLS bool
		reason  string
	}{
		{"require verified", nil, TLSRequire, true, true, ""},
		{"require without STARTTLS", plain, TLSRequire, false, false, "does not offer STARTTLS"},
		{"require foreign CA", other.tlsFor("127.0.0.1"), TLSRequire, false, false, "certificate"},
		{"require wrong name", f.tlsFor("mx.other.test"), TLSRequire, false, false, "certificate"},
		{"require expired", &tls.Config{Certificates: []tls.Certificate{expired}}, TLSRequire, false, false, "certificate"},
		{"opportunistic foreign CA", other.tlsFor("127.0.0.1"), TLSOpportunistic, true, true, ""},
		{"opportunistic without STARTTLS", plain, TLSOpportunistic, true, false, ""},
		{"none", nil, TLSNone, true, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s *standin.Server
			if tc.srvTLS == plain {
				var err error
				if s, err = standin.Start(standin.Options{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
			} else {
				s = f.target(standin.Options{TLS: tc.srvTLS})
			}
			cfg := f.config(s)
			cfg.TLS = tc.policy
			res := send(t, f.tenant(cfg), Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test")
			if tc.deliver {
				if !accepted(res) {
					t.Fatalf("not delivered: %v", failure(res))
				}
				if m := waitMsgs(t, s, 1)[0]; m.TLS != tc.wantTLS {
					t.Errorf("TLS = %v", m.TLS)
				}
				return
			}
			e := failure(res)
			if e == nil || !e.Temporary || !strings.Contains(e.Reply(), tc.reason) {
				t.Errorf("outcome %v, want a temporary failure saying %q", e, tc.reason)
			}
			if s.Count() != 0 {
				t.Error("message reached an unverified target")
			}
		})
	}
}

// TestTLSRequireSTARTTLSRefused: a target that offers STARTTLS and then
// refuses it is a downgrade under require: deferred, never sent in plain text.
func TestTLSRequireSTARTTLSRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var sawMail atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.Write([]byte("220 fake ESMTP\r\n"))
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(l)); {
					case strings.HasPrefix(cmd, "EHLO"):
						c.Write([]byte("250-fake\r\n250-8BITMIME\r\n250 STARTTLS\r\n"))
					case cmd == "STARTTLS":
						c.Write([]byte("454 4.7.0 TLS not available due to local problem\r\n"))
					case strings.HasPrefix(cmd, "MAIL"):
						sawMail.Store(true)
						c.Write([]byte("250 ok\r\n"))
					case cmd == "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte("250 ok\r\n"))
					}
				}
			}(c)
		}
	}()
	cfg := f.config(f.target(standin.Options{})) // then pointed at the fake
	cfg.Host, cfg.Port = "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	res := send(t, f.tenant(cfg), Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test")
	if e := failure(res); e == nil || !e.Temporary || !strings.Contains(e.Reply(), "454 4.7.0 TLS not available") {
		t.Errorf("outcome %v", e)
	}
	if sawMail.Load() {
		t.Error("MAIL sent in plain text after STARTTLS failed under require")
	}
}

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{})
	tenant := f.tenant(f.config(s))
	for i := range 6 {
		if i == 5 {
			time.Sleep(100 * time.Millisecond) // after a pause, from the pool
		}
		if res := send(t, tenant, Message{From: "alice@sender.test"}, "", testBody, "scriba@domain.test"); !accepted(res) {
			t.Fatalf("message %d: %v", i, failure(res))
		}
	}
	if c := s.Connections(); c != 1 {
		t.Errorf("%d connections for 6 messages, want 1", c)
	}
}

func TestStaleIdleConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	port := testnet.HoldTCP(t, "127.0.0.1") // the target comes back on the same port
	ln, err := port.Listen()
	if err != nil {
		t.Fatal(err)
	}
	s := f.target(standin.Options{Listener: ln})
	tenant := f.tenant(f.config(s))
	if res := send(t, tenant, Message{From: "alice@sender.test"}, "", testBody, "a@domain.test"); !accepted(res) {
		t.Fatal(failure(res))
	}
	// The target restarts: pooled connections are dead.
	s.Close()
	if ln, err = port.Listen(); err != nil {
		t.Fatal(err)
	}
	s2 := f.target(standin.Options{Listener: ln})
	if res := send(t, tenant, Message{From: "alice@sender.test"}, "", testBody, "b@domain.test"); !accepted(res) {
		t.Fatalf("after the restart: %v", failure(res))
	}
	waitMsgs(t, s2, 1)
}

// TestIdleConnectionsClosed: a pooled connection idle for longer than the
// idle timeout is closed with QUIT, without any further traffic.
func TestIdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := startScript(t, true, nil)
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	cfg := TenantConfig{Client: f.client(), Host: host, TLS: TLSNone, IdleTimeout: 200 * time.Millisecond}
	cfg.Port, _ = strconv.Atoi(port)
	tenant := f.tenant(cfg)
	if res := send(t, tenant, Message{From: "alice@sender.test"}, "", testBody, "a@domain.test"); !accepted(res) {
		t.Fatal(failure(res))
	}
	waitFor(t, failsafe, "QUIT on the idle connection", func() bool {
		_, cmds, _ := s.snapshot()
		return slices.Contains(cmds, "QUIT")
	})
	tenant.pool.mu.Lock()
	n, timer := len(tenant.pool.idle), tenant.pool.reaper
	tenant.pool.mu.Unlock()
	if n != 0 || timer != nil {
		t.Errorf("pool after the reap: %d keys, timer %v", n, timer)
	}
}

func TestEightBitAndUTF8(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	seven := f.target(standin.Options{No8BitMIME: true})
	eight := f.target(standin.Options{})
	body8 := "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n"
	for _, tc := range []struct {
		name    string
		target  *standin.Server
		body    string
		msg     Message
		deliver bool
		reason  string
	}{
		{"8-bit to 7-bit target", seven, body8, Message{From: "alice@sender.test", EightBit: true}, false, "8BITMIME"},
		{"7-bit to 7-bit target", seven, testBody, Message{From: "alice@sender.test"}, true, ""},
		{"8-bit to 8-bit target", eight, body8, Message{From: "alice@sender.test", EightBit: true}, true, ""},
		{"UTF8 envelope", eight, testBody, Message{From: "jos\xc3\xa9@sender.test", SMTPUTF8: true}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.target.Count()
			res := send(t, f.tenant(f.config(tc.target)), tc.msg, "", tc.body, "scriba@domain.test")
			if !tc.deliver {
				if e := failure(res); e == nil || !e.Temporary || !strings.Contains(e.Reply(), tc.reason) {
					t.Errorf("outcome %v, want a deferral saying %q", e, tc.reason)
				}
				if tc.target.Count() != before {
					t.Error("delivered, downgraded")
				}
				return
			}
			if !accepted(res) {
				t.Fatal(failure(res))
			}
			m := waitMsgs(t, tc.target, before+1)[before]
			if string(m.Data) != tc.body {
				t.Errorf("bytes changed: %q", m.Data)
			}
			if tc.msg.EightBit && m.MailOpts.Body != smtp.Body8BitMIME {
				t.Errorf("BODY = %q", m.MailOpts.Body)
			}
			if m.MailOpts.UTF8 != tc.msg.SMTPUTF8 {
				t.Errorf("SMTPUTF8 = %v", m.MailOpts.UTF8)
			}
		})
	}
}

// TestHeaderSentFirstAndCounted: the header fields a stage adds go before
// the unchanged body, count in SIZE=, and come back in the result.
func TestHeaderSentFirstAndCounted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{})
	header := "Authentication-Results: relay.test; none\r\n"
	res := send(t, f.tenant(f.config(s)), Message{From: "alice@sender.test"}, header, testBody, "scriba@domain.test")
	if !accepted(res) || string(res.Header) != header {
		t.Fatalf("result %+v", res)
	}
	m := waitMsgs(t, s, 1)[0]
	if string(m.Data) != header+testBody || m.MailOpts.Size != int64(len(header+testBody)) {
		t.Errorf("delivered %q with SIZE=%d", m.Data, m.MailOpts.Size)
	}
}

func TestCapabilities(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		opts  standin.Options
		size  int64
		eight bool
	}{
		{"size and 8bit", standin.Options{MaxSize: 35 << 20}, 35 << 20, true},
		{"7-bit, no size", standin.Options{No8BitMIME: true}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.target(tc.opts)
			caps, err := f.tenant(f.config(s)).Capabilities(context.Background())
			if err != nil || caps.MaxSize != tc.size || caps.EightBitMIME != tc.eight {
				t.Errorf("Capabilities = %+v, %v", caps, err)
			}
		})
	}
	s := f.target(standin.Options{TLS: newFixture(t).tlsFor("127.0.0.1")})
	if _, err := f.tenant(f.config(s)).Capabilities(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("capabilities of an unverifiable target: %v", err)
	}
}
