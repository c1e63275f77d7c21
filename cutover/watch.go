// SPDX-License-Identifier: MIT

package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/internal/durable"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

// AddressLister lists the addresses; *router.Store is one.
type AddressLister interface {
	List(ctx context.Context) ([]router.Address, error)
}

// SpoolLister reads what is still in the spool one item at a time, so that
// a check every few minutes does not hold a backlog in memory; *spool.Spool
// is one.
type SpoolLister interface {
	Walk(fn func(it *spool.Item) bool) error
}

// Auditor writes the audit log; *router.Store is one.
type Auditor interface {
	AppendAudit(ctx context.Context, e router.AuditEntry) error
}

// Runner runs a DNS check; *dnscheck.Checker is one.
type Runner interface {
	Run(ctx context.Context, exp dnscheck.Expected) (*dnscheck.Observation, error)
}

// Watcher gathers the inputs and evaluates them.
type Watcher struct {
	Domain       string
	Checker      Runner
	Expectations dnscheck.Expectations
	Addresses    AddressLister
	Spool        SpoolLister
	// StateDir holds the remembered Record (cutover.json).
	StateDir    string
	QuietPeriod time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger

	mu sync.Mutex // serialises record updates within one process
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// RecordFile is where the record lives.
func (w *Watcher) RecordFile() string { return filepath.Join(w.StateDir, "cutover.json") }

// Status runs the DNS check and evaluates the state. An error means the
// state could not be known (the check could not run, or the state database
// or spool could not be read).
func (w *Watcher) Status(ctx context.Context) (Status, error) {
	exp, err := w.Expectations.Expected(ctx, w.Domain)
	if err != nil {
		return Status{}, fmt.Errorf("cutover: expected values for %s: %w", w.Domain, err)
	}
	obs, err := w.Checker.Run(ctx, exp)
	if err != nil {
		return Status{}, fmt.Errorf("cutover: dns check: %w", err)
	}
	addrs, err := w.Addresses.List(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("cutover: %w", err)
	}
	queued, arrived, err := summarize(w.Spool)
	if err != nil {
		return Status{}, fmt.Errorf("cutover: spool: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	rec, err := w.loadRecord()
	if err != nil {
		return Status{}, err
	}
	sw, n := obs.MXSwitched()
	in := Inputs{Now: w.now(), Domain: strings.ToLower(strings.TrimSuffix(w.Domain, ".")), Addresses: addrs,
		Before: obs.Report(dnscheck.Before), After: obs.Report(dnscheck.After), MXSwitched: sw, MXServers: n,
		MXTTL: time.Duration(obs.MXTTL()) * time.Second, LastReceived: LastReceived(addrs, arrived),
		Queued: queued, QuietPeriod: w.QuietPeriod, Record: rec}
	st, next := Evaluate(in)
	if next != rec {
		if err := w.saveRecord(next); err != nil {
			return Status{}, err
		}
	}
	return st, nil
}

// summarize counts the messages in the spool and finds the latest arrival
// among them. DSNs the relay made itself are not traffic.
func summarize(sp SpoolLister) (queued int, arrived time.Time, err error) {
	err = sp.Walk(func(it *spool.Item) bool {
		queued++
		if !it.DSN && it.ReceivedAt.After(arrived) {
			arrived = it.ReceivedAt
		}
		return true
	})
	return queued, arrived, err
}

// LastReceived is the latest time mail is known to have reached the relay.
// The state database keeps each address's last delivery, which is never
// earlier than that message's arrival; the spool holds the arrival time of
// everything not yet delivered (spooled: the latest, summarize). A message
// that arrived and was bounced or dropped leaves no trace here.
func LastReceived(addrs []router.Address, spooled time.Time) time.Time {
	t := spooled
	for _, a := range addrs {
		if a.LastDelivery.After(t) {
			t = a.LastDelivery
		}
	}
	return t
}

func (w *Watcher) loadRecord() (Record, error) {
	var rec Record
	b, err := os.ReadFile(w.RecordFile())
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, fmt.Errorf("cutover: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("cutover: %s: %w", w.RecordFile(), err)
	}
	return rec, nil
}

// saveRecord replaces the record durably, so a crash cannot forget the
// switch time and restart the TTL wait from scratch.
func (w *Watcher) saveRecord(rec Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(w.RecordFile(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("cutover: save record: %w", err)
	}
	return nil
}

// ActionConfirm is the audit action of cutover confirm.
const ActionConfirm = "cutover-confirm"

// ErrNotReady is returned by Confirm when the state is not ready and the
// confirmation was not forced.
var ErrNotReady = errors.New("the domain is not ready for the MX change")

// ConfirmRequest is the admin's go-ahead.
type ConfirmRequest struct {
	Actor  string
	Force  bool
	Reason string
}

// Confirm records the go-ahead for the MX change in the audit log. It is
// refused unless st is ready, or forced with a reason; a forced
// confirmation records what it overrode.
func Confirm(ctx context.Context, a Auditor, st Status, req ConfirmRequest) (router.AuditEntry, error) {
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Force && req.Reason == "" {
		return router.AuditEntry{}, errors.New("cutover: --force needs --reason, which goes into the audit log")
	}
	if st.State != Ready && !req.Force {
		return router.AuditEntry{}, fmt.Errorf("cutover: %w: it is %s (%s); fix that, or use --force with --reason", ErrNotReady, st.State, strings.Join(st.Reasons, "; "))
	}
	e := router.AuditEntry{Actor: req.Actor, Address: st.Domain, Action: ActionConfirm, Forced: req.Force, Reason: req.Reason,
		Detail: fmt.Sprintf("state %s; %d of %d addresses migrated; MX switched on %d of %d servers", st.State, st.Migrated, st.Addresses, st.MXSwitched, st.MXServers)}
	if req.Force && st.State != Ready {
		e.Detail += "; forced past: " + strings.Join(st.Reasons, "; ")
	}
	if err := a.AppendAudit(ctx, e); err != nil {
		return router.AuditEntry{}, fmt.Errorf("cutover: confirm: %w", err)
	}
	return e, nil
}

// Watch evaluates the state every interval until ctx ends and exports it,
// with each check's result, through m. A check that cannot run keeps the
// last state and sets dualmx_cutover_check_up to 0.
func Watch(ctx context.Context, w *Watcher, interval time.Duration, m *metrics.Metrics) {
	var mu sync.Mutex
	cur := metrics.CutoverStatus{}
	m.WatchCutover(metrics.Labels(States), dnscheck.Levels, func() metrics.CutoverStatus {
		mu.Lock()
		defer mu.Unlock()
		return cur
	})
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// Bounded by the interval, so one stuck check cannot pile up behind another.
		cctx, cancel := context.WithTimeout(ctx, interval)
		st, err := w.Status(cctx)
		cancel()
		if ctx.Err() != nil {
			// Shutting down: a check cut short says nothing about the DNS.
			return
		}
		mu.Lock()
		cur.LastRun = w.now()
		cur.Up = err == nil
		if err == nil {
			prev := cur.State
			cur.State = string(st.State)
			cur.Checks = map[string]string{}
			if st.Report != nil {
				for c, l := range st.Report.Worst() {
					cur.Checks[c] = l.String()
				}
			}
			if prev != "" && prev != cur.State {
				log.Info("cutover state changed", "domain", st.Domain, "from", prev, "to", cur.State, "reasons", st.Reasons)
			}
		} else {
			log.Warn("cutover check failed", "domain", w.Domain, "err", err)
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
