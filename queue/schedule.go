// SPDX-License-Identifier: MIT

package queue

import (
	"container/heap"
	"time"
)

// schedule is the runner's view of what to deliver when: every item in the
// spool that is not held, with its next attempt, and whether a worker has it.
// Waiting items are kept in a heap by due time, one heap for the tenant's
// mail and one for what goes to senders' servers (DSNs and returned
// bounces), so that taking the next due item of either and finding the
// next wake-up cost O(log n) however long the queue grows during an
// outage; a scan of the whole map per event would make a backlog of 100 000
// deferred messages cost seconds of CPU per second. The two heaps are
// served by workers of their own: a sender's server that never answers
// holds up only other DSNs, never the tenant's mail.
//
// While the tenant is suspended, its due entries are parked instead: taken
// out of the heap once, without a claim, a file read or a write, and put
// back together when the tenant is back. An outage of 100 000 messages then
// costs each message one heap operation, not one per retry round. A parked
// message that was never judged (its arrival verdict not yet taken) waits
// in toJudge too, for a worker to take the verdict while it is fresh.
type schedule struct {
	byID    map[string]*entry
	waiting [2]entryHeap // by kind: entries neither running nor parked
	parked  []parkRef    // in the order they were parked; stale ones are skipped
	toJudge []parkRef    // parked and never judged, in the order they were parked
	nParked int
	seq     uint64 // numbers parkings, so that a stale reference is known
}

// kind says where an entry's item goes, and so which heap and which
// workers it belongs to.
type kind int

const (
	forTenant kind = iota
	forSender      // a DSN or a returned bounce, to the sender's MX
)

type entry struct {
	id      string
	due     time.Time
	running bool
	parked  bool
	// other: the item goes elsewhere than the tenant (a DSN, a returned
	// bounce) and is not parked while the tenant is suspended.
	other bool
	// judged: the item's arrival verdict is kept with it, or there is none
	// to take (nothing to do before delivery).
	judged bool
	index  int    // in its heap; -1 while running or parked
	seq    uint64 // of its current parking
}

func (e *entry) kind() kind {
	if e.other {
		return forSender
	}
	return forTenant
}

// parkRef is a place in parked or toJudge: it stands while the entry is
// still parked by the parking that made it.
type parkRef struct {
	e   *entry
	seq uint64
}

func (s *schedule) live(r parkRef) bool {
	return r.e.parked && r.e.seq == r.seq && s.byID[r.e.id] == r.e
}

func newSchedule() *schedule { return &schedule{byID: map[string]*entry{}} }

func (s *schedule) get(id string) *entry { return s.byID[id] }

func (s *schedule) len() int { return len(s.byID) }

// set makes id due at at: a new entry (for the tenant, unjudged), or a new
// time for a waiting one. A running entry is left alone; its worker's
// outcome decides what comes next.
func (s *schedule) set(id string, at time.Time) {
	e := s.byID[id]
	switch {
	case e == nil:
		e = &entry{id: id, due: at}
		s.byID[id] = e
		heap.Push(&s.waiting[forTenant], e)
	case e.parked:
		e.due = at // stays parked until the target is back
	case !e.running:
		e.due = at
		heap.Fix(&s.waiting[e.kind()], e.index)
	}
}

// setOther records that id goes elsewhere than the tenant: a waiting entry
// moves to the other heap, a parked one goes back to it.
func (s *schedule) setOther(id string) {
	e := s.byID[id]
	if e == nil || e.other {
		return
	}
	switch {
	case e.parked:
		e.parked = false
		s.nParked--
	case !e.running:
		heap.Remove(&s.waiting[forTenant], e.index)
	}
	e.other, e.judged = true, true
	if !e.running {
		heap.Push(&s.waiting[forSender], e)
	}
}

// setJudged records that id's arrival verdict is kept with it.
func (s *schedule) setJudged(id string) {
	if e := s.byID[id]; e != nil {
		e.judged = true
	}
}

