// SPDX-License-Identifier: MIT

package queue

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// sessionCounter is the target's listener, counting the connections open
// at once.
type sessionCounter struct {
	net.Listener
	open, peak atomic.Int32
}

func newSessionCounter(t *testing.T) *sessionCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &sessionCounter{Listener: ln}
}

func (l *sessionCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.open.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *sessionCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

var serverBusy = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 500}, Message: "Server busy. Please try again later from [127.0.0.1]. (S77719)"}

// TestConcurrencyFollowsTarget: the window starts small, grows with
// successful transactions up to delivery.concurrency, halves under
// throttling, and grows again; the target never sees more sessions than
// the ceiling.
func TestConcurrencyFollowsTarget(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln := newSessionCounter(t)
	var throttling atomic.Bool
	s := f.target(standin.Options{Listener: ln, Keep: -1, Hook: func(e standin.Event) error {
		switch {
		case e.Stage == standin.StageMail && throttling.Load():
			return serverBusy
		case e.Stage == standin.StageDataDone:
			time.Sleep(2 * time.Millisecond) // sessions overlap
		}
		return nil
	}})
	cfg := f.tenantConfig(s)
	cfg.MaxIdle = 8
	cfg.Health.MaxConcurrency = 8
	opts := f.optsWith(cfg)
	opts.Concurrency = 8
	h := opts.Health
	if w := h.Window(); w != 2 {
		t.Fatalf("initial window %d, want 2", w)
	}
	r, _ := f.run(opts)
	var peakWindow atomic.Int32
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if w := int32(r.TargetStatus().Concurrency); w > peakWindow.Load() {
				peakWindow.Store(w)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	for range 200 {
		f.spool(testBody, defaultEnv())
	}
	waitMsgs(t, s, 200)
	close(stop)
	<-sampled
	if peakWindow.Load() != 8 || ln.peak.Load() > 8 || ln.peak.Load() < 3 {
		t.Errorf("growth: window reached %d, the target saw up to %d sessions at once; want 8 and 3..8", peakWindow.Load(), ln.peak.Load())
	}

	throttling.Store(true)
	for range 20 {
		f.spool(testBody, defaultEnv())
	}
	waitFor(t, failsafe, "window halved twice", func() bool { return h.Window() <= 2 })
	if st := r.TargetStatus(); !st.Up && st.Concurrency > 2 {
		t.Errorf("status under throttling: %+v", st)
	}
	throttling.Store(false)
	waitMsgs(t, s, 220)
	for range 100 {
		f.spool(testBody, defaultEnv())
	}
	waitMsgs(t, s, 320)
	waitFor(t, failsafe, "window grown again", func() bool { return h.Window() >= 4 })
	t.Logf("window: 2, grew to %d, throttled to <= 2, grew again to %d; the target saw at most %d sessions", peakWindow.Load(), h.Window(), ln.peak.Load())
}

// TestThrottledTargetFewerRefusals: a target that refuses with 451 4.7.500
// still gets every message, and an adaptive window earns fewer refusals
// than a fixed one: for a target that throttles every second connection
// (the case) and for one that takes at most three transactions at
// once (a per-source connection limit, as Exchange has).
func TestThrottledTargetFewerRefusals(t *testing.T) {
	t.Parallel()
	const n = 200
	type script func(inTxn *atomic.Int32, e standin.Event) error
	everySecond := func(_ *atomic.Int32, e standin.Event) error {
		if e.Stage == standin.StageMail && e.Conn%2 == 0 {
			return serverBusy
		}
		return nil
	}
	atMostThree := func(inTxn *atomic.Int32, e standin.Event) error {
		switch e.Stage {
		case standin.StageMail:
			if inTxn.Add(1) > 3 {
				inTxn.Add(-1)
				return serverBusy
			}
		case standin.StageDataDone:
			time.Sleep(2 * time.Millisecond)
			inTxn.Add(-1)
		}
		return nil
	}
	run := func(t *testing.T, sc script, fixed bool) (refused int32) {
		f := newFixture(t)
		var inTxn, busy atomic.Int32
		s := f.target(standin.Options{Keep: -1, Hook: func(e standin.Event) error {
			err := sc(&inTxn, e)
			if err != nil {
				busy.Add(1)
			}
			return err
		}})
		cfg := f.tenantConfig(s)
		cfg.MaxIdle = 8
		cfg.Health.MaxConcurrency = 8
		cfg.Health.Fixed = fixed
		opts := f.optsWith(cfg)
		opts.Concurrency = 8
		opts.RetryInitial, opts.RetryMax = 20*time.Millisecond, 50*time.Millisecond
		for range n {
			f.spool(testBody, defaultEnv())
		}
		f.run(opts)
		waitMsgs(t, s, n)
		waitFor(t, failsafe, "spool empty", func() bool { items, _ := f.sp.List(); return len(items) == 0 })
		return busy.Load()
	}
	for _, tc := range []struct {
		name string
		sc   script
	}{
		{"every second connection", everySecond},
		{"at most three at once", atMostThree},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fixed := run(t, tc.sc, true)
			adaptive := run(t, tc.sc, false)
			t.Logf("%d messages, all delivered: %d refused attempts with a fixed concurrency of 8, %d with the adaptive window", n, fixed, adaptive)
			if adaptive >= fixed {
				t.Errorf("adaptive %d refusals, fixed %d: want fewer", adaptive, fixed)
			}
		})
	}
}

// TestReturnsToATarpitDoNotHoldTheTenant: returned bounces whose sender's
// MX accepts the connection and never greets hold workers of their own,
// not the tenant's window: the tenant's mail goes out meanwhile, although
// the returns are due first and outnumber the initial window.
func TestReturnsToATarpitDoNotHoldTheTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{})
	opts := f.opts(s)
	opts.Concurrency = 4
	opts.Sender = tarpitMX(t)
	opts.StopTimeout = 100 * time.Millisecond // cut the returns off at the end
	for range 3 {
		f.spool(testBody, returned())
	}
	const n = 10
	for range n {
		f.spool(testBody, defaultEnv())
	}
	f.run(opts)
	waitMsgs(t, s, n) // the returns wait a minute for a greeting
	t.Logf("%d messages delivered to the tenant (window %d) while 3 returns wait for a tarpit", n, opts.Health.Window())
}
