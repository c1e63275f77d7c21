// SPDX-License-Identifier: MIT

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// raw speaks SMTP byte by byte, for input a well-behaved client library
// refuses to send. It writes script, then reads until the server closes the
// connection or a 221 arrives, and returns every reply line.
func raw(t *testing.T, addr, script string) []string {
	t.Helper()
	return rawLines(t, "", addr, script)
}

// rawLines is raw from a chosen loopback source address ("" any).
func rawLines(t *testing.T, local, addr, script string) []string {
	t.Helper()
	d := net.Dialer{Timeout: failsafe}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(failsafe))
	go c.Write([]byte(script))
	var lines []string
	r := bufio.NewReader(c)
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err != nil || strings.HasPrefix(l, "221 ") {
			return lines
		}
	}
}

// finals drops the greeting and continuation lines, leaving one reply per command.
func finals(lines []string) []string {
	var out []string
	for i, l := range lines {
		if i == 0 || (len(l) > 3 && l[3] == '-') {
			continue
		}
		out = append(out, l)
	}
	return out
}

// TestOpenRelayBattery: classic tricks to make a relay deliver elsewhere.
// Each RCPT gets the reply in the table; every message that is accepted
// reaches the tenant addressed to the configured target only.
func TestOpenRelayBattery(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "--target", "scriba@tenant.onmicrosoft.test")
	e.mustCLI("address", "add", "koster@hervormdputten.nl", "--alias", "koster@fwd.hervormdputten.nl")
	e.start()
	tests := []struct {
		name, rcpt, mailOpts string
		want                 string // reply code and enhanced code
	}{
		{"the alias", "scriba@fwd.hervormdputten.nl", "", "250 2.0.0"},
		{"case games on the alias", "SCRIBA@FWD.HervormdPutten.NL", "", "250 2.0.0"},
		{"the public address", "scriba@hervormdputten.nl", "", "250 2.0.0"},
		{"source route to us, final mailbox ours", "@evil.example:scriba@fwd.hervormdputten.nl", "", "250 2.0.0"},
		{"source route via us, final mailbox elsewhere", "@fwd.hervormdputten.nl:victim@example.com", "", "550 5.1.1"},
		{"multi-hop source route", "@fwd.hervormdputten.nl,@relay.test.localhost:victim@example.com", "", "550 5.1.1"},
		{"another domain", "victim@example.com", "", "550 5.1.1"},
		{"another domain, trailing dot", "victim@example.com.", "", "550 5.1.1"},
		{"percent hack", "victim%example.com@fwd.hervormdputten.nl", "", "550 5.1.1"},
		{"percent hack without domain", "victim%example.com", "", "501 5.5.2"},
		{"bang path", "example.com!victim@fwd.hervormdputten.nl", "", "550 5.1.1"},
		{"bang path without domain", "example.com!victim", "", "501 5.5.2"},
		{"quoted local part with @", `"victim@example.com"@fwd.hervormdputten.nl`, "", "550 5.1.1"},
		{"quoted alias (the same mailbox)", `"scriba"@fwd.hervormdputten.nl`, "", "250 2.0.0"},
		{"quoted alias with @ inside", `"scriba@fwd.hervormdputten.nl"@example.com`, "", "550 5.1.1"},
		{"IP literal", "scriba@[127.0.0.1]", "", "550 5.1.1"},
		{"IPv6 literal", "scriba@[IPv6:::1]", "", "550 5.1.1"},
		{"other mailbox at an IP literal", "victim@[192.0.2.1]", "", "550 5.1.1"},
		{"trailing dot on the alias", "scriba@fwd.hervormdputten.nl.", "", "550 5.1.1"},
		{"alias then another domain", "scriba@fwd.hervormdputten.nl@example.com", "", "550 5.1.1"},
		{"alias with percent domain", "scriba@fwd.hervormdputten.nl%example.com", "", "550 5.1.1"},
		{"alias as subdomain of another", "scriba@fwd.hervormdputten.nl.example.com", "", "550 5.1.1"},
		{"another domain on top of the alias", "victim@example.com@fwd.hervormdputten.nl", "", "550 5.1.1"},
		{"subaddress", "scriba+x@fwd.hervormdputten.nl", "", "550 5.1.1"},
		{"alias not forwarding yet", "koster@fwd.hervormdputten.nl", "", "550 5.1.1"},
		{"postmaster", "postmaster@fwd.hervormdputten.nl", "", "550 5.1.1"},
		{"Cyrillic a look-alike", "scrib\u0430@fwd.hervormdputten.nl", " SMTPUTF8", "550 5.1.1"},
		{"Cyrillic a look-alike without SMTPUTF8", "scrib\u0430@fwd.hervormdputten.nl", "", "553 5.6.7"},
		{"fullwidth s look-alike", "\uff53criba@fwd.hervormdputten.nl", " SMTPUTF8", "550 5.1.1"},
		{"zero-width space", "scri\u200bba@fwd.hervormdputten.nl", " SMTPUTF8", "550 5.1.1"},
		{"dotless domain look-alike", "scriba@fwd.hervormdputten\u2024nl", " SMTPUTF8", "550 5.1.1"},
		{"empty local part", "@fwd.hervormdputten.nl", "", "501 5.5.2"},
		{"no brackets, spaces", " scriba@fwd.hervormdputten.nl victim@example.com", "", "501 5.5.2"},
	}
	accepted := 0
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("relay-%02d", i)
			script := "EHLO oldhost.test\r\nMAIL FROM:<someone@example.org>" + tc.mailOpts + "\r\nRCPT TO:<" + tc.rcpt + ">\r\n"
			lines := finals(raw(t, e.smtpAddr(), script+"QUIT\r\n"))
			if len(lines) < 3 {
				t.Fatalf("session: %q", lines)
			}
			got := lines[2]
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("RCPT TO:<%s>: got %q, want %s", tc.rcpt, got, tc.want)
			}
			if !strings.HasPrefix(got, "250") {
				return
			}
			// Accepted: send it, and see where it goes.
			lines = finals(raw(t, e.smtpAddr(), script+"DATA\r\n"+string(testMessage(id))+".\r\nQUIT\r\n"))
			if len(lines) < 5 || !strings.HasPrefix(lines[4], "250 2.0.0") {
				t.Fatalf("DATA: %q", lines)
			}
			accepted++
		})
	}
	waitTenant(t, e.tenant, accepted)
	time.Sleep(500 * time.Millisecond)
	for _, m := range e.tenant.Messages() {
		if len(m.To) != 1 || m.To[0] != "scriba@tenant.onmicrosoft.test" {
			t.Errorf("a message went to %v; the only destination is the configured target", m.To)
		}
	}
	if n := e.tenant.Count(); n != accepted {
		t.Errorf("tenant got %d messages, %d were accepted", n, accepted)
	}
	t.Logf("open-relay battery: %d tricks, %d accepted (all for the configured target), %d refused", len(tests), accepted, len(tests)-accepted)
}

