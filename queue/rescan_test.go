// SPDX-License-Identifier: MIT

package queue

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

// TestUnrecordedOutcomeWrittenLater: an attempt whose outcome cannot be
// written (the disk is full: <id>.json cannot be renamed into place) keeps
// the item scheduled and retries only the write; the message is not sent
// again before the write succeeds, so a recipient the attempt reached does
// not get it twice, and a message to be held is held once the disk has
// room, not left pending and forgotten until a restart (the partial rescan
// skips an item the daemon knows).
func TestUnrecordedOutcomeWrittenLater(t *testing.T) {
	t.Parallel()
	const (
		ok   = "ok@domain.test"
		gone = "gone@domain.test"
		busy = "busy@domain.test"
	)
	tests := []struct {
		name  string
		rcpts []string
		want  spool.State
		// attemptsBefore is how many attempts are seen before the disk
		// has room again: the first, and no other.
		sentTo map[string]int // deliveries (DATA) per recipient at the end
	}{
		{name: "hold", rcpts: []string{gone}, want: spool.StateHeld, sentTo: map[string]int{}},
		{name: "hold after a partial delivery", rcpts: []string{ok, gone}, want: spool.StateHeld, sentTo: map[string]int{ok: 1}},
		{name: "deferral after a partial delivery", rcpts: []string{ok, busy}, want: spool.StateDeferred, sentTo: map[string]int{ok: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var diskFull atomic.Bool
			diskFull.Store(true)
			h := &hookFS{rename: func(from, to string) error {
				if strings.HasSuffix(to, ".json") && diskFull.Load() {
					return &os.PathError{Op: "rename", Path: to, Err: syscall.ENOSPC}
				}
				return nil
			}}
			f := newFixture(t, spool.WithFS(h))
			var attempts atomic.Int32
			var mu sync.Mutex
			sent := map[string]int{}
			s := f.target(standin.Options{Hook: func(e standin.Event) error {
				switch {
				case e.Stage == standin.StageMail:
					attempts.Add(1)
				case e.Stage == standin.StageRcpt && e.Rcpt == gone:
					return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
				case e.Stage == standin.StageRcpt && e.Rcpt == busy:
					return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "try later"}
				case e.Stage == standin.StageDataDone:
					mu.Lock()
					for _, r := range e.Rcpts {
						sent[r]++
					}
					mu.Unlock()
				}
				return nil
			}})
			var rcpts []spool.Recipient
			for _, r := range tc.rcpts {
				rcpts = append(rcpts, rcpt(r, r))
			}
			id := f.spool(testBody, defaultEnv(rcpts...))
			opts := f.opts(s)
			opts.RescanInterval = 50 * time.Millisecond
			opts.FullRescanInterval = time.Hour // not the safety net: the runner itself
			f.run(opts)
			waitFor(t, failsafe, "the outcome's write to fail", func() bool {
				return strings.Contains(f.logs.String(), "only the write is retried")
			})
			// Several write retries and rescans with the disk still full:
			// nothing is sent again meanwhile.
			time.Sleep(300 * time.Millisecond)
			if n := attempts.Load(); n != 1 {
				t.Errorf("%d attempts while the outcome could not be written, want 1", n)
			}
			diskFull.Store(false)
			waitFor(t, failsafe, "the outcome written", func() bool {
				it, err := f.sp.Get(id)
				return err == nil && it.State == tc.want
			})
			it, _ := f.sp.Get(id)
			for _, rc := range it.Recipients {
				if wantDelivered := tc.sentTo[rc.Target] > 0; (rc.State == spool.RcptDelivered) != wantDelivered {
					t.Errorf("recipient %s is %s", rc.Target, rc.State)
				}
			}
			if tc.want == spool.StateDeferred {
				// Later attempts go to the pending recipient only.
				waitFor(t, failsafe, "another attempt", func() bool { return attempts.Load() >= 3 })
			}
			mu.Lock()
			defer mu.Unlock()
			for r, n := range tc.sentTo {
				if sent[r] != n {
					t.Errorf("%s got the message %d times, want %d", r, sent[r], n)
				}
			}
		})
	}
}

