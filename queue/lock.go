// SPDX-License-Identifier: MIT

package queue

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
	// free names the file once it was retired for reuse: it joins the
	// pool when the lock is released (recycle.go).
	sp       *Spool
	free     string
	freeSync uint64
	freeSize int64
}

// lockOpened, when set (tests), runs between opening an item's file and
// locking it: the window in which another process may remove the item.
var lockOpened func(id string)

// lockItem locks id, waiting up to wait for a holder to finish.
func (s *Spool) lockItem(id string, wait time.Duration) (*itemLock, error) {
	if !validID(id) {
		return nil, fmt.Errorf("spool %q: %w", id, ErrNotFound)
	}
	f, err := openFile(s.path(id, msgExt), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("spool %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", id, err)
	}
	if lockOpened != nil {
		lockOpened(id)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// The holder before us may have removed the item between our
			// open and our lock; a lock on a file that has left the spool
			// would deliver a dropped or delivered message again.
			// Removed (or moved aside, like a quarantined item) in between:
			// the name no longer leads to the file we hold.
			var held, named syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &held); err != nil {
				f.Close()
				return nil, fmt.Errorf("spool %s: %w", id, err)
			}
			err := syscall.Stat(s.path(id, msgExt), &named)
			if err != nil && err != syscall.ENOENT {
				f.Close()
				return nil, fmt.Errorf("spool %s: %w", id, err)
			}
			if err != nil || named.Ino != held.Ino || named.Dev != held.Dev {
				f.Close()
				return nil, fmt.Errorf("spool %s: %w", id, ErrNotFound)
			}
			return &itemLock{f: f, size: held.Size}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("spool %s: lock: %w", id, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("spool %s: %w", id, ErrBusy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unlock closes the file, which releases the flock: it is the only
// descriptor of its open file description.
func (l *itemLock) unlock() {
	l.f.Close()
	if l.free != "" {
		l.sp.release(l.free, l.freeSync, l.freeSize)
		l.free = ""
	}
}
