// SPDX-License-Identifier: MIT

// Package smtpd is the inbound SMTP server. It adapts go-smtp sessions to the
// routing table and the spool: a recipient is accepted only when the router
// says so, and DATA is answered 250 only after the spool has made the message
// durable. It holds no routing policy of its own and never dials out.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/authcheck"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

// Router answers whether a recipient is one the relay accepts.
type Router interface {
	Lookup(rcpt string) (router.Route, error)
}

// Spool makes accepted messages durable.
type Spool interface {
	NewWriter(env spool.Envelope) (*spool.Writer, error)
}

// Options configure a Server.
type Options struct {
	Hostname        string
	MaxMessageBytes int64
	MaxRecipients   int
	MaxConnections  int
	// MaxConnectionsPerIP bounds simultaneous connections from one client
	// network, an IPv4 address or an IPv6 /64; 0 means no bound beyond
	// MaxConnections.
	MaxConnectionsPerIP int
	// MaxHeaderBytes bounds the header block of a message; 0 means no bound
	// beyond MaxMessageBytes.
	MaxHeaderBytes int64
	ReadTimeout    time.Duration
	// MaxSession bounds a connection's whole life; 0 means 30 minutes. When
	// it is up the client gets 421 4.4.2 and the connection closes (inside
	// DATA the message is not acknowledged, so its sender still owns it).
	MaxSession      time.Duration
	AllowedNetworks []netip.Prefix
	TLS             *tls.Config // STARTTLS offered when set
	// MaxReceived is the hop limit: a message with more Received fields is
	// refused as a probable loop. 0 means 50.
	MaxReceived int
	// ReturnPolicy, when set, accepts bounces for SRS addresses (see ReturnPolicy).
	ReturnPolicy *ReturnPolicy
	// ARCDomain is our sealing domain; an arriving ARC set sealed by it means
	// the message has been here before.
	ARCDomain string
	Router    Router
	Spool     Spool
	// MarkerField and Marked, when both set, tell Marked about every message
	// made durable that carries the header field MarkerField (the forward
	// probe's marker), with the field's first value unfolded. smtpd only
	// reports it; what it proves is the caller's business.
	MarkerField string
	Marked      func(m Marked)
	Metrics     *metrics.Metrics
	Logger      *slog.Logger
	Now         func() time.Time
}

// Marked is a durable message that carries the marker field.
type Marked struct {
	ID, Value, ClientIP string
	Recipients          []spool.Recipient
}

// Server is the inbound SMTP server.
type Server struct {
	opts Options
	srv  *smtp.Server
	// mu guards ln and down: Shutdown may come (SIGTERM right after the
	// start) before or while Serve sets up the listener.
	mu     sync.Mutex
	ln     *listener
	down   bool
	guard  *guard        // set with opts.ReturnPolicy
	limits *returnLimits // set with opts.ReturnPolicy
}

