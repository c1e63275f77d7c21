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
	opts.Prepare = func(_ context.Context, it *Item, body io.ReadSeeker) ([]byte, error) {
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
