// SPDX-License-Identifier: MIT

package smtpd_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/smtpd"
)

// TestMaxConnectionsPerIP: one client address gets at most the configured
// number of sessions, the next one a clear 421; another address still gets in.
func TestMaxConnectionsPerIP(t *testing.T) {
	f := start(t, func(o *smtpd.Options) { o.MaxConnections = 50; o.MaxConnectionsPerIP = 3 })
	greet := func(local string) (net.Conn, string) {
		d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a greeting or a 421 comes
		buf := make([]byte, 256)
		n, _ := c.Read(buf)
		return c, string(buf[:n])
	}
	for i := 0; i < 3; i++ {
		c, g := greet("127.0.0.1")
		defer c.Close()
		if !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d: %q", i+1, g)
		}
	}
	c, g := greet("127.0.0.1")
	c.Close()
	if !strings.HasPrefix(g, "421 4.7.0 Too many connections from your host") {
		t.Fatalf("4th connection from one address: %q, want 421 4.7.0", g)
	}
	c, g = greet("127.0.0.2")
	c.Close()
	if !strings.HasPrefix(g, "220 ") {
		t.Fatalf("another address refused: %q", g)
	}
	if got := testutil.ToFloat64(f.m.SMTPRefusals.WithLabelValues("too_many_connections_per_ip")); got != 1 {
		t.Errorf("refusal metric = %v, want 1", got)
	}
}

// TestHeaderLimitAndNUL: a header block over the limit gets 552 5.3.4 (the
// same bytes as body are fine), a NUL byte anywhere gets 554 5.6.0; neither
// leaves anything in the spool, and the session stays usable.
func TestHeaderLimitAndNUL(t *testing.T) {
	f := start(t, func(o *smtpd.Options) { o.MaxHeaderBytes = 4096 })
	long := strings.Repeat("X-Filler: "+strings.Repeat("h", 80)+"\r\n", 60) // ~5.5 KB
	tests := []struct {
		name, data, want string
	}{
		{"header block over the limit", long + "Subject: x\r\n\r\nbody\r\n", "552 5.3.4 Message header size exceeds limit"},
		{"one folded field over the limit", "Subject: x\r\n" + strings.Repeat(" folded"+strings.Repeat("f", 70)+"\r\n", 70) + "\r\nbody\r\n", "552 5.3.4"},
		{"same bytes in the body are fine", "Subject: x\r\n\r\n" + long, "250 2.0.0"},
		{"NUL in a header", "Subject: a\x00b\r\n\r\nbody\r\n", "554 5.6.0"},
		{"NUL in the body", "Subject: x\r\n\r\nbo\x00dy\r\n", "554 5.6.0"},
	}
	accepted := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\n"+tc.data+".\r\nNOOP\r\nQUIT\r\n")
			if !strings.Contains(out, "\r\n"+tc.want) {
				t.Fatalf("want %q:\n%s", tc.want, out)
			}
			if rest := out[strings.Index(out, "\r\n"+tc.want)+2:]; !strings.Contains(rest, "\r\n250 ") || !strings.Contains(rest, "\r\n221 ") {
				t.Errorf("session not usable after the reply (NOOP, QUIT):\n%s", out)
			}
			if strings.HasPrefix(tc.want, "250") {
				accepted++
			}
			if n := spoolCount(t, f); n != accepted {
				t.Fatalf("spool holds %d items, want %d", n, accepted)
			}
		})
	}
}

// TestSlowDripClient: a client that sends a command a byte at a time, each
// byte well inside the idle timeout, is still cut off once the line has taken
// longer than the timeout; a slow but steady DATA stream is not.
func TestSlowDripClient(t *testing.T) {
	f := start(t, func(o *smtpd.Options) { o.ReadTimeout = 600 * time.Millisecond })
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	start := time.Now()
	var reply string
	done := make(chan struct{})
	go func() {
		// go-smtp answers the cut-off fragment (501) and then the timeout (421).
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			l, err := r.ReadString('\n')
			reply += l
			if err != nil {
				break
			}
		}
		close(done)
	}()
	cmd := "MAIL FROM:<drip@example.org>\r\n"