// New prepares a Server; Serve starts it.
func New(opts Options) *Server {
	if opts.MaxReceived == 0 {
		opts.MaxReceived = 50
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if opts.MaxSession == 0 {
		opts.MaxSession = 30 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	if opts.ReturnPolicy != nil {
		s.guard = newGuard(opts.ReturnPolicy)
		s.limits = newReturnLimits(opts.ReturnPolicy)
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = 2000
	srv.WriteTimeout = time.Minute
	if opts.TLS != nil {
		srv.TLSConfig = markHandshakes(opts.TLS)
	}
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogErrorLog{opts.Logger}
	s.srv = srv
	return s
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	ln := &listener{
		Listener:    l,
		allowed:     s.opts.AllowedNetworks,
		maxConns:    s.opts.MaxConnections,
		maxPerIP:    s.opts.MaxConnectionsPerIP,
		idleTimeout: s.opts.ReadTimeout,
		maxSession:  s.opts.MaxSession,
		onMaxSession: func(ip netip.Addr) {
			s.opts.Logger.Info("session time limit reached, closing", "client", ip.String(), "max_session", s.opts.MaxSession.String())
			s.opts.Metrics.SMTPRefusals.WithLabelValues("max_session").Inc()
		},
		conns: make(map[*conn]struct{}),
		onRefuse: func(reason string) {
			s.opts.Metrics.SMTPRefusals.WithLabelValues(reason).Inc()
		},
	}
	s.ln = ln
	s.mu.Unlock()
	err := s.srv.Serve(ln)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, lets sessions inside DATA finish, and
// answers 421 to the rest. When ctx expires, remaining connections are cut:
// a message whose DATA was cut never got its 250, so its sender still owns it.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(ctx) }()
	s.mu.Lock()
	s.down = true
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		ln.drain()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = s.srv.Close()
		return ctx.Err()
	}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.opts.Metrics.SMTPSessions.Inc()
	s.opts.Metrics.SMTPSessionsActive.Inc()
	sess := &session{s: s, c: c, start: s.opts.Now()}
	if _, ok := c.TLSConnectionState(); ok {
		if nc := underlying(c.Conn()); nc != nil {
			nc.tlsEstablished()
		}
	}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		sess.ip = ap.Addr().Unmap()
	}
	return sess, nil
}

type slogErrorLog struct{ l *slog.Logger }

func (e slogErrorLog) Printf(format string, v ...any) {
	e.l.Debug("smtp server", "msg", fmt.Sprintf(format, v...))
}
func (e slogErrorLog) Println(v ...any) { e.l.Debug("smtp server", "msg", fmt.Sprint(v...)) }

// Replies. They say what is wrong in standard words and name no policy detail;
// the log line carries the specifics.
var (
	errUnknownRcpt = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Recipient address rejected: no such forwarding address here"}
	errTryLater    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errNoSpace     = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	errBareLF      = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Message refused: bare CR or LF in data (RFC 5321 section 2.3.8)"}
	errTooLarge    = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds fixed maximum message size"}
	errHdrTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message header size exceeds limit"}
	errNUL         = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: NUL character in data"}
	errLoop        = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: "Too many hops: routing loop detected"}
	errLoopSeen    = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: "Routing loop detected: message already passed through this relay"}
	errBadSender   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Sender address syntax error"}
	errNeedsUTF8   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address requires SMTPUTF8"}
	errNestedMail  = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command"}
	// errClosing answers what a client sent after being hung up on; it
	// never reaches the client, whose connection is shut for output.
	errClosing = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Closing connection"}
	// The connection is closed after errTooManyErrors (see maxRefusedRcpts).
	errTooManyErrors = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors, closing connection"}
	// go-smtp sends any error from Rcpt as the reply; a 250 "error" acknowledges
	// a duplicate recipient without adding it twice.
	errDupRcpt = &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 1, 5}, Message: "Duplicate recipient ignored"}
)

type session struct {
	s     *Server
	c     *smtp.Conn
	ip    netip.Addr
	start time.Time

	from     string
	hasFrom  bool
	mailOpts smtp.MailOptions
	rcpts    []spool.Recipient
	// returned is set when the recipients are SRS returns, which travel in
	// their own transaction because they go to the sender's MX, not the tenant.
	returned bool
	// refusedRcpts counts the connection's RCPTs refused with 5xx.
	refusedRcpts int
}

func (s *session) log() *slog.Logger {
	return s.s.opts.Logger.With("client", s.ip.String(), "helo", s.c.Hostname())
}

func (s *session) reply(cmd string, err error) error {
	code := 250
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		code = se.Code
	} else if err != nil {
		code = 451
	}
	s.s.opts.Metrics.SMTPReplies.WithLabelValues(cmd, metrics.CodeClass(code)).Inc()
	return err
}

func (s *session) refuse(cmd, reason string, err error) error {
	s.s.opts.Metrics.SMTPRefusals.WithLabelValues(reason).Inc()
	return s.reply(cmd, err)
}

