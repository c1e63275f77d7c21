// SPDX-License-Identifier: MIT

package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// listener enforces the connection-level policy before go-smtp sees a
// connection: the client network allow-list, the connection cap and the cap
// per client network (an IPv4 address or an IPv6 /64, as the SRS guard
// counts: one host commonly owns a whole /64 and could otherwise take every
// slot from fresh addresses). It also
// wraps each connection so that read deadlines are owned here: go-smtp sets one
// deadline per command, which would let a slow but steady DATA stream time out
// and would undo a shutdown's "stop reading now".
type listener struct {
	net.Listener
	allowed     []netip.Prefix
	maxConns    int
	maxPerIP    int
	idleTimeout time.Duration
	// maxSession bounds a connection's whole life, however it behaves
	// (0: no bound); onMaxSession is told once when a connection reaches it.
	maxSession   time.Duration
	onMaxSession func(ip netip.Addr)
	onRefuse     func(reason string)

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining atomic.Bool
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if reply, reason := l.refuse(c); reply != "" {
			// A refused client gets a greeting-time reply rather than a silent
			// close, so the old host's logs say why.
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte(reply))
			_ = c.Close()
			if l.onRefuse != nil {
				l.onRefuse(reason)
			}
			continue
		}
		w := &conn{Conn: c, l: l}
		if l.maxSession > 0 {
			w.end = time.Now().Add(l.maxSession)
		}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			w.ip = ap.Addr().Unmap()
			w.key = clientKey(w.ip)
		}
		l.mu.Lock()
		l.conns[w] = struct{}{}
		l.mu.Unlock()
		return w, nil
	}
}

func (l *listener) refuse(c net.Conn) (reply, reason string) {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		ip = ap.Addr().Unmap()
	}
	if len(l.allowed) > 0 {
		ok := false
		if ip.IsValid() {
			for _, p := range l.allowed {
				if p.Contains(ip) {
					ok = true
					break
				}
			}
		}
		if !ok {
			return "554 5.7.1 Client host not permitted to connect\r\n", "client_not_allowed"
		}
	}
	if l.maxConns > 0 {
		l.mu.Lock()
		n := len(l.conns)
		l.mu.Unlock()
		if n >= l.maxConns {
			return "421 4.7.0 Too many connections, try again later\r\n", "too_many_connections"
		}
	}
	if l.maxPerIP > 0 && ip.IsValid() {
		key := clientKey(ip)
		l.mu.Lock()
		n := 0
		for c := range l.conns {
			if c.key == key {
				n++
			}
		}
		l.mu.Unlock()
		if n >= l.maxPerIP {
			return "421 4.7.0 Too many connections from your host, try again later\r\n", "too_many_connections_per_ip"
		}
	}
	return "", ""
}

// drain makes every connection that is not inside DATA time out now; go-smtp
// then answers 421 and closes it. Connections inside DATA finish their message
// first and time out at their next command.
func (l *listener) drain() {
	l.draining.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if !c.inData.Load() {
			_ = c.Conn.SetReadDeadline(time.Now())
		}
	}
}

type conn struct {
	net.Conn
	l      *listener
	ip     netip.Addr
	key    netip.Prefix // clientKey(ip), what the cap per client counts
	inData atomic.Bool
	closed sync.Once
	// end is when the connection's time is up (zero: never).
	end time.Time
	// lineStart is when the partial command line now being read began; zero
	// when none is. Only the connection's reading goroutine touches it, and
	// the fields below.
	lineStart time.Time
	// tls is where the connection stands with TLS, tlsStart when its
	// handshake began.
	tls      tlsState
	tlsStart time.Time
	expired  bool // the end was reached and reported

	// wmu guards held: the lines of a multi-line reply written so far.
	wmu  sync.Mutex
	held []byte
	// hangup asks for the connection to end once the next reply is out;
	// hungUp is set when it is (see hangUp).
	hangup, hungUp atomic.Bool
}

// lingerAfterHangup bounds how long Close reads and discards what a client
// that was hung up on still sends: closing with its pipelined commands unread
// would reset the connection, and a reset can destroy the reply before the
// client reads it.
const (
	lingerAfterHangup = time.Second
	lingerMaxBytes    = 64 << 10
)

// hangUp ends the connection after the reply now being prepared (go-smtp
// has no way to say "reply, then close" from a session): once that reply
// is written the sending side is shut, reads see the end of input, and the
// session refuses whatever go-smtp had already read ahead (see
// session.gone).
func (c *conn) hangUp() { c.hangup.Store(true) }

// tlsState says how the bytes read are to be judged. The connection is
// plain text, judged line by line, until crypto/tls starts a handshake on it,
// which it does only after go-smtp accepted STARTTLS (see markHandshakes):
// what the client sends cannot switch it. From then on the bytes are records
// without line ends to go by, so the handshake and the session's first
// command after it must arrive within one read timeout of the handshake's
// start (a handshake that fails leaves the connection there, and it ends
// soon). Once a session has seen TLS up (tlsUp), each read may take up to
// the read timeout, as commands now arrive whole inside records.
type tlsState int

