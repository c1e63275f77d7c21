// SPDX-License-Identifier: MIT

package spool

import (
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// backlog fills a spool with n deferred messages, as after an outage at
// the tenant: each has its <id>.json.
func backlog(tb testing.TB, dir string, n int) *Spool {
	tb.Helper()
	sp, err := Open(dir, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sp.Close() })
	for i := range n {
		id := commitTo(tb, sp)
		it, err := sp.readMeta(id)
		if err != nil {
			tb.Fatal(err)
		}
		it.State = StateDeferred
		it.Attempts = 1
		it.NextAttempt = time.Now().Add(time.Duration(i) * time.Second)
		if err := sp.writeMeta(it); err != nil {
			tb.Fatal(err)
		}
	}
	return sp
}

func commitTo(tb testing.TB, sp *Spool) string {
	tb.Helper()
	return commitBody(tb, sp, testBody, defaultEnv())
}

// listContinuously runs Lists back to back, as a busy runner's scans
// would, until the returned function is called.
func (f *fixture) listContinuously(t *testing.T) (stop func()) {
	done := make(chan struct{})
	var lister sync.WaitGroup
	lister.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := f.sp.List(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	return func() { close(done); lister.Wait() }
}

// onDisk counts the spool's items by state as another process sees them.
func onDisk(t *testing.T, f *fixture) map[string]int {
	t.Helper()
	items, err := f.admin().List()
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, it := range items {
		n[string(it.State)]++
	}
	return n
}

func setState(t *testing.T, sp *Spool, id string, st State) {
	t.Helper()
	it, err := sp.readMeta(id)
	if err != nil {
		t.Fatal(err)
	}
	it.State = st
	if err := sp.writeMeta(it); err != nil {
		t.Fatal(err)
	}
}

// The daemon's queue gauges follow its own changes at once without reading
// the spool, and another process's changes from the next List.
func TestStatsFollowChanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var ids []string
	for range 4 {
		ids = append(ids, f.spool(testBody, defaultEnv()))
	}
	check := func(step string, want map[string]int) {
		t.Helper()
		got := f.sp.Stats(time.Now()).ByState
		maps.DeleteFunc(got, func(_ string, n int) bool { return n == 0 })
		if !maps.Equal(got, want) {
			t.Errorf("%s: stats %v, want %v", step, got, want)
		}
	}
	check("first scrape, which lists", map[string]int{"pending": 4})
	if !maps.Equal(onDisk(t, f), map[string]int{"pending": 4}) {
		t.Fatalf("on disk: %v", onDisk(t, f))
	}

	setState(t, f.sp, ids[0], StateDeferred)
	setState(t, f.sp, ids[1], StateHeld)
	check("after a deferral and a hold", map[string]int{"pending": 2, "deferred": 1, "held": 1})
	it, err := f.sp.readMeta(ids[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := f.sp.removeDelivered(it, nil); err != nil {
		t.Fatal(err)
	}
	newID := f.spool(testBody, defaultEnv())
	want := map[string]int{"pending": 2, "deferred": 1, "held": 1}
	check("after a delivery and a new message", want)
	if got := onDisk(t, f); !maps.Equal(got, want) {
		t.Fatalf("on disk %v, want %v", got, want)
	}

	// Another process's change (an admin releasing the held message) is
	// not seen by a scrape alone, which reads nothing...
	if err := f.admin().Release(ids[1]); err != nil {
		t.Fatal(err)
	}
	os.Remove(f.sp.path(newID, msgExt)) // and a body lost behind its back
	check("before the next List", want)
	// ...and is seen once the runner lists (on the admin's kick).
	if _, err := f.sp.List(); err != nil {
		t.Fatal(err)
	}
	want = map[string]int{"pending": 2, "deferred": 1}
	check("after List", want)
	if got := onDisk(t, f); !maps.Equal(got, want) {
		t.Fatalf("on disk %v, want %v", got, want)
	}
}

// Commits, state changes and removals racing with Lists leave the view
// equal to the spool once they stop, with no List after them.
func TestStatsViewUnderConcurrentLists(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stopListing := f.listContinuously(t)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for i := range 40 {
				id := commitTo(t, f.sp)
				switch i % 4 {
				case 0, 1:
					it, err := f.sp.readMeta(id)
					if err != nil {
						t.Error(err)
						return
					}
					if err := f.sp.removeDelivered(it, nil); err != nil {
						t.Error(err)
					}
				case 2:
					setState(t, f.sp, id, []State{StateDeferred, StateHeld, StatePending}[g])
				}
			}
		})
	}
	wg.Wait()
	stopListing()
	got := f.sp.Stats(time.Now()).ByState
	maps.DeleteFunc(got, func(_ string, n int) bool { return n == 0 })
	if want := onDisk(t, f); !maps.Equal(got, want) {
		t.Errorf("stats %v, spool %v", got, want)
	}
	f.sp.mu.Lock()
	defer f.sp.mu.Unlock()
	for id, e := range f.sp.view {
		if e.gone {
			t.Errorf("tombstone for %s left after every List ended", id)
		}
	}
}