drip:
	for i := 0; i < len(cmd); i++ {
		c.Write([]byte{cmd[i]})
		select {
		case <-done:
			break drip
		case <-time.After(250 * time.Millisecond):
		}
	}
	<-done
	if !strings.Contains(reply, "421 4.4.2") || time.Since(start) > 3*time.Second {
		t.Fatalf("drip client got %q after %s, want 421 4.4.2 within a few idle timeouts", reply, time.Since(start))
	}

	// Slow but steady DATA: every read inside the timeout, the whole far longer.
	c2, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	expect := func(prefix string) {
		t.Helper()
		for {
			l, err := r2.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if len(l) > 3 && l[3] == '-' {
				continue
			}
			if !strings.HasPrefix(l, prefix) {
				t.Fatalf("got %q, want %q", l, prefix)
			}
			return
		}
	}
	expect("220")
	for _, step := range []struct{ cmd, want string }{{"EHLO c\r\n", "250"}, {"MAIL FROM:<a@example.org>\r\n", "250"}, {"RCPT TO:<scriba@fwd.example.nl>\r\n", "250"}, {"DATA\r\n", "354"}} {
		c2.Write([]byte(step.cmd))
		expect(step.want)
	}
	for i := 0; i < 8; i++ { // 8 × 300ms: four times the timeout in all
		fmt.Fprintf(c2, "line %d\r\n", i)
		time.Sleep(300 * time.Millisecond)
	}
	c2.Write([]byte(".\r\n"))
	expect("250 2.0.0")
}