// parkDue parks every due entry for the tenant, which is suspended.
func (s *schedule) parkDue(now time.Time) {
	h := &s.waiting[forTenant]
	for len(*h) > 0 && !(*h)[0].due.After(now) {
		s.parkEntry(heap.Pop(h).(*entry))
	}
}

func (s *schedule) parkEntry(e *entry) {
	s.seq++
	e.parked, e.seq = true, s.seq
	s.nParked++
	s.parked = append(s.parked, parkRef{e, s.seq})
	if !e.judged {
		s.toJudge = append(s.toJudge, parkRef{e, s.seq})
	}
}

// unpark takes a parked entry out to run.
func (s *schedule) unpark(e *entry) {
	e.parked = false
	s.nParked--
	e.running = true
}

// takeProbe returns the youngest parked entry (the last to arrive, by id:
// ids sort by arrival), marking it running, for the probe of the suspended
// tenant. The youngest, because a failed probe counts as an attempt, and a
// message whose time has run out is given up after one: a long outage
// should not give up one old message per failed probe. It also drops the
// stale references parked has gathered.
func (s *schedule) takeProbe() (string, bool) {
	var best *entry
	kept := s.parked[:0]
	for _, r := range s.parked {
		if !s.live(r) {
			continue
		}
		kept = append(kept, r)
		if best == nil || r.e.id > best.id {
			best = r.e
		}
	}
	clear(s.parked[len(kept):])
	s.parked = kept
	if best == nil {
		return "", false
	}
	s.unpark(best)
	return best.id, true
}

// takeUnjudged returns the parked entry that waited longest for its
// verdict, marking it running.
func (s *schedule) takeUnjudged() (string, bool) {
	for len(s.toJudge) > 0 {
		r := s.toJudge[0]
		s.toJudge[0] = parkRef{}
		s.toJudge = s.toJudge[1:]
		if s.live(r) && !r.e.judged {
			s.unpark(r.e)
			return r.e.id, true
		}
	}
	s.toJudge = nil
	return "", false
}

// park parks a running entry whose attempt found the target suspended.
func (s *schedule) park(id string) {
	e := s.byID[id]
	if e == nil || !e.running || e.other {
		return
	}
	e.running = false
	s.parkEntry(e)
}

// release puts every parked entry back in the tenant's heap, at its own
// due time: the oldest go first.
func (s *schedule) release() {
	for _, r := range s.parked {
		if s.live(r) {
			r.e.parked = false
			heap.Push(&s.waiting[forTenant], r.e)
		}
	}
	s.parked, s.toJudge, s.nParked = nil, nil, 0
}

// remove forgets id, running or not.
func (s *schedule) remove(id string) {
	e := s.byID[id]
	if e == nil {
		return
	}
	switch {
	case e.parked:
		e.parked = false // its places in parked and toJudge are skipped
		s.nParked--
	case !e.running:
		heap.Remove(&s.waiting[e.kind()], e.index)
	}
	delete(s.byID, id)
}

// takeDue returns the waiting entry of kind k due earliest, if it is due
// by now, and marks it running.
func (s *schedule) takeDue(now time.Time, k kind) (string, bool) {
	h := &s.waiting[k]
	if len(*h) == 0 || (*h)[0].due.After(now) {
		return "", false
	}
	e := heap.Pop(h).(*entry)
	e.running = true
	return e.id, true
}

// done ends a run of id: it waits again until next, or leaves the schedule.
func (s *schedule) done(id string, keep bool, next time.Time) {
	e := s.byID[id]
	if e == nil || !e.running {
		// Not ours (an admin scan replaced it meanwhile): start afresh.
		if keep {
			other := e != nil && e.other
			s.remove(id)
			s.set(id, next)
			if other {
				s.setOther(id)
			}
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
	heap.Push(&s.waiting[e.kind()], e)
}

// nextDue is when the earliest waiting entry of kind k is due.
func (s *schedule) nextDue(k kind) (time.Time, bool) {
	if len(s.waiting[k]) == 0 {
		return time.Time{}, false
	}
	return s.waiting[k][0].due, true
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
