// SPDX-License-Identifier: MIT

package courier

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ addr, want string }{
		{"", ""},
		{"alice@sender.test", "alice@sender.test"},
		{"first.last+tag@sender.test", "first.last+tag@sender.test"},
		{"SRS0=HHHH=TT=author.test=a@fwd.example.nl", "SRS0=HHHH=TT=author.test=a@fwd.example.nl"},
		{"jos\u00e9@sender.test", "jos\u00e9@sender.test"},
		{"user@[192.0.2.1]", "user@[192.0.2.1]"},
		{"postmaster", "postmaster"},
		// The attack of issue 15.2: one address, never a parameter.
		{"ceo@example.nl> RET=HDRS ENVID=x@evil.example", `"ceo@example.nl> RET=HDRS ENVID=x"@evil.example`},
		{"a b@sender.test", `"a b"@sender.test`},
		{`a"b\c@sender.test`, `"a\"b\\c"@sender.test`},
		{".dot@sender.test", `".dot"@sender.test`},
		{"dot.@sender.test", `"dot."@sender.test`},
		{"two..dots@sender.test", `"two..dots"@sender.test`},
		{"a@b@sender.test", `"a@b"@sender.test`},
		{"(comment)@sender.test", `"(comment)"@sender.test`},
	} {
		got, err := path(tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("path(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	for _, addr := range []string{"a\r\nRCPT TO:<x@evil.example>@sender.test", "a\nb@sender.test", "a\x00b@sender.test", "a\x7f@sender.test",
		"a@send er.test", "a@sender.test>", "a@sender.test\t", "@sender.test", "a@"} {
		if got, err := path(addr); !errors.Is(err, errUnwritable) {
			t.Errorf("path(%q) = %q, %v; want it refused", addr, got, err)
		}
	}
}

// smtpParser is go-smtp's own parser of MAIL FROM and RCPT TO, reached the
// only way it can be: a go-smtp server session, over a pipe.
type smtpParser struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	got  chan string
}

type parserSession struct{ got chan string }

func (s parserSession) Mail(from string, _ *smtp.MailOptions) error {
	s.got <- from
	return nil
}
func (s parserSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.got <- to
	return nil
}
func (parserSession) Data(io.Reader) error { return errors.New("no data") }
func (parserSession) Reset()               {}
func (parserSession) Logout() error        { return nil }

func newSMTPParser(tb testing.TB) *smtpParser {
	tb.Helper()
	got := make(chan string, 1)
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return parserSession{got}, nil }))
	srv.Domain = "parser.test"
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	srv.MaxLineLength = 1 << 20
	server, client := net.Pipe()
	go srv.Serve(&oneConn{c: server})
	tb.Cleanup(func() { client.Close(); srv.Close() })
	p := &smtpParser{conn: client, r: bufio.NewReader(client), got: got}
	p.reply() // greeting
	p.cmd("EHLO client.test")
	return p
}

// oneConn is a listener that hands out one connection.
type oneConn struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
}

func (l *oneConn) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c, l.done = l.c, make(chan struct{}) })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConn) Close() error {
	if l.done != nil {
		select {
		case <-l.done:
		default:
			close(l.done)
		}
	}
	return nil
}
func (l *oneConn) Addr() net.Addr { return &net.TCPAddr{} }

func (p *smtpParser) cmd(line string) string {
	p.conn.SetDeadline(time.Now().Add(failsafe))
	io.WriteString(p.conn, line+"\r\n")
	return p.reply()
}

