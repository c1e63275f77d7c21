// SPDX-License-Identifier: MIT

package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

type recorder struct {
	mu  sync.Mutex
	got map[string]int
}

func (r *recorder) RecordDelivery(address string, _ time.Time, n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string]int{}
	}
	r.got[address] += n
	return nil
}

func TestDeliverVerifiedTLSUnchangedBytesGroupedTargets(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{MaxSize: 10 << 20})
	rec := &recorder{}
	opts := f.opts(s)
	opts.Recorder = rec
	// Two aliases of one public address share a target: one RCPT.
	id := f.spool(testBody, defaultEnv(
		rcpt("scriba@fwd.domain.test", "scriba@domain.test"),
		spool.Recipient{Rcpt: "scriba2@fwd.domain.test", Address: "scriba@domain.test", Target: "SCRIBA@domain.test"},
		rcpt("koster@fwd.domain.test", "koster@domain.test")))
	f.run(opts)
	m := waitMsgs(t, s, 1)[0]
	if string(m.Data) != testBody {
		t.Errorf("bytes changed:\n%q\nwant\n%q", m.Data, testBody)
	}
	if !m.TLS {
		t.Error("delivered without TLS")
	}
	if !slices.Equal(m.To, []string{"scriba@domain.test", "koster@domain.test"}) {
		t.Errorf("RCPTs = %v", m.To)
	}
	if m.From != "alice@sender.test" || m.MailOpts.Size != int64(len(testBody)) {
		t.Errorf("MAIL = %q %+v", m.From, m.MailOpts)
	}
	waitFor(t, failsafe, "item removed", f.gone(id))
	if got := testutil.ToFloat64(f.m.Deliveries.WithLabelValues("delivered")); got != 3 {
		t.Errorf("delivered metric = %v", got)
	}
	if got := testutil.ToFloat64(f.m.AddressDelivered.WithLabelValues("scriba@domain.test")); got != 2 {
		t.Errorf("address metric = %v", got)
	}
	if testutil.CollectAndCount(f.m.DeliveryLatency) != 1 || testutil.CollectAndCount(f.m.AttemptDuration) != 1 {
		t.Error("latency histograms not observed")
	}
	// The recorder is fed in batches, within recordEvery.
	waitFor(t, failsafe, "deliveries recorded", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.got["scriba@domain.test"] == 2 && rec.got["koster@domain.test"] == 1
	})
	checkLogsHaveID(t, f.logs.String())
}

