// SPDX-License-Identifier: MIT

package queue

import (
	"container/heap"
	"time"
)

// schedule is the runner's view of what to deliver when: every item in the
// spool that is not held, with its next attempt, and whether a worker has it.
// Waiting items are also kept in a heap by due time, so that taking the next
// due item and finding the next wake-up cost O(log n) however long the queue
// grows during an outage; a scan of the whole map per event would make a
// backlog of 100 000 deferred messages cost seconds of CPU per second.
//
// While the target is suspended, due entries are parked instead: taken out
// of the heap once, without a claim, a file read or a write, and put back
// together when the target is back. An outage of 100 000 messages then costs
// each message one heap operation, not one per retry round.
type schedule struct {
	byID    map[string]*entry
	waiting entryHeap // entries neither running nor parked
	parked  []*entry  // in the order they were parked; stale ones are skipped
	nParked int
}

type entry struct {
	id      string
	due     time.Time
	running bool
	parked  bool
	// other: the item goes elsewhere than the tenant (a DSN, a returned
	// bounce) and is not parked while the tenant is suspended.
	other bool
	index int // in waiting; -1 while running or parked
}

func newSchedule() *schedule { return &schedule{byID: map[string]*entry{}} }

func (s *schedule) get(id string) *entry { return s.byID[id] }

func (s *schedule) len() int { return len(s.byID) }

// set makes id due at at: a new entry, or a new time for a waiting one. A
// running entry is left alone; its worker's outcome decides what comes next.
func (s *schedule) set(id string, at time.Time) {
	e := s.byID[id]
	switch {
	case e == nil:
		e = &entry{id: id, due: at}
		s.byID[id] = e
		heap.Push(&s.waiting, e)
	case e.parked:
		e.due = at // stays parked until the target is back
	case !e.running:
		e.due = at
		heap.Fix(&s.waiting, e.index)
	}
}

// setOther records that id goes elsewhere than the tenant; a parked entry
// goes back to the heap.
func (s *schedule) setOther(id string) {
	e := s.byID[id]
	if e == nil || e.other {
		return
	}
	e.other = true
	if e.parked {
		e.parked = false
		s.nParked--
		heap.Push(&s.waiting, e)
	}
}

// takeDueParking is takeDue while the tenant is suspended: every due entry
// for the tenant is parked on the way, and the first due entry for
// elsewhere is returned.
func (s *schedule) takeDueParking(now time.Time) (string, bool) {
	for len(s.waiting) > 0 && !s.waiting[0].due.After(now) {
		e := heap.Pop(&s.waiting).(*entry)
		if e.other {
			e.running = true
			return e.id, true
		}
		e.parked = true
		s.nParked++
		s.parked = append(s.parked, e)
	}
	return "", false
}

// takeParked returns the entry parked first (the probe of a suspended
// target), marking it running.
func (s *schedule) takeParked() (string, bool) {
	for len(s.parked) > 0 {
		e := s.parked[0]
		s.parked[0] = nil
		s.parked = s.parked[1:]
		if e.parked && s.byID[e.id] == e {
			e.parked = false
			s.nParked--
			e.running = true
			return e.id, true
		}
	}
	return "", false
}

// park parks a running entry whose attempt found the target suspended.
func (s *schedule) park(id string) {
	e := s.byID[id]
	if e == nil || !e.running {
		return
	}
	e.running = false
	e.parked = true
	s.nParked++
	s.parked = append(s.parked, e)
}

// release puts every parked entry back in the heap, at its own due time:
// the oldest go first.
func (s *schedule) release() {
	for _, e := range s.parked {
		if e.parked && s.byID[e.id] == e {
			e.parked = false
			heap.Push(&s.waiting, e)
		}
	}
	s.parked, s.nParked = nil, 0
}

// remove forgets id, running or not.
func (s *schedule) remove(id string) {
	e := s.byID[id]
	if e == nil {
		return
	}
	switch {
	case e.parked:
		e.parked = false // its place in parked is skipped
		s.nParked--
	case !e.running:
		heap.Remove(&s.waiting, e.index)
	}
	delete(s.byID, id)
}

// takeDue returns the waiting entry due earliest, if it is due by now, and
// marks it running.
func (s *schedule) takeDue(now time.Time) (string, bool) {
	if len(s.waiting) == 0 || s.waiting[0].due.After(now) {
		return "", false
	}
	e := heap.Pop(&s.waiting).(*entry)
	e.running = true
	return e.id, true
}

// done ends a run of id: it waits again until next, or leaves the schedule.
func (s *schedule) done(id string, keep bool, next time.Time) {
	e := s.byID[id]
	if e == nil || !e.running {
		// Not ours (an admin scan replaced it meanwhile): start afresh.
		if keep {
			s.remove(id)
			s.set(id, next)
		} else {
			s.remove(id)
		}
		return
	}
	if !keep {
		delete(s.byID, id)
		return
	}
	e.running = false
	e.due = next
	heap.Push(&s.waiting, e)
}

// nextDue is when the earliest waiting entry is due.
func (s *schedule) nextDue() (time.Time, bool) {
	if len(s.waiting) == 0 {
		return time.Time{}, false
	}
	return s.waiting[0].due, true
}

// entryHeap orders waiting entries by due time, then id (ids sort by
// arrival), so that among equally due messages the oldest goes first.
type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].id < h[j].id
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