// reply reads one reply, multi-line or not, and returns its last line.
func (p *smtpParser) reply() string {
	for {
		l, err := p.r.ReadString('\n')
		if err != nil {
			return "error: " + err.Error()
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

// parse gives what go-smtp makes of path in cmd ("MAIL FROM" or "RCPT TO"),
// and whether it took it.
func (p *smtpParser) parse(cmd, path string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.cmd("RSET")
	if cmd == "RCPT TO" {
		if r := p.cmd("MAIL FROM:<>"); !strings.HasPrefix(r, "250") {
			return "", false
		}
		<-p.got
	}
	r := p.cmd(cmd + ":<" + path + ">")
	if !strings.HasPrefix(r, "250") {
		return "", false
	}
	return <-p.got, true
}

// FuzzPath: for every path go-smtp's server takes in MAIL FROM or RCPT TO,
// the address it hands over, written by path, is read back by go-smtp as
// that same address (or path refuses it for a control character): a quoted
// local part never comes out as more than one address or as parameters.
func FuzzPath(f *testing.F) {
	for _, s := range []string{
		"alice@sender.test", `"ceo@example.nl> RET=HDRS ENVID=x"@evil.example`, `"a\"b\\c"@d.test`,
		`"a b"@c.test`, "@route.test:user@d.test", `""@d.test`, "a@b@c.test", "jos\u00e9@d.test",
		`"x@y> NOTIFY=NEVER ORCPT=rfc822;x"@d.test`, "user@[192.0.2.1]", `"\x01"@d.test`,
	} {
		f.Add(s)
	}
	p := newSMTPParser(f)
	f.Fuzz(func(t *testing.T, in string) {
		if strings.ContainsAny(in, "\r\n") || len(in) > 4000 {
			return // not one command line
		}
		for _, cmd := range []string{"MAIL FROM", "RCPT TO"} {
			addr, ok := p.parse(cmd, in)
			if !ok {
				continue
			}
			written, err := path(addr)
			if err != nil {
				if !strings.ContainsFunc(addr, func(r rune) bool { return r < ' ' || r == 0x7f }) {
					t.Fatalf("%s: path(%q) refused: %v", cmd, addr, err)
				}
				continue
			}
			again, ok := p.parse(cmd, written)
			if !ok || again != addr {
				t.Fatalf("%s:<%s> gives %q, written <%s>, read back as %q (taken: %v)", cmd, in, addr, written, again, ok)
			}
		}
	})
}

// TestQuotedPathsOnTheWire: with and without PIPELINING, a sender and a
// recipient whose local parts hold what looks like the end of the path and
// parameters leave as one quoted address each, with only our parameters
// after it.
func TestQuotedPathsOnTheWire(t *testing.T) {
	t.Parallel()
	const (
		from = "ceo@example.nl> RET=HDRS ENVID=x@evil.example"
		rcpt = "x@y> NOTIFY=NEVER ORCPT=rfc822;x@domain.test"
	)
	for _, pipelining := range []bool{true, false} {
		s := startScript(t, pipelining, nil)
		host, port, _ := net.SplitHostPort(s.ln.Addr().String())
		cfg := TenantConfig{Client: newFixture(t).client(), Host: host, TLS: TLSNone}
		cfg.Port, _ = strconv.Atoi(port)
		tenant, err := NewTenant(cfg)
		if err != nil {
			t.Fatal(err)
		}
		res := send(t, tenant, Message{From: from}, "", testBody, rcpt, "plain@domain.test")
		tenant.Close()
		if !accepted(res) {
			t.Fatalf("pipelining=%v: %v", pipelining, failure(res))
		}
		_, cmds, _ := s.snapshot()
		want := []string{
			fmt.Sprintf(`MAIL FROM:<"ceo@example.nl> RET=HDRS ENVID=x"@evil.example> BODY=8BITMIME SIZE=%d`, len(testBody)),
			`RCPT TO:<"x@y> NOTIFY=NEVER ORCPT=rfc822;x"@domain.test>`,
			"RCPT TO:<plain@domain.test>",
			"DATA",
		}
		if i := slices.Index(cmds, "EHLO relay.test"); i < 0 || len(cmds) < i+1+len(want) || !slices.Equal(cmds[i+1:i+1+len(want)], want) {
			t.Errorf("pipelining=%v: the wire had\n%q\nwant\n%q", pipelining, cmds, want)
		}
	}
}
