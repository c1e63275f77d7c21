// SPDX-License-Identifier: MIT

package queue

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

func TestAdminWaitsForDeliveryInFlight(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	entered := make(chan struct{}, 1)
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		if e.Stage == standin.StageData {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		return nil
	}})
	id := f.spool(testBody, defaultEnv())
	f.run(f.opts(s))
	<-entered
	adm := f.admin()
	for name, op := range map[string]func() error{
		"drop":    func() error { _, err := adm.Drop(id, "admin", "test"); return err },
		"bounce":  func() error { _, err := adm.Bounce(id, "admin"); return err },
		"retry":   func() error { return adm.Retry(id) },
		"release": func() error { return adm.Release(id) },
	} {
		if err := op(); !errors.Is(err, spool.ErrBusy) {
			t.Errorf("%s during delivery: %v, want spool.ErrBusy", name, err)
		}
	}
	free()
	waitMsgs(t, s, 1)
	waitFor(t, 5*time.Second, "removed", f.gone(id))
	if _, err := adm.Drop(id, "admin", "late"); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("drop after delivery: %v", err)
	}
	if s.Count() != 1 {
		t.Errorf("%d copies delivered", s.Count())
	}
}

func TestAdminChangesReachRunningDaemon(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	mode := "reject"
	s := f.target(standin.Options{Hook: func(e standin.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if e.Stage == standin.StageRcpt && mode == "reject" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "blocked"}
		}
		if e.Stage == standin.StageRcpt && mode == "busy" {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "later"}
		}
		return nil
	}})
	opts := f.opts(s)
	opts.RetryInitial, opts.RetryMax = time.Hour, time.Hour // only an admin makes it due again
	held := f.spool(testBody, defaultEnv())
	f.run(opts)
	waitFor(t, 5*time.Second, "held", f.state(held, spool.StateHeld))
	adm := f.admin()
	if err := adm.Retry(held); !errors.Is(err, spool.ErrState) {
		t.Errorf("retry of a held message: %v", err)
	}

	mu.Lock()
	mode = "busy"
	mu.Unlock()
	if err := adm.Release(held); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "released message retried and deferred", f.state(held, spool.StateDeferred))
	it, _ := f.sp.Get(held)
	if it.ReleasedAt.IsZero() || it.Recipients[0].State != spool.RcptPending {
		t.Errorf("released item = %+v", it)
	}

	mu.Lock()
	mode = "accept"
	mu.Unlock()
	if n, err := adm.RetryAll(); err != nil || n != 1 {
		t.Fatalf("RetryAll = %d, %v", n, err)
	}
	start := time.Now()
	waitFor(t, 3*time.Second, "delivered after retry", f.gone(held))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("daemon took %v to see the retry", d)
	}
}
