// SPDX-License-Identifier: MIT

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
)

// busyRetry is how soon an item locked by an admin command is looked at again.
const busyRetry = time.Second

// process makes one delivery attempt for id and records the outcome. The
// item stays locked throughout, so an admin command in another process
// either waits for the attempt or runs entirely before it.
func (r *Runner) process(ctx context.Context, id string) done {
	log := r.log.With("id", id)
	r.mu.Lock()
	removing := r.removing[id]
	r.mu.Unlock()
	if removing {
		return r.retryRemoval(id, log)
	}
	lk, err := r.sp.lockItem(id, 0)
	if errors.Is(err, ErrBusy) {
		return done{id: id, keep: true, next: r.opts.Now().Add(busyRetry)}
	}
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			log.Error("queue: lock", "err", err)
			return done{id: id}
		}
		r.sp.viewGone(id) // removed by an admin command
		if r.orphanMeta(id) {
			// Metadata without a body: the body was removed or lost behind
			// our back (remove deletes the body first, then the metadata).
			r.quarantine(id, "metadata without body", log)
		}
		return done{id: id}
	}
	defer lk.unlock()
	// Re-read under the lock: an admin may have changed or removed the item
	// since the schedule was made. The body never changes after Commit; one
	// of another length was truncated or overwritten on disk, and sending it
	// would deliver damaged mail.
	it, size, err := r.sp.readItem(id, lk.f, lk.size, true)
	if err != nil {
		switch {
		case errors.Is(err, errCorrupt):
			r.quarantine(id, err.Error(), log)
		case !errors.Is(err, ErrNotFound):
			log.Error("queue: unreadable item, retrying later", "err", err)
			return done{id: id, keep: true, next: r.opts.Now().Add(r.opts.RetryInitial)}
		}
		return done{id: id}
	}
	now := r.opts.Now()
	if it.State == StateHeld {
		return done{id: id}
	}
	body := func() io.ReadSeeker { return io.NewSectionReader(lk.f, 0, size) }
	if size <= smallBody {
		// Read once: the arrival checks (DKIM, ARC, the header passes)
		// and the transaction each read the message again, a system call
		// and a copy from the page cache every time. Not pooled: a check
		// given up at its deadline may still be reading.
		buf := make([]byte, size)
		if _, err := lk.f.ReadAt(buf, 0); err == nil {
			body = func() io.ReadSeeker { return bytes.NewReader(buf) }
		}
	}
	if it.NextAttempt.After(now.Add(time.Second)) {
		return done{id: id, keep: true, next: it.NextAttempt}
	}

	var targets []string
	seen := map[string]bool{}
	for _, rc := range it.Recipients {
		k := strings.ToLower(rc.Target)
		if rc.State == RcptPending && !seen[k] {
			seen[k] = true
			targets = append(targets, rc.Target)
		}
	}
	var res map[string]outcome
	var attemptErr error
	if len(targets) > 0 {
		via := r.tenant
		if it.DSN {
			via = r.dsn
		}
		prefix := r.prefixFor(ctx, it, body(), log)
		// Each recipient's outcome line below carries the attempt number: one
		// line per recipient and attempt, as mail admins read a log.
		log.Debug("queue: attempt", "attempt", it.Attempts+1, "targets", targets, "dsn", it.DSN)
		start := time.Now()
		res, attemptErr = via.deliver(ctx, it, prefix, body(), targets)
		if r.m != nil {
			r.m.AttemptDuration.Observe(time.Since(start).Seconds())
		}
		it.Attempts++
		it.LastAttempt = now.UTC()
		now = r.opts.Now()
	}
	r.apply(it, res, attemptErr, now, log)
	return r.decide(it, lk, now, log)
}

