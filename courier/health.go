// SPDX-License-Identifier: MIT

package courier

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Health is what every delivery to the tenant knows about it: whether it is
// suspended, and how many sessions it should get at once (the window).
//
// The model is Postfix's queue manager. A destination that fails to connect,
// fails TLS or throttles several times in a row is "dead": its mail is
// deferred without a connection ("delivery temporarily suspended") until a
// single probe connection succeeds; probes back off, exponentially with
// jitter. While the target is up, its window follows it: additive increase
// (one session more per window's worth of successful transactions, which is
// Postfix's default positive feedback) and multiplicative decrease (half, on
// a throttling reply or a failed connection). Postfix takes one session off
// per window's worth of failures, which suits many small destinations; a
// single tenant that says "451 4.7.500 Server busy" is asking for less now,
// and halving answers within one round of sessions, the way TCP does.
// Sessions started before a decrease cannot cause another: a burst of
// refusals to sessions already under way counts once. Above the window a
// decrease left, growth is four times slower (see ceiling).
//
// Deliveries read it with atomic loads only, and at the window's maximum
// (the steady state of a healthy target) a success takes no lock. The lock
// is taken on a failure, on a success while the window is below its
// maximum (to count towards its growth), and by every delivery while the
// target is suspended.
type Health struct {
	max, initial int
	suspendAfter int32
	probeInitial time.Duration
	probeMax     time.Duration
	fixed        bool
	now          func() time.Time
	rand         func() float64

	suspended atomic.Bool
	window    atomic.Int32
	epoch     atomic.Uint64 // bumped at each decrease
	fails     atomic.Int32  // consecutive failures
	version   atomic.Uint64 // bumped at each suspension, failed probe and resumption

	conns       [nConnResults]atomic.Uint64
	throttles   atomic.Uint64
	suspensions atomic.Uint64

	mu    sync.Mutex
	grown int // successes since the window last changed
	// ceiling is where the window was set by the last decrease: above it
	// the window grows four times slower, because that is where the
	// target last said "too much" (TCP's ssthresh, with a slower slope:
	// Microsoft asks new senders to ramp up slowly).
	ceiling      int
	since        time.Time
	reason       string
	probeDelay   time.Duration
	nextProbe    time.Time
	probing      bool          // a probe is under way
	probes       int           // failed probes in this suspension
	suspendedFor time.Duration // in suspensions that ended
	onChange     func()
}

// HealthConfig configures a Health. Zero fields take the defaults noted.
type HealthConfig struct {
	// MaxConcurrency is the window's ceiling (delivery.concurrency); default 4.
	MaxConcurrency int
	// InitialConcurrency is the window at start and after a suspension;
	// default 2 (at most MaxConcurrency).
	InitialConcurrency int
	// SuspendAfter is how many consecutive failures to connect, TLS
	// failures or throttling replies suspend the target, and at least the
	// window; default 3.
	SuspendAfter int
	// ProbeInitial is the wait before the first probe of a suspended
	// target (delivery.retry_initial); it doubles per failed probe up to
	// ProbeMax (delivery.retry_max, at most 5 minutes). Defaults 1m and 5m.
	ProbeInitial, ProbeMax time.Duration
	// Fixed keeps the window at MaxConcurrency: no adaptation (for
	// comparison); suspension still applies.
	Fixed bool
	Now   func() time.Time // default time.Now
	Rand  func() float64   // jitter in [0,1); default math/rand/v2
}

// maxProbeDelay caps the wait between probes: a probe is one connection,
// and a tenant back from an outage should not wait an hour for mail.
const maxProbeDelay = 5 * time.Minute

// NewHealth returns the health of a target that is up.
func NewHealth(c HealthConfig) *Health {
	if c.MaxConcurrency <= 0 {
		c.MaxConcurrency = 4
	}
	if c.InitialConcurrency <= 0 {
		c.InitialConcurrency = 2
	}
	c.InitialConcurrency = min(c.InitialConcurrency, c.MaxConcurrency)
	if c.SuspendAfter <= 0 {
		c.SuspendAfter = 3
	}
	if c.ProbeInitial <= 0 {
		c.ProbeInitial = time.Minute
	}
	if c.ProbeMax <= 0 {
		c.ProbeMax = maxProbeDelay
	}
	c.ProbeMax = max(min(c.ProbeMax, maxProbeDelay), c.ProbeInitial)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	h := &Health{max: c.MaxConcurrency, initial: c.InitialConcurrency, suspendAfter: int32(c.SuspendAfter),
		probeInitial: c.ProbeInitial, probeMax: c.ProbeMax, fixed: c.Fixed, now: c.Now, rand: c.Rand}
	if c.Fixed {
		h.initial = c.MaxConcurrency
	}
	h.window.Store(int32(h.initial))
	h.ceiling = h.max
	return h
}

