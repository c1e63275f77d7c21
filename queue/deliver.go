// SPDX-License-Identifier: MIT

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/spool"
)

// busyRetry is how soon an item locked by an admin command is looked at again.
const busyRetry = time.Second

// process makes one delivery attempt for j's item and records the outcome.
// The item stays claimed throughout, so an admin command in another process
// either waits for the attempt or runs entirely before it.
func (r *Runner) process(ctx context.Context, j job) done {
	d := r.attemptItem(ctx, j)
	d.job = j
	return d
}

func (r *Runner) attemptItem(ctx context.Context, j job) done {
	id := j.id
	log := r.log.With("id", id)
	r.mu.Lock()
	removing, saving := r.removing[id], r.saving[id]
	r.mu.Unlock()
	if removing {
		return r.retryRemoval(id, log)
	}
	if saving != nil {
		return r.retrySave(id, saving, log)
	}
	// Claim reads the item again under its lock: an admin may have changed
	// or removed it since the schedule was made.
	c, err := r.sp.Claim(id)
	switch {
	case errors.Is(err, spool.ErrBusy):
		return done{id: id, keep: true, next: r.opts.Now().Add(busyRetry)}
	case errors.Is(err, spool.ErrNotFound):
		return done{id: id} // removed by an admin command
	case errors.Is(err, spool.ErrCorrupt):
		// Quarantined; or not, if that failed, and then the next rescan
		// must read it again rather than skip it as known.
		r.sp.Recheck(id)
		return done{id: id}
	case err != nil:
		log.Error("queue: unreadable item, retrying later", "err", err)
		return done{id: id, keep: true, next: r.opts.Now().Add(r.opts.RetryInitial)}
	}
	defer c.Close()
	it := c.Item()
	now := r.opts.Now()
	if it.State == spool.StateHeld {
		return done{id: id}
	}
	if it.NextAttempt.After(now.Add(time.Second)) {
		return done{id: id, keep: true, next: it.NextAttempt}
	}
	var targets []string
	for _, rc := range it.Recipients {
		if rc.State == spool.RcptPending && !slices.ContainsFunc(targets, func(t string) bool { return strings.EqualFold(t, rc.Target) }) {
			targets = append(targets, rc.Target)
		}
	}
	var res courier.Result
	if len(targets) > 0 {
		via := r.opts.Tenant
		if it.DSN {
			via = r.opts.Sender
		}
		// Each recipient's outcome line below carries the attempt number: one
		// line per recipient and attempt, as mail admins read a log.
		log.Debug("queue: attempt", "attempt", it.Attempts+1, "targets", targets, "dsn", it.DSN, "judge", j.judge)
		start := time.Now()
		res = r.attempt(ctx, via, it, body(c), targets, j.judge && !it.DSN)
		if unsent(res) {
			// The tenant is suspended (since the item was handed out, or
			// it was handed out only to be judged): nothing was sent, and
			// no attempt counts. The verdict the stages took on the way
			// is kept, so that the message is judged on arrival, not
			// after the outage (by when a DKIM signature may have expired
			// or its key been rotated); for most messages that is one
			// append to the body file, no fsync (spool.KeepVerdict).
			if it.Prepend == "" && len(res.Header) > 0 {
				if err := c.KeepVerdict(string(res.Header)); err != nil {
					log.Error("queue: record the arrival verdict", "err", err)
				}
			}
			return done{id: id, keep: true, park: true, judged: true}
		}
		if r.m != nil {
			r.m.AttemptDuration.Observe(time.Since(start).Seconds())
		}
		it.Attempts++
		it.LastAttempt = now.UTC()
		now = r.opts.Now()
	}
	r.apply(it, res.Rcpts, now, log)
	d := r.decide(c, res.Header, now, log)
	d.other, d.judged = it.DSN, true
	return d
}

// unsent reports whether a transaction was refused for every recipient
// because the tenant is suspended.
func unsent(res courier.Result) bool {
	for _, o := range res.Rcpts {
		if o.Err == nil || o.Err.Signal != courier.SignalSuspended {
			return false
		}
	}
	return len(res.Rcpts) > 0
}

