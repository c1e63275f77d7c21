// SPDX-License-Identifier: MIT

package queue

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

// TestRuntimeQuarantine damages items on disk while the runner holds them
// deferred: each is quarantined at its next attempt with a log line and the
// metric, nothing damaged is sent, and the healthy item is delivered.
func TestRuntimeQuarantine(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var down atomic.Bool
	down.Store(true)
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if down.Load() && e.Stage == standin.StageMail {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}})
	opts := f.opts(s)
	opts.RetryInitial, opts.RetryMax = 300*time.Millisecond, 300*time.Millisecond
	damage := map[string]func(id string){
		"truncated body": func(id string) {
			if err := os.Truncate(f.sp.BodyPath(id), 10); err != nil {
				t.Fatal(err)
			}
		},
		"garbage metadata": func(id string) {
			if err := os.WriteFile(f.metaPath(id), []byte("{\"version\": 1, \"id\": tru"), 0o640); err != nil {
				t.Fatal(err)
			}
		},
		"metadata of another version": func(id string) {
			b, _ := os.ReadFile(f.metaPath(id))
			b = []byte(strings.Replace(string(b), `"version": 2`, `"version": 7`, 1))
			if err := os.WriteFile(f.metaPath(id), b, 0o640); err != nil {
				t.Fatal(err)
			}
		},
		"body removed": func(id string) {
			if err := os.Remove(f.sp.BodyPath(id)); err != nil {
				t.Fatal(err)
			}
		},
	}
	ids := map[string]string{}
	for name := range damage {
		ids[name] = f.spool(testBody, defaultEnv())
	}
	good := f.spool(testBody, defaultEnv())
	_, stop := f.run(opts)
	defer stop()
	for _, id := range ids {
		waitFor(t, failsafe, "deferred", f.state(id, spool.StateDeferred))
	}
	for name, fn := range damage {
		fn(ids[name])
	}
	down.Store(false)
	msgs := waitMsgs(t, s, 1)
	waitFor(t, failsafe, "healthy item delivered", f.gone(good))
	waitFor(t, failsafe, "four items quarantined", func() bool { return testutil.ToFloat64(f.m.Quarantined) == 4 })
	time.Sleep(700 * time.Millisecond) // more attempts would have happened by now
	if n := s.Count(); n != 1 {
		t.Errorf("tenant got %d messages, want only the healthy one", n)
	}
	if !strings.Contains(string(msgs[0].Data), "Hello.") {
		t.Errorf("healthy message damaged: %q", msgs[0].Data)
	}
	for name, id := range ids {
		if _, err := os.Stat(f.metaPath(id)); err == nil {
			t.Errorf("%s: still in the spool", name)
		}
		if _, err := os.Stat(f.quarantined(id + ".json")); err != nil {
			t.Errorf("%s: metadata not in quarantine: %v", name, err)
		}
	}
	logs := f.logs.String()
	for _, want := range []string{"body is 10 bytes, metadata says", "parse metadata", "unsupported version 7", "metadata without body"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no quarantine log line saying %q", want)
		}
	}
	if strings.Count(logs, "spool: quarantined unreadable item") != 4 {
		t.Errorf("want 4 quarantine log lines:\n%s", logs)
	}
}

// TestRuntimeQuarantineUnscheduled: an item damaged before the runner ever
// saw it (List skips it) is still found by the rescan and quarantined.
func TestRuntimeQuarantineUnscheduled(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standinOpts())
	opts := f.opts(s)
	opts.RescanInterval = 100 * time.Millisecond
	_, stop := f.run(opts)
	defer stop()
	time.Sleep(100 * time.Millisecond)
	id := "20250101T000000.000001Z-00000001"
	if err := os.WriteFile(f.sp.BodyPath(id), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.metaPath(id), []byte("not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, failsafe, "quarantined", func() bool { return testutil.ToFloat64(f.m.Quarantined) == 1 })
	if _, err := os.Stat(f.quarantined(id + ".msg")); err != nil {
		t.Error(err)
	}
}