// TestDroppedDamagedItemReadAgain: an attempt that finds its item damaged
// and cannot quarantine it (the rename into quarantine fails) drops it from
// the schedule; the view marks it, so that the next partial rescan reads
// it and the next attempt quarantines it, instead of leaving it in the
// spool, known and skipped, until a restart.
func TestDroppedDamagedItemReadAgain(t *testing.T) {
	t.Parallel()
	var stuck atomic.Bool
	stuck.Store(true)
	h := &hookFS{rename: func(from, to string) error {
		if strings.Contains(to, string(filepath.Separator)+"quarantine"+string(filepath.Separator)) && stuck.Load() {
			return &os.PathError{Op: "rename", Path: to, Err: syscall.EIO}
		}
		return nil
	}}
	f := newFixture(t, spool.WithFS(h))
	s := f.target(standinOpts())
	id := f.spool(testBody, defaultEnv())
	// Cut the body file: its envelope trailer is gone.
	if err := os.Truncate(f.sp.BodyPath(id), 20); err != nil {
		t.Fatal(err)
	}
	opts := f.opts(s)
	opts.RescanInterval = 50 * time.Millisecond
	opts.FullRescanInterval = time.Hour
	f.run(opts)
	waitFor(t, failsafe, "a failed quarantine", func() bool {
		return strings.Contains(f.logs.String(), "cannot quarantine damaged item")
	})
	stuck.Store(false)
	waitFor(t, failsafe, "quarantined", func() bool {
		_, err := os.Stat(f.quarantined(id + ".msg"))
		return err == nil
	})
}

// TestFullRescanSafetyNet: a record changed on disk without a kick (an
// admin restored or edited <id>.json by hand) is not seen by the partial
// rescan, which skips what the daemon knows; the full rescan, hourly by
// default, finds it.
func TestFullRescanSafetyNet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standinOpts())
	id := f.spool(testBody, defaultEnv())
	f.setState(id, spool.StateHeld)
	opts := f.opts(s)
	opts.RescanInterval = 20 * time.Millisecond
	opts.FullRescanInterval = 200 * time.Millisecond
	f.run(opts)
	time.Sleep(100 * time.Millisecond) // the runner has read it, held
	b, err := os.ReadFile(f.metaPath(id))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec["state"] = string(spool.StatePending)
	b, _ = json.Marshal(rec)
	tmp := f.metaPath(id) + ".edit"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.metaPath(id)); err != nil {
		t.Fatal(err)
	}
	waitMsgs(t, s, 1)
	waitFor(t, failsafe, "delivered and removed", f.gone(id))
}

// TestKickDuringStartScanSeen: an admin change that lands while the
// runner's first scan reads the spool (here: a held message released after
// the scan read it as held) is seen at the next poll, because the change
// mark is read before the scan, not after it.
func TestKickDuringStartScanSeen(t *testing.T) {
	t.Parallel()
	h := &hookFS{}
	f := newFixture(t, spool.WithFS(h))
	f.sp.Recover(nil) // the runner's start scans at once
	s := f.target(standinOpts())
	held := f.spool(testBody, defaultEnv())
	f.setState(held, spool.StateHeld)
	later := f.spool(testBody, defaultEnv()) // read after held: ids sort by arrival
	for range 2 {
		<-f.sp.Arrivals() // as if dropped: only the scan tells the runner
	}
	adm := f.admin()
	var once sync.Once
	hook := func(name string) {
		if name == f.sp.BodyPath(later) {
			once.Do(func() {
				if err := adm.Release(held); err != nil {
					t.Error(err)
				}
			})
		}
	}
	h.opened.Store(&hook)
	opts := f.opts(s)
	opts.FullRescanInterval = time.Hour
	f.run(opts)
	waitMsgs(t, s, 2)
	waitFor(t, failsafe, "released message delivered", f.gone(held))
}