// hostileInbound tightens the inbound limits so they are hit quickly.
const hostileInbound = "  max_connections: 60\n  max_connections_per_ip: 5\n  max_header_bytes: 65536\n  read_timeout: 1s\n"

// TestSMTPSmuggling sends a second message hidden behind each end-of-data
// look-alike that some server might take for the real one. The relay must
// refuse the carrier (bare CR or LF in data), and the tenant must never see
// the smuggled message, alone or inside another.
func TestSMTPSmuggling(t *testing.T) {
	e := newEnv(t, envOptions{inbound: hostileInbound})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	smuggled := "MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<scriba@fwd.hervormdputten.nl>\r\nDATA\r\nFrom: ceo@bank.example\r\nSubject: SMUGGLED\r\n\r\nwire the money\r\n"
	tests := []struct{ name, sep, want string }{
		{"<LF>.<LF>", "\n.\n", "554 5.5.2"},
		{"<CR>.<CR>", "\r.\r", "554 5.5.2"},
		{"<LF>.<CR><LF>", "\n.\r\n", "554 5.5.2"},
		{"<CR><LF>.<LF>", "\r\n.\n", "554 5.5.2"},
		// go-smtp's DATA reader drops a "." and a CR after a line start, so
		// this one reaches dualmx as "\r\nMAIL FROM..." with nothing bare
		// left: accepted, and the would-be commands are body text of the
		// one carrier message, re-sent with proper CRLF and dot-stuffing.
		{"<CR><LF>.<CR>", "\r\n.\r", "250 2.0.0"},
		{"<CR>.<CR><LF>", "\r.\r\n", "554 5.5.2"},
		{"<LF>.<CR>", "\n.\r", "554 5.5.2"},
		{"<CR><LF><LF>.<LF>", "\r\n\n.\n", "554 5.5.2"},
		{"<CR><LF>.<NUL><CR><LF>", "\r\n.\x00\r\n", "554 5.6.0"},
		{"<CR><LF><NUL>.<CR><LF>", "\r\n\x00.\r\n", "554 5.6.0"},
	}
	carriers := 0
	for _, tc := range tests {
		if strings.HasPrefix(tc.want, "250") {
			carriers++
		}
		t.Run(tc.name, func(t *testing.T) {
			data := "From: a@example.org\r\nSubject: carrier " + tc.name + "\r\n\r\nhello" + tc.sep + smuggled + "\r\n.\r\n"
			lines := finals(raw(t, e.smtpAddr(), "EHLO oldhost.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.hervormdputten.nl>\r\nDATA\r\n"+data+"QUIT\r\n"))
			// EHLO, MAIL, RCPT, 354, the verdict on the carrier, QUIT.
			if len(lines) != 6 || !strings.HasPrefix(lines[4], tc.want) || !strings.HasPrefix(lines[5], "221") {
				t.Fatalf("replies %q, want the carrier refused with %s and nothing else", lines, tc.want)
			}
		})
	}
	// A clean message afterwards goes through, so an empty tenant means something.
	if err := send(e.smtpAddr(), "a@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("after-smuggling")); err != nil {
		t.Fatal(err)
	}
	waitTenant(t, e.tenant, 1+carriers)
	time.Sleep(500 * time.Millisecond)
	for _, m := range e.tenant.Messages() {
		hdr, body, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
		if m.From == "ceo@bank.example" || bytes.Contains(hdr, []byte("SMUGGLED")) || bytes.Contains(hdr, []byte("ceo@bank.example")) {
			t.Errorf("the smuggled message reached the tenant as a message of its own:\n%s", m.Data)
		}
		if bytes.Contains(body, []byte("SMUGGLED")) && !bytes.Contains(hdr, []byte("Subject: carrier <CR><LF>.<CR>")) {
			t.Errorf("smuggled text inside a message other than its accepted carrier:\n%s", m.Data)
		}
	}
	if n := e.tenant.Count(); n != 1+carriers {
		t.Errorf("tenant got %d messages, want %d", n, 1+carriers)
	}
}