// Window is how many sessions the target should get at once now.
func (h *Health) Window() int { return int(h.window.Load()) }

// Suspended reports whether mail for the target waits for a probe.
func (h *Health) Suspended() bool { return h.suspended.Load() }

// Version changes whenever the target is suspended, a probe fails or the
// target is back: a watcher compares it to see whether to look again.
func (h *Health) Version() uint64 { return h.version.Load() }

// ProbeAt is when the next probe of a suspended target may go out; ok is
// false while no probe can be started: the target is up, or a probe is
// under way (its delivery's end says more).
func (h *Health) ProbeAt() (at time.Time, ok bool) {
	if !h.suspended.Load() {
		return time.Time{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.suspended.Load() || h.probing {
		return time.Time{}, false
	}
	return h.nextProbe, true
}

// ProbeDue reports whether a delivery started now would be admitted as the
// probe of a suspended target: suspended, no probe under way, and its time
// has come. A scheduler hands out a message for the probe only then; while
// a probe is under way (also one a delivery handed out before the
// suspension became), another would be refused and parked again.
func (h *Health) ProbeDue() bool {
	at, ok := h.ProbeAt()
	return ok && !h.now().Before(at)
}

// ProbeNow lets a suspended target be tried at once: an admin who fixed
// the cause (a delisting, a connector) asked for delivery now.
func (h *Health) ProbeNow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.suspended.Load() && !h.probing {
		h.nextProbe = h.now()
		h.version.Add(1)
	}
}

// HealthStatus is a snapshot of a Health, for metrics and the status page.
type HealthStatus struct {
	Suspended bool
	Since     time.Time // when the current suspension began
	Reason    string    // the last failure while suspended
	NextProbe time.Time
	Probes    int // failed probes in the current suspension

	Window, Max  int
	SuspendedFor time.Duration // in all suspensions so far, the current one included

	// Connection attempts by result; a failed lookup of the host's
	// addresses counts as ConnectionsDNSFailed, not as a failed connection.
	ConnectionsOK, ConnectionsFailed, ConnectionsThrottled, ConnectionsDNSFailed uint64
	Throttles, Suspensions                                                       uint64
}

// Status returns a snapshot.
func (h *Health) Status() HealthStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := HealthStatus{Suspended: h.suspended.Load(), Window: h.Window(), Max: h.max, SuspendedFor: h.suspendedFor,
		ConnectionsOK: h.conns[connOK].Load(), ConnectionsFailed: h.conns[connFailed].Load(),
		ConnectionsThrottled: h.conns[connThrottled].Load(), ConnectionsDNSFailed: h.conns[connDNSFailed].Load(),
		Throttles: h.throttles.Load(), Suspensions: h.suspensions.Load()}
	if s.Suspended {
		s.Since, s.Reason, s.NextProbe, s.Probes = h.since, h.reason, h.nextProbe, h.probes
		s.SuspendedFor += h.now().Sub(h.since)
	}
	return s
}

// setOnChange sets a function called (without locks held) after the
// window shrinks or the target is suspended.
func (h *Health) setOnChange(f func()) { h.onChange = f }

// ticket is a delivery's admission: the epoch it started in, and whether it
// is the probe of a suspended target.
type ticket struct {
	epoch uint64
	probe bool
}

