// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Recovery brings the spool to a state the runner can trust, in two parts.
// Open does what must come before the daemon takes mail: from one listing
// of the directory it removes the temp files a crash left (under the
// daemon lock every temp file is one, and a new message's temp file comes
// after the listing) and quarantines records whose message is gone. Reading
// every item, which takes seconds for a backlog of 100 000, is Recover's,
// while the daemon already accepts mail: new messages get new ids, and
// Recover only hands the scheduler what it finds. Anything that cannot be
// read is moved aside, never deleted: it may be somebody's mail, and an
// admin decides.
func (s *Spool) recover() error {
	names, err := readDirNames(s.dir)
	if err != nil {
		return fmt.Errorf("spool %s: recovery: %w", s.dir, err)
	}
	var bodies, metas []string
	for _, name := range names {
		switch {
		case name == daemonLock || name == kickFile || name == quarantineDir:
		case strings.HasPrefix(name, tmpPrefix):
			if err := s.fs.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("spool %s: recovery: %w", s.dir, err)
			}
			s.log.Info("spool: removed stale temp file", "file", name)
		case strings.HasSuffix(name, msgExt) && validID(strings.TrimSuffix(name, msgExt)):
			bodies = append(bodies, strings.TrimSuffix(name, msgExt))
		case strings.HasSuffix(name, metaExt) && validID(strings.TrimSuffix(name, metaExt)):
			metas = append(metas, strings.TrimSuffix(name, metaExt))
		default:
			s.log.Warn("spool: unexpected file left alone", "file", name)
		}
	}
	slices.Sort(bodies)
	// Metadata without a body: a removal cut short by a crash (the body goes
	// first), or a body lost behind our back. Either way a record for an admin.
	quarantined := 0
	for _, id := range metas {
		if _, found := slices.BinarySearch(bodies, id); found {
			continue
		}
		if err := s.quarantine(id, "metadata without body"); err != nil {
			return err
		}
		quarantined++
	}
	if err := syncDir(s.fs, s.dir); err != nil {
		return fmt.Errorf("spool %s: recovery: sync directory: %w", s.dir, err)
	}
	s.toRecover = bodies
	s.log.Info("spool: opened", "dir", s.dir, "items", len(bodies), "quarantined", quarantined)
	return nil
}

// Recovered reports whether Recover has run (or began to).
func (s *Spool) Recovered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recovered || s.daemon == nil
}

// recoverBatch is how many items Recover hands over at a time.
const recoverBatch = 512

// Recover reads every item Open found in the daemon's spool, oldest first,
// and hands them to fn in batches as it goes, for the scheduler; the view
// (Stats) fills as they are read. An item that is damaged, or whose
// message does not match its record, is quarantined. fn returning false
// stops it (the daemon stops). An item it cannot read for another reason
// (an I/O error) is left to the runner's rescan. It runs once: later
// calls, and calls on an admin spool, return false at once.
func (s *Spool) Recover(fn func([]Entry) bool) bool {
	s.mu.Lock()
	ids, done := s.toRecover, s.recovered || s.daemon == nil
	s.toRecover, s.recovered = nil, true
	s.mu.Unlock()
	if done {
		return false
	}
	start := time.Now()
	loaded, quarantined := 0, 0
	batch := make([]Entry, 0, min(len(ids), recoverBatch))
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		s.viewAdd(batch)
		more := fn == nil || fn(batch)
		batch = make([]Entry, 0, recoverBatch)
		return more
	}
	for _, id := range ids {
		it, _, err := s.readItem(id, nil, -1, true)
		switch {
		case errors.Is(err, ErrNotFound):
			// Removed by an admin command since Open.
			continue
		case err != nil && !errors.Is(err, ErrCorrupt):
			// No verdict on the item (EMFILE, EIO, a failed stat): the
			// view does not know it, so the runner's first rescan reads
			// it again, and quarantines it only if it is damaged.
			s.log.Warn("spool: cannot read item at recovery; the rescan tries again", "id", id, "err", err)
			continue
		case err != nil && !s.exists(id) && !s.orphanMeta(id):
			// Removed meanwhile: the daemon takes mail and admins act
			// while Recover reads, and a removal deletes the body, then
			// the metadata; one look can fall between the two, as in Claim.
			continue
		case err != nil:
			reason := err.Error()
			if _, serr := os.Stat(s.path(id, metaExt)); errors.Is(serr, fs.ErrNotExist) {
				// A body file without a trailer and without metadata was
				// never acknowledged (a version 1 commit writes the
				// metadata last) or was damaged; keep it for inspection.
				reason = "body without metadata: " + reason
			}
			if err := s.quarantine(id, reason); err != nil {
				s.log.Error("spool: cannot quarantine damaged item", "id", id, "reason", reason, "err", err)
				continue
			}
			quarantined++
			continue
		}
		loaded++
		batch = append(batch, it.entry())
		if len(batch) == recoverBatch && !flush() {
			s.log.Info("spool: recovery stopped", "dir", s.dir, "items", loaded, "quarantined", quarantined)
			return true
		}
	}
	flush()
	s.log.Info("spool: recovered", "dir", s.dir, "items", loaded, "quarantined", quarantined,
		"seconds", time.Since(start).Round(time.Millisecond).Seconds())
	return true
}

func (s *Spool) quarantine(id, reason string) error {
	s.forget(id)
	qdir := filepath.Join(s.dir, quarantineDir)
	for _, ext := range []string{msgExt, metaExt} {
		src := s.path(id, ext)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dst := filepath.Join(qdir, id+ext)
		if _, err := os.Stat(dst); err == nil {
			dst += "." + randHex()
		}
		if err := s.fs.Rename(src, dst); err != nil {
			return fmt.Errorf("spool %s: quarantine: %w", id, err)
		}
		if ext == msgExt {
			s.viewGone(id) // the body is what makes an item exist
		}
	}
	if err := syncDir(s.fs, qdir); err != nil {
		return fmt.Errorf("spool %s: quarantine: sync: %w", id, err)
	}
	s.log.Error("spool: quarantined unreadable item", "id", id, "reason", reason, "dir", qdir)
	if s.m != nil {
		s.m.Quarantined.Inc()
	}
	return nil
}