// TestProtocolAbuse: pipelining abuse, over-long lines and commands, NUL
// bytes and 8-bit headers, each with the reply expected, over the real binary.
func TestProtocolAbuse(t *testing.T) {
	e := newEnv(t, envOptions{inbound: hostileInbound})
	for _, name := range []string{"scriba", "koster", "diaken", "organist", "cantor", "ouderling"} {
		e.addForwarding(name+"@hervormdputten.nl", name+"@fwd.hervormdputten.nl")
	}
	e.start()
	const (
		ehlo = "EHLO oldhost.test\r\n"
		mail = "MAIL FROM:<a@example.org>\r\n"
		rcpt = "RCPT TO:<scriba@fwd.hervormdputten.nl>\r\n"
	)
	msg := func(id string) string { return string(testMessage(id)) + ".\r\n" }
	long := strings.Repeat("x", 2100)
	tests := []struct {
		name   string
		script string
		want   []string // expected reply prefixes, one per command, after the greeting
		// delivered lists the message ids that must reach the tenant.
		delivered []string
	}{
		{"whole transaction pipelined in one write, data before 354",
			ehlo + mail + rcpt + "DATA\r\n" + msg("pipe-1") + "QUIT\r\n",
			[]string{"250", "250 2.0.0", "250 2.0.0", "354", "250 2.0.0 OK queued", "221"}, []string{"pipe-1"}},
		{"two transactions in one write",
			ehlo + mail + rcpt + "DATA\r\n" + msg("pipe-2a") + mail + rcpt + "DATA\r\n" + msg("pipe-2b") + "QUIT\r\n",
			[]string{"250", "250", "250", "354", "250 2.0.0 OK", "250", "250", "354", "250 2.0.0 OK", "221"}, []string{"pipe-2a", "pipe-2b"}},
		{"refused RCPT, then DATA and a body full of commands",
			ehlo + mail + "RCPT TO:<victim@example.com>\r\nDATA\r\nRCPT TO:<victim2@example.com>\r\nMAIL FROM:<x@y.example>\r\nhello\r\n.\r\nQUIT\r\n",
			[]string{"250", "250", "550 5.1.1", "502 5.5.1", "550 5.1.1", "503 5.5.1", "501 5.5.2", "501 5.5.2", "221"}, nil},
		{"one recipient spelt six ways: one entry",
			ehlo + mail + strings.Repeat(rcpt, 2) + "RCPT TO:<scriba@hervormdputten.nl>\r\nRCPT TO:<SCRIBA@fwd.hervormdputten.nl>\r\n" +
				"RCPT TO:<Scriba@fwd.hervormdputten.nl>\r\nRCPT TO:<sCriba@fwd.hervormdputten.nl>\r\nRCPT TO:<scRiba@fwd.hervormdputten.nl>\r\nQUIT\r\n",
			[]string{"250", "250", "250 2.0.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.1.5", "221"}, nil},
		{"recipients beyond the limit (duplicates do not count)",
			ehlo + mail + rcpt + "RCPT TO:<koster@fwd.hervormdputten.nl>\r\nRCPT TO:<koster@hervormdputten.nl>\r\nRCPT TO:<KOSTER@fwd.hervormdputten.nl>\r\n" +
				"RCPT TO:<diaken@fwd.hervormdputten.nl>\r\nRCPT TO:<organist@fwd.hervormdputten.nl>\r\nRCPT TO:<cantor@fwd.hervormdputten.nl>\r\n" +
				"RCPT TO:<ouderling@fwd.hervormdputten.nl>\r\nQUIT\r\n",
			[]string{"250", "250", "250 2.0.0", "250 2.0.0", "250 2.1.5", "250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.0.0", "452 4.5.3", "221"}, nil},
		{"a thousand commands in one write",
			strings.Repeat("NOOP\r\n", 1000) + "QUIT\r\n", append(repeat("250", 1000), "221"), nil},
		{"command line over the limit", "MAIL FROM:<" + long + "@example.org>\r\n", []string{"500 5.4.0 Too long line"}, nil},
		{"local part of 300 octets", ehlo + mail + "RCPT TO:<" + strings.Repeat("s", 300) + "@fwd.hervormdputten.nl>\r\nQUIT\r\n", []string{"250", "250", "550 5.1.1", "221"}, nil},
		{"data line over the limit (read ahead with the commands)", ehlo + mail + rcpt + "DATA\r\nSubject: long\r\n\r\n" + long + "\r\n.\r\nQUIT\r\n", []string{"500 5.4.0 Too long line"}, nil},
		{"NUL in MAIL FROM", ehlo + "MAIL FROM:<a\x00b@example.org>\r\nQUIT\r\n", []string{"250", "553 5.1.7", "221"}, nil},
		{"8-bit recipient without SMTPUTF8", ehlo + mail + "RCPT TO:<scrib\xc3\xa1@fwd.hervormdputten.nl>\r\nQUIT\r\n", []string{"250", "250", "553 5.6.7", "221"}, nil},
		{"NUL in RCPT TO", ehlo + mail + "RCPT TO:<scriba\x00@fwd.hervormdputten.nl>\r\nQUIT\r\n", []string{"250", "250", "550 5.1.1", "221"}, nil},
		{"NUL in a command verb", "NO\x00OP\r\nQUIT\r\n", []string{"501 5.5.2", "221"}, nil},
		{"NUL in the body", ehlo + mail + rcpt + "DATA\r\nSubject: nul\r\n\r\nbin\x00ary\r\n.\r\nQUIT\r\n", []string{"250", "250", "250", "354", "554 5.6.0", "221"}, nil},
		{"8-bit header without SMTPUTF8 or 8BITMIME: accepted, marked 8-bit",
			ehlo + mail + rcpt + "DATA\r\nFrom: a@example.org\r\nSubject: Gef\xc3\xa9liciteerd \xe9\r\nMessage-ID: <eight-bit@example.org>\r\n\r\nbody\r\n.\r\nQUIT\r\n",
			[]string{"250", "250", "250", "354", "250 2.0.0 OK", "221"}, []string{"eight-bit"}},
		{"8-bit sender without SMTPUTF8", ehlo + "MAIL FROM:<j\xc3\xa9r\xc3\xb4me@example.org>\r\nQUIT\r\n", []string{"250", "553 5.6.7", "221"}, nil},
	}
	var want []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := finals(raw(t, e.smtpAddr(), tc.script))
			if len(got) != len(tc.want) {
				t.Fatalf("%d replies, want %d:\n%q", len(got), len(tc.want), got)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("reply %d: %q, want %q", i+1, got[i], tc.want[i])
				}
			}
			want = append(want, tc.delivered...)
		})
	}
	waitTenant(t, e.tenant, len(want))
	time.Sleep(500 * time.Millisecond)
	got := arrivals(e.tenant)
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("%s arrived %d times", id, got[id])
		}
	}
	if n := e.tenant.Count(); n != len(want) {
		t.Errorf("tenant got %d messages, want %d", n, len(want))
	}
	for _, m := range e.tenant.Messages() {
		if bytes.Contains(m.Data, []byte("eight-bit@")) {
			if !bytes.Contains(m.Data, []byte("Subject: Gef\xc3\xa9liciteerd \xe9\r\n")) || m.MailOpts.Body != "8BITMIME" {
				t.Errorf("8-bit header message changed or not sent as 8BITMIME (body=%q):\n%s", m.MailOpts.Body, m.Data)
			}
		}
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// pid is the running daemon's process id.
func (e *env) pid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cmd.Process.Pid
}

