// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"slices"
	"time"

	"github.com/dualmx/dualmx/metrics"
)

// The daemon keeps each spooled item's state and arrival time in memory, so
// that a metrics scrape need not read every item: that costs about 20 µs an
// item (BenchmarkStatsBacklog), 2 s a scrape for a backlog of 100 000 after
// an outage at the tenant, just when an admin watches the queue. An entry is
// 24 bytes and its id, which the runner's schedule shares: a backlog of
// 100 000 costs a few MiB here (queue's BenchmarkBacklogMemory).
//
// The view follows this process's own changes as they happen (commit, state
// change, removal, quarantine), is filled by Recover at start, and is
// brought in line with the spool by the runner's rescans: a full one
// (after an admin command's kick) replaces it with what it read, and the
// periodic one adds the items it had not seen and drops those no longer
// there, so that another process's changes show within a poll. A rescan
// reads the directory over time while this process goes on changing it;
// changes made since it began are applied on top of what it read, and
// removals during a rescan are kept as tombstones until it finishes.

type viewEntry struct {
	received int64  // arrival, Unix nanoseconds
	seq      uint64 // when this process last changed the entry
	state    uint8  // index in States
	gone     bool   // removed while a rescan was in flight
	// recheck: the scheduler dropped the item although it may still be
	// there (Recheck); the next partial rescan reads it again.
	recheck bool
}

func stateIndex(st State) uint8 {
	if i := slices.Index(States, st); i >= 0 {
		return uint8(i)
	}
	return 0
}

func newViewEntry(state State, received time.Time, seq uint64) viewEntry {
	return viewEntry{received: received.UnixNano(), seq: seq, state: stateIndex(state)}
}

// Entry is what the daemon's scheduler needs of an item: where it stands
// and where it goes, without its envelope.
type Entry struct {
	ID          string
	State       State
	NextAttempt time.Time
	ReceivedAt  time.Time
	// DSN: the item goes to the sender's server (Item.DSN), not to the
	// tenant.
	DSN bool
	// Judged: the item's arrival verdict is kept with it (Item.Prepend).
	Judged bool
}

func (it *Item) entry() Entry {
	return Entry{ID: it.ID, State: it.State, NextAttempt: it.NextAttempt, ReceivedAt: it.ReceivedAt,
		DSN: it.DSN, Judged: it.Prepend != ""}
}

// Listing is what a rescan found.
type Listing struct {
	// Entries are the items read: every item (a full rescan), or those
	// the daemon did not know or whose arrival was dropped.
	Entries []Entry
	// Unreadable are there but could not be read: an attempt on one
	// quarantines it if it is damaged, rather than leaving it unseen until
	// a restart.
	Unreadable []string
	// Gone (not in a full rescan) are items the daemon knew that are no
	// longer there: removed by another process, or quarantined.
	Gone []string
}

// Rescan brings the daemon's view of its items in line with the spool, for
// its scheduler. A full rescan reads every item, as after an admin command
// changed the spool; otherwise only the items the daemon does not know
// (committed by another process) or whose arrival it dropped are read, and
// those no longer there are reported gone: a directory listing and nothing
// more for a backlog of 100 000 the daemon already knows. The daemon's
// rescans also tidy: files kept for reuse that have not been used for a
// while are removed.
func (s *Spool) Rescan(full bool) (Listing, error) {
	s.trimFree(freeMaxIdle)
	start := s.listStart()
	ids, err := s.ids()
	if err != nil {
		s.listEnd(start, nil, nil)
		return Listing{}, err
	}
	s.pruneCommitted(ids)
	var l Listing
	var read []string // the ids to read
	if full {
		l.Entries = make([]Entry, 0, len(ids))
		read = ids
	} else {
		read, l.Gone = s.unknown(ids, start)
	}
	for _, id := range read {
		it, err := s.readMeta(id)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				s.log.Warn("spool: unreadable item", "id", id, "err", err)
				l.Unreadable = append(l.Unreadable, id)
			}
			continue
		}
		l.Entries = append(l.Entries, it.entry())
	}
	if full {
		s.listEnd(start, l.Entries, l.Unreadable)
		return l, nil
	}
	s.rescanEnd(start, l.Entries, l.Gone)
	return l, nil
}

