// SPDX-License-Identifier: MIT

package spool

import (
	"time"

	"github.com/dualmx/dualmx/metrics"
)

// The daemon keeps each spooled item's state and arrival time in memory, so
// that a metrics scrape need not read every item: that costs about 20 µs an
// item (BenchmarkStatsBacklog), 2 s a scrape for a backlog of 100 000 after
// an outage at the tenant, just when an admin watches the queue.
//
// The view follows this process's own changes as they happen (commit, state
// change, removal, quarantine) and is replaced by every List, which reads
// every item anyway: the runner lists at start, on an admin command's kick
// and once a minute, so another process's changes show within a poll. A List
// reads the directory over time while this process goes on changing it;
// changes made since the List began are applied on top of what it read, and
// removals during a List are kept as tombstones until it finishes.

type viewEntry struct {
	state    State
	received time.Time
	seq      uint64 // when this process last changed the entry
	gone     bool   // removed while a List was in flight
}

// viewSet records an item's state in the daemon's view.
func (s *Spool) viewSet(id string, state State, received time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.daemon == nil {
		return
	}
	s.viewSetLocked(id, state, received)
}

func (s *Spool) viewSetLocked(id string, state State, received time.Time) {
	s.viewSeq++
	s.view[id] = viewEntry{state: state, received: received, seq: s.viewSeq}
}

// viewGone records that an item left the spool, and drops its remembered
// envelope: one lock for both, per delivered message.
func (s *Spool) viewGone(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.committed, id)
	if s.daemon == nil {
		return
	}
	s.viewSeq++
	if s.listing == 0 {
		delete(s.view, id)
		return
	}
	s.view[id] = viewEntry{gone: true, seq: s.viewSeq}
}

// listStart marks a List in flight and returns the change count it starts
// from; each List gets its own, so that of two Lists the one that began
// later wins.
func (s *Spool) listStart() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing++
	s.viewSeq++
	return s.viewSeq
}

// listEnd installs what a List read (items is nil when it failed), with the
// changes made since it started applied on top. An item that is there but
// could not be read this time (unreadable) keeps what the view knew of it.
// A List that started before the installed one is too old to install.
func (s *Spool) listEnd(start uint64, items []Item, unreadable []string) {
	var nv map[string]viewEntry
	if items != nil {
		// Built before taking the lock that commits and deliveries share.
		nv = make(map[string]viewEntry, len(items))
		for _, it := range items {
			nv[it.ID] = viewEntry{state: it.State, received: it.ReceivedAt}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing--
	if nv == nil || s.daemon == nil || (s.viewReady && start < s.viewFrom) {
		if s.listing == 0 {
			s.dropTombstones()
		}
		return
	}
	for _, id := range unreadable {
		if e, ok := s.view[id]; ok && !e.gone {
			nv[id] = e
		}
	}
	for id, e := range s.view {
		if e.seq <= start {
			continue
		}
		if e.gone {
			delete(nv, id)
			if s.listing > 0 {
				nv[id] = e // another List still needs it
			}
			continue
		}
		nv[id] = e
	}
	s.view, s.viewFrom, s.viewReady = nv, start, true
	if s.listing == 0 {
		s.dropTombstones()
	}
}

func (s *Spool) dropTombstones() {
	for id, e := range s.view {
		if e.gone {
			delete(s.view, id)
		}
	}
}

// Stats counts the items by state and finds the oldest. In the daemon it
// answers from the view once a List has filled it; elsewhere it lists.
func (s *Spool) Stats(now time.Time) metrics.QueueStats {
	st := metrics.QueueStats{ByState: map[string]int{}}
	add := func(state State, received time.Time) {
		st.ByState[string(state)]++
		if age := now.Sub(received).Seconds(); age > st.OldestAgeSeconds {
			st.OldestAgeSeconds = age
		}
	}
	s.mu.Lock()
	if s.viewReady {
		for _, e := range s.view {
			if !e.gone {
				add(e.state, e.received)
			}
		}
		s.mu.Unlock()
		return st
	}
	s.mu.Unlock()
	items, err := s.List()
	if err != nil {
		return st
	}
	for _, it := range items {
		add(it.State, it.ReceivedAt)
	}
	return st
}