// BenchmarkStatsBacklog: one metrics scrape with 5 000 deferred messages.
// Reading every item, as every scrape did before the view: 98 ms (20 µs an
// item) on the 2-core development machine.
func BenchmarkStatsBacklog(b *testing.B) {
	sp := backlog(b, b.TempDir(), 5000)
	if _, err := sp.List(); err != nil { // the runner's first scan
		b.Fatal(err)
	}
	for b.Loop() {
		if st := sp.Stats(time.Now()); st.ByState["deferred"] != 5000 {
			b.Fatalf("stats %v", st.ByState)
		}
	}
}

// What a List read is merged with what changed while it read: a removal
// during the List stays removed, a commit or state change after the List
// read stays, and a List that began before the installed one is dropped.
func TestViewMergesChangesDuringList(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	read := func(ids ...string) []Entry {
		var entries []Entry
		for _, id := range ids {
			entries = append(entries, Entry{ID: id, State: StatePending, ReceivedAt: t0})
		}
		return entries
	}
	view := func() map[string]State {
		f.sp.mu.Lock()
		defer f.sp.mu.Unlock()
		v := map[string]State{}
		for id, e := range f.sp.view {
			if e.gone {
				v[id] = "gone"
			} else {
				v[id] = States[e.state]
			}
		}
		return v
	}

	outer := f.sp.listStart()           // began first, ends last
	f.sp.viewSet("c", StatePending, t0) // committed before the inner List began
	inner := f.sp.listStart()
	f.sp.viewGone("b")                   // removed after both read it
	f.sp.viewSet("a", StateDeferred, t0) // deferred after they read it
	f.sp.listEnd(inner, read("a", "b", "c", "d"), nil)
	want := map[string]State{"a": StateDeferred, "b": "gone", "c": StatePending, "d": StatePending}
	if got := view(); !maps.Equal(got, want) {
		t.Errorf("after the inner List: %v, want %v (b stays a tombstone while the outer List runs)", got, want)
	}
	f.sp.viewGone("d")
	f.sp.listEnd(outer, read("a", "b", "d", "e"), nil) // older than the installed one
	want = map[string]State{"a": StateDeferred, "c": StatePending}
	if got := view(); !maps.Equal(got, want) {
		t.Errorf("after the outer List: %v, want %v", got, want)
	}
}

// Messages delivered and removed while Lists run (as the runner's scans do)
// leave nothing in the gauges: a List may see an item the moment it is
// renamed into the spool, before its commit has finished.
func TestStatsEmptyAfterDeliveriesDuringLists(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Deliverers take each item as it arrives, as the queue's workers do.
	var delivered sync.WaitGroup
	stopDelivering := make(chan struct{})
	for range 4 {
		delivered.Go(func() {
			for {
				select {
				case a := <-f.sp.Arrivals():
					c, err := f.sp.Claim(a.ID)
					if err != nil {
						t.Error(err)
						continue
					}
					if err := c.Delivered(); err != nil {
						t.Error(err)
					}
					c.Close()
				case <-stopDelivering:
					return
				}
			}
		})
	}
	stopListing := f.listContinuously(t)
	const senders, each = 4, 40
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				commitTo(t, f.sp)
			}
		})
	}
	wg.Wait()
	waitFor(t, failsafe, "empty spool", func() bool {
		ids, err := f.sp.ids()
		return err == nil && len(ids) == 0
	})
	close(stopDelivering)
	delivered.Wait()
	stopListing()
	got := f.sp.Stats(time.Now())
	for st, n := range got.ByState {
		if n != 0 {
			t.Errorf("%d %s in the gauges, none in the spool", n, st)
		}
	}
}