// body is the claimed message as the attempt reads it. A message up to
// smallBody is read once: the stages' checks (DKIM, ARC, the header passes)
// and the transaction each read it again, a system call and a copy from the
// page cache every time. Not pooled: a check given up at its deadline may
// still be reading.
func body(c *spool.Claim) courier.Body {
	size := c.Size()
	if size <= smallBody {
		buf := make([]byte, size)
		if n, err := c.ReadAt(buf, 0); int64(n) == size && (err == nil || err == io.EOF) {
			return bytes.NewReader(buf)
		}
	}
	return io.NewSectionReader(c, 0, size)
}

// attempt runs one transaction for it's pending recipients rcpts through
// via. The header fields stored with the item by an earlier attempt go
// first; without them, a stage of via may add its own (the verdict of the
// arrival checks), which the result reports. parked: the item is out only
// to be judged (courier.Message.Parked).
func (r *Runner) attempt(ctx context.Context, via courier.Target, it *spool.Item, body courier.Body, rcpts []string, parked bool) courier.Result {
	msg := courier.Message{ID: it.ID, From: it.From, EightBit: it.EightBit, SMTPUTF8: it.SMTPUTF8, ClientIP: it.ClientIP, Helo: it.Helo, Parked: parked}
	d, err := via.Start(ctx, msg)
	if err != nil {
		return courier.Failed(rcpts, err)
	}
	var refused []courier.Outcome
	for _, rc := range rcpts {
		if err := d.AddRcpt(ctx, rc); err != nil {
			refused = append(refused, courier.Outcome{Rcpt: rc, Err: courier.Classify(err)})
		}
	}
	if len(refused) == len(rcpts) {
		d.Abort(ctx)
		return courier.Result{Rcpts: refused}
	}
	var header []byte
	if it.Prepend != "" {
		header = []byte(it.Prepend)
	}
	if err := d.Body(ctx, header, body); err != nil {
		d.Abort(ctx)
		return courier.Failed(rcpts, err)
	}
	res := d.Commit(ctx)
	res.Rcpts = append(res.Rcpts, refused...)
	return res
}

// retryRemoval removes an item that was delivered to every recipient but
// could not be removed then; it is never sent again by this process.
func (r *Runner) retryRemoval(id string, log *slog.Logger) done {
	err := r.sp.RemoveDelivered(id)
	switch {
	case errors.Is(err, spool.ErrBusy):
		return done{id: id, keep: true, next: r.opts.Now().Add(busyRetry)}
	case err != nil:
		log.Error("queue: remove delivered item; it will not be sent again, only its removal retried", "err", err)
		return done{id: id, keep: true, next: r.opts.Now().Add(r.opts.RetryMax)}
	}
	r.mu.Lock()
	delete(r.removing, id)
	r.mu.Unlock()
	log.Info("queue: delivered item removed at last")
	return done{id: id}
}

// smallBody is the largest message the runner reads into memory for its
// attempt rather than from the spool file at each pass.
const smallBody = 64 << 10

