// SPDX-License-Identifier: MIT

package queue

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dualmx/dualmx/metrics"
)

// TargetStatus reports the tenant's health with the mail parked for it,
// for metrics.WatchTarget and the status page.
func (r *Runner) TargetStatus() metrics.TargetStatus {
	h := r.opts.Health
	if h == nil {
		return metrics.TargetStatus{Up: true, Concurrency: r.opts.Concurrency, ConcurrencyLimit: r.opts.Concurrency}
	}
	s := h.Status()
	r.mu.Lock()
	parked := r.sched.nParked
	r.mu.Unlock()
	return metrics.TargetStatus{
		Up: !s.Suspended, Since: s.Since, Reason: s.Reason, NextProbe: s.NextProbe, Probes: s.Probes,
		Parked: parked, Concurrency: s.Window, ConcurrencyLimit: min(s.Max, r.opts.Concurrency),
		SuspendedSeconds: s.SuspendedFor.Seconds(),
		Connections: map[string]uint64{"ok": s.ConnectionsOK, "failed": s.ConnectionsFailed, "throttled": s.ConnectionsThrottled,
			"dns_failed": s.ConnectionsDNSFailed},
		Throttles: s.Throttles, Suspensions: s.Suspensions,
		Updated: r.opts.Now().UTC(),
	}
}

// writeStatus records the tenant's health in StatusFile, replacing it
// whole. The file is information for people, so a failure is logged and
// delivery goes on.
func (r *Runner) writeStatus() {
	if h := r.opts.Health; h != nil {
		r.statusVersion = h.Version()
	}
	if r.opts.StatusFile == "" {
		return
	}
	b, err := json.Marshal(r.TargetStatus())
	if err == nil {
		tmp := r.opts.StatusFile + ".tmp"
		if err = os.WriteFile(tmp, append(b, '\n'), 0o640); err == nil {
			err = os.Rename(tmp, r.opts.StatusFile)
		}
	}
	if err != nil {
		r.log.Warn("queue: record the target's health", "file", r.opts.StatusFile, "err", err)
	}
}

func (r *Runner) removeStatus() {
	if r.opts.StatusFile != "" {
		os.Remove(r.opts.StatusFile)
	}
}

// ReadTargetStatus reads what a running daemon recorded of the tenant's
// health; ok is false when there is no record (no daemon running, or one
// that stopped cleanly).
func ReadTargetStatus(path string) (s metrics.TargetStatus, ok bool, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return s, true, nil
}