var spoolID = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9a-f]{8}$`)

// checkLogsHaveID: every delivery log line names the spool id.
func checkLogsHaveID(t *testing.T, logs string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	n := 0
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		msg, _ := rec["msg"].(string)
		if strings.HasPrefix(msg, "queue: ") && msg != "queue: scan" && !strings.HasPrefix(msg, "queue: stop") {
			n++
			if id, _ := rec["id"].(string); !spoolID.MatchString(id) {
				t.Errorf("log line without id: %s", sc.Text())
			}
		}
	}
	if n == 0 {
		t.Error("no delivery log lines")
	}
}

func TestTemporaryFailuresRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fail   func(e standin.Event) error
		reason string
	}{
		{"451 at RCPT", func(e standin.Event) error {
			if e.Stage == standin.StageRcpt {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
			}
			return nil
		}, "451 4.2.0 mailbox busy"},
		{"421 at MAIL", func(e standin.Event) error {
			if e.Stage == standin.StageMail {
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "try later"}
			}
			return nil
		}, "421"},
		{"dropped after data", func(e standin.Event) error {
			if e.Stage == standin.StageDataDone {
				return standin.ErrDrop
			}
			return nil
		}, "4.4.2"},
		{"stall at data", func(e standin.Event) error {
			if e.Stage == standin.StageDataDone {
				time.Sleep(1500 * time.Millisecond)
			}
			return nil
		}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var mu sync.Mutex
			failing := true
			s := f.target(standin.Options{Hook: func(e standin.Event) error {
				mu.Lock()
				fl := failing
				mu.Unlock()
				if fl {
					return tc.fail(e)
				}
				return nil
			}})
			cfg := f.tenantConfig(s)
			cfg.DataTimeout = 500 * time.Millisecond
			opts := f.optsWith(cfg)
			opts.RetryInitial = 300 * time.Millisecond
			id := f.spool(testBody, defaultEnv())
			_, stop := f.run(opts)
			waitFor(t, failsafe, "deferred", f.state(id, spool.StateDeferred))
			it, _ := f.sp.Get(id)
			if !strings.Contains(it.LastError, tc.reason) || it.Attempts < 1 || it.Recipients[0].State != spool.RcptPending {
				t.Errorf("after failure: %+v", it)
			}
			// Backoff with zero jitter: the first retry is RetryInitial after the attempt.
			if d := it.NextAttempt.Sub(it.LastAttempt); d < 250*time.Millisecond || d > 10*time.Second {
				t.Errorf("next attempt %v after the last one", d)
			}
			mu.Lock()
			failing = false
			mu.Unlock()
			waitFor(t, failsafe, "delivered after retry", f.gone(id))
			stop()
			if got := testutil.ToFloat64(f.m.Deliveries.WithLabelValues("deferred")); got < 1 {
				t.Errorf("deferred metric = %v", got)
			}
		})
	}
}

func TestGiveUpAppliesPolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageRcpt {
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "later"}
		}
		return nil
	}})
	opts := f.opts(s)
	// Attempts every 50ms; a second comes long before the give-up time
	// even on a loaded machine.
	opts.RetryMax = 50 * time.Millisecond
	opts.GiveUpAfter = 2 * time.Second
	id := f.spool(testBody, defaultEnv())
	f.run(opts)
	waitFor(t, failsafe, "held", f.state(id, spool.StateHeld))
	it, _ := f.sp.Get(id)
	if it.Recipients[0].State != spool.RcptFailed || !strings.Contains(it.Recipients[0].LastReply, "gave up") || it.Attempts < 2 {
		t.Errorf("item = %+v", it)
	}
}

func TestPerRecipientOutcomes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var mu sync.Mutex
	var rcpts [][]string
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		switch {
		case e.Stage == standin.StageRcpt && e.Rcpt == "bad@domain.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case e.Stage == standin.StageRcpt && e.Rcpt == "busy@domain.test":
			mu.Lock()
			defer mu.Unlock()
			if len(rcpts) == 0 {
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "full"}
			}
		case e.Stage == standin.StageDataDone:
			mu.Lock()
			rcpts = append(rcpts, e.Rcpts)
			mu.Unlock()
		}
		return nil
	}})
	id := f.spool(testBody, defaultEnv(rcpt("a@fwd.test", "good@domain.test"), rcpt("b@fwd.test", "bad@domain.test"), rcpt("c@fwd.test", "busy@domain.test")))
	f.run(f.opts(s))
	waitMsgs(t, s, 2)
	waitFor(t, failsafe, "held", f.state(id, spool.StateHeld))
	mu.Lock()
	if len(rcpts) != 2 || !slices.Equal(rcpts[0], []string{"good@domain.test"}) || !slices.Equal(rcpts[1], []string{"busy@domain.test"}) {
		t.Errorf("transactions = %v", rcpts)
	}
	mu.Unlock()
	it, _ := f.sp.Get(id)
	got := map[string]spool.RcptState{}
	for _, r := range it.Recipients {
		got[r.Target] = r.State
	}
	if got["good@domain.test"] != spool.RcptDelivered || got["bad@domain.test"] != spool.RcptFailed || got["busy@domain.test"] != spool.RcptDelivered {
		t.Errorf("states = %v", got)
	}
	if it.Recipients[1].LastReply != "550 5.1.1 no such user" || it.Recipients[1].LastStatus != "5.1.1" {
		t.Errorf("bad recipient = %+v", it.Recipients[1])
	}
	// The address with held mail blocks migration; the delivered one does not.
	if q, h, _ := f.sp.Pending("bad@domain.test"); q != 0 || h != 1 {
		t.Errorf("Pending(bad) = %d, %d", q, h)
	}
	if q, h, _ := f.sp.Pending("good@domain.test"); q != 0 || h != 0 {
		t.Errorf("Pending(good) = %d, %d", q, h)
	}
}

func TestPermanentFailurePolicy(t *testing.T) {
	t.Parallel()
	reject := func(e standin.Event) error {
		if e.Stage == standin.StageRcpt {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown recipient"}
		}
		return nil
	}
	t.Run("hold", func(t *testing.T) {
		f := newFixture(t)
		s := f.target(standin.Options{Hook: reject})
		id := f.spool(testBody, defaultEnv())
		f.run(f.opts(s))
		waitFor(t, failsafe, "held", f.state(id, spool.StateHeld))
		waitFor(t, failsafe, "held metric", func() bool {
			return testutil.ToFloat64(f.m.Deliveries.WithLabelValues("held")) == 1
		})
	})
	for _, tc := range []struct {
		name string
		env  spool.Envelope
		dsn  bool
	}{
		{"bounce", defaultEnv(), true},
		{"bounce null sender holds", spool.Envelope{From: "", Recipients: defaultEnv().Recipients}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s := f.target(standin.Options{Hook: reject})
			mx := f.target(standin.Options{TLS: newFixture(t).tlsFor("mx.sender.test")}) // opportunistic: any certificate
			opts := f.opts(s)
			opts.OnPermanentFailure = PolicyBounce
			var lookups []string
			opts.Sender = f.mxAt(mx, &lookups)
			id := f.spool(testBody, tc.env)
			_, stop := f.run(opts)
			if !tc.dsn {
				waitFor(t, failsafe, "held", f.state(id, spool.StateHeld))
				stop()
				if mx.Count() != 0 || testutil.ToFloat64(f.m.DSNsGenerated) != 0 {
					t.Error("DSN sent for a null-sender message")
				}
				return
			}
			dsn := waitMsgs(t, mx, 1)[0]
			waitFor(t, failsafe, "original removed", f.gone(id))
			waitFor(t, failsafe, "spool empty", func() bool { items, _ := f.sp.List(); return len(items) == 0 })
			stop()
			if dsn.From != "" || !slices.Equal(dsn.To, []string{"alice@sender.test"}) || !dsn.TLS {
				t.Errorf("DSN envelope: from %q to %v tls %v", dsn.From, dsn.To, dsn.TLS)
			}
			if !slices.Equal(lookups, []string{"sender.test"}) {
				t.Errorf("MX lookups = %v", lookups)
			}
			checkDSN(t, dsn.Data, id)
			if testutil.ToFloat64(f.m.DSNsGenerated) != 1 || testutil.ToFloat64(f.m.Deliveries.WithLabelValues("bounced")) != 1 {
				t.Error("DSN metrics not counted")
			}
		})
	}
}

// checkDSN parses a DSN as a mail client would.
func checkDSN(t *testing.T, data []byte, origID string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Auto-Submitted") != "auto-replied" || !strings.Contains(msg.Header.Get("From"), "MAILER-DAEMON@relay.test") {
		t.Errorf("DSN header: %v", msg.Header)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %q %v", mt, params)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var status, headers string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		b, _ := io.ReadAll(p)
		switch ct {
		case "message/delivery-status":
			status = string(b)
		case "text/rfc822-headers":
			headers = string(b)
		}
	}
	if !slices.Equal(types, []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}) {
		t.Errorf("parts = %v", types)
	}
	for _, want := range []string{"Reporting-Mta: dns; relay.test", "Final-Recipient: rfc822; scriba@domain.test", "Original-Recipient: rfc822; scriba@fwd.domain.test", "Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 unknown recipient", origID} {
		if !strings.Contains(strings.ToLower(status), strings.ToLower(want)) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	if !strings.Contains(headers, "Subject: test") || strings.Contains(headers, "Hello.") {
		t.Errorf("returned headers:\n%s", headers)
	}
}

func TestGracefulStopWithStalledDelivery(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	entered := make(chan struct{}, 1)
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageData {
			entered <- struct{}{}
			<-release
		}
		return nil
	}})
	cfg := f.tenantConfig(s)
	cfg.CommandTimeout = time.Minute
	cfg.DataTimeout = time.Minute
	opts := f.optsWith(cfg)
	opts.StopTimeout = 300 * time.Millisecond
	id := f.spool(testBody, defaultEnv())
	_, stop := f.run(opts)
	select {
	case <-entered:
	case <-time.After(failsafe):
		t.Fatal("delivery never reached DATA")
	}
	if took := stop(); took > 3*time.Second {
		t.Errorf("Run took %v to return", took)
	}
	it, err := f.sp.Get(id)
	if err != nil {
		t.Fatalf("item lost: %v", err)
	}
	if it.Recipients[0].State != spool.RcptPending {
		t.Errorf("item = %+v", it)
	}
}

// TestDeliveredButNotRemovable: when the spool refuses to remove a message
// every recipient of which was delivered (a read-only or misowned spool),
// the message is not sent again; only the removal is retried.
func TestDeliveredButNotRemovable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		// pooled: the file ends in the pool (renamed aside for reuse), not
		// removed.
		pooled bool
	}{
		{"a file kept for reuse", testBody, true},
		{"a file too big to keep", testBody + strings.Repeat(strings.Repeat("b", 70)+"\r\n", 4000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &hookFS{}
			f := newFixture(t, spool.WithFS(h))
			s := f.target(standin.Options{MaxSize: 10 << 20})
			id := f.spool(tc.body, defaultEnv())
			// The first three tries fail, whichever way the file leaves
			// (renamed aside or removed); the fourth succeeds.
			var refusals atomic.Int32
			h.rename = func(from, to string) error {
				if strings.HasSuffix(from, id+".msg") && refusals.Add(1) <= 3 {
					return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EROFS}
				}
				return nil
			}
			h.remove = func(name string) error {
				if strings.HasSuffix(name, id+".msg") && (tc.pooled || refusals.Add(1) <= 3) {
					return &os.PathError{Op: "remove", Path: name, Err: syscall.EROFS}
				}
				return nil
			}
			opts := f.opts(s)
			opts.RetryInitial, opts.RetryMax = 50*time.Millisecond, 100*time.Millisecond
			f.run(opts)
			waitFor(t, failsafe, "removed at last", func() bool {
				_, err := os.Stat(f.sp.BodyPath(id))
				return refusals.Load() > 3 && errors.Is(err, fs.ErrNotExist)
			})
			time.Sleep(200 * time.Millisecond)
			if n := s.Count(); n != 1 {
				t.Errorf("tenant got %d copies, want 1", n)
			}
			want := 0
			if tc.pooled {
				want = 1
			}
			waitFor(t, failsafe, "the pool as expected", func() bool { return len(f.pooled()) == want })
			if !strings.Contains(f.logs.String(), "delivered item removed at last") {
				t.Errorf("no log line for the late removal:\n%s", f.logs.String())
			}
			if got := testutil.ToFloat64(f.m.Quarantined); got != 0 {
				t.Errorf("%v items quarantined", got)
			}
		})
	}
}

// A bounce whose DSN is spooled but whose original loses only its body (its
// metadata cannot be removed) sends the DSN at once and does not hold a
// message that no longer exists.
func TestBounceLeavesMetadataBehind(t *testing.T) {
	t.Parallel()
	h := &hookFS{}
	f := newFixture(t, spool.WithFS(h))
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageRcpt {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown recipient"}
		}
		return nil
	}})
	mx := f.target(standin.Options{TLS: newFixture(t).tlsFor("mx.sender.test")})
	opts := f.opts(s)
	opts.OnPermanentFailure = PolicyBounce
	opts.Sender = f.mxAt(mx, nil)
	id := f.spool(testBody, defaultEnv())
	f.setState(id, spool.StateDeferred) // now it has <id>.json
	h.remove = func(name string) error {
		if name == f.metaPath(id) {
			return &os.PathError{Op: "remove", Path: name, Err: syscall.EIO}
		}
		return nil
	}
	_, stop := f.run(opts)
	waitMsgs(t, mx, 1) // without waiting for the next rescan
	waitFor(t, failsafe, "body removed", func() bool {
		_, err := os.Stat(f.sp.BodyPath(id))
		return errors.Is(err, fs.ErrNotExist)
	})
	stop()
	b, err := os.ReadFile(f.metaPath(id))
	if err != nil {
		t.Fatal(err)
	}
	var it spool.Item
	if err := json.Unmarshal(b, &it); err != nil || it.State == spool.StateHeld {
		t.Errorf("leftover metadata rewritten as %v (err %v): a held message without a body", it.State, err)
	}
	if got := f.sp.Stats(time.Now()).ByState; got["held"] != 0 || got["deferred"] != 0 || got["pending"] != 0 {
		t.Errorf("gauges %v, want an empty queue", got)
	}
}

// TestDSNToNonPublicMXHeld (issue 15.5): a DSN whose sender's MX is on a
// loopback or private address is not delivered there: it fails at once and
// is held for an admin, the reason on record, and nothing connected to the
// server listening there.
func TestDSNToNonPublicMXHeld(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ mxHost, reason string }{
		{"127.0.0.1.", "127.0.0.1 (loopback)"},
		{"10.0.0.25.", "10.0.0.25 (private)"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			s := f.target(standin.Options{Hook: func(e standin.Event) error {
				if e.Stage == standin.StageRcpt {
					return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown recipient"}
				}
				return nil
			}})
			mx := f.target(standin.Options{TLS: newFixture(t).tlsFor("mx.sender.test")})
			opts := f.opts(s)
			opts.OnPermanentFailure = PolicyBounce
			opts.Sender = courier.NewMX(courier.MXConfig{Port: mx.Port(), LookupMX: func(context.Context, string) ([]*net.MX, error) {
				return []*net.MX{{Host: tc.mxHost, Pref: 10}}, nil
			}})
			id := f.spool(testBody, defaultEnv())
			f.run(opts)
			waitFor(t, failsafe, "original bounced", f.gone(id))
			var dsn spool.Item
			waitFor(t, failsafe, "the DSN held", func() bool {
				items, _ := f.sp.List()
				if len(items) == 1 && items[0].DSN && items[0].State == spool.StateHeld {
					dsn = items[0]
					return true
				}
				return false
			})
			if r := dsn.Recipients[0]; !strings.Contains(r.LastReply, "5.4.4") || !strings.Contains(r.LastReply, tc.reason) || dsn.Attempts != 1 {
				t.Errorf("held DSN: %d attempts, last reply %q", dsn.Attempts, r.LastReply)
			}
			if n := mx.Connections(); n != 0 {
				t.Errorf("%d connections to the server on %s", n, tc.mxHost)
			}
		})
	}
}