// apply records per-recipient outcomes; recipients sharing a target share its outcome.
func (r *Runner) apply(it *spool.Item, res []courier.Outcome, now time.Time, log *slog.Logger) {
	delivered := map[string]int{}
	it.LastError = ""
	for i := range it.Recipients {
		rc := &it.Recipients[i]
		if rc.State != spool.RcptPending {
			continue
		}
		var o courier.Outcome
		if j := slices.IndexFunc(res, func(o courier.Outcome) bool { return strings.EqualFold(o.Rcpt, rc.Target) }); j >= 0 {
			o = res[j]
		} else {
			o.Err = courier.TempError("4.4.0", "no outcome recorded")
		}
		rc.Attempts++
		if o.Err == nil {
			rc.State = spool.RcptDelivered
			rc.DeliveredAt = now.UTC()
			rc.LastReply, rc.LastCode, rc.LastStatus = o.Reply, 250, ""
			log.Info("queue: delivered", "attempt", it.Attempts, "rcpt", rc.Rcpt, "target", rc.Target, "reply", o.Reply)
			if r.m != nil {
				r.m.Deliveries.WithLabelValues("delivered").Inc()
				r.m.DeliveryLatency.Observe(now.Sub(it.ReceivedAt).Seconds())
				if rc.Address != "" {
					r.m.AddressDelivered.WithLabelValues(rc.Address).Inc()
				}
			}
			if rc.Address != "" {
				delivered[rc.Address]++
			}
			continue
		}
		rc.LastReply, rc.LastCode, rc.LastStatus = o.Err.Reply(), o.Err.Code, o.Err.Status
		it.LastError = o.Err.Reply()
		if o.Err.Temporary {
			log.Warn("queue: temporary failure", "attempt", it.Attempts, "rcpt", rc.Rcpt, "target", rc.Target, "reply", o.Err.Reply())
		} else {
			rc.State = spool.RcptFailed
			log.Warn("queue: permanent failure", "attempt", it.Attempts, "rcpt", rc.Rcpt, "target", rc.Target, "reply", o.Err.Reply())
		}
	}
	for addr, n := range delivered {
		r.noteDelivered(addr, now, n)
	}
}

// decide turns recipient states into the item's fate: retry later, give up,
// or (nothing left to try) remove, hold or bounce. header is what went before
// the message at this attempt: an item that stays keeps it, so that every
// later attempt, also after a restart, sends the same verdict.
func (r *Runner) decide(c *spool.Claim, header []byte, now time.Time, log *slog.Logger) done {
	it := c.Item()
	id := it.ID
	if pending := it.Count(spool.RcptPending); pending > 0 {
		since := it.ReceivedAt
		if it.ReleasedAt.After(since) {
			since = it.ReleasedAt
		}
		if now.Sub(since) < r.opts.GiveUpAfter {
			delay := Backoff(it.Attempts, r.opts.RetryInitial, r.opts.RetryMax, r.opts.Rand)
			it.State = spool.StateDeferred
			it.NextAttempt = now.Add(delay).UTC()
			keepHeader(it, header)
			next := it.NextAttempt
			if err := c.Save(); err != nil {
				next = r.saveLater(it, now, "queue: record deferral", err, log)
			}
			r.count("deferred", pending)
			log.Info("queue: deferred", "pending", pending, "next_attempt", it.NextAttempt, "last_error", it.LastError)
			return done{id: id, keep: true, next: next}
		}
		for i := range it.Recipients {
			if rc := &it.Recipients[i]; rc.State == spool.RcptPending {
				rc.State = spool.RcptFailed
				rc.LastReply = fmt.Sprintf("gave up after %s: %s", r.opts.GiveUpAfter, rc.LastReply)
				if rc.LastStatus == "" || rc.LastStatus[0] != '5' {
					rc.LastStatus = "4.4.7" // delivery time expired
				}
			}
		}
		log.Warn("queue: giving up", "after", r.opts.GiveUpAfter, "last_error", it.LastError)
	}
	failed := it.Count(spool.RcptFailed)
	if failed == 0 {
		if err := c.Delivered(); err != nil {
			// Every recipient has its 250: never send it again, only
			// retry the removal (a read-only or misowned spool).
			log.Error("queue: remove delivered item; it will not be sent again, only its removal retried", "err", err)
			r.mu.Lock()
			r.removing[id] = true
			r.mu.Unlock()
			return done{id: id, keep: true, next: now.Add(r.opts.RetryInitial)}
		}
		// The delivered lines above already say so, once per recipient.
		log.Debug("queue: done, removed from spool")
		return done{id: id}
	}
	var also []string // a DSN spooled although the original stays
	if r.opts.OnPermanentFailure == PolicyBounce && it.Bounceable() {
		dsnID, err := c.Bounce(r.opts.HelloName, now)
		if dsnID != "" {
			// The DSN is spooled and goes out whatever became of the original.
			r.count("bounced", failed)
			if r.m != nil {
				r.m.DSNsGenerated.Inc()
			}
		}
		switch {
		case err == nil:
			log.Info("queue: bounced", "dsn_id", dsnID, "failed", failed)
			return done{id: id, also: []string{dsnID}}
		case dsnID != "" && c.Gone():
			// The body went, its metadata did not: the item is gone, and
			// holding it would write metadata for a message that no longer
			// exists. What is left is quarantined as metadata without body.
			log.Error("queue: bounced, but removing the original's metadata failed", "dsn_id", dsnID, "err", err)
			return done{id: id, also: []string{dsnID}}
		case dsnID != "":
			log.Error("queue: bounced, but the original could not be removed; holding it", "dsn_id", dsnID, "err", err)
			also = []string{dsnID}
		default:
			log.Error("queue: bounce failed, holding instead", "err", err)
		}
	}
	it.State = spool.StateHeld
	it.NextAttempt = time.Time{}
	keepHeader(it, header)
	d := done{id: id, also: also}
	if err := c.Save(); err != nil {
		d.keep, d.next = true, r.saveLater(it, now, "queue: record hold", err, log)
	}
	r.count("held", failed)
	log.Warn("queue: held for an admin", "failed", failed, "last_error", it.LastError)
	return d
}

