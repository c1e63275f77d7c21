// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// A Claim is a delivery attempt's hold on one item: the item's lock, its
// record as read under that lock, and its message. While the claim is held
// no admin command changes or removes the item and its file is not reused;
// the record changes only through the claim. Close ends it.
type Claim struct {
	s    *Spool
	lk   itemLock
	it   *Item
	size int64 // of the message, without the envelope trailer
}

// orphanRecheck is how long an apparent orphan is given to disappear.
const orphanRecheck = 200 * time.Millisecond

// Claim locks id for a delivery attempt, without waiting, and reads its
// record under the lock. The message's length is checked against the
// record: a body of another length was truncated or overwritten on disk,
// and sending it would deliver damaged mail.
//
// ErrBusy: somebody else holds the item (an admin command, a reader).
// ErrNotFound: it left the spool (an admin command removed it); metadata
// that stays behind without its body is quarantined. ErrCorrupt: the item
// was damaged and has been quarantined, a record for an admin, never sent.
// Any other error is one of reading, worth a later try.
func (s *Spool) Claim(id string) (*Claim, error) {
	f, size, err := s.openLocked(id, syscall.LOCK_EX, 0)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			s.viewGone(id)
			if s.orphanMeta(id) {
				// The body was removed or lost behind our back (a
				// removal deletes the body first, then the metadata).
				s.quarantineLogged(id, "metadata without body")
			}
		}
		return nil, err
	}
	c := &Claim{s: s, lk: itemLock{f: f, size: size}}
	it, n, err := s.readItem(id, f, size, true)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			s.quarantineLogged(id, err.Error())
		}
		c.lk.unlock()
		return nil, err
	}
	c.it, c.size = it, n
	return c, nil
}

// Item is the claimed item's record. Changes to it are written by Save.
func (c *Claim) Item() *Item { return c.it }

// Size is the length of the message.
func (c *Claim) Size() int64 { return c.size }

// ReadAt reads the message, which ends where its envelope trailer begins.
func (c *Claim) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.size {
		return 0, io.EOF
	}
	short := int64(len(p)) > c.size-off
	if short {
		p = p[:c.size-off]
	}
	n, err := c.lk.f.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// Save writes the item's record (its state after an attempt) beside its
// body, atomically and durably.
func (c *Claim) Save() error { return c.s.writeMeta(c.it) }

// KeepVerdict stores fields, the arrival verdict an attempt puts before the
// message, with an item that has none, so that every later attempt, also
// after a restart, sends the same. An item whose record is still its
// trailer gets the verdict appended to its body file (trailer.go): no
// fsync, no new file, nothing that a crash can turn into damage; a verdict
// lost in a crash is taken again at the next attempt. Any other item, and
// a verdict too long to append, has it saved in <id>.json.
func (c *Claim) KeepVerdict(fields string) error {
	it := c.it
	if fields == "" || it.Prepend != "" {
		return nil
	}
	it.Prepend = fields
	if it.hasMeta || it.Version < 2 || it.end <= 0 {
		return c.Save()
	}
	block, err := appendVerdict(nil, it.ID, fields)
	if err == nil {
		err = c.s.appendToBody(it, &c.lk, block)
	}
	if err != nil {
		c.s.log.Warn("spool: cannot append the verdict to the body file; saving it apart", "id", it.ID, "err", err)
		return c.Save()
	}
	return nil
}

// Delivered removes an item every recipient of which was delivered. The
// removal is durable at the next directory fsync (FlushRemovals); a crash
// before that brings the message back to be sent again, a duplicate, never a
// loss. Its file may be reused for a new message.
func (c *Claim) Delivered() error { return c.s.removeDelivered(c.it, &c.lk) }

// Bounce spools an RFC 3464 DSN to the sender for the item's failed
// recipients, naming reportingMTA, and then removes the item: at every
// moment either the message or its DSN is durable. A DSN id with an error
// means the DSN is spooled but the item could not be removed.
func (c *Claim) Bounce(reportingMTA string, now time.Time) (string, error) {
	return c.s.bounceLocked(c.it, &c.lk, reportingMTA, now)
}

// Gone reports whether the item's body has left the spool, as after a
// Bounce that removed the body but not the metadata beside it.
func (c *Claim) Gone() bool { return !c.s.exists(c.it.ID) }

// Close ends the claim.
func (c *Claim) Close() { c.lk.unlock() }

// RemoveDelivered removes an item every recipient of which was delivered
// but whose removal failed at the time (a read-only or misowned spool); it
// is never sent again, only its removal is retried. ErrBusy: somebody holds
// it; try later.
func (s *Spool) RemoveDelivered(id string) error {
	lk, err := s.lockItem(id, 0)
	switch {
	case errors.Is(err, ErrBusy):
		return err
	case errors.Is(err, ErrNotFound):
		lk = nil // the body is gone; what may be left is its metadata
	case err != nil:
		return err
	default:
		defer lk.unlock()
	}
	it := &Item{ID: id, hasMeta: true}
	if lk != nil {
		// Its version decides whether the file may be reused.
		if read, _, rerr := s.readItem(id, lk.f, lk.size, false); rerr == nil {
			it.Version = read.Version
		}
	}
	return s.removeDelivered(it, lk)
}

// orphanMeta reports whether id has metadata but no body. An admin command
// removing the item deletes the body and then the metadata, so one look can
// fall between the two; only metadata still there a moment later is an orphan.
func (s *Spool) orphanMeta(id string) bool {
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(orphanRecheck)
		}
		if _, err := os.Stat(s.path(id, metaExt)); err != nil {
			return false
		}
		if _, err := os.Stat(s.path(id, msgExt)); !errors.Is(err, fs.ErrNotExist) {
			return false // there, or no telling: not an orphan
		}
	}
	return true
}

// quarantineLogged moves a damaged item aside while the daemon runs, as
// recovery does at start: the rest of the queue carries on, an admin decides.
func (s *Spool) quarantineLogged(id, reason string) {
	if err := s.quarantine(id, reason); err != nil {
		s.log.Error("spool: cannot quarantine damaged item", "id", id, "reason", reason, "err", err)
	}
}