// gone reports whether the connection was hung up on: go-smtp may still
// hand over commands it read ahead, and none of them may have an effect.
func (s *session) gone() bool {
	nc := underlying(s.c.Conn())
	return nc != nil && nc.hangup.Load()
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.gone() {
		return errClosing
	}
	if s.hasFrom {
		return s.refuse("mail", "protocol", errNestedMail)
	}
	if from != "" && !validMailbox(from) {
		s.log().Info("refused sender", "from", from)
		return s.refuse("mail", "bad_sender", errBadSender)
	}
	if !isASCII(from) && (opts == nil || !opts.UTF8) {
		s.log().Info("refused sender", "from", from, "why", "non-ASCII without SMTPUTF8")
		return s.refuse("mail", "needs_smtputf8", errNeedsUTF8)
	}
	if opts != nil && opts.Size > 0 && s.s.opts.MaxMessageBytes > 0 && opts.Size > s.s.opts.MaxMessageBytes {
		return s.refuse("mail", "too_large", errTooLarge)
	}
	s.from, s.hasFrom = from, true
	if opts != nil {
		s.mailOpts = *opts
	}
	return s.reply("mail", nil)
}

// maxRefusedRcpts ends a connection whose recipients keep being refused,
// as Postfix's smtpd_hard_error_limit does: a client with 20 recipients
// refused is probing for addresses, not delivering mail.
const maxRefusedRcpts = 20

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.gone() {
		return errClosing
	}
	err := s.rcpt(to)
	if se := (*smtp.SMTPError)(nil); errors.As(err, &se) && se.Code >= 500 {
		if s.refusedRcpts++; s.refusedRcpts >= maxRefusedRcpts {
			s.log().Info("too many refused recipients, closing", "refused", s.refusedRcpts)
			s.s.opts.Metrics.SMTPRefusals.WithLabelValues("too_many_errors").Inc()
			return s.hangUp(errTooManyErrors)
		}
	}
	return err
}

func (s *session) rcpt(to string) error {
	if !isASCII(to) && !s.mailOpts.UTF8 {
		s.log().Info("refused recipient", "rcpt", to, "why", "non-ASCII without SMTPUTF8")
		return s.refuse("rcpt", "needs_smtputf8", errNeedsUTF8)
	}
	if rt := s.s.opts.ReturnPolicy; rt.isReturn(to) {
		return s.rcptReturn(rt, to)
	}
	if s.returned {
		return s.srsRefuse("mixed", errSRSMixed)
	}
	route, err := s.s.opts.Router.Lookup(to)
	switch {
	case errors.Is(err, router.ErrUnknown), errors.Is(err, router.ErrNotAccepting):
		s.log().Info("refused recipient", "rcpt", to, "why", err.Error())
		reason := "unknown_recipient"
		if errors.Is(err, router.ErrNotAccepting) {
			reason = "recipient_not_forwarding"
		}
		return s.refuse("rcpt", reason, errUnknownRcpt)
	case err != nil:
		// The routing table cannot decide (database unreadable for too long):
		// a 4xx makes the old host retry; a guess either way would lose or misroute mail.
		s.log().Warn("routing table unavailable", "rcpt", to, "err", err)
		return s.refuse("rcpt", "router_unavailable", errTryLater)
	}
	// A recipient that resolves to an address and target already in the
	// transaction (the alias in other case, the address beside its alias)
	// is the same delivery: one entry, one copy.
	for _, r := range s.rcpts {
		if strings.EqualFold(r.Address, route.Address) && strings.EqualFold(r.Target, route.Target) {
			return s.reply("rcpt", errDupRcpt)
		}
	}
	s.rcpts = append(s.rcpts, spool.Recipient{Rcpt: to, Address: route.Address, Target: route.Target})
	return s.reply("rcpt", nil)
}

