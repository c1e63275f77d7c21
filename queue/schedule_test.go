// SPDX-License-Identifier: MIT

package queue

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	type step struct {
		op   string // set, other, remove, take, takeother, done, donekeep, park (due), probe, judge, release, parkrun, judged
		id   string
		when int // seconds after t0: due time for set/donekeep, "now" for take
		want string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"earliest due first, then oldest id", []step{
			{op: "set", id: "b", when: 5}, {op: "set", id: "c", when: 1}, {op: "set", id: "a", when: 5},
			{op: "take", when: 0, want: ""},
			{op: "take", when: 10, want: "c"}, {op: "take", when: 10, want: "a"}, {op: "take", when: 10, want: "b"},
			{op: "take", when: 10, want: ""},
		}},
		{"a running item is not handed out twice and keeps its place", []step{
			{op: "set", id: "a", when: 0}, {op: "take", when: 0, want: "a"},
			{op: "set", id: "a", when: 0}, // a notify while running changes nothing
			{op: "take", when: 100, want: ""},
			{op: "donekeep", id: "a", when: 30},
			{op: "take", when: 29, want: ""}, {op: "take", when: 30, want: "a"},
		}},
		{"rescheduling moves an item", []step{
			{op: "set", id: "a", when: 50}, {op: "set", id: "b", when: 60}, {op: "set", id: "b", when: 10},
			{op: "take", when: 20, want: "b"}, {op: "take", when: 20, want: ""},
		}},
		{"done without keep forgets", []step{
			{op: "set", id: "a", when: 0}, {op: "take", when: 0, want: "a"}, {op: "done", id: "a"},
			{op: "take", when: 100, want: ""},
		}},
		{"removed while running, then its outcome comes back", []step{
			{op: "set", id: "a", when: 0}, {op: "take", when: 0, want: "a"}, {op: "remove", id: "a"},
			{op: "donekeep", id: "a", when: 5}, {op: "take", when: 5, want: "a"},
		}},
		{"remove a waiting item from the middle", []step{
			{op: "set", id: "a", when: 1}, {op: "set", id: "b", when: 2}, {op: "set", id: "c", when: 3},
			{op: "remove", id: "b"},
			{op: "take", when: 9, want: "a"}, {op: "take", when: 9, want: "c"}, {op: "take", when: 9, want: ""},
		}},
		{"DSNs wait apart from the tenant's mail", []step{
			{op: "set", id: "a", when: 1}, {op: "set", id: "b", when: 2}, {op: "other", id: "a"},
			{op: "take", when: 9, want: "b"}, {op: "take", when: 9, want: ""},
			{op: "takeother", when: 9, want: "a"}, {op: "takeother", when: 9, want: ""},
		}},
		{"the probe is the youngest parked message, not the first parked", []step{
			{op: "set", id: "2", when: 1}, {op: "set", id: "3", when: 2}, {op: "set", id: "1", when: 3},
			{op: "judged", id: "1"}, {op: "judged", id: "2"}, {op: "judged", id: "3"},
			{op: "park", when: 9},
			{op: "probe", want: "3"}, {op: "probe", want: "2"},
			{op: "donekeep", id: "3", when: 20}, {op: "park", when: 30}, {op: "take", when: 30, want: ""},
			{op: "release"}, {op: "take", when: 30, want: "1"}, {op: "take", when: 30, want: "3"}, {op: "take", when: 30, want: ""},
		}},
		{"a never judged message is handed out once to be judged, then parked again", []step{
			{op: "set", id: "a", when: 1}, {op: "set", id: "b", when: 1}, {op: "judged", id: "b"},
			{op: "park", when: 1},
			{op: "judge", want: "a"}, {op: "judge", want: ""},
			{op: "parkrun", id: "a"}, {op: "judge", want: ""},
			{op: "probe", want: "b"}, {op: "probe", want: "a"}, {op: "probe", want: ""},
		}},
		{"a removed parked message is neither judged nor tried, and a DSN is never parked", []step{
			{op: "set", id: "a", when: 1}, {op: "set", id: "b", when: 1}, {op: "set", id: "c", when: 1}, {op: "other", id: "c"},
			{op: "park", when: 1}, {op: "remove", id: "a"},
			{op: "judge", want: "b"}, {op: "judge", want: ""}, {op: "probe", want: ""},
			{op: "takeother", when: 1, want: "c"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSchedule()
			for i, st := range tc.steps {
				switch st.op {
				case "set":
					s.set(st.id, at(st.when))
				case "remove":
					s.remove(st.id)
				case "done":
					s.done(st.id, false, time.Time{})
				case "donekeep":
					s.done(st.id, true, at(st.when))
				case "other":
					s.setOther(st.id)
				case "judged":
					s.setJudged(st.id)
				case "park":
					s.parkDue(at(st.when))
				case "parkrun":
					s.setJudged(st.id)
					s.park(st.id)
				case "release":
					s.release()
				case "take", "takeother", "probe", "judge":
					var got string
					var ok bool
					switch st.op {
					case "take":
						got, ok = s.takeDue(at(st.when), forTenant)
					case "takeother":
						got, ok = s.takeDue(at(st.when), forSender)
					case "probe":
						got, ok = s.takeProbe()
					case "judge":
						got, ok = s.takeUnjudged()
					}
					if got != st.want || ok != (st.want != "") {
						t.Fatalf("step %d: %s (%d s) = %q, %v; want %q", i, st.op, st.when, got, ok, st.want)
					}
				}
				checkHeap(t, s)
			}
		})
	}
}

