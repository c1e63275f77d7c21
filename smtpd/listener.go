package smtpd

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// listener enforces the connection-level policy before go-smtp sees a
// connection: the client network allow-list, the connection cap and the cap
// per client address. It also
// wraps each connection so that read deadlines are owned here: go-smtp sets one
// deadline per command, which would let a slow but steady DATA stream time out
// and would undo a shutdown's "stop reading now".
type listener struct {
	net.Listener
	allowed     []netip.Prefix
	maxConns    int
	maxPerIP    int
	idleTimeout time.Duration
	onRefuse    func(reason string)

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
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			w.ip = ap.Addr().Unmap()
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
		l.mu.Lock()
		n := 0
		for c := range l.conns {
			if c.ip == ip {
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
	inData atomic.Bool
	closed sync.Once
	// lineStart is when the partial command line now being read began; zero
	// when none is. Only the connection's reading goroutine touches it.
	lineStart time.Time
	// opaque is set once the connection carries TLS records.
	opaque bool

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
// client dripping a byte at a time cannot hold a connection for ever.
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
	case !c.lineStart.IsZero() && !c.opaque:
		d = c.lineStart.Add(c.l.idleTimeout)
	}
	if err := c.Conn.SetReadDeadline(d); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !inData && !c.opaque {
		if c.lineStart.IsZero() && p[0] == 0x16 {
			// A TLS handshake record after STARTTLS: from here on the bytes
			// are ciphertext and carry no line ends to go by.
			c.opaque = true
			c.lineStart = time.Time{}
			return n, err
		}
		switch i := bytes.LastIndexByte(p[:n], '\n'); {
		case i == n-1:
			c.lineStart = time.Time{} // ends on a complete line
		case i >= 0 || c.lineStart.IsZero():
			c.lineStart = now // a new line has begun
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

func (l *listener) active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