// rcptReturn accepts a bounce for one of our SRS addresses, to be returned to
// the sender the address was made from. Nothing that could tell a client
// whether an address is valid happens before the guard allows it.
func (s *session) rcptReturn(rt *ReturnPolicy, to string) error {
	g, now := s.s.guard, rt.now()
	if g.penalised(s.ip, now) {
		return s.hangUp(s.srsRefuse("penalised", errSRSGuesses))
	}
	if s.from != "" {
		s.log().Info("refused SRS recipient", "rcpt", to, "why", "sender is not null")
		return s.srsRefuse("not_dsn", errSRSNotDSN)
	}
	if len(s.rcpts) > 0 && !s.returned {
		return s.srsRefuse("mixed", errSRSMixed)
	}
	var orig string
	a := g.check(s.ip, now, func() (bool, error) {
		var err error
		orig, err = rt.Reverse(to)
		return err != nil && rt.reason(err) != reasonExpired, err
	})
	if a.logOutside {
		// Real returns come from the sources; one from elsewhere means
		// srs.return_sources may be out of date. Logged once an hour, since
		// whoever holds one valid address could repeat it.
		s.log().Warn("valid SRS return from a client outside srs.return_sources; is the list out of date?",
			"rcpt", to, "deferred", a.v == vBudget)
	}
	if !a.source && (a.v == vValid || a.valid) {
		result := "accepted"
		if a.valid {
			result = "deferred"
		}
		s.s.opts.Metrics.SRSOutsideSources.WithLabelValues(result).Inc()
	}
	switch a.v {
	case vPenalised:
		return s.hangUp(s.srsRefuse("penalised", errSRSGuesses))
	case vBudget:
		// Logged without this client's name: whoever spent the budget, this
		// may be the first to be turned away by it.
		if a.spent {
			s.s.opts.Logger.Warn("SRS recipients from outside srs.return_sources deferred unchecked: the hourly budget for invalid SRS addresses is spent",
				"per_hour", g.perHour, "last_invalid_from", a.lastGuess.String())
		}
		if a.full {
			s.s.opts.Logger.Warn("SRS recipients from new client networks deferred unchecked: the table of networks with invalid SRS addresses is full",
				"entries", maxGuardClients)
		}
		return s.srsRefuse("guess_budget", errSRSBudget)
	case vLimit:
		// Logged once per client network and penalty, not per guess: a
		// guesser must not be able to fill the log either.
		s.log().Warn("SRS guessing: client network penalised", "network", clientKey(s.ip).String(),
			"invalid_addresses", g.maxInvalid, "for", a.penalty.String(), "return_source", a.source, "last_rcpt", to)
		return s.hangUp(s.srsRefuse("guess_limit", errSRSGuesses))
	case vInvalid, vExpired:
		reason := rt.reason(a.err)
		if a.v == vExpired {
			s.log().Info("refused SRS recipient", "rcpt", to, "why", a.err.Error())
		} else {
			s.log().Debug("refused SRS recipient", "rcpt", to, "why", a.err.Error())
		}
		return s.srsRefuse(reason, errSRSInvalid(reason))
	}
	for _, r := range s.rcpts {
		if strings.EqualFold(r.Target, orig) {
			return s.reply("rcpt", errDupRcpt) // one return per original sender, and no token spent
		}
	}
	// Checked here, taken in Data once the message proved to be a return: a
	// RCPT followed by RSET, or by content that is no return, spends nothing.
	if limit, first := s.s.limits.check(s.ip, orig, s.returnTargets(), now); limit != "" {
		if first {
			s.log().Warn("returned mail deferred: rate limit reached", "limit", limit, "rcpt", to, "return_to", orig)
		}
		return s.srsRefuse(limit, errSRSRate)
	}
	s.returned = true
	s.rcpts = append(s.rcpts, spool.Recipient{Rcpt: to, Target: orig})
	return s.reply("rcpt", nil)
}

// returnTargets lists the original senders the transaction returns to.
func (s *session) returnTargets() []string {
	if !s.returned {
		return nil
	}
	t := make([]string, len(s.rcpts))
	for i, r := range s.rcpts {
		t[i] = r.Target
	}
	return t
}

// hangUp makes the connection close once err's reply is out.
func (s *session) hangUp(err error) error {
	if nc := underlying(s.c.Conn()); nc != nil {
		nc.hangUp()
	}
	return err
}

func (s *session) srsRefuse(reason string, err error) error {
	s.s.opts.Metrics.SRSRefusals.WithLabelValues(reason).Inc()
	return s.refuse("rcpt", "srs_"+reason, err)
}

