// SPDX-License-Identifier: MIT

package courier

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/dane"
)

// TLS policies for a next hop.
const (
	TLSRequire       = "require"       // STARTTLS mandatory, certificate verified
	TLSDane          = "dane"          // STARTTLS mandatory, certificate checked against validated TLSA records (RFC 7672)
	TLSOpportunistic = "opportunistic" // STARTTLS when offered, certificate not verified (RFC 7435)
	TLSNone          = "none"          // plain text
)

// dialer holds what a connection to one next hop needs.
type dialer struct {
	addr       string // host:port
	serverName string // name the certificate must carry
	policy     string
	roots      *x509.CertPool
	helo       string
	dial       time.Duration
	command    time.Duration
	data       time.Duration
	resolver   *net.Resolver
	// dialAddr, when set, is the address dialled instead of addr (one
	// of the host's addresses); addr still names the next hop.
	dialAddr string
	// daneTLS is the handshake's configuration under TLSDane: the
	// certificate is checked against the host's TLSA records.
	daneTLS *tls.Config
	// control, when set, may refuse the address about to be dialled.
	control func(network, address string, c syscall.RawConn) error
}

// client is one SMTP connection, plain or TLS, past EHLO.
type client struct {
	c *smtp.Client
	// tp carries every command after EHLO when the server offers PIPELINING.
	// go-smtp's Client keeps its textproto.Conn to itself and waits for each
	// reply before the next command, so it cannot pipeline. Once tp exists,
	// c is only asked for the extensions its EHLO found: its buffered reader
	// is never read again, so it cannot swallow replies meant for tp.
	tp       *textproto.Conn
	conn     net.Conn // what the client talks to; deadlines and forced closes go here
	key      string
	tls      bool
	lastUsed time.Time
}

func (c *client) ext(name string) (bool, string) { return c.c.Extension(name) }

func (c *client) close() { c.conn.Close() }

// quit ends the session politely, bounded by a short deadline so a stalled
// server cannot hold up a shutdown.
func (c *client) quit() {
	c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if c.tp != nil {
		if c.tp.PrintfLine("QUIT") == nil {
			c.tp.ReadResponse(221)
		}
	} else {
		c.c.Quit()
	}
	c.conn.Close()
}

// reply reads the next reply on tp within timeout. Errors take go-smtp's
// form, so isReply and classify (enhanced status codes included) judge a
// pipelined transaction exactly as one run by go-smtp's Client.
func (c *client) reply(expectCode int, timeout time.Duration) (string, error) {
	c.conn.SetDeadline(time.Now().Add(timeout))
	defer c.conn.SetDeadline(time.Time{})
	_, msg, err := c.tp.ReadResponse(expectCode)
	var te *textproto.Error
	if errors.As(err, &te) {
		return msg, smtpError(te)
	}
	return msg, err
}

// smtpError is go-smtp's (unexported) conversion of a reply into an
// SMTPError, so a reply reads the same on both paths.
func smtpError(te *textproto.Error) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	code, msg, ok := strings.Cut(te.Msg, " ")
	if !ok {
		return se
	}
	parts := strings.Split(code, ".")
	if len(parts) != 3 {
		return se
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return se
		}
		ec[i] = n
	}
	se.EnhancedCode = ec
	// RFC 2034: every line of the reply repeats the code.
	se.Message = strings.ReplaceAll(msg, "\n"+code+" ", "\n")
	return se
}

// maxReplyLine is go-smtp's own bound on a reply line (twice RFC 5321's).
const maxReplyLine = 2000

// dataBuffer is the write buffer of a pipelining connection.
const dataBuffer = 32 << 10

var errLongReply = errors.New("smtp: reply line too long")

// lineLimitReader keeps a server from growing one reply line without end,
// which textproto would buffer whole; go-smtp's Client guards the same way.
type lineLimitReader struct {
	r    io.Reader
	line int // bytes since the last newline
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		l.line++
		if b == '\n' {
			l.line = 0
		}
		if l.line > maxReplyLine {
			return 0, errLongReply
		}
	}
	return n, err
}

