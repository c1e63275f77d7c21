// SPDX-License-Identifier: MIT

package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Outcome says how a server dealt with one query.
type Outcome string

// Outcomes of a query. Only OutcomeOK carries an answer worth judging.
const (
	OutcomeOK       Outcome = "ok"       // NOERROR or NXDOMAIN
	OutcomeTimeout  Outcome = "timeout"  // no reply within the deadline, after every retry
	OutcomeServFail Outcome = "servfail" // the server said SERVFAIL
	OutcomeRefused  Outcome = "refused"  // the server does not serve the zone
	OutcomeError    Outcome = "error"    // another rcode, a malformed reply or a network error
	// OutcomeSkipped means the server was not asked because it had already
	// timed out: asking a dead server a dozen more questions would only
	// stretch the command towards its deadline.
	OutcomeSkipped Outcome = "skipped"
)

// Answer is one server's reply to one question.
type Answer struct {
	Server  string  `json:"server"`
	Outcome Outcome `json:"outcome"`
	Rcode   string  `json:"rcode,omitempty"`
	// AA is the authoritative-answer bit; an authoritative server that does
	// not set it is lame for the zone.
	AA bool `json:"aa"`
	// TCP is true when the UDP reply was truncated and TCP gave the answer.
	TCP bool     `json:"tcp,omitempty"`
	Err string   `json:"error,omitempty"`
	Msg *dns.Msg `json:"-"`
}

// ok reports whether the answer can be judged.
func (a Answer) ok() bool { return a.Outcome == OutcomeOK && a.Msg != nil }

// nxdomain reports a negative answer for the name.
func (a Answer) nxdomain() bool { return a.ok() && a.Msg.Rcode == dns.RcodeNameError }

// rrs returns the answer records of type t owned by name (case-insensitive).
func (a Answer) rrs(name string, t uint16) []dns.RR {
	if !a.ok() {
		return nil
	}
	var out []dns.RR
	for _, rr := range a.Msg.Answer {
		if rr.Header().Rrtype == t && strings.EqualFold(rr.Header().Name, dns.Fqdn(name)) {
			out = append(out, rr)
		}
	}
	return out
}

// server is one address of one authoritative name server.
type server struct {
	name string // the NS name, or what was given with --nameserver
	addr string // ip:port
	// dead is set after a query timed out on every attempt.
	dead atomic.Bool
}

func (s *server) label() string {
	if s.name == s.addr || s.name == "" {
		return s.addr
	}
	return s.name + " (" + s.addr + ")"
}

// querier sends questions to one server at a time, with a deadline per
// attempt, retries for lost UDP packets, and TCP when UDP was truncated.
type querier struct {
	timeout time.Duration
	retries int
}

// ask sends one question to srv. The recursion-desired bit is off: the
// point is what this server itself holds, not what it can find out.
func (q *querier) ask(ctx context.Context, srv *server, name string, t uint16) Answer {
	a := Answer{Server: srv.label()}
	if srv.dead.Load() {
		a.Outcome, a.Err = OutcomeSkipped, "not asked: the server did not answer an earlier query"
		return a
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), t)
	m.RecursionDesired = false
	// DO asks for the RRSIGs so answers can be validated; 1232 is the
	// DNS-flag-day size that avoids IP fragmentation.
	m.SetEdns0(1232, true)

	r, tcp, err := q.exchange(ctx, srv.addr, m)
	a.TCP = tcp
	switch {
	case err != nil && isTimeout(err):
		a.Outcome = OutcomeTimeout
		a.Err = fmt.Sprintf("no reply to %s %s within %s, %d attempt(s)", dns.Fqdn(name), dns.TypeToString[t], q.timeout, q.retries+1)
		if expired(ctx) {
			a.Err = fmt.Sprintf("no reply to %s %s before the command's deadline", dns.Fqdn(name), dns.TypeToString[t])
		}
		srv.dead.Store(true)
		return a
	case err != nil:
		a.Outcome, a.Err = OutcomeError, err.Error()
		return a
	}
	a.Msg, a.AA, a.Rcode = r, r.Authoritative, dns.RcodeToString[r.Rcode]
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		a.Outcome = OutcomeOK
	case dns.RcodeServerFailure:
		a.Outcome, a.Err = OutcomeServFail, "SERVFAIL"
	case dns.RcodeRefused:
		a.Outcome, a.Err = OutcomeRefused, "REFUSED"
	default:
		a.Outcome, a.Err = OutcomeError, "rcode "+a.Rcode
	}
	return a
}

// exchange does the UDP attempts and, on truncation, the TCP ones.
func (q *querier) exchange(ctx context.Context, addr string, m *dns.Msg) (*dns.Msg, bool, error) {
	r, err := q.attempts(ctx, "udp", addr, m)
	if err != nil || !r.Truncated {
		return r, false, err
	}
	r, err = q.attempts(ctx, "tcp", addr, m)
	if err == nil && r.Truncated {
		return nil, true, errors.New("reply truncated over TCP too")
	}
	return r, true, err
}

func (q *querier) attempts(ctx context.Context, network, addr string, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: q.timeout}
	var last error
	for i := 0; i <= q.retries; i++ {
		if expired(ctx) {
			return nil, context.DeadlineExceeded
		}
		actx, cancel := context.WithTimeout(ctx, q.timeout)
		// A fresh ID per attempt, so a late reply to an earlier attempt
		// cannot be taken for this one.
		m.Id = dns.Id()
		r, _, err := c.ExchangeContext(actx, m, addr)
		cancel()
		if err == nil {
			if r.Id != m.Id {
				last = dns.ErrId
				continue
			}
			return r, nil
		}
		last = err
		if !isTimeout(err) {
			// A refused connection or an unreachable network will not
			// improve within the next second.
			return nil, err
		}
	}
	return nil, last
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// expired reports whether ctx is done or past its deadline; the deadline
// can pass a moment before ctx's own timer cancels it.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}
