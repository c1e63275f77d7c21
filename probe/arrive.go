// SPDX-License-Identifier: MIT

package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
)

// ActionMisrouted is the audit action for a valid probe that reached the
// relay for the wrong address, or not through the forward.
const ActionMisrouted = "probe-misrouted"

// Recipient is one accepted recipient of an arriving message: the address it
// was sent to (the alias, when it came through the forward) and the public
// address the routing table resolved it to.
type Recipient struct {
	Rcpt, Address string
}

// Ledger is where arrivals are recorded; *router.Store is one.
type Ledger interface {
	RecordEvidence(ctx context.Context, e router.Evidence) (router.Evidence, bool, error)
	AppendAudit(ctx context.Context, e router.AuditEntry) error
}

// Recorder checks the marker of every message that carries one, after the
// relay made the message durable, and records the result. It never changes
// the message or its delivery.
type Recorder struct {
	Key     []byte
	Ledger  Ledger
	Metrics *metrics.Metrics // may be nil
	Log     *slog.Logger     // may be nil
	Now     func() time.Time // nil means time.Now
}

// Result says what an arrival proved.
type Result string

// Results, also the metric's label values.
const (
	Verified  Result = "verified"
	Misrouted Result = "misrouted"
	Invalid   Result = "invalid"
)

// Arrived handles one committed message with marker field value, queue ID
// id, from client ip. It returns what was recorded, for tests and logs.
func (r *Recorder) Arrived(ctx context.Context, id, value, ip string, rcpts []Recipient) (Result, error) {
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	count := func(res Result) {
		if r.Metrics != nil {
			r.Metrics.ProbeArrivals.WithLabelValues(string(res)).Inc()
		}
	}
	m, err := Verify(r.Key, value, now)
	if err != nil {
		// Logged, not audited: anyone can send a header, and the audit log
		// is no place for strangers' text.
		log.Warn("probe marker refused", "id", id, "client", ip, "err", err)
		count(Invalid)
		return Invalid, nil
	}
	var wrong []string
	for _, rc := range rcpts {
		switch {
		case rc.Address == m.Address && !strings.EqualFold(rc.Rcpt, rc.Address):
			detail := fmt.Sprintf("probe %s arrived at %s from %s as %s, %s after it was sent", m.Nonce, rc.Rcpt, ip, id, now.Sub(m.Sent).Round(time.Second))
			_, dup, err := r.Ledger.RecordEvidence(ctx, router.Evidence{Address: m.Address, Kind: router.ForwardVerified, At: now,
				Actor: "relay", Ref: m.Nonce, Detail: detail})
			if err != nil {
				return "", fmt.Errorf("probe: record %s: %w", m.Address, err)
			}
			if !dup {
				log.Info("forward verified", "address", m.Address, "id", id, "nonce", m.Nonce)
				count(Verified)
			}
			return Verified, nil
		case rc.Address == m.Address:
			wrong = append(wrong, fmt.Sprintf("it was addressed to %s itself, not to its alias, so it did not come through the forward", rc.Rcpt))
		default:
			wrong = append(wrong, fmt.Sprintf("it arrived at %s, the alias of %s", rc.Rcpt, rc.Address))
		}
	}
	if len(wrong) == 0 {
		wrong = append(wrong, "it had no recipient here")
	}
	detail := fmt.Sprintf("probe %s for %s: %s (queue ID %s)", m.Nonce, m.Address, strings.Join(wrong, "; "), id)
	err = r.Ledger.AppendAudit(ctx, router.AuditEntry{At: now, Actor: "relay", Address: m.Address, Action: ActionMisrouted, Detail: detail})
	if err != nil && !errors.Is(err, router.ErrNotFound) {
		return "", fmt.Errorf("probe: record %s: %w", m.Address, err)
	}
	log.Warn("probe misrouted", "address", m.Address, "id", id, "detail", detail)
	count(Misrouted)
	return Misrouted, nil
}
