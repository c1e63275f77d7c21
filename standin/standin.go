// SPDX-License-Identifier: MIT

// Package standin is a stand-in for the Microsoft 365 inbound endpoint: a real
// go-smtp server on loopback that records what it accepts and can be scripted
// to refuse, stall or drop, so delivery is tested (and demonstrated) over real
// SMTP without reaching the internet.
package standin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrDrop, returned by a Hook, closes the connection without a reply, as a
// crashing or unreachable server would.
var ErrDrop = errors.New("standin: drop connection")

// Stage names the point in a transaction where the Hook is called.
type Stage int

// Stages, in the order a transaction passes them.
const (
	StageMail     Stage = iota + 1 // MAIL FROM received
	StageRcpt                      // RCPT TO received
	StageData                      // DATA received, before the body is read
	StageDataDone                  // body read, before the reply
)

func (s Stage) String() string {
	switch s {
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	case StageDataDone:
		return "data-done"
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// Event describes the command the Hook is asked about.
type Event struct {
	Stage Stage
	// Conn numbers the session's connection, from 1 in the order they
	// were accepted, so a script can treat connections differently.
	Conn  int
	From  string
	Rcpt  string   // the recipient of this RCPT (StageRcpt)
	Rcpts []string // recipients accepted so far
	Data  []byte   // the body (StageDataDone)
	TLS   bool
}

// Message is one accepted message.
type Message struct {
	From     string
	To       []string
	Data     []byte
	TLS      bool
	MailOpts smtp.MailOptions
}

// DefaultKeep is how many messages are kept in memory when Options.Keep is 0.
const DefaultKeep = 1000

// Options configure a stand-in server. The zero value is a plain-text server on
// a random loopback port.
type Options struct {
	Addr    string      // listen address; default "127.0.0.1:0"
	Domain  string      // EHLO name; default "standin.localhost"
	TLS     *tls.Config // STARTTLS is offered when non-nil
	MaxSize int64       // advertised SIZE and enforced limit; 0 advertises SIZE without a number
	// Listener, when set, is served instead of listening on Addr, and closed
	// by Close: a test that keeps its port across a restart passes one.
	Listener net.Listener
	// No8BitMIME hides 8BITMIME (and CHUNKING) from the EHLO reply, to play a
	// 7-bit-only target. go-smtp always advertises 8BITMIME, so the connection
	// is wrapped and the EHLO reply filtered; STARTTLS is then done by the
	// wrapper, below go-smtp, so the filter still sees plain text after it.
	No8BitMIME bool
	// Dir, when set, receives each accepted message as <seq>-<unixnano>.eml,
	// written to a temporary name, fsynced and renamed.
	Dir string
	// Keep bounds the messages kept in memory for Messages and Wait; 0 means
	// DefaultKeep, negative keeps none (the demo, which only needs Dir).
	Keep int
	// Hook scripts the server: a *smtp.SMTPError is the reply, ErrDrop closes
	// the connection, any other error becomes a 451. It may block to play a
	// stalled server; it is called from the connection's goroutine.
	Hook   func(Event) error
	Logger *slog.Logger
}

// Server is a running stand-in.
type Server struct {
	opts Options
	srv  *smtp.Server
	ln   net.Listener
	log  *slog.Logger

	mu       sync.Mutex
	msgs     []Message
	total    int
	conns    int
	changed  chan struct{} // closed and replaced whenever total grows
	done     chan struct{}
	serveErr error
}

// Start listens and serves in the background until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Domain == "" {
		opts.Domain = "standin.localhost"
	}
	if opts.Keep == 0 {
		opts.Keep = DefaultKeep
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln := opts.Listener
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			if ln != nil {
				ln.Close()
			}
			return nil, fmt.Errorf("standin: create %s: %w", opts.Dir, err)
		}
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", opts.Addr); err != nil {
			return nil, fmt.Errorf("standin: listen %s: %w", opts.Addr, err)
		}
	}
	s := &Server{opts: opts, ln: ln, log: log, changed: make(chan struct{}), done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Domain
	srv.MaxMessageBytes = opts.MaxSize
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.EnableSMTPUTF8 = true
	// Exchange Online takes RET, ENVID, NOTIFY and ORCPT (RFC 3461), so a
	// parameter smuggled into an address would be taken here too.
	srv.EnableDSN = true
	srv.ErrorLog = logAdapter{log}
	if !opts.No8BitMIME {
		srv.TLSConfig = opts.TLS
	}
	s.srv = srv
	go func() {
		defer close(s.done)
		err := srv.Serve(&countingListener{Listener: ln, s: s})
		if err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
			log.Error("standin: serve", "err", err)
		}
	}()
	log.Info("standin: listening", "addr", ln.Addr().String(), "tls", opts.TLS != nil, "8bitmime", !opts.No8BitMIME)
	return s, nil
}