func (s *session) Data(r io.Reader) error {
	if s.gone() {
		return errClosing
	}
	if nc := underlying(s.c.Conn()); nc != nil {
		nc.inData.Store(true)
		defer nc.inData.Store(false)
	}
	now := s.s.opts.Now()
	_, isTLS := s.c.TLSConnectionState()
	env := spool.Envelope{
		From:       s.from,
		Recipients: append([]spool.Recipient(nil), s.rcpts...),
		ReceivedAt: now,
		ClientIP:   s.ip.String(),
		Helo:       s.c.Hostname(),
		EightBit:   s.mailOpts.Body == smtp.Body8BitMIME,
		SMTPUTF8:   s.mailOpts.UTF8,
		Returned:   s.returned,
	}
	w, err := s.s.opts.Spool.NewWriter(env)
	if err != nil {
		return s.spoolError(err, "")
	}
	rcptFor := ""
	if len(s.rcpts) == 1 {
		rcptFor = s.rcpts[0].Rcpt
	}
	if _, err := io.WriteString(w, receivedField(s.c.Hostname(), s.ip, s.s.opts.Hostname, w.ID(), rcptFor, isTLS, s.mailOpts.UTF8, now)); err != nil {
		w.Abort()
		return s.spoolError(err, w.ID())
	}
	markerField := ""
	if s.s.opts.Marked != nil {
		markerField = s.s.opts.MarkerField
	}
	chk := newDataChecker(r, s.s.opts.Hostname, s.s.opts.ARCDomain, markerField)
	chk.maxHeader = s.s.opts.MaxHeaderBytes
	chk.keep = s.returned
	// An Authentication-Results field claiming our authserv-id can only be
	// forged; removing it is the one change made to the original header block.
	n, err := io.Copy(w, authcheck.StripForged(chk, s.s.opts.Hostname))
	if err != nil {
		w.Abort()
		if errors.Is(err, errHeaderTooLarge) {
			s.log().Info("refused message", "id", w.ID(), "why", "header block too large", "limit", s.s.opts.MaxHeaderBytes)
			return s.refuse("data", "header_too_large", errHdrTooLarge)
		}
		if chk.readErr == nil {
			return s.spoolError(err, w.ID())
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			s.log().Info("refused message", "id", w.ID(), "why", "too large")
			return s.refuse("data", "too_large", errTooLarge)
		}
		// The client went away or broke off mid-DATA: nothing was acknowledged.
		s.log().Info("data aborted by client", "id", w.ID(), "err", err)
		return s.reply("data", errTryLater)
	}
	if chk.bad {
		w.Abort()
		s.log().Info("refused message", "id", w.ID(), "why", "bare CR or LF")
		return s.refuse("data", "bare_newline", errBareLF)
	}
	if chk.nul {
		w.Abort()
		s.log().Info("refused message", "id", w.ID(), "why", "NUL character")
		return s.refuse("data", "nul_character", errNUL)
	}
	if chk.received > s.s.opts.MaxReceived {
		w.Abort()
		s.log().Warn("refused message", "id", w.ID(), "why", "hop limit", "received_fields", chk.received)
		return s.refuse("data", "loop_hops", errLoop)
	}
	if chk.ownTrace {
		// A message we already relayed came back: a forward between the old
		// host and Microsoft 365 points the wrong way. Refusing it before 250
		// stops the loop at its first repeat.
		w.Abort()
		s.log().Warn("refused message", "id", w.ID(), "why", "already passed through this relay")
		return s.refuse("data", "loop_seen", errLoopSeen)
	}
	if s.returned {
		what, err := classifyReturn(chk.hdr, chk.status != nil && chk.status.found)
		if chk.hdrCut {
			what, err = "", errors.New("header block too long")
		}
		if err != nil {
			w.Abort()
			s.log().Info("refused message", "id", w.ID(), "why", "not a return: "+err.Error())
			s.s.opts.Metrics.SRSRefusals.WithLabelValues("not_return").Inc()
			return s.refuse("data", "srs_not_return", errSRSNotReturn)
		}
		// The rate limits are spent now, by a return about to be committed.
		// Another session may have taken the last tokens since RCPT.
		if limit, first := s.s.limits.take(s.ip, s.returnTargets(), s.s.opts.ReturnPolicy.now()); limit != "" {
			w.Abort()
			if first {
				s.log().Warn("returned mail deferred: rate limit reached", "limit", limit, "id", w.ID())
			}
			s.s.opts.Metrics.SRSRefusals.WithLabelValues(limit).Inc()
			return s.refuse("data", "srs_"+limit, errSRSRate)
		}
		s.log().Debug("return accepted", "id", w.ID(), "kind", what)
	}
	w.SetReport(chk.report)
	id, err := w.Commit()
	if err != nil {
		if s.returned {
			s.s.limits.give(s.ip, s.returnTargets(), s.s.opts.ReturnPolicy.now())
		}
		return s.spoolError(err, w.ID())
	}
	s.s.opts.Metrics.MessagesAccepted.Inc()
	if s.returned {
		s.s.opts.Metrics.SRSReturned.Inc()
	}
	s.s.opts.Metrics.AcceptedBytes.Add(float64(n))
	rcpts := make([]string, len(s.rcpts))
	for i, r := range s.rcpts {
		rcpts[i] = r.Rcpt
	}
	s.log().Info("accepted", "id", id, "from", s.from, "rcpts", rcpts, "size", n, "tls", isTLS)
	if chk.hasMarker && !s.returned {
		s.s.opts.Marked(Marked{ID: id, Value: chk.marker, ClientIP: s.ip.String(), Recipients: append([]spool.Recipient(nil), s.rcpts...)})
	}
	s.reset()
	s.reply("data", nil)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

func (s *session) spoolError(err error, id string) error {
	if spool.IsNoSpace(err) {
		s.log().Error("spool full, message refused", "id", id, "err", err)
		return s.refuse("data", "spool_full", errNoSpace)
	}
	s.log().Error("spool write failed, message refused", "id", id, "err", err)
	return s.refuse("data", "spool_error", errTryLater)
}

func (s *session) Reset() { s.reset() }

func (s *session) reset() {
	s.from, s.hasFrom, s.rcpts, s.returned = "", false, nil, false
	s.mailOpts = smtp.MailOptions{}
}

func (s *session) Logout() error {
	s.s.opts.Metrics.SMTPSessionsActive.Dec()
	return nil
}

func underlying(c net.Conn) *conn {
	for {
		switch v := c.(type) {
		case *conn:
			return v
		case *tls.Conn:
			c = v.NetConn()
		default:
			return nil
		}
	}
}

// validMailbox accepts what go-smtp parsed as a mailbox when it is a plain
// local@domain with a domain that could be looked up; the reverse-path is
// where DSNs go, so it must be something a DSN could reach.
func validMailbox(a string) bool {
	if strings.ContainsFunc(a, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return false // control characters, NUL among them, have no place in a path
	}
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return false
	}
	dom := a[i+1:]
	if lit, ok := strings.CutPrefix(dom, "["); ok {
		// An address literal (RFC 5321 4.1.3), nothing else in brackets.
		lit, ok = strings.CutSuffix(lit, "]")
		if v6, is6 := cutPrefixFold(lit, "IPv6:"); is6 {
			ip, err := netip.ParseAddr(v6)
			return ok && err == nil && ip.Is6() && ip.Zone() == ""
		}
		ip, err := netip.ParseAddr(lit)
		return ok && err == nil && ip.Is4()
	}
	for _, r := range dom {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("()<>,;:\\\"[]@", r) {
			return false
		}
	}
	return !strings.HasSuffix(dom, ".") && !strings.HasPrefix(dom, ".")
}

// receivedField is the trace field dualmx prepends (RFC 5321 section 4.4).
// Client-supplied text (the HELO name) is reduced to safe characters so it can
// neither break the field nor inject another.
func receivedField(helo string, ip netip.Addr, host, id, rcpt string, tls, utf8 bool, t time.Time) string {
	proto := "ESMTP"
	if utf8 {
		proto = "UTF8SMTP"
	}
	if tls {
		proto += "S"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (dualmx) with %s id %s", sanitize(helo), ip, host, proto, id)
	if rcpt != "" && validMailbox(rcpt) {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitize(rcpt))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", t.Format(time.RFC1123Z))
	return b.String()
}

func sanitize(s string) string {
	if s == "" {
		return "unknown"
	}
	var b strings.Builder
	for _, r := range s {
		if r > ' ' && r < 0x7f && !strings.ContainsRune("()<>;\\\"", r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 255 {
			break
		}
	}
	return b.String()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
