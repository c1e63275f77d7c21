// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

// TestPrepareOnceAndPrefixSent: the prepended fields are computed once per
// message, stored before the first attempt, sent on every attempt ahead of
// the unchanged spooled bytes, and counted in SIZE=.
func TestPrepareOnceAndPrefixSent(t *testing.T) {
	f := newFixture(t)
	var attempts atomic.Int32
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageRcpt && attempts.Add(1) == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}})
	opts := f.opts(s)
	var calls atomic.Int32
	var seen string
	var mu sync.Mutex
	opts.Prepare = func(_ context.Context, it *spool.Item, body io.ReadSeeker) ([]byte, error) {
		calls.Add(1)
		b, err := io.ReadAll(body)
		mu.Lock()
		seen = string(b)
		mu.Unlock()
		return []byte("Authentication-Results: relay.test; none\r\n"), err
	}
	id := f.spool(testBody, defaultEnv())
	f.run(opts)
	msgs := waitMsgs(t, s, 1)
	waitFor(t, 5*time.Second, "spool empty", f.gone(id))
	if n := calls.Load(); n != 1 {
		t.Errorf("Prepare ran %d times over %d attempts, want once", n, attempts.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if seen != testBody {
		t.Errorf("Prepare saw %q, want the spooled bytes", seen)
	}
	want := "Authentication-Results: relay.test; none\r\n" + testBody
	if got := string(msgs[0].Data); got != want {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if msgs[0].MailOpts.Size != int64(len(want)) {
		t.Errorf("SIZE=%d, want %d", msgs[0].MailOpts.Size, len(want))
	}
}

// TestRewriteFrom: the tenant sees the rewritten envelope sender; the null
// sender is never rewritten.
func TestRewriteFrom(t *testing.T) {
	f := newFixture(t)
	s := f.target(standin.Options{})
	opts := f.opts(s)
	opts.RewriteFrom = func(from string) (string, error) {
		return "SRS0=xx=yy=" + strings.ReplaceAll(from, "@", "=") + "@fwd.test", nil
	}
	f.spool(testBody, defaultEnv())
	env := defaultEnv()
	env.From = ""
	f.spool(testBody, env)
	f.run(opts)
	msgs := waitMsgs(t, s, 2)
	froms := map[string]bool{}
	for _, m := range msgs {
		froms[m.From] = true
	}
	if !froms["SRS0=xx=yy=alice=sender.test@fwd.test"] || !froms[""] {
		t.Errorf("envelope senders %v", froms)
	}
}

// TestReportIsNeverBounced: under the bounce policy, a message that is itself
// a delivery report is held, like one from the null sender.
func TestReportIsNeverBounced(t *testing.T) {
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
	waitFor(t, 5*time.Second, "held", f.state(id, spool.StateHeld))
	items, _ := f.sp.List()
	if len(items) != 1 {
		t.Fatalf("a DSN was generated for a delivery report: %d items", len(items))
	}
}