// retryRemoval removes an item that was delivered to every recipient but
// could not be removed then; it is never sent again by this process.
func (r *Runner) retryRemoval(id string, log *slog.Logger) done {
	lk, err := r.sp.lockItem(id, 0)
	switch {
	case errors.Is(err, ErrBusy):
		return done{id: id, keep: true, next: r.opts.Now().Add(busyRetry)}
	case errors.Is(err, ErrNotFound):
		err = nil // the body is gone; what may be left is its metadata
	case err != nil:
		log.Error("queue: remove delivered item", "err", err)
		return done{id: id, keep: true, next: r.opts.Now().Add(r.opts.RetryMax)}
	default:
		defer lk.unlock()
	}
	if err == nil {
		it := &Item{ID: id, hasMeta: true}
		if lk != nil {
			// Its version decides whether the file may be reused.
			if read, _, rerr := r.sp.readItem(id, lk.f, lk.size, false); rerr == nil {
				it.Version = read.Version
			}
		}
		err = r.sp.removeDelivered(it, lk)
	}
	if err != nil {
		log.Error("queue: remove delivered item; it will not be sent again, only its removal retried", "err", err)
		return done{id: id, keep: true, next: r.opts.Now().Add(r.opts.RetryMax)}
	}
	r.mu.Lock()
	delete(r.removing, id)
	r.mu.Unlock()
	log.Info("queue: delivered item removed at last")
	return done{id: id}
}

// orphanMeta reports whether id has metadata but no body. An admin command
// removing the item deletes the body and then the metadata, so one look can
// fall between the two; only metadata still there a moment later is an orphan.
func (r *Runner) orphanMeta(id string) bool {
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(orphanRecheck)
		}
		if _, err := os.Stat(r.sp.path(id, metaExt)); err != nil {
			return false
		}
		if _, err := os.Stat(r.sp.path(id, msgExt)); !errors.Is(err, fs.ErrNotExist) {
			return false // there, or no telling: not an orphan
		}
	}
	return true
}

// smallBody is the largest message the runner reads into memory for its
// attempt rather than from the spool file at each pass.
const smallBody = 64 << 10

// orphanRecheck is how long an apparent orphan is given to disappear.
const orphanRecheck = 200 * time.Millisecond

// quarantine moves a damaged item aside while the daemon runs, as recovery
// does at start: the rest of the queue carries on, an admin decides.
func (r *Runner) quarantine(id, reason string, log *slog.Logger) {
	if err := r.sp.quarantine(id, reason); err != nil {
		log.Error("queue: cannot quarantine damaged item", "reason", reason, "err", err)
	}
}