// memKB reads VmRSS and VmHWM (peak RSS) of pid from /proc, in KiB.
func memKB(t *testing.T, pid int) (rss, peak int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			switch f[0] {
			case "VmRSS:":
				rss, _ = strconv.Atoi(f[1])
			case "VmHWM:":
				peak, _ = strconv.Atoi(f[1])
			}
		}
	}
	return rss, peak
}

// dialFrom connects from a given loopback address and returns the greeting.
func dialFrom(t *testing.T, addr, local string) (net.Conn, string) {
	t.Helper()
	d := net.Dialer{Timeout: failsafe, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(failsafe)) // a greeting or a 421 comes
	l, _ := bufio.NewReader(c).ReadString('\n')
	c.SetReadDeadline(time.Time{})
	return c, l
}

// TestResourceExhaustion: many connections from one address, many from
// many, a slow-drip client, huge header blocks and a burst of large
// messages. Each limit answers with its 4xx/5xx, the relay recovers when
// the pressure stops, and its memory stays bounded.
func TestResourceExhaustion(t *testing.T) {
	// A read timeout of 3s: short enough to wait for, long enough that a
	// loaded machine (-race, parallel tests) does not cut the load clients.
	e := newEnv(t, envOptions{inbound: strings.Replace(hostileInbound, "read_timeout: 1s", "read_timeout: 3s", 1)})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	rss0, _ := memKB(t, e.pid())

	// 1. One address: five sessions, the sixth is turned away; another address is not.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 5; i++ {
		c, g := dialFrom(t, e.smtpAddr(), "127.0.0.1")
		held = append(held, c)
		if !strings.HasPrefix(g, "220 ") {
			t.Fatalf("session %d from one address: %q", i+1, g)
		}
	}
	c, g := dialFrom(t, e.smtpAddr(), "127.0.0.1")
	c.Close()
	if !strings.HasPrefix(g, "421 4.7.0 Too many connections from your host") {
		t.Errorf("6th session from one address: %q, want 421 4.7.0", g)
	}
	c, g = dialFrom(t, e.smtpAddr(), "127.0.0.2")
	c.Close()
	if !strings.HasPrefix(g, "220 ") {
		t.Errorf("another address turned away: %q", g)
	}

	// 2. Many addresses: no more than max_connections (60) at once.
	greeted, refused := 0, 0
	for a := 10; a < 25; a++ {
		for i := 0; i < 5; i++ {
			c, g := dialFrom(t, e.smtpAddr(), fmt.Sprintf("127.0.0.%d", a))
			held = append(held, c)
			switch {
			case strings.HasPrefix(g, "220 "):
				greeted++
			case strings.HasPrefix(g, "421 4.7.0 Too many connections, try again later"):
				refused++
			default:
				t.Errorf("unexpected greeting %q", g)
			}
		}
	}
	if greeted+5 > 60 || refused == 0 {
		t.Errorf("%d greeted (+5 held), %d refused: max_connections 60 not enforced", greeted, refused)
	}

	// 3. Idle sessions time out (read_timeout 3s) and free their slots.
	waitFor(t, failsafe, "idle sessions to be closed", func() bool {
		c, g := dialFrom(t, e.smtpAddr(), "127.0.0.1")
		c.Close()
		return strings.HasPrefix(g, "220 ")
	})

	// 4. Slow drip: a byte every second, each within the timeout, the line not.
	c, _ = dialFrom(t, e.smtpAddr(), "127.0.0.3")
	start := time.Now()
	replies := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c)
		replies <- string(b)
	}()
	var drip string