// connect dials and, per policy, upgrades with STARTTLS. go-smtp's client
// cannot send STARTTLS after a custom EHLO name, so the part before TLS is
// done here by hand, then go-smtp takes over (it sends its own EHLO).
func (d *dialer) connect(ctx context.Context) (*client, error) {
	nd := net.Dialer{Timeout: d.dial, Resolver: d.resolver, Control: d.control}
	at := d.addr
	if d.dialAddr != "" {
		at = d.dialAddr
	}
	raw, err := nd.DialContext(ctx, "tcp", at)
	if err != nil {
		return nil, &Error{Status: "4.4.1", Message: fmt.Sprintf("connect to %s: %v", at, err), Temporary: true, Err: err}
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	conn, isTLS, err := d.preamble(ctx, raw)
	if err != nil {
		raw.Close()
		return nil, err
	}
	c := smtp.NewClient(&greetedConn{Conn: conn, greeting: []byte("220 resumed\r\n")})
	c.CommandTimeout = d.command
	c.SubmissionTimeout = d.data
	if err := c.Hello(d.helo); err != nil {
		raw.Close()
		return nil, fmt.Errorf("EHLO at %s: %w", d.addr, err)
	}
	cl := &client{c: c, conn: conn, key: d.addr, tls: isTLS}
	if ok, _ := c.Extension("PIPELINING"); ok {
		// go-smtp has read exactly the EHLO reply and the server sends
		// nothing unasked, so tp starts at the next reply.
		cl.tp = textproto.NewConn(struct {
			io.Reader
			io.Writer
			io.Closer
		}{&lineLimitReader{r: conn}, conn, conn})
		// A message of up to this size then leaves in one write, dot
		// included; textproto's 4 KiB split a typical one in two or more.
		cl.tp.W = bufio.NewWriterSize(conn, dataBuffer)
	}
	return cl, nil
}

// preamble reads the greeting, sends EHLO and, when the policy and the server
// allow, STARTTLS and the handshake. It returns the connection to continue on.
func (d *dialer) preamble(ctx context.Context, raw net.Conn) (net.Conn, bool, error) {
	raw.SetDeadline(time.Now().Add(d.command))
	defer raw.SetDeadline(time.Time{})
	tp := textproto.NewConn(raw)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, fmt.Errorf("greeting from %s: %w", d.addr, err)
	}
	if d.policy == TLSNone {
		return raw, false, nil
	}
	id, err := tp.Cmd("EHLO %s", d.helo)
	if err != nil {
		return nil, false, fmt.Errorf("EHLO at %s: %w", d.addr, err)
	}
	tp.StartResponse(id)
	_, msg, err := tp.ReadResponse(250)
	tp.EndResponse(id)
	if err != nil {
		return nil, false, fmt.Errorf("EHLO at %s: %w", d.addr, err)
	}
	if !hasExt(msg, "STARTTLS") {
		if d.policy == TLSRequire || d.policy == TLSDane {
			tp.PrintfLine("QUIT")
			return nil, false, TempError("4.7.10", "%s does not offer STARTTLS and the TLS policy is %s", d.addr, d.policy)
		}
		return raw, false, nil
	}
	id, err = tp.Cmd("STARTTLS")
	if err != nil {
		return nil, false, fmt.Errorf("STARTTLS at %s: %w", d.addr, err)
	}
	tp.StartResponse(id)
	_, _, err = tp.ReadResponse(220)
	tp.EndResponse(id)
	if err != nil {
		if d.policy == TLSRequire || d.policy == TLSDane {
			return nil, false, fmt.Errorf("STARTTLS at %s: %w", d.addr, err)
		}
		// An opportunistic client may carry on in plain text; go-smtp's EHLO resets the session.
		return raw, false, nil
	}
	cfg := &tls.Config{ServerName: d.serverName, RootCAs: d.roots, MinVersion: tls.VersionTLS12}
	switch {
	case d.policy == TLSDane && d.daneTLS != nil:
		cfg = d.daneTLS
	case d.policy == TLSDane:
		return nil, false, TempError("4.7.5", "no validated TLSA records for %s", d.addr)
	case d.policy != TLSRequire:
		cfg.InsecureSkipVerify = true
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		// Certificate problems are deferred like any temporary failure: they
		// are usually fixed at the target (renewal) or in our CA bundle, and
		// the give-up policy still bounds how long a message waits.
		var verr *tls.CertificateVerificationError
		reason := "TLS handshake"
		switch {
		case errors.Is(err, dane.ErrNoMatch):
			reason = "DANE: no TLSA record matches the certificate;"
		case errors.As(err, &verr):
			reason = "certificate verification"
		}
		return nil, false, &Error{Status: "4.7.5", Message: fmt.Sprintf("%s with %s failed: %v", reason, d.addr, err), Temporary: true, Err: err}
	}
	return tc, true, nil
}

func hasExt(ehlo, name string) bool {
	lines := strings.Split(ehlo, "\n")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}

// greetedConn replays a greeting so go-smtp's client, which always expects
// one, can start on a connection whose real greeting was already read.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.greeting) > 0 {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}
