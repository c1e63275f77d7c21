// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/courier"
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

// TestReturnArrivingWhileSuspendedGoesOut: a returned bounce that arrives
// while the tenant is suspended goes to the sender's MX at once: its
// arrival says where it goes, so it is never parked behind the tenant
// (and no rescan comes to find it here).
func TestReturnArrivingWhileSuspendedGoesOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln := newFlapListener(t)
	ln.setDown(true)
	s := f.target(standin.Options{Listener: ln, Keep: -1})
	mx := f.target(standin.Options{TLS: newFixture(t).tlsFor("mx.sender.test")})
	cfg := f.tenantConfig(s)
	cfg.Health.ProbeInitial, cfg.Health.ProbeMax = time.Hour, time.Hour
	opts := f.optsWith(cfg)
	opts.Sender = f.mxAt(mx, nil)
	opts.RescanInterval = time.Hour
	f.run(opts)
	for range 5 {
		f.spool(testBody, defaultEnv())
	}
	waitFor(t, failsafe, "suspended", opts.Health.Suspended)
	id := f.spool(testBody, returned())
	waitMsgs(t, mx, 1)
	waitFor(t, failsafe, "the return delivered and removed", f.gone(id))
	if !opts.Health.Suspended() {
		t.Error("the tenant was resumed: the return did not go out while it was suspended")
	}
}

// gateStage plays the arrival checks (vouch) before the tenant: the
// message from slowFrom waits in Body until release is closed; every Body
// is counted, and entered is closed when the slow one is reached.
type gateStage struct {
	next     courier.Target
	slowFrom string
	release  chan struct{}
	entered  chan struct{}
	once     sync.Once
	bodies   atomic.Int32
}

func newGateStage(next courier.Target, slowFrom string) *gateStage {
	return &gateStage{next: next, slowFrom: slowFrom, release: make(chan struct{}), entered: make(chan struct{})}
}

func (s *gateStage) Start(ctx context.Context, msg courier.Message) (courier.Delivery, error) {
	d, err := s.next.Start(ctx, msg)
	if err != nil {
		return nil, err
	}
	return &gateDelivery{Delivery: d, s: s, from: msg.From}, nil
}

type gateDelivery struct {
	courier.Delivery
	s    *gateStage
	from string
}

func (d *gateDelivery) Body(ctx context.Context, h []byte, b courier.Body) error {
	d.s.bodies.Add(1)
	if d.from == d.s.slowFrom {
		d.s.once.Do(func() { close(d.s.entered) })
		<-d.s.release
	}
	return d.Delivery.Body(ctx, h, b)
}

// TestSchedulerSleepsWhileWorkersAreBusy: with the tenant suspended and
// its probe due, the scheduler does not wake every millisecond when no
// worker could take the probe, nor while returns to a sender's server that
// never answers hold workers: it waits for a worker's result.
func TestSchedulerSleepsWhileWorkersAreBusy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// hold occupies workers: it sets up before the runner starts,
		// with the tenant's mail spooled first, and its result completes
		// that once the tenant is suspended.
		hold func(f *fixture, opts *Options) func(t *testing.T)
	}{
		{"returns to a tarpit", func(f *fixture, opts *Options) func(t *testing.T) {
			opts.Concurrency = 2
			opts.Sender = tarpitMX(f.t)
			for range 2 {
				f.spool(testBody, returned())
			}
			return func(*testing.T) {}
		}},
		{"a slow arrival check holds the only worker", func(f *fixture, opts *Options) func(t *testing.T) {
			opts.Concurrency = 1
			gate := newGateStage(opts.Tenant, "slow@sender.test")
			opts.Tenant = gate
			f.t.Cleanup(func() { close(gate.release) })
			return func(t *testing.T) {
				env := defaultEnv()
				env.From = "slow@sender.test"
				f.spool(testBody, env)
				select {
				case <-gate.entered:
				case <-time.After(failsafe):
					t.Fatal("the message that arrived while suspended was not judged")
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ln := newFlapListener(t)
			ln.setDown(true)
			s := f.target(standin.Options{Listener: ln, Keep: -1})
			opts := f.opts(s)
			opts.PollInterval = 200 * time.Millisecond
			opts.StopTimeout = 100 * time.Millisecond
			var clock atomic.Int64
			opts.Now = func() time.Time { clock.Add(1); return time.Now() }
			for range 5 {
				f.spool(testBody, defaultEnv())
			}
			held := tc.hold(f, &opts)
			f.run(opts)
			waitFor(t, failsafe, "suspended", opts.Health.Suspended)
			held(t)
			time.Sleep(300 * time.Millisecond)
			before := clock.Load()
			time.Sleep(2 * time.Second)
			n := clock.Load() - before
			t.Logf("the scheduler's clock was read %d times in 2 s", n)
			if n > 200 {
				t.Errorf("the scheduler spun: %d clock reads in 2 s", n)
			}
		})
	}
}

// TestStrayProbeDoesNotSpinTheRunner: a delivery handed out before the
// suspension reaches the tenant after the probe became due (here an
// admin's queue retry made it due) and becomes the probe; its session
// hangs. Meanwhile the runner hands out no other parked message as a
// probe (it would be refused and parked again, in a loop through the
// backlog, each claimed and read again): one probe is under way.
func TestStrayProbeDoesNotSpinTheRunner(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageMail {
			if e.From == "slow@sender.test" {
				time.Sleep(3 * time.Second) // a session that hangs
			}
			return serverBusy
		}
		return nil
	}})
	cfg := f.tenantConfig(s)
	cfg.MaxIdle = 4
	cfg.Health.MaxConcurrency, cfg.Health.InitialConcurrency = 4, 4
	cfg.Health.ProbeInitial, cfg.Health.ProbeMax = time.Hour, time.Hour
	opts := f.optsWith(cfg)
	opts.Concurrency = 4
	gate := newGateStage(opts.Tenant, "slow@sender.test")
	opts.Tenant = gate
	env := defaultEnv()
	env.From = "slow@sender.test"
	ids := []string{f.spool(testBody, env)}
	const n = 200
	for range n {
		ids = append(ids, f.spool(testBody, defaultEnv()))
	}
	// Judged in an earlier run: nothing is handed out to take a verdict.
	for _, id := range ids {
		c, err := f.sp.Claim(id)
		if err != nil {
			t.Fatal(err)
		}
		c.Item().Prepend = "Authentication-Results: relay.test; none\r\n"
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	f.run(opts)
	h := opts.Health
	waitFor(t, failsafe, "suspended", h.Suspended)
	select {
	case <-gate.entered:
	case <-time.After(failsafe):
		t.Fatal("the slow message was not handed out")
	}
	time.Sleep(200 * time.Millisecond) // the backlog parked
	before := gate.bodies.Load()
	h.ProbeNow() // dualmx queue retry
	close(gate.release)
	time.Sleep(2500 * time.Millisecond)
	spun := gate.bodies.Load() - before
	t.Logf("while one probe session hung for 2.5 s: %d of %d parked messages handed out", spun, n)
	if spun > 2 {
		t.Errorf("the runner handed out %d parked messages while a probe was under way", spun)
	}
}