const (
	tlsPlain tlsState = iota
	tlsHandshake
	tlsUp
)

// handshakeStarted and tlsEstablished move a connection along tlsState;
// both run on the goroutine that serves it.
func (c *conn) handshakeStarted() {
	if c.tls == tlsPlain {
		c.tls, c.tlsStart, c.lineStart = tlsHandshake, time.Now(), time.Time{}
	}
}

func (c *conn) tlsEstablished() { c.tls = tlsUp }

// markHandshakes returns a copy of cfg that marks a connection the moment a
// TLS handshake begins on it.
func markHandshakes(cfg *tls.Config) *tls.Config {
	out := cfg.Clone()
	next := cfg.GetConfigForClient
	out.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c := underlying(hello.Conn); c != nil {
			c.handshakeStarted()
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil
	}
	return out
}

// maxHeld bounds the reply lines held back; an EHLO reply is a few hundred
// bytes.
const maxHeld = 4 << 10

// Write sends a multi-line reply as one segment. go-smtp flushes each line of
// a reply as it formats it, so an EHLO answer left as six segments: six
// system calls here and as many wake-ups for the client reading them. A line
// that announces more to come ("250-...") is held until the reply's last
// line. TLS records never look like one (their first byte is not a digit),
// so after STARTTLS everything passes straight through.
func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if continuesReply(p) && len(c.held)+len(p) <= maxHeld {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if c.hungUp.Load() {
		return 0, net.ErrClosed
	}
	if c.hangup.Load() {
		defer c.shutWrite()
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	held := len(c.held)
	c.held = append(c.held, p...)
	n, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	// The held lines were reported written already; p's share is the rest.
	return max(n-held, 0), err
}

// continuesReply reports whether p is one whole reply line followed by more
// lines of the same reply: "250-SIZE 1000\r\n".
func continuesReply(p []byte) bool {
	n := len(p)
	if n < 6 || p[3] != '-' || p[n-2] != '\r' || p[n-1] != '\n' {
		return false
	}
	for _, b := range p[:3] {
		if b < '0' || b > '9' {
			return false
		}
	}
	return bytes.IndexByte(p[:n-2], '\n') < 0
}

// Read bounds the wait for the client. Inside DATA each read may take up to
// the idle timeout, so a slow but steady stream goes on. Outside DATA the
// whole command line must arrive within it, counted from its first byte: a
// client dripping a byte at a time cannot hold a connection for ever. No read
// goes past the connection's end, whatever the client does.
func (c *conn) Read(p []byte) (int, error) {
	if c.hungUp.Load() {
		return 0, io.EOF
	}
	now := time.Now()
	inData := c.inData.Load()
	d := now.Add(c.l.idleTimeout)
	switch {
	case c.l.draining.Load() && !inData:
		d = now
	case inData:
		c.lineStart = time.Time{}
	case c.tls == tlsHandshake:
		d = c.tlsStart.Add(c.l.idleTimeout)
	case c.tls == tlsPlain && !c.lineStart.IsZero():
		d = c.lineStart.Add(c.l.idleTimeout)
	}
	atEnd := !c.end.IsZero() && !d.Before(c.end)
	if atEnd {
		d = c.end
	}
	if err := c.Conn.SetReadDeadline(d); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !inData && c.tls == tlsPlain {
		switch i := bytes.LastIndexByte(p[:n], '\n'); {
		case i == n-1:
			c.lineStart = time.Time{} // ends on a complete line
		case i >= 0 || c.lineStart.IsZero():
			c.lineStart = now // a new line has begun
		}
	}
	var ne net.Error
	if atEnd && !c.expired && errors.As(err, &ne) && ne.Timeout() {
		c.expired = true
		if c.l.onMaxSession != nil {
			c.l.onMaxSession(c.ip)
		}
	}
	return n, err
}

// SetReadDeadline is ignored: Read sets the deadline itself (see listener).
func (c *conn) SetReadDeadline(time.Time) error { return nil }

func (c *conn) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }

func (c *conn) Close() error {
	c.closed.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if c.hungUp.Load() {
			c.linger()
		}
	})
	return c.Conn.Close()
}

// shutWrite sends the end of output after the last reply.
func (c *conn) shutWrite() {
	c.hungUp.Store(true)
	if tc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
}

// linger reads and discards what the client still sends, for a moment.
func (c *conn) linger() {
	_ = c.Conn.SetReadDeadline(time.Now().Add(lingerAfterHangup))
	_, _ = io.CopyN(io.Discard, c.Conn, lingerMaxBytes)
}
