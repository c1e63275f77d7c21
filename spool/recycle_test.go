// SPDX-License-Identifier: MIT

package spool

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

// beyondPool drops from names the files in the spool's pool, and only those.
func (f *fixture) beyondPool(names []string) []string {
	f.sp.rec.mu.Lock()
	defer f.sp.rec.mu.Unlock()
	pooled := map[string]bool{}
	for _, ff := range f.sp.rec.free {
		pooled[filepath.Base(ff.name)] = true
	}
	var out []string
	for _, n := range names {
		if !pooled[n] {
			out = append(out, n)
		}
	}
	return out
}

// reusable counts the pooled files a writer may take now.
func (f *fixture) reusable() int {
	f.sp.rec.mu.Lock()
	defer f.sp.rec.mu.Unlock()
	n := 0
	for _, ff := range f.sp.rec.free {
		if ff.sync <= f.sp.dsync.durable() {
			n++
		}
	}
	return n
}

func (f *fixture) reusedCount() int { return int(f.sp.rec.reused.Load()) }

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
	t.Parallel()
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
	// A daemon started afresh reads the item back from disk alone, and a
	// delivery attempt reads exactly the new message.
	f.sp.Close()
	g := newFixtureAt(t, f.dir)
	it, err := g.sp.Get(b)
	if err != nil || it.Size != int64(len(testBody)) {
		t.Fatalf("item after restart: %+v, %v", it, err)
	}
	c, msg := claimed(t, g.sp, b)
	c.Close()
	if msg != testBody {
		t.Errorf("an attempt reads %q", msg)
	}
}

// TestRecycleWaitsForDurableRemoval: a delivered message's file is reused
// only once its rename out of the spool is durable; otherwise a crash could
// bring back the delivered message with the new one's bytes in it.
func TestRecycleWaitsForDurableRemoval(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.retireByHand(f.spool(testBody, defaultEnv()))
	free := freeFiles(t, f.dir)
	if len(free) != 1 {
		t.Fatalf("pool: %v", free)
	}
	f.wantReuseAfterNextCommit(inode(t, free[0]))
}

// wantReuseAfterNextCommit: the pooled file ino is not reusable yet, so the
// next message gets a file of its own; that message's commit fsyncs the
// directory, which makes ino's rename durable, and the one after takes ino.
func (f *fixture) wantReuseAfterNextCommit(ino uint64) {
	f.t.Helper()
	b := f.spool(testBody, defaultEnv())
	if inode(f.t, f.sp.BodyPath(b)) == ino {
		f.t.Error("file reused before a directory fsync begun after its rename had finished")
	}
	c := f.spool(testBody, defaultEnv())
	if inode(f.t, f.sp.BodyPath(c)) != ino {
		f.t.Error("file not reused after a later directory fsync")
	}
}