// Addr returns the listening address as host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host returns the listening IP address.
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Connections returns how many connections have been accepted, so a test can
// tell connection reuse from reconnecting.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Count returns how many messages have been accepted, including those no longer kept in memory.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Messages returns a copy of the messages kept in memory, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copyLocked()
}

func (s *Server) copyLocked() []Message {
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		m.To = append([]string(nil), m.To...)
		m.Data = append([]byte(nil), m.Data...)
		out[i] = m
	}
	return out
}

// Wait blocks until at least n messages have been accepted, then returns the kept messages.
func (s *Server) Wait(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		if s.total >= n {
			out := s.copyLocked()
			s.mu.Unlock()
			return out, nil
		}
		ch := s.changed
		got := s.total
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("standin: waited for %d messages, got %d: %w", n, got, ctx.Err())
		case <-ch:
		case <-s.done:
			return nil, errors.New("standin: server closed")
		}
	}
}

// Close stops listening and closes every open connection.
func (s *Server) Close() error {
	err := s.srv.Close()
	// go-smtp closes only the listeners Serve has registered; a Close right
	// after Start may come first, and Serve would then wait in Accept for ever.
	_ = s.ln.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) record(m Message) error {
	s.mu.Lock()
	s.total++
	seq := s.total
	if s.opts.Keep > 0 {
		if len(s.msgs) >= s.opts.Keep {
			s.msgs = append(s.msgs[:0], s.msgs[1:]...)
		}
		s.msgs = append(s.msgs, m)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if s.opts.Dir == "" {
		return nil
	}
	return writeAtomic(s.opts.Dir, fmt.Sprintf("%06d-%d.eml", seq, time.Now().UnixNano()), m.Data)
}

// writeAtomic writes so that a reader of Dir (the demo, a test) never sees a partial message.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("standin: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("standin: write %s: %w", name, err)
	}
	return nil
}

type countingListener struct {
	net.Listener
	s *Server
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	l.s.conns++
	n := l.s.conns
	l.s.mu.Unlock()
	if l.s.opts.No8BitMIME {
		fc := newFilterConn(c, l.s.opts.TLS)
		fc.n = n
		return fc, nil
	}
	return &numberedConn{Conn: c, n: n}, nil
}

// numberedConn carries the connection's number to its sessions (go-smtp
// starts a new one after STARTTLS).
type numberedConn struct {
	net.Conn
	n int
}

// connNumber finds the number Accept gave c's connection.
func connNumber(c net.Conn) int {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	switch c := c.(type) {
	case *numberedConn:
		return c.n
	case *filterConn:
		return c.n
	}
	return 0
}

type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Printf(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a logAdapter) Println(v ...any)               { a.l.Debug(fmt.Sprintln(v...)) }

type session struct {
	s     *Server
	c     *smtp.Conn
	n     int // Event.Conn
	from  string
	opts  smtp.MailOptions
	rcpts []string
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, c: c, n: connNumber(c.Conn())}, nil
}

func (ss *session) tls() bool {
	if fc, ok := ss.c.Conn().(*filterConn); ok {
		return fc.tlsOn.Load()
	}
	_, ok := ss.c.TLSConnectionState()
	return ok
}

// hook runs the script and turns its verdict into what go-smtp expects.
func (ss *session) hook(ev Event) error {
	if ss.s.opts.Hook == nil {
		return nil
	}
	ev.TLS = ss.tls()
	ev.Conn = ss.n
	ev.From = ss.from
	ev.Rcpts = append([]string(nil), ss.rcpts...)
	err := ss.s.opts.Hook(ev)
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrDrop) {
		ss.s.log.Debug("standin: dropping connection", "stage", ev.Stage.String())
		ss.c.Conn().Close()
		return err
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: err.Error()}
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.from = from
	if opts != nil {
		ss.opts = *opts
	}
	if err := ss.hook(Event{Stage: StageMail}); err != nil {
		ss.from = ""
		return err
	}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := ss.hook(Event{Stage: StageRcpt, Rcpt: to}); err != nil {
		return err
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	if err := ss.hook(Event{Stage: StageData}); err != nil {
		io.Copy(io.Discard, r)
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := ss.hook(Event{Stage: StageDataDone, Data: data}); err != nil {
		return err
	}
	m := Message{From: ss.from, To: append([]string(nil), ss.rcpts...), Data: data, TLS: ss.tls(), MailOpts: ss.opts}
	if err := ss.s.record(m); err != nil {
		ss.s.log.Error("standin: store message", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot store message"}
	}
	ss.s.log.Info("standin: accepted", "from", m.From, "to", m.To, "bytes", len(data), "tls", m.TLS)
	return nil
}

func (ss *session) Reset() {
	ss.from = ""
	ss.opts = smtp.MailOptions{}
	ss.rcpts = nil
}

func (ss *session) Logout() error { return nil }
