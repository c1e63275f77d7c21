// SPDX-License-Identifier: MIT

package queue

import (
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dualmx/dualmx/spool"
)

// TestDeliveredRemovalSyncedLater: removing a delivered item does not wait
// for a directory fsync of its own; the runner's poll makes the removals
// durable, one fsync for all of them, and a stop makes them durable too.
func TestDeliveredRemovalSyncedLater(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		poll time.Duration
	}{
		{"made durable at the poll", 100 * time.Millisecond},
		{"made durable at stop", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &hookFS{}
			f := newFixture(t, spool.WithFS(h))
			s := f.target(standinOpts())
			var ids []string
			for range 5 {
				ids = append(ids, f.spool(testBody, defaultEnv()))
			}
			var syncs atomic.Int32
			count := func(dir string) error {
				if dir == f.dir {
					syncs.Add(1)
				}
				return nil
			}
			h.syncDir.Store(&count)
			opts := f.opts(s)
			opts.PollInterval = tc.poll
			_, stop := f.run(opts)
			waitMsgs(t, s, len(ids))
			for _, id := range ids {
				waitFor(t, failsafe, "delivered item removed", f.gone(id))
			}
			if tc.poll == time.Hour {
				if n := syncs.Load(); n != 0 {
					t.Errorf("%d directory fsyncs while removing delivered items, want none", n)
				}
				stop()
				if n := syncs.Load(); n != 1 {
					t.Errorf("%d directory fsyncs at stop, want 1", n)
				}
				return
			}
			waitFor(t, failsafe, "removals made durable", func() bool { return syncs.Load() >= 1 })
			time.Sleep(300 * time.Millisecond) // more polls, nothing new to sync
			if n := syncs.Load(); n > 2 {
				t.Errorf("%d directory fsyncs for 5 removals, want them shared", n)
			}
		})
	}
}

// reuseCounter counts the spool files written over for a new message and
// the files set aside for reuse, and knows how many of those renames a
// directory fsync has made durable.
type reuseCounter struct {
	hookFS
	reused  atomic.Int32
	retired atomic.Int32 // files renamed aside for reuse
	durable atomic.Int32 // of those, how many an fsync has covered
}

func (c *reuseCounter) Reuse(name string) (spool.File, error) {
	f, err := c.hookFS.Reuse(name)
	if err == nil {
		c.reused.Add(1)
	}
	return f, err
}

func (c *reuseCounter) Rename(from, to string) error {
	err := c.hookFS.Rename(from, to)
	if err == nil && strings.Contains(to, ".tmp-free-") {
		c.retired.Add(1)
	}
	return err
}

func (c *reuseCounter) SyncDir(d *os.File) error {
	n := c.retired.Load() // renamed before the fsync began
	err := c.hookFS.SyncDir(d)
	if err == nil {
		for {
			old := c.durable.Load()
			if old >= n || c.durable.CompareAndSwap(old, n) {
				break
			}
		}
	}
	return err
}

// TestRunnerRecyclesDeliveredFiles: under the runner, a stream of messages
// of alternating sizes goes through reused files, and every message arrives
// byte for byte: a short one after a long one carries nothing of it.
func TestRunnerRecyclesDeliveredFiles(t *testing.T) {
	t.Parallel()
	fsys := &reuseCounter{}
	f := newFixture(t, spool.WithFS(fsys))
	s := f.target(standinOpts())
	f.run(f.opts(s))
	const n = 30
	for i := range n {
		lines := 3
		if i%2 == 0 {
			lines = 300
		}
		body := testBody + strings.Repeat(strings.Repeat(string(rune('a'+i%26)), 61)+"\r\n", lines)
		id := f.spool(body, defaultEnv())
		waitFor(t, failsafe, "delivered", f.gone(id))
		msgs := waitMsgs(t, s, i+1)
		// The fixture's runner adds no fields: the message is the body.
		if got := string(msgs[i].Data); got != body {
			t.Fatalf("message %d delivered as %d bytes, want its %d", i, len(got), len(body))
		}
		// The pool takes the file once the worker lets go of it, and the
		// runner's flush of removals at its poll makes it reusable.
		waitFor(t, failsafe, "file reusable", func() bool {
			free := f.pooled()
			return len(free) == 1 && fsys.durable.Load() >= int32(i+1) && !locked(t, free[0])
		})
	}
	// Each message but the first took its predecessor's file.
	if got := fsys.reused.Load(); got != n-1 {
		t.Errorf("%d of %d messages written over a delivered one's file", got, n)
	}
}

// locked reports whether somebody holds a flock on name: the worker's
// claim, until it ends and the file joins the pool.
func locked(t *testing.T, name string) bool {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		return true
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// TestBrokenSpoolLoggedOnce: the runner's periodic flush of removals fails
// on a broken spool until restart; the log says so once, not at every poll.
func TestBrokenSpoolLoggedOnce(t *testing.T) {
	t.Parallel()
	h := &hookFS{}
	f := newFixture(t, spool.WithFS(h))
	s := f.target(standinOpts())
	opts := f.opts(s)
	opts.PollInterval = 10 * time.Millisecond
	f.run(opts)
	fail := func(dir string) error {
		if dir == f.dir {
			return &os.PathError{Op: "sync", Path: dir, Err: syscall.EIO}
		}
		return nil
	}
	h.syncDir.Store(&fail)
	w, err := f.sp.NewWriter(defaultEnv())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testBody))
	if _, err := w.Commit(); err == nil {
		t.Fatal("commit succeeded on a broken spool")
	}
	time.Sleep(300 * time.Millisecond) // some 30 polls
	if n := strings.Count(f.logs.String(), "make removals durable"); n != 1 {
		t.Errorf("%d log lines for one failure", n)
	}
}
