// SPDX-License-Identifier: MIT

package queue

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/standin"
)

// flapListener is the target's listener with a switch: while down it
// accepts each connection and closes it at once (an endpoint whose service
// is gone), counting them; while up it hands them to the SMTP server.
type flapListener struct {
	net.Listener
	down atomic.Bool

	mu    sync.Mutex
	downs []time.Time // when each connection came in while down
	live  []net.Conn  // handed to the server
}

// setDown takes the target down, cutting the sessions it has, or brings it up.
func (l *flapListener) setDown(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down.Store(down)
	if down {
		for _, c := range l.live {
			c.Close()
		}
		l.live = nil
	}
}

func newFlapListener(t *testing.T) *flapListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &flapListener{Listener: ln}
}

func (l *flapListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.down.Load() {
			l.downs = append(l.downs, time.Now())
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.live = append(l.live, c)
		l.mu.Unlock()
		return c, nil
	}
}

func (l *flapListener) downConns() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.downs...)
}

// TestOutageSuspendsAndProbes: with the target down, a backlog of 500
// messages costs a handful of connections (the first failures, then one
// probe per probe interval), not one per message and round; nothing counts
// as an attempt while suspended; when the target is back, the backlog
// drains, and a second outage is handled alike (flapping).
func TestOutageSuspendsAndProbes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln := newFlapListener(t)
	ln.setDown(true)
	s := f.target(standin.Options{Listener: ln, Keep: -1})
	opts := f.opts(s)
	r, _ := f.run(opts)

	const n = 500
	for range n {
		f.spool(testBody, defaultEnv())
	}
	h := opts.Health
	waitFor(t, failsafe, "suspended", h.Suspended)
	time.Sleep(1500 * time.Millisecond)
	st := r.TargetStatus()
	conns := ln.downConns()
	elapsed := time.Since(st.Since)
	if st.Up || st.Reason == "" || st.Since.IsZero() {
		t.Errorf("status while down: %+v", st)
	}
	// Up to three failures suspend it, plus those already under way (the
	// window: 2); then one probe per interval: 50, 100, 200, 200 ms ...
	bound := 3 + 2 + 2 + int(elapsed/(200*time.Millisecond))
	t.Logf("target down %v with %d messages queued: %d connection attempts (bound %d), parked %d", elapsed.Round(time.Millisecond), n, len(conns), bound, st.Parked)
	if len(conns) > bound || len(conns) < 4 {
		t.Errorf("%d connections while down, want 4..%d", len(conns), bound)
	}
	for i := 6; i < len(conns); i++ {
		if gap := conns[i].Sub(conns[i-1]); gap < 40*time.Millisecond {
			t.Errorf("probe %d came %v after the one before", i, gap)
		}
	}
	if st.Parked < n-10 {
		t.Errorf("parked %d of %d", st.Parked, n)
	}
	deferred := testutil.ToFloat64(f.m.Deliveries.WithLabelValues("deferred"))
	if deferred > float64(len(conns)) {
		t.Errorf("%v deferrals for %d connections: parked mail counted attempts", deferred, len(conns))
	}

	ln.setDown(false)
	waitMsgs(t, s, n)
	waitFor(t, failsafe, "spool empty", func() bool { items, _ := f.sp.List(); return len(items) == 0 })
	if st := r.TargetStatus(); !st.Up || st.Parked != 0 || st.SuspendedSeconds < 1.5 {
		t.Errorf("status after the outage: %+v", st)
	}

	// Down again (flapping): suspended again, mail parked, then delivered.
	ln.setDown(true)
	before := len(ln.downConns())
	for range 50 {
		f.spool(testBody, defaultEnv())
	}
	waitFor(t, failsafe, "suspended again", h.Suspended)
	time.Sleep(300 * time.Millisecond)
	ln.setDown(false)
	waitMsgs(t, s, n+50)
	if again := len(ln.downConns()) - before; again > 3+2+int(300*time.Millisecond/(50*time.Millisecond))+4 {
		t.Errorf("second outage: %d connections", again)
	}
	if got := testutil.ToFloat64(f.m.Deliveries.WithLabelValues("held")); got != 0 {
		t.Errorf("%v held", got)
	}
	if st := r.TargetStatus(); st.Suspensions != 2 {
		t.Errorf("suspensions = %d, want 2", st.Suspensions)
	}
}

// TestParkedMailIsNotGivenUp: an outage longer than give_up_after gives up
// only a message that was actually tried after its time ran out (a probe),
// never one that waited parked: those go out when the target is back.
// Before suspension, every message's first retry after give_up_after gave
// it up.
func TestParkedMailIsNotGivenUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln := newFlapListener(t)
	ln.setDown(true)
	s := f.target(standin.Options{Listener: ln, Keep: -1})
	cfg := f.tenantConfig(s)
	cfg.Health.ProbeInitial, cfg.Health.ProbeMax = 400*time.Millisecond, 400*time.Millisecond
	opts := f.optsWith(cfg)
	opts.GiveUpAfter = 300 * time.Millisecond
	opts.RetryInitial, opts.RetryMax = 400*time.Millisecond, 400*time.Millisecond
	const n = 50
	for range n {
		f.spool(testBody, defaultEnv())
	}
	r, _ := f.run(opts)
	waitFor(t, failsafe, "suspended", opts.Health.Suspended)
	time.Sleep(time.Second) // past give_up_after, two probes or so
	st := r.TargetStatus()
	ln.setDown(false)
	held := func() int { return int(testutil.ToFloat64(f.m.Deliveries.WithLabelValues("held"))) }
	waitFor(t, failsafe, "every message delivered or held", func() bool { return s.Count()+held() == n })
	// Given up: at most the first failures (before the suspension, up to
	// the window) and the probes, each tried after its time ran out.
	if h := held(); h > 3+2+st.Probes+1 {
		t.Errorf("%d of %d held after an outage with %d probes: parked mail was given up", h, n, st.Probes)
	}
	t.Logf("%d messages, outage past give_up_after: %d delivered, %d given up (%d probes)", n, s.Count(), held(), st.Probes)
}

// TestAdminRetryProbesAtOnce: dualmx queue retry while the target is
// suspended sends the probe now, not at the end of its back-off.
func TestAdminRetryProbesAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln := newFlapListener(t)
	ln.setDown(true)
	s := f.target(standin.Options{Listener: ln, Keep: -1})
	cfg := f.tenantConfig(s)
	cfg.Health.ProbeInitial, cfg.Health.ProbeMax = time.Hour, time.Hour
	opts := f.optsWith(cfg)
	id := f.spool(testBody, defaultEnv())
	for range 4 {
		f.spool(testBody, defaultEnv())
	}
	f.run(opts)
	waitFor(t, failsafe, "suspended", opts.Health.Suspended)
	ln.setDown(false)
	time.Sleep(200 * time.Millisecond)
	if s.Count() != 0 {
		t.Fatal("delivered before the probe was due")
	}
	adm := f.admin()
	defer adm.Close()
	if _, err := adm.RetryAll(); err != nil {
		t.Fatal(err)
	}
	waitMsgs(t, s, 5)
	waitFor(t, failsafe, "delivered", f.gone(id))
}