// TestSTARTTLSSessionNotCutByLineBound: after STARTTLS the bytes are
// ciphertext; a session sending commands spaced inside the timeout lives on
// however long it lasts.
func TestSTARTTLSSessionNotCutByLineBound(t *testing.T) {
	ca, srvTLS := relayTLS(t)
	f := start(t, func(o *smtpd.Options) { o.ReadTimeout = 500 * time.Millisecond; o.TLS = srvTLS })
	c, err := smtp.DialStartTLS(f.addr, &tls.Config{ServerName: "relay.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 10; i++ { // 10 × 300ms: six times the timeout
		if err := c.Noop(); err != nil {
			t.Fatalf("NOOP %d over TLS: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// dripUntilClosed sends before, then first, then a byte of junk every
// interval, never ending the line, and returns what the server said and how long it kept the
// connection open (at most limit).
func dripUntilClosed(t *testing.T, c net.Conn, before, first string, interval, limit time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	var reply strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.SetReadDeadline(time.Now().Add(limit))
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			reply.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	if before != "" {
		c.Write([]byte(before))
		time.Sleep(interval) // so that first begins a read of its own
	}
	c.Write([]byte(first))
	for {
		select {
		case <-done:
			return reply.String(), time.Since(start)
		case <-time.After(interval):
			c.Write([]byte{'x'})
		}
	}
}

// TestTLSByteWithoutSTARTTLS: a 0x16 byte (the first byte of a TLS
// handshake record) at the start of a line, with no STARTTLS before it, does
// not switch the connection to TLS handling: the line must still be complete
// within the read timeout, so the drip is cut.
func TestTLSByteWithoutSTARTTLS(t *testing.T) {
	f := start(t, func(o *smtpd.Options) { o.ReadTimeout = 500 * time.Millisecond })
	for _, tc := range []struct{ name, before string }{
		{"at the first line", ""},
		{"after a command", "EHLO c\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			reply, took := dripUntilClosed(t, c, tc.before, "\x16", 100*time.Millisecond, 5*time.Second)
			if !strings.Contains(reply, "421 4.4.2") || took > 3*time.Second {
				t.Fatalf("after a bare 0x16 the drip held the session %s (read timeout 500ms); server said %q", took.Round(time.Millisecond), reply)
			}
		})
	}
}

// TestFailedHandshakeDoesNotExtendSession: a client that starts a TLS
// handshake after STARTTLS and lets it fail is back in plain text, and the
// drip is cut within a read timeout of the handshake's start.
func TestFailedHandshakeDoesNotExtendSession(t *testing.T) {
	_, srvTLS := relayTLS(t)
	f := start(t, func(o *smtpd.Options) { o.ReadTimeout = 500 * time.Millisecond; o.TLS = srvTLS })
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // the drip sets its own, shorter read deadline
	r := bufio.NewReader(c)
	r.ReadString('\n')
	c.Write([]byte("STARTTLS\r\n"))
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("STARTTLS: %q", l)
	}
	// The client does not trust the test CA: it aborts the handshake.
	if err := tls.Client(c, &tls.Config{ServerName: "relay.test", RootCAs: x509.NewCertPool()}).Handshake(); err == nil {
		t.Fatal("handshake succeeded")
	}
	reply, took := dripUntilClosed(t, &readerConn{Conn: c, r: r}, "", "N", 100*time.Millisecond, 5*time.Second)
	if !strings.Contains(reply, "421 4.4.2") || took > 3*time.Second {
		t.Fatalf("after a failed handshake the drip held the session %s (read timeout 500ms); server said %q", took.Round(time.Millisecond), reply)
	}
}

// readerConn reads through r, which may hold bytes already read from Conn.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestMaxSession: however well a client behaves, its connection ends at
// max_session with 421 4.4.2: in plain text, over TLS, and inside DATA,
// where the message is not acknowledged and nothing is spooled.
func TestMaxSession(t *testing.T) {
	ca, srvTLS := relayTLS(t)
	const maxSession = 1500 * time.Millisecond
	f := start(t, func(o *smtpd.Options) {
		o.ReadTimeout = 500 * time.Millisecond
		o.MaxSession = maxSession
		o.TLS = srvTLS
	})
	// steady sends line every 200ms until the connection fails, and
	// returns how long that took and the last reply.
	steady := func(t *testing.T, c *smtp.Client, step func() error) (time.Duration, error) {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 10*time.Second {
			if err := step(); err != nil {
				return time.Since(start), err
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatal("session not ended")
		return 0, nil
	}
	check := func(t *testing.T, took time.Duration, err error) {
		t.Helper()
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 421 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
			t.Errorf("session ended with %v, want 421 4.4.2", err)
		}
		if took < maxSession-300*time.Millisecond || took > maxSession+2*time.Second {
			t.Errorf("session ended after %s, want about %s", took.Round(time.Millisecond), maxSession)
		}
	}
	t.Run("plain", func(t *testing.T) {
		c, err := smtp.Dial(f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		took, err := steady(t, c, c.Noop)
		check(t, took, err)
	})
	t.Run("TLS", func(t *testing.T) {
		c, err := smtp.DialStartTLS(f.addr, &tls.Config{ServerName: "relay.test", RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		took, err := steady(t, c, c.Noop)
		check(t, took, err)
	})
	t.Run("inside DATA", func(t *testing.T) {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.Write([]byte("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\nSubject: slow\r\n\r\n"))
		reply, _ := dripUntilClosed(t, c, "", "line\r\n", 200*time.Millisecond, 10*time.Second)
		took := time.Since(start)
		if !strings.Contains(reply, "354 ") || !strings.Contains(reply, "421 4.4.2") || strings.Contains(reply, "250 2.0.0 OK") {
			t.Errorf("slow DATA past max_session: %q", reply)
		}
		if took > maxSession+2*time.Second {
			t.Errorf("ended after %s", took)
		}
		if n := spoolCount(t, f); n != 0 {
			t.Errorf("%d messages spooled from a DATA cut at max_session", n)
		}
	})
	if got := testutil.ToFloat64(f.m.SMTPRefusals.WithLabelValues("max_session")); got != 3 {
		t.Errorf("max_session refusals = %v, want 3", got)
	}
}

// TestTooManyRefusedRecipients: a client probing for addresses gets its
// twentieth refused recipient answered 421 4.7.0 and the connection closed,
// however many it pipelined; RSET does not reset the count.
func TestTooManyRefusedRecipients(t *testing.T) {
	f := start(t, nil)
	var script strings.Builder
	script.WriteString("EHLO c\r\nMAIL FROM:<a@example.org>\r\n")
	for i := range 30 {
		if i == 10 {
			script.WriteString("RSET\r\nMAIL FROM:<a@example.org>\r\n")
		}
		fmt.Fprintf(&script, "RCPT TO:<probe%d@fwd.example.nl>\r\n", i)
	}
	script.WriteString("QUIT\r\n")
	out := rawSession(t, f.addr, script.String())
	if n := strings.Count(out, "550 5.1.1"); n != 19 || !strings.HasSuffix(out, "421 4.7.0 Too many errors, closing connection\r\n") {
		t.Fatalf("%d refusals before the end, want 19 and then 421 4.7.0:\n%s", n, out)
	}
	if got := testutil.ToFloat64(f.m.SMTPRefusals.WithLabelValues("too_many_errors")); got != 1 {
		t.Errorf("too_many_errors = %v, want 1", got)
	}
}

// relayTLS is a test CA and the relay's server TLS config (relay.test)
// from it.
func relayTLS(t *testing.T) (*testca.CA, *tls.Config) {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := ca.ServerTLS("relay.test")
	if err != nil {
		t.Fatal(err)
	}
	return ca, srvTLS
}