// admit lets a delivery through, or refuses it with a SignalSuspended error
// while the target is suspended and no probe is due (or one is under way).
// A delivery that may not be the probe (mayProbe false) is refused
// whenever the target is suspended.
func (h *Health) admit(mayProbe bool) (ticket, error) {
	if !h.suspended.Load() {
		return ticket{epoch: h.epoch.Load()}, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.suspended.Load() {
		return ticket{epoch: h.epoch.Load()}, nil
	}
	if mayProbe && !h.probing && !h.now().Before(h.nextProbe) {
		h.probing = true
		return ticket{epoch: h.epoch.Load(), probe: true}, nil
	}
	return ticket{}, h.suspendedError()
}

func (h *Health) suspendedError() *Error {
	return &Error{Status: "4.4.1", Temporary: true, Signal: SignalSuspended,
		Message: fmt.Sprintf("target suspended since %s: %s", h.since.UTC().Format(time.RFC3339), h.reason)}
}

// outcome is what a delivery learnt about the target.
type outcome int

const (
	outcomeNeutral  outcome = iota // nothing (cancelled, a local decision)
	outcomeOK                      // a session answered
	outcomeFailed                  // no session: connection, greeting or TLS failed, or the relay is refused
	outcomeThrottle                // the target asked us to slow down
)

type connResult int

const (
	connOK connResult = iota
	connFailed
	connThrottled
	connDNSFailed // the host's addresses could not be looked up
	nConnResults
)

// connected counts a connection attempt by its result.
func (h *Health) connected(r connResult) { h.conns[r].Add(1) }

// done records a delivery's outcome; reason says what went wrong.
func (h *Health) done(t ticket, o outcome, reason string) {
	switch o {
	case outcomeNeutral:
		if t.probe {
			h.mu.Lock()
			h.probing = false // nothing learnt: the next delivery may be the probe
			h.mu.Unlock()
		}
	case outcomeOK:
		if h.fails.Load() != 0 {
			h.fails.Store(0)
		}
		if t.probe || h.suspended.Load() {
			h.resume()
			return
		}
		if !h.fixed && int(h.window.Load()) < h.max {
			h.mu.Lock()
			h.grown++
			w := int(h.window.Load())
			need := w
			if w >= h.ceiling {
				need = 4 * w
			}
			if h.grown >= need && w < h.max {
				h.window.Store(int32(w + 1))
				h.grown = 0
			}
			h.mu.Unlock()
		}
	case outcomeFailed, outcomeThrottle:
		if o == outcomeThrottle {
			h.throttles.Add(1)
		}
		n := h.fails.Add(1)
		shrunk := false
		if !h.fixed && h.epoch.CompareAndSwap(t.epoch, t.epoch+1) {
			h.mu.Lock()
			w := max(1, h.window.Load()/2)
			h.window.Store(w)
			h.ceiling = int(w)
			h.grown = 0
			h.mu.Unlock()
			shrunk = true
		}
		changed := false
		h.mu.Lock()
		switch {
		case t.probe:
			h.probing = false
			h.probes++
			h.reason = reason
			h.probeDelay = min(2*h.probeDelay, h.probeMax)
			h.nextProbe = h.now().Add(h.jitter(h.probeDelay))
			h.version.Add(1)
		case h.suspended.Load():
			// A delivery admitted before the suspension: already counted.
		case n >= h.suspendAfter && int(n) >= h.Window():
			// Like Postfix's failed pseudo-cohort: as many failures in
			// a row as sessions the target gets, so that one burst of
			// refusals to sessions started together is not an outage.
			h.suspended.Store(true)
			h.suspensions.Add(1)
			h.since = h.now()
			h.reason = reason
			h.probes = 0
			h.probeDelay = h.probeInitial
			h.nextProbe = h.since.Add(h.jitter(h.probeDelay))
			h.version.Add(1)
			changed = true
		}
		f := h.onChange
		h.mu.Unlock()
		if (changed || shrunk) && f != nil {
			f()
		}
	}
}

// jitter takes up to a fifth off d, so that relays started together do not
// try in step.
func (h *Health) jitter(d time.Duration) time.Duration {
	f := min(max(h.rand(), 0), 0.999999)
	return d - time.Duration(float64(d)*0.2*f)
}

func (h *Health) resume() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.suspended.Load() {
		return
	}
	h.suspendedFor += h.now().Sub(h.since)
	h.probing = false
	h.grown = 0
	h.window.Store(int32(h.initial))
	h.ceiling = h.max
	h.epoch.Add(1)
	h.suspended.Store(false)
	h.version.Add(1)
}