// unknown returns, of ids (sorted), those the view does not know as they
// were when the rescan began, or whose arrival was dropped; and the items
// the view knew then that are not in ids.
func (s *Spool) unknown(ids []string, start uint64) (read, gone []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped := s.dropped
	s.dropped = nil
	slices.Sort(dropped)
	for _, id := range ids {
		e, ok := s.view[id]
		if _, d := slices.BinarySearch(dropped, id); !ok || e.gone || e.recheck || e.seq > start || d {
			read = append(read, id)
		}
	}
	if len(s.view) > len(ids)-len(read) {
		// Something the view knows is not there.
		for id, e := range s.view {
			if _, there := slices.BinarySearch(ids, id); !there && !e.gone && e.seq <= start {
				gone = append(gone, id)
			}
		}
		slices.Sort(gone)
	}
	return read, gone
}

// Recheck tells the daemon's view that its scheduler dropped id although
// the item may still be in the spool (an attempt found it damaged and
// could not quarantine it): the next partial Rescan reads it again and
// hands it back, rather than skipping it as known until a restart.
func (s *Spool) Recheck(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.view[id]; ok && !e.gone && s.daemon != nil {
		// A later change, so that a rescan already under way, which may
		// have read the item before, leaves the mark for the next one.
		s.viewSeq++
		e.seq, e.recheck = s.viewSeq, true
		s.view[id] = e
	}
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
	s.view[id] = newViewEntry(state, received, s.viewSeq)
}

// viewAdd records items read by Recover, unless this process changed them
// meanwhile.
func (s *Spool) viewAdd(entries []Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.daemon == nil {
		return
	}
	for _, e := range entries {
		if _, ok := s.view[e.ID]; !ok {
			s.viewSeq++
			s.view[e.ID] = newViewEntry(e.State, e.ReceivedAt, s.viewSeq)
		}
	}
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

// listStart marks a rescan in flight and returns the change count it starts
// from; each rescan gets its own, so that of two full rescans the one that
// began later wins.
func (s *Spool) listStart() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing++
	s.viewSeq++
	return s.viewSeq
}

// listEnd installs what a full rescan read (entries is nil when it failed),
// with the changes made since it started applied on top. An item that is
// there but could not be read this time (unreadable) keeps what the view
// knew of it. A rescan that started before the installed one is too old
// to install.
func (s *Spool) listEnd(start uint64, entries []Entry, unreadable []string) {
	var nv map[string]viewEntry
	if entries != nil {
		// Built before taking the lock that commits and deliveries share.
		nv = make(map[string]viewEntry, len(entries))
		for _, e := range entries {
			nv[e.ID] = newViewEntry(e.State, e.ReceivedAt, 0)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing--
	if nv == nil || s.daemon == nil || start < s.viewFrom {
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
				nv[id] = e // another rescan still needs it
			}
			continue
		}
		nv[id] = e
	}
	s.view, s.viewFrom = nv, start
	if s.listing == 0 {
		s.dropTombstones()
	}
}

// rescanEnd applies what a partial rescan found: the items it read that
// this process has not changed since it began, and the removal of those
// gone that it has not changed since either.
func (s *Spool) rescanEnd(start uint64, added []Entry, gone []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing--
	if s.daemon != nil {
		for _, e := range added {
			if v, ok := s.view[e.ID]; !ok || v.seq <= start {
				s.view[e.ID] = newViewEntry(e.State, e.ReceivedAt, 0)
			}
		}
		for _, id := range gone {
			if v, ok := s.view[id]; ok && !v.gone && v.seq <= start {
				s.viewSeq++
				s.view[id] = viewEntry{gone: true, seq: s.viewSeq}
			}
		}
	}
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

// Stats counts the items by state and finds the oldest. The daemon answers
// from its view (while Recover reads the spool at start, from what it has
// read so far); another process lists.
func (s *Spool) Stats(now time.Time) metrics.QueueStats {
	st := metrics.QueueStats{ByState: map[string]int{}}
	add := func(state State, received time.Time) {
		st.ByState[string(state)]++
		if age := now.Sub(received).Seconds(); age > st.OldestAgeSeconds {
			st.OldestAgeSeconds = age
		}
	}
	s.mu.Lock()
	if s.daemon != nil {
		n := make([]int, len(States))
		oldest := int64(0)
		for _, e := range s.view {
			if e.gone {
				continue
			}
			n[e.state]++
			if oldest == 0 || e.received < oldest {
				oldest = e.received
			}
		}
		s.mu.Unlock()
		for i, c := range n {
			if c > 0 {
				st.ByState[string(States[i])] = c
			}
		}
		if age := now.Sub(time.Unix(0, oldest)).Seconds(); oldest != 0 && age > 0 {
			st.OldestAgeSeconds = age
		}
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