dripping:
	for _, ch := range []byte("MAIL FROM:<drip@example.org>\r\n") {
		if _, err := c.Write([]byte{ch}); err != nil {
			break
		}
		select {
		case drip = <-replies:
			break dripping
		case <-time.After(time.Second):
		}
	}
	if drip == "" {
		drip = <-replies
	}
	c.Close()
	if !strings.Contains(drip, "421 4.4.2") || time.Since(start) > 10*time.Second {
		t.Errorf("slow-drip client: %q after %s, want 421 4.4.2 within a few seconds", drip, time.Since(start).Round(time.Millisecond))
	}

	// 5. A huge header block: 552 5.3.4, nothing spooled, session goes on.
	hugeHeader := strings.Repeat("X-Junk: "+strings.Repeat("j", 90)+"\r\n", 2000) // ~200 KB
	lines := finals(raw(t, e.smtpAddr(), "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.hervormdputten.nl>\r\nDATA\r\n"+hugeHeader+"\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n"))
	if len(lines) != 7 || !strings.HasPrefix(lines[4], "552 5.3.4 Message header size exceeds limit") || !strings.HasPrefix(lines[5], "250") {
		t.Errorf("huge header block: %q", lines)
	}

	// 6. Load: 40 large messages and 40 huge-header messages at once, from 16 addresses.
	big := testMessage("big")
	big = append(big, bytes.Repeat([]byte(strings.Repeat("b", 998)+"\r\n"), 2000)...) // ~2 MB
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, headerRefused := 0, 0
	for i := 0; i < 80; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := fmt.Sprintf("127.0.1.%d", i%16+1)
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
			for try := 0; try < 100; try++ {
				conn, err := d.Dial("tcp", e.smtpAddr())
				if err != nil {
					return
				}
				c, err := smtp.NewClient(conn), error(nil)
				if err = c.Hello("load.test"); err != nil { // 421: over the per-address limit; retry
					c.Close()
					time.Sleep(50 * time.Millisecond)
					continue
				}
				body := big
				if i%2 == 1 {
					body = []byte("Message-ID: <hdr@example.org>\r\n" + hugeHeader + "\r\nbody\r\n")
				}
				err = c.Mail("a@example.org", nil)
				if err == nil {
					err = c.Rcpt("scriba@fwd.hervormdputten.nl", nil)
				}
				var w io.WriteCloser
				if err == nil {
					w, err = c.Data()
				}
				if err == nil {
					if _, err = w.Write(body); err == nil {
						err = w.Close()
					}
				}
				c.Close()
				if code := smtpCode(err); code >= 400 && code < 500 {
					time.Sleep(100 * time.Millisecond) // try later, as the old host would
					continue
				}
				mu.Lock()
				switch code := smtpCode(err); {
				case code == 250:
					accepted++
				case code == 552:
					headerRefused++
				default:
					t.Errorf("load message %d: %v", i, err)
				}
				mu.Unlock()
				return
			}
			t.Errorf("load client %d never got a session", i)
		}()
	}
	wg.Wait()
	if accepted != 40 || headerRefused != 40 {
		t.Errorf("load: %d accepted, %d refused for their header; want 40 and 40", accepted, headerRefused)
	}
	waitFor(t, 60*time.Second, "the large messages at the tenant", func() bool { return e.tenant.Count() >= 40 })
	rss, peak := memKB(t, e.pid())
	t.Logf("dualmx memory: RSS %d KiB at start, %d KiB after the load, peak %d KiB (40×2 MB messages, 40×200 KB header blocks, %d connection attempts refused)",
		rss0, rss, peak, refused)
	// Messages are streamed to disk and from disk: memory must not grow with
	// their size. 40 × 2 MB in memory at once would already be 80 MB.
	if peak > 150*1024 {
		t.Errorf("peak RSS %d KiB: more than 150 MiB", peak)
	}
}
