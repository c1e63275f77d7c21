// SPDX-License-Identifier: MIT

// Package courier carries messages to the next hop over SMTP: connections
// and their pool, STARTTLS under a TLS policy, pipelining, the DATA dot
// writer, and the classification of every reply as data (Error).
//
// It offers one transactional interface, Target (modelled on maddy's
// DeliveryTarget): Start a transaction for a message, add its recipients,
// give it the body, Commit, and read one outcome per recipient. There are
// two targets: the Tenant, the one configured endpoint, and MX, a sender's
// mail exchanger, for DSNs and returned bounces only. Stages that change
// what a target sees (the arrival verdict and ARC seal, SRS) wrap a Target
// in a Target of their own; the queue drives the outermost one.
//
// A target talks to the network only in Commit, so that MAIL, every RCPT
// and DATA can leave in one write where the next hop offers PIPELINING.
package courier

import (
	"context"
	"io"
)

// Message is what a transaction knows about the message it carries.
type Message struct {
	ID       string // the spool id, for logs and errors
	From     string // the reverse path; "" for the null sender
	EightBit bool   // the body has 8-bit bytes: the next hop must offer 8BITMIME
	SMTPUTF8 bool   // the envelope needs SMTPUTF8
	// Where the message came from, for a stage that judges it on its
	// arrival (vouch); a target does not use them.
	ClientIP string
	Helo     string
	// Parked: the queue would park the message, its target being
	// suspended, and hands it out only so that the stages before the
	// target judge it on arrival (the verdict is kept with the message).
	// The tenant sends it only if it is up again by then, and never as
	// the probe of a suspended target: the queue chooses that one.
	Parked bool
}

// Body is a spooled message: it never changes, and is read from its start
// for every pass (a stage's checks, the transaction, a retry).
type Body interface {
	io.ReadSeeker
	io.ReaderAt
	Size() int64
}

// Target starts mail transactions to one kind of next hop.
type Target interface {
	Start(ctx context.Context, msg Message) (Delivery, error)
}

// Delivery is one mail transaction. AddRcpt and Body only record; Commit
// runs the transaction and reports its outcome; Abort ends it unsent. A
// Delivery is used by one goroutine.
type Delivery interface {
	// AddRcpt adds an envelope recipient. An error refuses this
	// recipient alone (one that cannot be written into RCPT TO, say);
	// the others go on.
	AddRcpt(ctx context.Context, rcpt string) error
	// Body sets the message: header is put before body on the wire (the
	// fields a stage adds, or those stored from an earlier attempt).
	Body(ctx context.Context, header []byte, body Body) error
	// Commit sends the message to every recipient AddRcpt took.
	Commit(ctx context.Context) Result
	// Abort ends the transaction without sending anything.
	Abort(ctx context.Context)
}

// Outcome is what the next hop said about one recipient.
type Outcome struct {
	Rcpt  string
	Err   *Error // nil when accepted
	Reply string // the final reply when accepted
}

// Result is how a transaction ended: one outcome for every recipient AddRcpt
// took, in that order, and the header fields that went before the body. The
// queue keeps Header with the message so that every later attempt, also
// after a restart, sends the same fields.
type Result struct {
	Rcpts  []Outcome
	Header []byte
}

// Failed is the result of a transaction that ended before any recipient had
// an answer of its own: each shares err.
func Failed(rcpts []string, err error) Result {
	de := Classify(err)
	if de == nil {
		de = TempError("4.4.0", "no outcome recorded")
	}
	out := make([]Outcome, len(rcpts))
	for i, r := range rcpts {
		out[i] = Outcome{Rcpt: r, Err: de}
	}
	return Result{Rcpts: out}
}

// txn is the part of a Delivery every target shares: what AddRcpt and Body
// were given.
type txn struct {
	msg    Message
	rcpts  []string
	header []byte
	body   Body
	// Room for the usual message's recipients and their outcomes, in the
	// allocation that holds the transaction.
	rcptBuf [2]string
	outBuf  [2]Outcome
}

func (x *txn) AddRcpt(_ context.Context, rcpt string) error {
	if err := checkRcpt(rcpt); err != nil {
		return err
	}
	if x.rcpts == nil {
		x.rcpts = x.rcptBuf[:0]
	}
	x.rcpts = append(x.rcpts, rcpt)
	return nil
}

// outcomes makes the outcome list for x's recipients, answers to be filled
// in.
func (x *txn) outcomes() []Outcome {
	out := x.outBuf[:0]
	if len(x.rcpts) > len(x.outBuf) {
		out = make([]Outcome, 0, len(x.rcpts))
	}
	for _, r := range x.rcpts {
		out = append(out, Outcome{Rcpt: r})
	}
	return out
}

func (x *txn) Body(_ context.Context, header []byte, body Body) error {
	x.header, x.body = header, body
	return nil
}

func (x *txn) Abort(context.Context) {}

// size is what SIZE= announces: the header fields and the message.
func (x *txn) size() int64 { return int64(len(x.header)) + x.body.Size() }

// result turns a transaction's outcomes, or its failure as a whole, into a
// Result.
func (x *txn) result(out []Outcome, err error) Result {
	if out == nil {
		if err == nil {
			err = TempError("4.4.0", "no outcome recorded")
		}
		r := Failed(x.rcpts, err)
		r.Header = x.header
		return r
	}
	return Result{Rcpts: out, Header: x.header}
}