// saveLater keeps it, the outcome of an attempt that could not be written,
// for retrySave, and returns when to retry: soon, and for a deferral no
// later than its next attempt, which waits for the write.
func (r *Runner) saveLater(it *spool.Item, now time.Time, msg string, err error, log *slog.Logger) time.Time {
	log.Error(msg+"; it is not sent again until the record is written, only the write is retried", "err", err)
	r.mu.Lock()
	r.saving[it.ID] = it
	r.mu.Unlock()
	next := now.Add(r.opts.RetryInitial)
	if it.State != spool.StateHeld && it.NextAttempt.Before(next) {
		next = it.NextAttempt
	}
	return next
}

// retrySave writes rec, the outcome of an earlier attempt that could not be
// written then, over id's record. Meanwhile the spool still had the record
// the attempt began with, which only an admin's retry (a new next attempt)
// or removal could change; the outcome supersedes the one, the other ends
// the item.
func (r *Runner) retrySave(id string, rec *spool.Item, log *slog.Logger) done {
	c, err := r.sp.Claim(id)
	switch {
	case errors.Is(err, spool.ErrBusy):
		return done{id: id, keep: true, next: r.opts.Now().Add(busyRetry)}
	case errors.Is(err, spool.ErrNotFound), errors.Is(err, spool.ErrCorrupt):
		r.mu.Lock()
		delete(r.saving, id)
		r.mu.Unlock()
		if errors.Is(err, spool.ErrCorrupt) {
			r.sp.Recheck(id)
		}
		return done{id: id}
	case err != nil:
		log.Error("queue: unreadable item, retrying later", "err", err)
		return done{id: id, keep: true, next: r.opts.Now().Add(r.opts.RetryMax)}
	}
	defer c.Close()
	*c.Item() = *rec
	if err := c.Save(); err != nil {
		log.Error("queue: record the attempt's outcome; it is not sent again until the record is written, only the write is retried", "state", rec.State, "err", err)
		return done{id: id, keep: true, next: r.opts.Now().Add(r.opts.RetryMax)}
	}
	r.mu.Lock()
	delete(r.saving, id)
	r.mu.Unlock()
	log.Info("queue: attempt's outcome recorded at last", "state", rec.State)
	if rec.State == spool.StateHeld {
		return done{id: id, judged: true}
	}
	return done{id: id, keep: true, next: rec.NextAttempt, other: rec.DSN, judged: true}
}

func (r *Runner) count(result string, n int) {
	if r.m != nil && n > 0 {
		r.m.Deliveries.WithLabelValues(result).Add(float64(n))
	}
}

// keepHeader records, in an item about to be written, the header fields its
// attempt sent first. Converted only here: most messages leave at their
// first attempt and are never written again.
func keepHeader(it *spool.Item, header []byte) {
	if it.Prepend == "" && len(header) > 0 {
		it.Prepend = string(header)
	}
}
