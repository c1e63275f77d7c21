// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// Replies of the target stand-in. The throttling one is Microsoft's text for
// Exchange Online Protection pushing back on a sender it does not trust yet.
const (
	reply421      = "421 4.3.2 Service not available, closing transmission channel"
	replyThrottle = "451 4.7.500 Server busy. Please try again later."
)

// targetStats counts what the stand-in saw. Every connection it accepted is
// one the relay opened, so conns is the relay's connection count exactly.
type targetStats struct {
	conns   atomic.Int64 // TCP connections accepted
	refused atomic.Int64 // of those, answered 421 or 451 (never delivered on)
	mesg    atomic.Int64 // messages received whole (end of DATA answered 250)
}

func (s *targetStats) line() string {
	return fmt.Sprintf("conns=%d refused=%d mesg=%d", s.conns.Load(), s.refused.Load(), s.mesg.Load())
}

// cmdTarget stands in for the next hop when it is not simply up:
//
//   - -mode 421: down, but reachable: every connection is accepted, answered
//     "421 4.3.2" and closed, as a front end with nothing behind it answers.
//   - -mode throttle: every -every'th connection, and with -limit K every
//     connection that finds K sessions open already, is answered "451 4.7.500
//     Server busy" (at the greeting, or with -at rcpt to each RCPT TO) and
//     closed; the others are served as a sink that counts and discards.
//
// It counts connections, refusals and messages; the counts go to stdout on
// SIGUSR1 and when it stops, and -counter gets smtp-sink -c style records
// ("sess=N quit=0 mesg=N", each ending in a carriage return) so waitsink and
// sinkcount can wait on it as on smtp-sink.
func cmdTarget(args []string) error {
	fs := flag.NewFlagSet("target", flag.ExitOnError)
	addr := fs.String("addr", "", "listen address host:port (loopback)")
	mode := fs.String("mode", "", "421 or throttle")
	every := fs.Int("every", 2, "throttle: refuse connection number k when k is a multiple of this (0: never)")
	limit := fs.Int("limit", 0, "throttle: also refuse a connection while this many sessions are open (0: no limit)")
	at := fs.String("at", "greeting", "throttle: refuse at the greeting or at each RCPT TO (rcpt)")
	counter := fs.String("counter", "", "file for smtp-sink -c style records (optional)")
	lifetime := fs.Duration("lifetime", time.Hour, "stop after this long")
	fs.Parse(args)
	if *addr == "" {
		return errors.New("target: -addr is required")
	}
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("target: -addr must be a loopback address, got %q", *addr)
	}
	if *mode != "421" && *mode != "throttle" {
		return errors.New("target: -mode must be 421 or throttle")
	}
	if *every < 0 || *limit < 0 || (*at != "greeting" && *at != "rcpt") {
		return errors.New("target: -every and -limit must be ≥ 0 and -at greeting or rcpt")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var st targetStats
	srv := newTarget(&st, *mode, int64(*every), int64(*limit), *at == "greeting")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(&throttleListener{Listener: ln, t: srv}) }()

	stopCounter := make(chan struct{})
	var counterDone sync.WaitGroup
	if *counter != "" {
		f, err := os.OpenFile(*counter, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			srv.Close()
			return err
		}
		counterDone.Go(func() {
			defer f.Close()
			writeCounter(f, &st, stopCounter)
		})
	}
	fmt.Fprintf(os.Stderr, "target: %s on %s\n", *mode, *addr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	end := time.After(*lifetime)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				fmt.Println(st.line())
				continue
			}
		case <-end:
		case err := <-served:
			close(stopCounter)
			counterDone.Wait()
			fmt.Println(st.line())
			return fmt.Errorf("target: serve: %w", err)
		}
		srv.Close()
		close(stopCounter)
		counterDone.Wait()
		fmt.Println(st.line())
		return nil
	}
}

// writeCounter appends a record whenever the counts change, every 5 ms at
// most, and a last one when stopped.
func writeCounter(w io.Writer, st *targetStats, stop <-chan struct{}) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	last := ""
	write := func() {
		rec := fmt.Sprintf("sess=%d quit=0 mesg=%d\r", st.conns.Load(), st.mesg.Load())
		if rec != last {
			io.WriteString(w, rec)
			last = rec
		}
	}
	write()
	for {
		select {
		case <-stop:
			write()
			return
		case <-t.C:
			write()
		}
	}
}

// target is the stand-in: which connections it refuses, how, and its SMTP
// server for the others.
type target struct {
	*smtp.Server
	st         *targetStats
	every      int64 // refuse connection k when k%every == 0; 0: never
	limit      int64 // refuse while this many sessions are open; 0: no limit
	atGreeting bool
	reply      string
	n          atomic.Int64
	open       atomic.Int64 // sessions served (not refused) and not closed yet
}

// newTarget builds the stand-in for mode "421" or "throttle"; serve it with
// srv.Serve(&throttleListener{Listener: ln, t: srv}).
func newTarget(st *targetStats, mode string, every, limit int64, atGreeting bool) *target {
	t := &target{st: st, every: every, limit: limit, atGreeting: atGreeting, reply: replyThrottle}
	if mode == "421" {
		t.every, t.limit, t.atGreeting, t.reply = 1, 0, true, reply421
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		tc, _ := c.Conn().(*countedConn)
		return &sinkSession{st: st, throttled: tc != nil && tc.throttled}, nil
	}))
	srv.Domain = "target.bench.localhost"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxRecipients = 1000
	srv.MaxMessageBytes = 256 << 20
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0) // a relay hanging up early is no news here
	t.Server = srv
	return t
}

// throttleListener counts connections and, at the greeting, refuses every
// every'th one itself, before the SMTP server sees it.
type throttleListener struct {
	net.Listener
	t *target
}

func (l *throttleListener) Accept() (net.Conn, error) {
	t := l.t
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		t.st.conns.Add(1)
		k := t.n.Add(1)
		throttled := (t.every > 0 && k%t.every == 0) || (t.limit > 0 && t.open.Load() >= t.limit)
		if !throttled {
			t.open.Add(1)
			return &countedConn{Conn: c, open: &t.open}, nil
		}
		t.st.refused.Add(1)
		if !t.atGreeting {
			return &countedConn{Conn: c, throttled: true}, nil
		}
		go refuse(c, t.reply)
	}
}

// refuse answers the greeting with reply and closes, after reading what the
// client sends for a moment, so the reply is not lost to a reset.
func refuse(c net.Conn, reply string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, reply+"\r\n"); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, 4096))
}

type countedConn struct {
	net.Conn
	throttled bool
	open      *atomic.Int64 // decremented once at Close, for a served session
	closed    atomic.Bool
}

func (c *countedConn) Close() error {
	if c.open != nil && c.closed.CompareAndSwap(false, true) {
		c.open.Add(-1)
	}
	return c.Conn.Close()
}

// sinkSession accepts everything and counts each message read to its end,
// unless its connection is throttled at RCPT TO.
type sinkSession struct {
	st        *targetStats
	throttled bool
}

func (s *sinkSession) Reset()        {}
func (s *sinkSession) Logout() error { return nil }
func (s *sinkSession) Mail(string, *smtp.MailOptions) error {
	return nil
}

func (s *sinkSession) Rcpt(string, *smtp.RcptOptions) error {
	if s.throttled {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 500}, Message: "Server busy. Please try again later."}
	}
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.st.mesg.Add(1)
	return nil
}
