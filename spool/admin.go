// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"fmt"
	"time"
)

// DefaultAdminWait is how long an admin command waits for a delivery
// attempt in progress before it gives up with ErrBusy.
const DefaultAdminWait = 3 * time.Second

// ErrState means the command does not apply to the message's current state.
var ErrState = errors.New("not possible in the message's current state")

// modify runs f on the item under its lock and writes the result back. Then
// the daemon is kicked, so it sees the change within its poll interval.
func (s *Spool) modify(id string, f func(it *Item) error) error {
	lk, err := s.lockItem(id, s.adminWait)
	if err != nil {
		return err
	}
	defer lk.unlock()
	it, err := s.readMeta(id)
	if err != nil {
		return err
	}
	if err := f(it); err != nil {
		return fmt.Errorf("spool %s: %w", id, err)
	}
	if err := s.writeMeta(it); err != nil {
		return err
	}
	s.kick()
	return nil
}

// Retry makes a pending or deferred message due now.
func (s *Spool) Retry(id string) error {
	return s.modify(id, func(it *Item) error {
		if it.State == StateHeld {
			return fmt.Errorf("message is held, release it instead: %w", ErrState)
		}
		it.NextAttempt = s.now().UTC()
		return nil
	})
}

// RetryAll makes every pending or deferred message due now and returns how
// many it touched. Messages being delivered right now are skipped: they are
// being tried anyway.
func (s *Spool) RetryAll() (int, error) {
	ids, err := s.ids()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range ids {
		err := s.Retry(id)
		switch {
		case err == nil:
			n++
		case errors.Is(err, ErrState), errors.Is(err, ErrNotFound), errors.Is(err, ErrBusy):
		default:
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// Release puts a held message back into delivery: its failed recipients are
// tried again and the give-up clock restarts.
func (s *Spool) Release(id string) error {
	return s.modify(id, func(it *Item) error {
		if it.State != StateHeld {
			return fmt.Errorf("message is %s, not held: %w", it.State, ErrState)
		}
		now := s.now().UTC()
		for i := range it.Recipients {
			if it.Recipients[i].State == RcptFailed {
				it.Recipients[i].State = RcptPending
			}
		}
		it.State = StatePending
		it.NextAttempt = now
		it.ReleasedAt = now
		return nil
	})
}

// Bounce sends a DSN for every undelivered recipient of a message and removes
// it. actor is who decided, for the log; the CLI audits it. It returns the
// DSN's id.
func (s *Spool) Bounce(id, actor string) (string, error) {
	lk, err := s.lockItem(id, s.adminWait)
	if err != nil {
		return "", err
	}
	defer lk.unlock()
	it, err := s.readMeta(id)
	if err != nil {
		return "", err
	}
	if !it.Bounceable() {
		return "", fmt.Errorf("spool %s: null sender or a DSN itself, drop it instead: %w", id, ErrState)
	}
	for i := range it.Recipients {
		if rc := &it.Recipients[i]; rc.State == RcptPending {
			rc.State = RcptFailed
			if rc.LastReply == "" {
				rc.LastReply = "returned by the administrator"
			}
			if rc.LastStatus == "" || rc.LastStatus[0] != '5' {
				rc.LastStatus = "5.0.0"
			}
		}
	}
	dsnID, err := s.bounceLocked(it, lk, s.hostname, s.now())
	if err != nil {
		return "", err
	}
	s.log.Info("spool: bounced by admin", "id", id, "actor", actor, "dsn_id", dsnID)
	if s.m != nil {
		s.m.Deliveries.WithLabelValues("bounced").Add(float64(it.Count(RcptFailed)))
		s.m.DSNsGenerated.Inc()
	}
	s.kick()
	return dsnID, nil
}

// Drop removes a message without delivering it. It returns the item as it
// was, so the caller can write the audit record (who, why, which message).
func (s *Spool) Drop(id, actor, reason string) (Item, error) {
	lk, err := s.lockItem(id, s.adminWait)
	if err != nil {
		return Item{}, err
	}
	defer lk.unlock()
	it, err := s.readMeta(id)
	if err != nil {
		return Item{}, err
	}
	if err := s.remove(it); err != nil {
		return Item{}, err
	}
	undelivered := len(it.Recipients) - it.Count(RcptDelivered)
	s.log.Warn("spool: dropped by admin", "id", id, "actor", actor, "reason", reason, "from", it.From, "undelivered", undelivered)
	if s.m != nil {
		s.m.Deliveries.WithLabelValues("dropped").Add(float64(undelivered))
	}
	s.kick()
	return *it, nil
}
