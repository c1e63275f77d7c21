// SPDX-License-Identifier: MIT

package queue

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// deliverByHand retires id as the runner does once every recipient has its
// 250 (under the item's lock, the file joining the pool when it is
// released), and makes the removal durable, as the next commit would.
func (f *fixture) deliverByHand(id string) {
	f.t.Helper()
	f.retireByHand(id)
	if err := f.sp.FlushRemovals(); err != nil {
		f.t.Fatal(err)
	}
}

// retireByHand is deliverByHand without the directory fsync.
func (f *fixture) retireByHand(id string) {
	f.t.Helper()
	lk, err := f.sp.lockItem(id, time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	it, _, err := f.sp.readItem(id, lk.f, lk.size, true)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.sp.removeDelivered(it, lk); err != nil {
		f.t.Fatal(err)
	}
	lk.unlock()
}

func freeFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, recyclePrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func inode(t *testing.T, name string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func readBody(t *testing.T, sp *Spool, id string) (string, error) {
	t.Helper()
	rc, err := sp.Body(id)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// TestRecycledFileHoldsOnlyTheNewMessage: a delivered message's file is
// reused for the next message, which is committed at its own length: nothing
// of the longer message before it survives, on disk or in delivery.
func TestRecycledFileHoldsOnlyTheNewMessage(t *testing.T) {
	f := newFixture(t)
	long := testBody + strings.Repeat("OLD MESSAGE LINE\r\n", 500)
	a := f.spool(long, defaultEnv())
	f.deliverByHand(a)
	if f.sp.exists(a) {
		t.Fatal("delivered item still in the spool")
	}
	free := freeFiles(t, f.dir)
	if len(free) != 1 || f.sp.freeCount() != 1 {
		t.Fatalf("pool after one delivery: %v (count %d)", free, f.sp.freeCount())
	}
	ino := inode(t, free[0])

	b := f.spool(testBody, defaultEnv())
	if got := inode(t, f.sp.BodyPath(b)); got != ino {
		t.Errorf("new message in inode %d, not the recycled %d", got, ino)
	}
	if n := len(freeFiles(t, f.dir)); n != 0 || f.sp.freeCount() != 0 {
		t.Errorf("pool after reuse: %d files, count %d", n, f.sp.freeCount())
	}
	raw, err := os.ReadFile(f.sp.BodyPath(b))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "OLD MESSAGE") {
		t.Error("the recycled file still holds the delivered message")
	}
	if body, err := readBody(t, f.sp, b); err != nil || body != testBody {
		t.Errorf("body = %q, %v", body, err)
	}
	// A daemon started afresh reads the item back from disk alone.
	f.sp.Close()
	g := newFixtureAt(t, f.dir)
	it, err := g.sp.Get(b)
	if err != nil || it.Size != int64(len(testBody)) {
		t.Fatalf("item after restart: %+v, %v", it, err)
	}
	s := g.target(standinOpts())
	g.run(g.opts(s))
	msgs := waitMsgs(t, s, 1)
	if !strings.HasSuffix(string(msgs[0].Data), testBody) || strings.Contains(string(msgs[0].Data), "OLD MESSAGE") {
		t.Errorf("delivered %q", msgs[0].Data)
	}
}

// TestRecycleWaitsForDurableRemoval: a delivered message's file is reused
// only once its rename out of the spool is durable; otherwise a crash could
// bring back the delivered message with the new one's bytes in it.
func TestRecycleWaitsForDurableRemoval(t *testing.T) {
	f := newFixture(t)
	f.retireByHand(f.spool(testBody, defaultEnv()))
	free := freeFiles(t, f.dir)
	if len(free) != 1 {
		t.Fatalf("pool: %v", free)
	}
	ino := inode(t, free[0])
	b := f.spool(testBody, defaultEnv())
	if inode(t, f.sp.BodyPath(b)) == ino {
		t.Error("file reused before its removal from the spool was durable")
	}
	// b's commit fsynced the directory, and with it the earlier rename.
	c := f.spool(testBody, defaultEnv())
	if inode(t, f.sp.BodyPath(c)) != ino {
		t.Error("file not reused after a directory fsync")
	}
}

// TestRunnerRecyclesDeliveredFiles: under the runner, a stream of messages
// goes through a handful of files and every message arrives intact.
func TestRunnerRecyclesDeliveredFiles(t *testing.T) {
	f := newFixture(t)
	s := f.target(standinOpts())
	r, _ := f.run(f.opts(s))
	inodes := map[uint64]bool{}
	const n = 30
	for i := range n {
		body := testBody + strings.Repeat(strings.Repeat("x", 61)+"\r\n", i*3)
		id := f.spool(body, defaultEnv())
		inodes[inode(t, f.sp.BodyPath(id))] = true
		r.Notify(id)
		waitFor(t, 5*time.Second, "delivered", f.gone(id))
		msgs := waitMsgs(t, s, i+1)
		if got := string(msgs[i].Data); !strings.HasSuffix(got, body) {
			t.Fatalf("message %d delivered as %q", i, got)
		}
	}
	// One message at a time, each delivered before the next: after the
	// first, each should take the file its predecessor left.
	if len(inodes) > 3 {
		t.Errorf("%d messages used %d files", n, len(inodes))
	}
}

// TestRecycleLimits: big files and files beyond the pool's bound are
// removed; files unused for a while and, at Close, all the rest go too.
func TestRecycleLimits(t *testing.T) {
	f := newFixture(t)
	big := f.spool(testBody+strings.Repeat("y", maxRecycle), defaultEnv())
	f.deliverByHand(big)
	if n := len(freeFiles(t, f.dir)); n != 0 {
		t.Errorf("a file over %d bytes was kept", maxRecycle)
	}
	var ids []string
	for range maxFree + 3 {
		ids = append(ids, f.spool(testBody, defaultEnv()))
	}
	for _, id := range ids {
		f.deliverByHand(id)
	}
	if n := len(freeFiles(t, f.dir)); n != maxFree || f.sp.freeCount() != maxFree {
		t.Errorf("pool holds %d files (count %d), bound %d", n, f.sp.freeCount(), maxFree)
	}
	f.sp.trimFree(time.Hour)
	if n := f.sp.freeCount(); n != maxFree {
		t.Errorf("fresh files trimmed: %d left", n)
	}
	f.sp.trimFree(0)
	if n := len(freeFiles(t, f.dir)); n != 0 || f.sp.freeCount() != 0 {
		t.Errorf("idle files not trimmed: %d left", n)
	}
	f.deliverByHand(f.spool(testBody, defaultEnv()))
	if n := len(freeFiles(t, f.dir)); n != 1 {
		t.Fatalf("pool: %d files", n)
	}
	f.sp.Close()
	if n := len(freeFiles(t, f.dir)); n != 0 {
		t.Errorf("Close left %d recycled files", n)
	}
}

// TestRecoveryRemovesRecycledFiles: after a crash the pool's files are
// leftovers like any temp file, never taken for mail.
func TestRecoveryRemovesRecycledFiles(t *testing.T) {
	f := newFixture(t)
	f.deliverByHand(f.spool(testBody, defaultEnv()))
	if n := len(freeFiles(t, f.dir)); n != 1 {
		t.Fatalf("pool: %d files", n)
	}
	// A crash: the daemon lock goes with the process, Close never runs.
	f.sp.daemon.Close()
	f.sp.daemon = nil
	g := newFixtureAt(t, f.dir)
	if n := len(freeFiles(t, f.dir)); n != 0 {
		t.Errorf("recovery left %d recycled files", n)
	}
	if items, err := g.sp.List(); err != nil || len(items) != 0 {
		t.Errorf("items after recovery: %v, %v", items, err)
	}
}

// TestRecycleSkipsFileSomebodyHolds: an admin command that opened and
// locked the delivered item still has the file; it is not overwritten.
func TestRecycleSkipsFileSomebodyHolds(t *testing.T) {
	f := newFixture(t)
	a := f.spool(testBody, defaultEnv())
	before, err := os.ReadFile(f.sp.BodyPath(a))
	if err != nil {
		t.Fatal(err)
	}
	f.deliverByHand(a)
	free := freeFiles(t, f.dir)
	if len(free) != 1 {
		t.Fatalf("pool: %v", free)
	}
	held, err := os.Open(free[0])
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	b := f.spool("Subject: other\r\n\r\nother\r\n", defaultEnv())
	var st syscall.Stat_t
	if err := syscall.Fstat(int(held.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if inode(t, f.sp.BodyPath(b)) == st.Ino {
		t.Error("a locked file was reused")
	}
	if n := len(freeFiles(t, f.dir)); n != 0 {
		t.Errorf("the locked file stayed in the pool's directory: %d", n)
	}
	after, err := io.ReadAll(held)
	if err != nil || string(after) != string(before) {
		t.Errorf("the holder's file changed: %q, %v", after, err)
	}
}

// TestReadersNeverSeeAnotherMessage: a reader that opened a delivered
// item's file by name before it was recycled gets "not found", never the
// new message's bytes under the old id.
func TestReadersNeverSeeAnotherMessage(t *testing.T) {
	f := newFixture(t)
	other := "Subject: new\r\n\r\n" + strings.Repeat("NEW\r\n", 40)
	recycleNow := func(id string) {
		f.deliverByHand(id)
		f.spool(other, defaultEnv())
		if n := f.sp.freeCount(); n != 0 {
			t.Fatalf("the file was not reused (pool %d)", n)
		}
	}

	t.Run("metadata", func(t *testing.T) {
		a := f.spool(testBody, defaultEnv())
		f.sp.forget(a) // as a CLI process would, without the daemon's memory
		readOpened = func(id string) {
			if id == a {
				readOpened = nil
				recycleNow(a)
			}
		}
		defer func() { readOpened = nil }()
		if it, err := f.sp.Get(a); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a recycled item = %+v, %v", it, err)
		}
	})
	t.Run("body", func(t *testing.T) {
		a := f.spool(testBody, defaultEnv())
		rc, err := f.sp.Body(a)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		recycleNow(a)
		if b, err := io.ReadAll(rc); !errors.Is(err, ErrNotFound) {
			t.Errorf("body of a recycled item = %q, %v", b, err)
		}
	})
	t.Run("body not recycled", func(t *testing.T) {
		a := f.spool(testBody, defaultEnv())
		if b, err := readBody(t, f.sp, a); err != nil || b != testBody {
			t.Errorf("body = %q, %v", b, err)
		}
	})
}

// TestRecycledFileFailures: a write or commit that fails in a recycled file
// leaves nothing behind, neither a message nor the file in the pool.
func TestRecycledFileFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		abort bool
	}{{"disk full", false}, {"abort", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := OpenSpool(dir, nil, nil, WithFS(fullFS{budget: 8 << 10, match: recyclePrefix}))
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			f := &fixture{t: t, dir: dir, sp: sp}
			f.deliverByHand(f.spool(testBody, defaultEnv()))
			w, err := sp.NewWriter(defaultEnv())
			if err != nil {
				t.Fatal(err)
			}
			if !w.reused {
				t.Fatal("the writer did not take the recycled file")
			}
			if tc.abort {
				w.Write([]byte(testBody))
				w.Abort()
			} else {
				w.Write([]byte(strings.Repeat("z", 16<<10)))
				if _, err := w.Commit(); !IsNoSpace(err) {
					t.Errorf("commit = %v, want ENOSPC", err)
				}
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if n := e.Name(); n != daemonLock && n != quarantineDir {
					t.Errorf("left behind: %s", n)
				}
			}
			if n := sp.freeCount(); n != 0 {
				t.Errorf("pool count %d", n)
			}
		})
	}
}