// TestRecycleLimits: big files and files beyond the pool's bound are
// removed; files unused for a while and, at Close, all the rest go too.
func TestRecycleLimits(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

// TestRecycleSkipsFileSomebodyHolds: an admin command that opened the item
// before it was delivered and locked it after still has the file; it is
// removed, not written over.
func TestRecycleSkipsFileSomebodyHolds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.spool(testBody, defaultEnv())
	before, err := os.ReadFile(f.sp.BodyPath(a))
	if err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(f.sp.BodyPath(a))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	f.deliverByHand(a)
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if f.sp.freeCount() != 1 {
		t.Fatal("the delivered file is not in the pool")
	}
	b := f.spool("Subject: other\r\n\r\nother\r\n", defaultEnv())
	var st syscall.Stat_t
	if err := syscall.Fstat(int(held.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if inode(t, f.sp.BodyPath(b)) == st.Ino || f.reusedCount() != 0 {
		t.Error("a locked file was reused")
	}
	if n := len(freeFiles(t, f.dir)); n != 0 || f.sp.freeCount() != 0 {
		t.Errorf("the locked file stayed in the pool: %d on disk, %d counted", n, f.sp.freeCount())
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
	t.Parallel()
	h := &hookFS{}
	f := newFixture(t, WithFS(h))
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
		h.opened = func(name string) {
			if name == f.sp.BodyPath(a) {
				h.opened = nil
				recycleNow(a)
			}
		}
		defer func() { h.opened = nil }()
		if it, err := f.sp.Get(a); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a recycled item = %+v, %v", it, err)
		}
	})
	t.Run("body opened before and locked after", func(t *testing.T) {
		a := f.spool(testBody, defaultEnv())
		h.opened = func(name string) {
			if name == f.sp.BodyPath(a) {
				h.opened = nil
				recycleNow(a)
			}
		}
		defer func() { h.opened = nil }()
		if rc, err := f.sp.Body(a); !errors.Is(err, ErrNotFound) {
			if err == nil {
				b, _ := io.ReadAll(rc)
				rc.Close()
				t.Errorf("body of a recycled item = %q", b)
			} else {
				t.Errorf("body of a recycled item: %v", err)
			}
		}
	})
	t.Run("body being read is neither delivered nor reused", func(t *testing.T) {
		a := f.spool(testBody, defaultEnv())
		rc, err := f.sp.Body(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.sp.lockItem(a, 0); !errors.Is(err, ErrBusy) {
			t.Errorf("delivery could lock an item being read: %v", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != testBody {
			t.Errorf("body = %q, %v", b, err)
		}
		f.deliverByHand(a) // unlocked now
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
	t.Parallel()
	for _, tc := range []struct {
		name  string
		abort bool
	}{{"disk full", false}, {"abort", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := Open(dir, nil, nil, WithFS(fullFS{budget: 8 << 10, match: recyclePrefix}))
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
		})
	}
}

// TestRecycleWaitsForAnFsyncAfterTheRename: a directory fsync already
// running when a file is retired does not make the file reusable; only one
// that starts after the rename does.
func TestRecycleWaitsForAnFsyncAfterTheRename(t *testing.T) {
	t.Parallel()
	h := &hookFS{}
	f := newFixture(t, WithFS(h))
	a := f.spool(testBody, defaultEnv())
	var once bool
	h.syncDir = func(dir string) error {
		if dir == f.dir && !once {
			once = true
			f.retireByHand(a) // while the fsync of c's commit is under way
		}
		return nil
	}
	f.spool(testBody, defaultEnv()) // c
	h.syncDir = nil
	if !once || f.sp.freeCount() != 1 {
		t.Fatalf("retire during the fsync: ran %v, pool %d", once, f.sp.freeCount())
	}
	f.wantReuseAfterNextCommit(inode(t, freeFiles(t, f.dir)[0]))
}

// TestDirectoryFsyncFailureSticks: once a directory fsync fails, the spool
// takes nothing more until a restart, even if a later fsync would succeed:
// the kernel reports a lost write once, and renames before it may be gone.
func TestDirectoryFsyncFailureSticks(t *testing.T) {
	t.Parallel()
	h := &hookFS{}
	f := newFixture(t, WithFS(h))
	f.deliverByHand(f.spool(testBody, defaultEnv()))
	early, err := f.sp.NewWriter(defaultEnv()) // begun before the failure
	if err != nil {
		t.Fatal(err)
	}
	early.Write([]byte(testBody))
	fail := true
	h.syncDir = func(dir string) error {
		if dir == f.dir && fail {
			fail = false
			return &os.PathError{Op: "sync", Path: dir, Err: syscall.EIO}
		}
		return nil
	}
	w, err := f.sp.NewWriter(defaultEnv())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testBody))
	if id, err := w.Commit(); !errors.Is(err, syscall.EIO) {
		t.Errorf("commit whose directory fsync failed: %q, %v", id, err)
	}
	// From then on nothing is taken, though the next fsync would succeed.
	if _, err := f.sp.NewWriter(defaultEnv()); !errors.Is(err, syscall.EIO) {
		t.Errorf("a new message after the failure: %v", err)
	}
	if id, err := early.Commit(); !errors.Is(err, syscall.EIO) {
		t.Errorf("a message begun before the failure: %q, %v", id, err)
	}
	if err := f.sp.Broken(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Broken() = %v", err)
	}
	if err := f.sp.FlushRemovals(); !errors.Is(err, syscall.EIO) {
		t.Errorf("FlushRemovals = %v", err)
	}
	if got := f.beyondPool(spoolFiles(t, f.dir)); len(got) != 0 {
		t.Errorf("refused messages left %v", got)
	}
	// A restart starts afresh.
	f.sp.Close()
	g := newFixtureAt(t, f.dir)
	if err := g.sp.Broken(); err != nil {
		t.Errorf("after a restart: %v", err)
	}
	g.spool(testBody, defaultEnv())
}

// TestForeignBodyUnderOldName: should an old name ever lead to another
// message's file (a crash on a file system that ignores directory fsyncs),
// the item is quarantined as damaged, never delivered with those bytes,
// whether its record is the file's own trailer or an <id>.json beside it.
func TestForeignBodyUnderOldName(t *testing.T) {
	t.Parallel()
	for _, withMeta := range []bool{false, true} {
		f := newFixture(t)
		a := f.spool(testBody, defaultEnv())
		b := f.spool(strings.ToUpper(testBody), defaultEnv()) // same length
		if withMeta {
			it, err := f.sp.readMeta(a)
			if err != nil {
				t.Fatal(err)
			}
			it.State = StateDeferred
			if err := f.sp.writeMeta(it); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Rename(f.sp.BodyPath(b), f.sp.BodyPath(a)); err != nil {
			t.Fatal(err)
		}
		f.sp.forget(a)
		lk, err := f.sp.lockItem(a, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = f.sp.readItem(a, lk.f, lk.size, true)
		lk.unlock()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("with <id>.json %v: a foreign body read as %v", withMeta, err)
		}
	}
}

// TestFullDiskEmptiesPool: when the spool's file system is full, the files
// kept for reuse are the space the next message needs: they go.
func TestFullDiskEmptiesPool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := Open(dir, nil, nil, WithFS(fullFS{budget: 8 << 10, match: recyclePrefix}))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	f := &fixture{t: t, dir: dir, sp: sp}
	a, b := f.spool(testBody, defaultEnv()), f.spool(testBody, defaultEnv())
	f.deliverByHand(a)
	f.deliverByHand(b)
	if n := sp.freeCount(); n != 2 {
		t.Fatalf("pool: %d", n)
	}
	w, err := sp.NewWriter(defaultEnv()) // takes one of the two
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(strings.Repeat("z", 100<<10))); !IsNoSpace(err) { // beyond the write buffer
		t.Fatalf("write: %v", err)
	}
	w.Abort()
	if n := len(freeFiles(t, dir)); n != 0 || sp.freeCount() != 0 {
		t.Errorf("after ENOSPC the pool keeps %d files (%d counted)", n, sp.freeCount())
	}
}

// TestReleasedAfterCloseRemoved: a file a worker still held when the spool
// was closed is removed when the worker lets go, not kept.
func TestReleasedAfterCloseRemoved(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.spool(testBody, defaultEnv())
	lk, err := f.sp.lockItem(id, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	it, _, err := f.sp.readItem(id, lk.f, lk.size, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.sp.removeDelivered(it, lk); err != nil {
		t.Fatal(err)
	}
	if n := len(freeFiles(t, f.dir)); n != 1 {
		t.Fatalf("retired: %d files", n)
	}
	f.sp.Close()
	lk.unlock()
	if n := len(freeFiles(t, f.dir)); n != 0 || f.sp.freeCount() != 0 {
		t.Errorf("released after Close: %d files kept (%d counted)", n, f.sp.freeCount())
	}
}