// The runner may find, deliver and remove an item between its rename into
// the spool and the end of its Commit; the gauges must not count it after.
func TestStatsItemRemovedBeforeCommitReturns(t *testing.T) {
	t.Parallel()
	h := &hookFS{}
	f := newFixture(t, WithFS(h))
	if _, err := f.sp.List(); err != nil { // the runner's first scan
		t.Fatal(err)
	}
	sp := f.sp
	h.renamed = func(_, to string) {
		id, ok := strings.CutSuffix(filepath.Base(to), msgExt)
		if !ok {
			return
		}
		if _, err := sp.List(); err != nil { // a scan finds it...
			t.Error(err)
		}
		it, err := sp.readMeta(id)
		if err != nil {
			t.Error(err)
			return
		}
		if err := sp.removeDelivered(it, nil); err != nil { // ...and it is delivered
			t.Error(err)
		}
	}
	commitTo(t, f.sp)
	h.renamed = nil
	if got := f.sp.Stats(time.Now()).ByState; got["pending"] != 0 {
		t.Errorf("gauges %v after the only item was delivered", got)
	}
	f.sp.mu.Lock()
	n := len(f.sp.committed)
	f.sp.mu.Unlock()
	if n != 0 {
		t.Errorf("%d remembered envelopes of removed items", n)
	}
}

// An item that quarantine could not move aside is still in the spool, and
// in the gauges.
func TestStatsKeepItemQuarantineCouldNotMove(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.spool(testBody, defaultEnv())
	if _, err := f.sp.List(); err != nil {
		t.Fatal(err)
	}
	qdir := filepath.Join(f.dir, quarantineDir)
	if err := os.RemoveAll(qdir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(qdir, nil, 0o600); err != nil { // renames into it fail
		t.Fatal(err)
	}
	if err := f.sp.quarantine(id, "test"); err == nil {
		t.Fatal("quarantine into a file succeeded")
	}
	if got := f.sp.Stats(time.Now()).ByState; got["pending"] != 1 {
		t.Errorf("gauges %v, want the item still counted", got)
	}
}

// A periodic rescan reads only what the daemon does not know: an item
// another process committed, or one whose arrival was dropped; an item
// another process removed is reported gone; and the items the daemon knows
// are not opened at all, so a backlog of 100 000 costs a directory listing.
// A full rescan (after an admin's kick) reads every item.
func TestRescanReadsOnlyWhatIsNew(t *testing.T) {
	t.Parallel()
	var opened sync.Map // file name -> count
	h := &hookFS{opened: func(name string) {
		n, _ := opened.LoadOrStore(filepath.Base(name), new(int))
		*n.(*int)++
	}}
	f := newFixture(t, WithFS(h))
	var known []string
	for range 5 {
		known = append(known, f.spool(testBody, defaultEnv()))
	}
	adm := f.admin()
	theirs := commitBody(t, adm, testBody, defaultEnv()) // another process's
	if _, err := adm.Drop(known[0], "test", "not wanted"); err != nil {
		t.Fatal(err)
	}
	opened.Clear()
	l, err := f.sp.Rescan(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 1 || l.Entries[0].ID != theirs || l.Entries[0].State != StatePending {
		t.Errorf("entries %+v, want only %s", l.Entries, theirs)
	}
	if !slices.Equal(l.Gone, known[:1]) || len(l.Unreadable) != 0 {
		t.Errorf("gone %v, unreadable %v; want gone %v", l.Gone, l.Unreadable, known[:1])
	}
	for _, id := range known[1:] {
		if _, ok := opened.Load(id + msgExt); ok {
			t.Errorf("the rescan opened %s, which the daemon knows", id)
		}
	}
	if got := f.sp.Stats(time.Now()).ByState["pending"]; got != 5 {
		t.Errorf("%d pending in the gauges, want 5", got)
	}
	// Known now: the next rescan reads nothing.
	opened.Clear()
	if l, err := f.sp.Rescan(false); err != nil || len(l.Entries)+len(l.Gone)+len(l.Unreadable) != 0 {
		t.Errorf("second rescan: %+v, %v", l, err)
	}
	n := 0
	opened.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("second rescan opened %d files", n)
	}
	l, err = f.sp.Rescan(true)
	if err != nil || len(l.Entries) != 5 || l.Gone != nil {
		t.Errorf("full rescan: %d entries, gone %v, %v", len(l.Entries), l.Gone, err)
	}
}

// A commit never waits for the reader of Arrivals; an arrival it drops is
// handed to the runner by the next rescan, which reads that item although
// the daemon committed it itself.
func TestDroppedArrivalsRescanned(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for range arrivalsBuffer {
		f.spool(testBody, defaultEnv())
	}
	if f.sp.Dropped() {
		t.Fatal("Dropped with the buffer just full")
	}
	id := f.spool(testBody, defaultEnv())
	if !f.sp.Dropped() {
		t.Fatal("the dropped arrival not reported")
	}
	l, err := f.sp.Rescan(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 1 || l.Entries[0].ID != id {
		t.Errorf("rescan read %+v, want the dropped arrival %s", l.Entries, id)
	}
	if f.sp.Dropped() {
		t.Error("still reported after a rescan handed it over")
	}
}
