// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

// judge is a stage before the tenant, as vouch is: a message that comes
// without header fields gets a verdict, numbered by how often it judged; a
// message that comes with fields keeps them.
type judge struct {
	next   courier.Target
	judged atomic.Int32
	given  chan string // the header each transaction came with
}

func newJudge(next courier.Target) *judge {
	return &judge{next: next, given: make(chan string, 16)}
}

func (j *judge) Start(ctx context.Context, msg courier.Message) (courier.Delivery, error) {
	d, err := j.next.Start(ctx, msg)
	if err != nil {
		return nil, err
	}
	return &judged{Delivery: d, j: j}, nil
}

type judged struct {
	courier.Delivery
	j *judge
}

func (d *judged) Body(ctx context.Context, header []byte, body courier.Body) error {
	select {
	case d.j.given <- string(header):
	default: // only the first attempts are looked at
	}
	if len(header) == 0 {
		header = fmt.Appendf(nil, "Authentication-Results: relay.test; verdict=%d\r\n", d.j.judged.Add(1))
	}
	return d.Delivery.Body(ctx, header, body)
}

// TestVerdictStoredAndSentOnRetry: the fields a stage adds at the first
// attempt are kept with the item when it is deferred, and a retry sends
// them again ahead of the unchanged spooled bytes, without judging anew.
func TestVerdictStoredAndSentOnRetry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var attempts atomic.Int32
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageRcpt && attempts.Add(1) == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}})
	opts := f.opts(s)
	j := newJudge(opts.Tenant)
	opts.Tenant = j
	id := f.spool(testBody, defaultEnv())
	f.run(opts)
	msgs := waitMsgs(t, s, 1)
	waitFor(t, failsafe, "spool empty", f.gone(id))
	verdict := "Authentication-Results: relay.test; verdict=1\r\n"
	if first, second := <-j.given, <-j.given; first != "" || second != verdict {
		t.Errorf("attempts came with %q, then %q", first, second)
	}
	if n := j.judged.Load(); n != 1 {
		t.Errorf("judged %d times over %d attempts, want once", n, attempts.Load())
	}
	if got := string(msgs[0].Data); got != verdict+testBody {
		t.Errorf("delivered %q, want %q", got, verdict+testBody)
	}
	if msgs[0].MailOpts.Size != int64(len(verdict+testBody)) {
		t.Errorf("SIZE=%d, want %d", msgs[0].MailOpts.Size, len(verdict+testBody))
	}
}

// TestVerdictSurvivesRestart: a message deferred at its first attempt is
// sent after a restart with the verdict of that attempt, not judged again
// (the sender's DNS may have changed meanwhile).
func TestVerdictSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var down atomic.Bool
	down.Store(true)
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if down.Load() && e.Stage == standin.StageRcpt {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}})
	opts := f.opts(s)
	opts.Tenant = newJudge(opts.Tenant)
	id := f.spool(testBody, defaultEnv())
	_, stop := f.run(opts)
	waitFor(t, failsafe, "deferred", f.state(id, spool.StateDeferred))
	stop()
	verdict := "Authentication-Results: relay.test; verdict=1\r\n"
	if it, _ := f.sp.Get(id); it.Prepend != verdict {
		t.Errorf("stored with the item: %q", it.Prepend)
	}
	f.sp.Close()

	// A new process: a new spool, a new runner, a stage that has judged
	// nothing yet.
	g := newFixtureAt(t, f.dir)
	g.ca = f.ca // the stand-in's certificate is from f's CA
	down.Store(false)
	opts = g.opts(s)
	j := newJudge(opts.Tenant)
	opts.Tenant = j
	g.run(opts)
	msgs := waitMsgs(t, s, 1)
	if want := verdict + testBody; string(msgs[0].Data) != want {
		t.Errorf("delivered after the restart %q, want %q", msgs[0].Data, want)
	}
	if n := j.judged.Load(); n != 0 {
		t.Errorf("judged again %d times after the restart", n)
	}
}

// TestReportIsNeverBounced: under the bounce policy, a message that is itself
// a delivery report is held, like one from the null sender.
func TestReportIsNeverBounced(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageRcpt {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown"}
		}
		return nil
	}})
	opts := f.opts(s)
	opts.OnPermanentFailure = PolicyBounce
	w, err := f.sp.NewWriter(defaultEnv())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Content-Type: multipart/report; report-type=delivery-status\r\n\r\nx\r\n"))
	w.SetReport(true)
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	f.run(opts)
	waitFor(t, failsafe, "held", f.state(id, spool.StateHeld))
	items, _ := f.sp.List()
	if len(items) != 1 {
		t.Fatalf("a DSN was generated for a delivery report: %d items", len(items))
	}
}

// TestArrivalVerdictTakenWhileParked: a message that arrives while the
// tenant is suspended is judged while it is parked, and the verdict kept
// with it, not when the tenant is back (after an outage of days a DKIM
// signature may have expired, or its key been rotated); when the tenant is
// back, it goes out with that verdict and is not judged again.
func TestArrivalVerdictTakenWhileParked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ln := newFlapListener(t)
	ln.setDown(true)
	s := f.target(standin.Options{Listener: ln})
	cfg := f.tenantConfig(s)
	cfg.Health.ProbeInitial, cfg.Health.ProbeMax = time.Hour, time.Hour
	opts := f.optsWith(cfg)
	j := newJudge(opts.Tenant)
	opts.Tenant = j
	f.run(opts)
	const n = 5
	for range n {
		f.spool(testBody, defaultEnv())
	}
	waitFor(t, failsafe, "suspended", opts.Health.Suspended)
	id := f.spool(testBody, defaultEnv())
	var verdict string
	waitFor(t, failsafe, "the verdict of the parked message stored", func() bool {
		it, err := f.sp.Get(id)
		verdict = it.Prepend
		return err == nil && verdict != ""
	})
	if !opts.Health.Suspended() {
		t.Fatal("the tenant is back: the message was not judged while parked")
	}
	waitFor(t, failsafe, "every parked message judged", func() bool { return j.judged.Load() == n+1 })
	// The verdict went into the message's own file: judging costs no
	// <id>.json, no fsync and no rename per message while mail arrives.
	if _, err := os.Stat(filepath.Join(f.sp.Dir(), id+".json")); err == nil {
		t.Errorf("judging the parked message wrote %s.json", id)
	}
	ln.setDown(false)
	opts.Health.ProbeNow()
	msgs := waitMsgs(t, s, n+1)
	waitFor(t, failsafe, "delivered", f.gone(id))
	if got := j.judged.Load(); got != n+1 {
		t.Errorf("%d verdicts for %d messages: judged again after the outage", got, n+1)
	}
	found := false
	for _, m := range msgs {
		found = found || strings.Contains(string(m.Data), verdict)
	}
	if !found {
		t.Errorf("no message went out with the stored verdict %q", verdict)
	}
}