// checkHeap: every waiting entry is in its kind's heap at its index, in
// heap order; every running or parked one is out of them; nParked counts
// the parked ones, each parked once.
func checkHeap(t *testing.T, s *schedule) {
	t.Helper()
	var n [2]int
	parked := 0
	for id, e := range s.byID {
		if e.id != id {
			t.Fatalf("entry %q filed under %q", e.id, id)
		}
		if e.running || e.parked {
			if e.index != -1 {
				t.Fatalf("running or parked %q has heap index %d", id, e.index)
			}
			if e.parked {
				parked++
				if e.other {
					t.Fatalf("%q goes to a sender and is parked", id)
				}
			}
			continue
		}
		h := s.waiting[e.kind()]
		n[e.kind()]++
		if e.index < 0 || e.index >= len(h) || h[e.index] != e {
			t.Fatalf("waiting %q not at its index %d", id, e.index)
		}
	}
	if parked != s.nParked {
		t.Fatalf("%d parked, nParked %d", parked, s.nParked)
	}
	live := map[*entry]bool{}
	for _, r := range s.parked {
		if s.live(r) {
			if live[r.e] {
				t.Fatalf("%q parked twice", r.e.id)
			}
			live[r.e] = true
		}
	}
	if len(live) != parked {
		t.Fatalf("%d parked entries, %d in the parked list", parked, len(live))
	}
	for k, h := range s.waiting {
		if n[k] != len(h) {
			t.Fatalf("%d waiting entries of kind %d, heap holds %d", n[k], k, len(h))
		}
		for i := 1; i < len(h); i++ {
			if h.Less(i, (i-1)/2) {
				t.Fatalf("heap order broken at %d", i)
			}
		}
	}
}

// TestScheduleRandomised drives the schedule and a plain map model with the
// same random operations; both must hand out the same items.
func TestScheduleRandomised(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := newSchedule()
	type m struct {
		due     time.Time
		running bool
	}
	model := map[string]*m{}
	for step := 0; step < 20000; step++ {
		id := fmt.Sprintf("%03d", r.IntN(200))
		when := t0.Add(time.Duration(r.IntN(100)) * time.Second)
		switch r.IntN(5) {
		case 0, 1:
			s.set(id, when)
			if e := model[id]; e == nil {
				model[id] = &m{due: when}
			} else if !e.running {
				e.due = when
			}
		case 2:
			s.remove(id)
			delete(model, id)
		case 3:
			var want []string
			for k, e := range model {
				if !e.running && !e.due.After(when) {
					want = append(want, k)
				}
			}
			slices.SortFunc(want, func(a, b string) int {
				if c := model[a].due.Compare(model[b].due); c != 0 {
					return c
				}
				return strings.Compare(a, b)
			})
			got, ok := s.takeDue(when, forTenant)
			if len(want) == 0 {
				if ok {
					t.Fatalf("step %d: took %q, nothing due", step, got)
				}
				continue
			}
			if got != want[0] {
				t.Fatalf("step %d: took %q, want %q", step, got, want[0])
			}
			model[got].running = true
		case 4:
			if e := model[id]; e != nil && e.running {
				keep := r.IntN(2) == 0
				s.done(id, keep, when)
				if keep {
					model[id] = &m{due: when}
				} else {
					delete(model, id)
				}
			}
		}
	}
	checkHeap(t, s)
	if s.len() != len(model) {
		t.Fatalf("schedule holds %d, model %d", s.len(), len(model))
	}
}

// BenchmarkScheduleBacklog: one attempt's bookkeeping (take the due item,
// put it back deferred) with 100 000 deferred messages waiting, as after a
// long outage at the tenant, all of them due. The scheduler before the heap
// scanned and sorted the whole schedule per event: 42 ms per event on the
// 2-core development machine, so a backlog drained at a few dozen messages
// a second. The heap: about 0.3 µs.
func BenchmarkScheduleBacklog(b *testing.B) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := newSchedule()
	for i := range 100000 {
		s.set(fmt.Sprintf("%08d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	now := t0.Add(time.Hour)
	i := 0
	for b.Loop() {
		id, ok := s.takeDue(now, forTenant)
		if !ok {
			b.Fatal("nothing due")
		}
		i++
		s.done(id, true, t0.Add(time.Duration(i)*time.Microsecond))
	}
}
