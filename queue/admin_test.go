// SPDX-License-Identifier: MIT

package queue

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// The admin CLI opens the spool separately (OpenAdmin), as another process
// would; flock locks belong to open files, so the exclusion is the same.
func (f *fixture) admin() *Spool {
	f.t.Helper()
	adm, err := OpenAdmin(f.dir, f.log, WithAdminWait(200*time.Millisecond), WithHostname("relay.test"))
	if err != nil {
		f.t.Fatal(err)
	}
	return adm
}

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
		if err := op(); !errors.Is(err, ErrBusy) {
			t.Errorf("%s during delivery: %v, want ErrBusy", name, err)
		}
	}
	free()
	waitMsgs(t, s, 1)
	waitFor(t, 5*time.Second, "removed", f.gone(id))
	if _, err := adm.Drop(id, "admin", "late"); !errors.Is(err, ErrNotFound) {
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
	waitFor(t, 5*time.Second, "held", f.state(held, StateHeld))
	adm := f.admin()
	if err := adm.Retry(held); !errors.Is(err, ErrState) {
		t.Errorf("retry of a held message: %v", err)
	}

	mu.Lock()
	mode = "busy"
	mu.Unlock()
	if err := adm.Release(held); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "released message retried and deferred", f.state(held, StateDeferred))
	it, _ := f.sp.Get(held)
	if it.ReleasedAt.IsZero() || it.Recipients[0].State != RcptPending {
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

func TestAdminBounceAndDrop(t *testing.T) {
	f := newFixture(t)
	adm := f.admin()
	id := f.spool(testBody, defaultEnv())
	dsnID, err := adm.Bounce(id, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sp.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("bounced original still there: %v", err)
	}
	dsn, err := f.sp.Get(dsnID)
	if err != nil || !dsn.DSN || dsn.From != "" || dsn.Recipients[0].Target != "alice@sender.test" {
		t.Fatalf("DSN item = %+v, %v", dsn, err)
	}
	// No DSN about a DSN, nor to the null sender.
	if _, err := adm.Bounce(dsnID, "admin"); !errors.Is(err, ErrState) {
		t.Errorf("bounce of a DSN: %v", err)
	}
	it, err := adm.Drop(dsnID, "admin", "test")
	if err != nil || it.ID != dsnID || !it.DSN {
		t.Errorf("Drop = %+v, %v", it, err)
	}
	if items, _ := f.sp.List(); len(items) != 0 {
		t.Errorf("spool not empty: %v", items)
	}
	if _, err := adm.Drop("20250101T000000.000000Z-00000000", "admin", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("drop of unknown id: %v", err)
	}
}

// TestRemovedBetweenOpenAndLock: an item dropped by an admin command, or
// moved aside, in the moment between the runner opening its file and
// locking it must not leave the runner holding a lock on that file: nothing
// is delivered.
func TestRemovedBetweenOpenAndLock(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove func(f *fixture, admin *Spool, id string) error
	}{
		{"dropped", func(f *fixture, admin *Spool, id string) error {
			_, err := admin.Drop(id, "test", "dropped in the window")
			return err
		}},
		{"moved aside", func(f *fixture, admin *Spool, id string) error {
			return os.Rename(f.sp.BodyPath(id), filepath.Join(f.dir, quarantineDir, id+msgExt))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s := f.target(standinOpts())
			id := f.spool(testBody, defaultEnv())
			admin, err := OpenAdmin(f.dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			removed := make(chan error, 1)
			lockOpened = func(got string) {
				if got != id {
					return
				}
				lockOpened = nil
				removed <- tc.remove(f, admin, id)
			}
			defer func() { lockOpened = nil }()
			lk, err := f.sp.lockItem(id, 0)
			if err := <-removed; err != nil {
				t.Fatal(err)
			}
			if !errors.Is(err, ErrNotFound) {
				if lk != nil {
					lk.unlock()
				}
				t.Fatalf("lockItem after the item left = %v, want ErrNotFound", err)
			}
			f.run(f.opts(s))
			time.Sleep(300 * time.Millisecond)
			if n := s.Count(); n != 0 {
				t.Errorf("tenant got %d messages, want none", n)
			}
		})
	}
}
