// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// itemLock is an exclusive flock(2) on an item's body file. The body is never
// rewritten, so its inode (and the lock on it) is stable while the metadata is
// replaced by renames. The daemon holds it for a whole delivery attempt; an
// admin command holds it while it changes or removes the item. flock locks
// belong to the open file, so two holders in one process exclude each other too.
type itemLock struct {
	f    *os.File
	size int64 // of the file, when it was locked
	// retired is the file once it was moved aside for reuse: it joins sp's
	// pool when the lock is released (recycle.go).
	sp      *Spool
	retired *freeFile
}

// lockItem locks id, waiting up to wait for a holder to finish.
func (s *Spool) lockItem(id string, wait time.Duration) (*itemLock, error) {
	f, size, err := s.openLocked(id, syscall.LOCK_EX, wait)
	if err != nil {
		return nil, err
	}
	return &itemLock{f: f, size: size}, nil
}

// openLocked opens id's body file and flocks it, exclusively or shared
// (how), waiting up to wait for a holder to finish; it returns the file and
// its size. The holder before us may have removed the item between our open
// and our lock, or moved it aside (quarantined, or retired for reuse): the
// name then no longer leads to the file we hold, and a lock on it would
// deliver a dropped or delivered message again, or read another's bytes.
func (s *Spool) openLocked(id string, how int, wait time.Duration) (*os.File, int64, error) {
	if !validID(id) {
		return nil, 0, fmt.Errorf("spool %q: %w", id, ErrNotFound)
	}
	// Between this open and the lock, another process may remove the
	// item; lockFile looks at the name again once the lock is held.
	f, err := s.fs.Open(s.path(id, msgExt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("spool %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("spool %s: %w", id, err)
	}
	size, err := s.lockFile(id, f, how, wait)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// lockFile is openLocked's wait for the lock and its look at the name.
func (s *Spool) lockFile(id string, f *os.File, how int, wait time.Duration) (int64, error) {
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return 0, fmt.Errorf("spool %s: lock: %w", id, err)
		}
		if !time.Now().Before(deadline) {
			return 0, fmt.Errorf("spool %s: %w", id, ErrBusy)
		}
		time.Sleep(50 * time.Millisecond)
	}
	size, same, err := s.fileOf(id, f)
	if err != nil {
		return 0, fmt.Errorf("spool %s: %w", id, err)
	}
	if !same {
		return 0, fmt.Errorf("spool %s: %w", id, ErrNotFound)
	}
	return size, nil
}

// unlock closes the file, which releases the flock: it is the only
// descriptor of its open file description.
func (l *itemLock) unlock() {
	l.f.Close()
	if l.retired != nil {
		l.sp.release(*l.retired)
		l.retired = nil
	}
}