// apply records per-recipient outcomes; recipients sharing a target share its outcome.
func (r *Runner) apply(it *Item, res map[string]outcome, attemptErr error, now time.Time, log *slog.Logger) {
	byTarget := map[string]outcome{}
	for t, o := range res {
		byTarget[strings.ToLower(t)] = o
	}
	delivered := map[string]int{}
	it.LastError = ""
	for i := range it.Recipients {
		rc := &it.Recipients[i]
		if rc.State != RcptPending {
			continue
		}
		o, ok := byTarget[strings.ToLower(rc.Target)]
		if !ok {
			o = outcome{err: classify(attemptErr)}
			if o.err == nil {
				o.err = tempErr("4.4.0", "no outcome recorded")
			}
		}
		rc.Attempts++
		if o.err == nil {
			rc.State = RcptDelivered
			rc.DeliveredAt = now.UTC()
			rc.LastReply, rc.LastCode, rc.LastStatus = o.reply, 250, ""
			log.Info("queue: delivered", "attempt", it.Attempts, "rcpt", rc.Rcpt, "target", rc.Target, "reply", o.reply)
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
		rc.LastReply, rc.LastCode, rc.LastStatus = o.err.Reply(), o.err.Code, o.err.Status
		it.LastError = o.err.Reply()
		if o.err.Temporary {
			log.Warn("queue: temporary failure", "attempt", it.Attempts, "rcpt", rc.Rcpt, "target", rc.Target, "reply", o.err.Reply())
		} else {
			rc.State = RcptFailed
			log.Warn("queue: permanent failure", "attempt", it.Attempts, "rcpt", rc.Rcpt, "target", rc.Target, "reply", o.err.Reply())
		}
	}
	for addr, n := range delivered {
		r.noteDelivered(addr, now, n)
	}
}

// decide turns recipient states into the item's fate: retry later, give up,
// or (nothing left to try) remove, hold or bounce.
func (r *Runner) decide(it *Item, lk *itemLock, now time.Time, log *slog.Logger) done {
	id := it.ID
	if pending := it.count(RcptPending); pending > 0 {
		since := it.ReceivedAt
		if it.ReleasedAt.After(since) {
			since = it.ReleasedAt
		}
		if now.Sub(since) < r.opts.GiveUpAfter {
			delay := Backoff(it.Attempts, r.opts.RetryInitial, r.opts.RetryMax, r.opts.Rand)
			it.State = StateDeferred
			it.NextAttempt = now.Add(delay).UTC()
			if err := r.sp.writeMeta(it); err != nil {
				log.Error("queue: record deferral", "err", err)
			}
			r.count("deferred", pending)
			log.Info("queue: deferred", "pending", pending, "next_attempt", it.NextAttempt, "last_error", it.LastError)
			return done{id: id, keep: true, next: it.NextAttempt}
		}
		for i := range it.Recipients {
			if rc := &it.Recipients[i]; rc.State == RcptPending {
				rc.State = RcptFailed
				rc.LastReply = fmt.Sprintf("gave up after %s: %s", r.opts.GiveUpAfter, rc.LastReply)
				if rc.LastStatus == "" || rc.LastStatus[0] != '5' {
					rc.LastStatus = "4.4.7" // delivery time expired
				}
			}
		}
		log.Warn("queue: giving up", "after", r.opts.GiveUpAfter, "last_error", it.LastError)
	}
	failed := it.count(RcptFailed)
	if failed == 0 {
		if err := r.sp.removeDelivered(it, lk); err != nil {
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
	if r.opts.OnPermanentFailure == PolicyBounce && bounceable(it) {
		dsnID, err := r.sp.bounceLocked(it, lk, r.opts.HelloName, now)
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
		case dsnID != "" && !r.sp.exists(id):
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
	it.State = StateHeld
	it.NextAttempt = time.Time{}
	if err := r.sp.writeMeta(it); err != nil {
		log.Error("queue: record hold", "err", err)
	}
	r.count("held", failed)
	log.Warn("queue: held for an admin", "failed", failed, "last_error", it.LastError)
	return done{id: id, also: also}
}

// bounceable: a DSN never goes to the null sender, never about our own DSN,
// and never about a message that is a delivery report itself (RFC 5321 6.1;
// such loops are how backscatter starts), so those are held instead.
func bounceable(it *Item) bool { return it.From != "" && !it.DSN && !it.Report }

func (r *Runner) count(result string, n int) {
	if r.m != nil && n > 0 {
		r.m.Deliveries.WithLabelValues(result).Add(float64(n))
	}
}

// prefixFor returns the fields prepended to it at the tenant, computing them
// once per message and process. They are not stored: a message retried after
// a restart is simply vouched for again, which costs less than an fsync on
// every first attempt. A failure is logged and the message goes out without
// the fields: authentication results and the seal help the tenant trust the
// message, but never decide whether it is delivered.
func (r *Runner) prefixFor(ctx context.Context, it *Item, body io.ReadSeeker, log *slog.Logger) []byte {
	if r.opts.Prepare == nil || it.DSN {
		return nil
	}
	r.mu.Lock()
	p, ok := r.prefixes[it.ID]
	r.mu.Unlock()
	if ok {
		return p
	}
	p, err := r.opts.Prepare(ctx, it, body)
	if err != nil {
		log.Warn("queue: prepare failed; delivering without added authentication fields", "err", err)
	}
	r.mu.Lock()
	r.prefixes[it.ID] = p
	r.mu.Unlock()
	return p
}
