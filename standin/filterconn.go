// SPDX-License-Identifier: MIT

package standin

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// filterConn sits between the socket and go-smtp to play a target without
// 8BITMIME. go-smtp hard-codes that capability and does STARTTLS by wrapping
// its own connection, after which a filter would only see ciphertext; so the
// wrapper removes the capability lines from EHLO replies and performs STARTTLS
// itself, underneath go-smtp, which then keeps talking plain text to it.
//
// go-smtp reads and writes a connection from a single goroutine, so only the
// TLS flag (read by the session) and Close need to be safe for concurrent use.
type filterConn struct {
	raw    net.Conn
	conn   net.Conn // raw, or TLS over raw after STARTTLS
	br     *bufio.Reader
	tlsCfg *tls.Config
	tlsOn  atomic.Bool
	n      int // the connection's number (Event.Conn)

	pending []byte // the current line, handed to go-smtp piecewise
	midLine bool   // the last chunk read did not end a line
	inData  bool   // between a 354 reply and the final dot
	wbuf    []byte // reply bytes not yet ending in CRLF
}

func newFilterConn(c net.Conn, cfg *tls.Config) *filterConn {
	return &filterConn{raw: c, conn: c, br: bufio.NewReader(c), tlsCfg: cfg}
}

func (f *filterConn) Read(p []byte) (int, error) {
	for len(f.pending) == 0 {
		line, err := f.br.ReadSlice('\n')
		if len(line) > 0 {
			complete := line[len(line)-1] == '\n'
			atStart := !f.midLine
			f.midLine = !complete
			switch {
			case atStart && !f.inData && complete && f.tlsCfg != nil && !f.tlsOn.Load() &&
				bytes.EqualFold(bytes.TrimRight(line, "\r\n"), []byte("STARTTLS")):
				if err := f.startTLS(); err != nil {
					return 0, err
				}
				continue
			case f.inData && atStart && complete && (string(line) == ".\r\n" || string(line) == ".\n"):
				f.inData = false
			}
			f.pending = append(f.pending[:0], line...)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return 0, err
		}
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

// startTLS replies and handshakes; bytes the client pipelined after STARTTLS
// are discarded, as RFC 3207 requires.
func (f *filterConn) startTLS() error {
	if _, err := f.conn.Write([]byte("220 2.0.0 Ready to start TLS\r\n")); err != nil {
		return err
	}
	tc := tls.Server(f.raw, f.tlsCfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("standin: TLS handshake: %w", err)
	}
	f.conn = tc
	f.br = bufio.NewReader(tc)
	f.tlsOn.Store(true)
	return nil
}

func (f *filterConn) Write(p []byte) (int, error) {
	f.wbuf = append(f.wbuf, p...)
	var out []byte
	for {
		i := bytes.IndexByte(f.wbuf, '\n')
		if i < 0 {
			break
		}
		line := f.wbuf[:i+1]
		text := bytes.TrimRight(line, "\r\n")
		switch {
		case len(text) > 4 && string(text[:4]) == "250-" &&
			(bytes.EqualFold(text[4:], []byte("8BITMIME")) || bytes.EqualFold(text[4:], []byte("CHUNKING"))):
			// go-smtp always ends its EHLO reply with SIZE, so these are never the
			// last line and dropping them keeps the reply well-formed. The
			// 8BITMIME slot carries STARTTLS, which go-smtp cannot offer here.
			if bytes.EqualFold(text[4:], []byte("8BITMIME")) && f.tlsCfg != nil && !f.tlsOn.Load() {
				out = append(out, "250-STARTTLS\r\n"...)
			}
		default:
			if bytes.HasPrefix(text, []byte("354")) {
				f.inData = true
			}
			out = append(out, line...)
		}
		f.wbuf = append(f.wbuf[:0], f.wbuf[i+1:]...)
	}
	if len(out) > 0 {
		if _, err := f.conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (f *filterConn) Close() error                       { return f.raw.Close() }
func (f *filterConn) LocalAddr() net.Addr                { return f.raw.LocalAddr() }
func (f *filterConn) RemoteAddr() net.Addr               { return f.raw.RemoteAddr() }
func (f *filterConn) SetDeadline(t time.Time) error      { return f.raw.SetDeadline(t) }
func (f *filterConn) SetReadDeadline(t time.Time) error  { return f.raw.SetReadDeadline(t) }
func (f *filterConn) SetWriteDeadline(t time.Time) error { return f.raw.SetWriteDeadline(t) }
