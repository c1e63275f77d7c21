// SPDX-License-Identifier: MIT

package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

// TestRecoveryWhileAccepting: the daemon takes mail while the spool's
// recovery reads the backlog an earlier run left (seconds for 100 000
// messages). Mail committed then gets ids of its own and is delivered at
// once, and every message of the backlog is delivered, once: none lost,
// none twice.
func TestRecoveryWhileAccepting(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// More than the spool hands the runner at a time.
	const backlog, during = 1200, 20
	subject := func(i int) string { return fmt.Sprintf("Subject: message %d\r\n\r\nHello.\r\n", i) }
	left := map[string]bool{}
	for i := range backlog {
		left[f.spool(subject(i), defaultEnv())] = true
	}
	f.sp.Close()

	// The next run: its recovery stops at the first message of the
	// backlog it opens, until the test lets it go on.
	h, hold, reading := holdRecovery(left)
	opening := make(chan *fixture, 1)
	go func() { opening <- newFixtureAt(t, f.dir, spool.WithFS(h)) }()
	var g *fixture
	select {
	case g = <-opening:
	case <-reading:
		close(hold)
		<-opening
		t.Fatal("opening the spool reads the backlog: no mail could be taken until it has")
	}
	s := g.target(standin.Options{Keep: backlog + during})
	g.run(g.opts(s))
	select {
	case <-reading:
	case <-time.After(failsafe):
		t.Fatal("recovery did not start")
	}
	for i := range during {
		g.spool(subject(backlog+i), defaultEnv())
	}
	// Delivered while the recovery waits; nothing of the backlog yet.
	msgs := waitMsgs(t, s, during)
	for _, m := range msgs {
		var n int
		if _, err := fmt.Sscanf(string(m.Data), "Subject: message %d", &n); err != nil || n < backlog {
			t.Errorf("delivered before the recovery read it: %.40q", m.Data)
		}
	}
	close(hold)

	msgs = waitMsgs(t, s, backlog+during)
	waitFor(t, failsafe, "the spool empty", func() bool {
		items, err := g.sp.List()
		return err == nil && len(items) == 0
	})
	time.Sleep(100 * time.Millisecond) // a message sent twice would arrive now
	seen := map[string]int{}
	for _, m := range s.Messages() {
		seen[string(m.Data)]++
	}
	for i := range backlog + during {
		if n := seen[subject(i)]; n != 1 {
			t.Errorf("message %d delivered %d times", i, n)
		}
	}
	if len(msgs) != backlog+during || s.Count() != backlog+during {
		t.Errorf("%d messages at the target, want %d", s.Count(), backlog+during)
	}
}

// TestParkedMailCostsNothingPerRound: while the tenant is suspended, a
// parked message is judged once and then left alone: probe after probe,
// its file is not rewritten, it gets no <id>.json, and no line is logged
// for it; only the messages that go out as probes are attempted.
func TestParkedMailCostsNothingPerRound(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln := newFlapListener(t)
	ln.setDown(true)
	s := f.target(standin.Options{Listener: ln, Keep: -1})
	opts := f.opts(s)
	j := newJudge(opts.Tenant)
	opts.Tenant = j
	f.run(opts)
	const n = 60
	var ids []string
	for range n {
		ids = append(ids, f.spool(testBody, defaultEnv()))
	}
	waitFor(t, failsafe, "suspended", opts.Health.Suspended)
	waitFor(t, failsafe, "every message judged", func() bool { return j.judged.Load() == n })
	type file struct {
		size  int64
		mtime time.Time
	}
	look := func(id string) (file, bool) {
		fi, err := os.Stat(f.sp.BodyPath(id))
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(f.metaPath(id))
		return file{fi.Size(), fi.ModTime()}, err == nil
	}
	before := map[string]file{}
	for _, id := range ids {
		if fl, hasMeta := look(id); !hasMeta {
			before[id] = fl
		}
	}
	conns := len(ln.downConns())
	logged := strings.Count(f.logs.String(), "queue: temporary failure")
	waitFor(t, failsafe, "three more probes", func() bool { return len(ln.downConns()) >= conns+3 })
	attempted := 0
	for id, was := range before {
		fl, hasMeta := look(id)
		switch {
		case hasMeta:
			attempted++ // a probe
		case fl != was:
			t.Errorf("parked %s rewritten: %+v, was %+v", id, fl, was)
		}
	}
	// Counted after the look: a probe connects before its record is written.
	probes := len(ln.downConns()) - conns
	if attempted > probes {
		t.Errorf("%d parked messages attempted with %d probes", attempted, probes)
	}
	if lines := strings.Count(f.logs.String(), "queue: temporary failure") - logged; lines > len(ln.downConns())-conns {
		t.Errorf("%d failure lines for %d probes", lines, probes)
	}
}

// TestStopWaitsForRecovery: Run's callers close the spool once it returns,
// so Run must not return while the spool's recovery still reads the
// backlog: a stop during recovery waits for it to finish its batch.
func TestStopWaitsForRecovery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	left := map[string]bool{}
	for range 10 {
		left[f.spool(testBody, defaultEnv())] = true
	}
	f.sp.Close()

	h, hold, reading := holdRecovery(left)
	g := newFixtureAt(t, f.dir, spool.WithFS(h))
	s := g.target(standin.Options{Keep: -1})
	_, stop := g.run(g.opts(s))
	select {
	case <-reading:
	case <-time.After(failsafe):
		close(hold)
		t.Fatal("recovery did not start")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Error("Run returned while the spool's recovery was still reading")
	case <-time.After(300 * time.Millisecond):
	}
	close(hold)
	select {
	case <-stopped:
	case <-time.After(failsafe):
		t.Fatal("Run did not return after the recovery ended")
	}
}

// holdRecovery is a file system on which the spool's recovery stops at the
// first of the backlog's messages it opens: reading is closed then, and it
// goes on once hold is closed.
func holdRecovery(backlog map[string]bool) (h *hookFS, hold, reading chan struct{}) {
	h = &hookFS{}
	hold, reading = make(chan struct{}), make(chan struct{})
	var once sync.Once
	opened := func(name string) {
		if backlog[strings.TrimSuffix(filepath.Base(name), ".msg")] {
			once.Do(func() { close(reading); <-hold })
		}
	}
	h.opened.Store(&opened)
	return h, hold, reading
}
