// SPDX-License-Identifier: MIT

package spool

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The daemon writes new messages over the files of delivered ones instead of
// creating a file per message and removing it again. Creating and removing
// were a third of its CPU under load on ext4 without a journal: there the
// inode allocator passes over every inode freed in the last seconds, so a
// steady stream of messages makes each create scan past thousands of them,
// and each removal frees blocks (a synchronous discard with the discard
// mount option). A journaled file system gains less, but still the
// allocation and freeing of an inode and its blocks per message.
//
// A delivered message's body file is renamed to a temp name in the spool
// directory (so recovery removes it after a crash) and kept in a small pool.
// A new message takes the most recently freed file whose rename is durable,
// overwrites it from the start and truncates it to its own length before the
// fsync; from there on Commit is the same as for a new file. The rename must
// be durable first: were the new bytes on disk while the directory still
// named the file <id>.msg, a crash would bring back the delivered message
// with another one's bytes in it, and deliver that. Every commit's directory
// fsync makes the renames before it durable, so under load files qualify
// within a commit or two.
//
// The cost is that a recycled file holds a delivered message until it is
// overwritten, in the spool directory, readable only as spool files are.
// The pool is bounded in number and size, files unused for a minute are
// removed at the runner's next rescan, and Close removes the rest.
const (
	recyclePrefix = tmpPrefix + "free-"
	maxFree       = 64        // files in the pool
	maxRecycle    = 256 << 10 // bytes; larger files are removed, not kept
	freeMaxIdle   = time.Minute
)

type freeFile struct {
	name string
	at   time.Time // when it joined the pool
	sync uint64    // the directory change that retired it (groupSync.Note)
	size int64     // its length
}

type recycler struct {
	mu   sync.Mutex
	free []freeFile // most recently freed last
	seq  uint64
	// held counts files renamed aside and not yet returned by their
	// lock's release, so the pool's bound holds for them too.
	held int
	// open is set while the daemon's spool is open: only the daemon
	// recycles, and a file released after Close is removed.
	open bool
	// reused counts files written over (tests).
	reused atomic.Int64
}

// retire moves a delivered item's body file aside for reuse, if it may be
// reused, and reports whether it did. The caller holds lk, the item's lock;
// the file joins the pool when lk is released, so that no writer finds it
// still locked. The caller notes the rename with the directory's groupSync
// and records the number in lk.retired.sync.
func (s *Spool) retire(id string, version int, lk *itemLock) bool {
	// Only a file whose trailer names its id is handed on: a version 1
	// item's record checks its body by length alone (see
	// TestForeignBodyUnderOldName), and an unknown version (0) may be one.
	if lk == nil || lk.retired != nil || lk.size > maxRecycle || version < 2 {
		return false
	}
	r := &s.rec
	r.mu.Lock()
	if !r.open || len(r.free)+r.held >= maxFree {
		r.mu.Unlock()
		return false
	}
	r.seq++
	r.held++
	// rename(2) replaces a file of the same name without a word: the
	// random part keeps two spools' pools apart (a test reopening a
	// directory, a restart while old files are still named).
	name := filepath.Join(s.dir, recyclePrefix+strconv.FormatUint(r.seq, 10)+"-"+randHex())
	r.mu.Unlock()
	if err := s.fs.Rename(s.path(id, msgExt), name); err != nil {
		r.mu.Lock()
		r.held--
		r.mu.Unlock()
		return false
	}
	// Not reusable until the caller's note says which fsync covers it.
	lk.sp, lk.retired = s, &freeFile{name: name, size: lk.size, sync: math.MaxUint64}
	return true
}

// release puts a retired file into the pool.
func (s *Spool) release(ff freeFile) {
	r := &s.rec
	r.mu.Lock()
	r.held--
	if !r.open {
		r.mu.Unlock()
		s.fs.Remove(ff.name)
		return
	}
	ff.at = time.Now()
	r.free = append(r.free, ff)
	r.mu.Unlock()
}

// startRecycling lets the daemon's spool recycle; stopRecycling removes the
// pool, and files released later are removed as they come.
func (s *Spool) startRecycling() {
	s.rec.mu.Lock()
	s.rec.open = true
	s.rec.mu.Unlock()
}

func (s *Spool) stopRecycling() {
	s.rec.mu.Lock()
	s.rec.open = false
	s.rec.mu.Unlock()
	s.emptyPool()
}

// reuse opens the most recently freed file whose retirement is durable for
// overwriting, and returns it with its name and length, or returns nil.
// A file somebody still holds a lock on (an admin command that opened the
// delivered item) is removed instead: it may be read.
func (s *Spool) reuse() (File, string, int64) {
	r := &s.rec
	durable := s.dsync.durable()
	r.mu.Lock()
	i := len(r.free) - 1
	for i >= 0 && r.free[i].sync > durable {
		i--
	}
	if i < 0 {
		r.mu.Unlock()
		return nil, "", 0
	}
	ff := r.free[i]
	r.free = append(r.free[:i], r.free[i+1:]...)
	r.mu.Unlock()
	f, err := s.fs.Reuse(ff.name)
	if err != nil {
		s.fs.Remove(ff.name) // a failure here leaves a temp file for recovery
		return nil, "", 0
	}
	r.reused.Add(1)
	return f, ff.name, ff.size
}

// trimFree removes pooled files unused for longer than idle: under a light
// load the pool shrinks back, and old mail does not linger in it.
func (s *Spool) trimFree(idle time.Duration) {
	r := &s.rec
	cutoff := time.Now().Add(-idle)
	r.mu.Lock()
	n := 0
	for n < len(r.free) && r.free[n].at.Before(cutoff) {
		n++
	}
	old := append([]freeFile(nil), r.free[:n]...)
	r.free = append(r.free[:0], r.free[n:]...)
	r.mu.Unlock()
	for _, ff := range old {
		s.fs.Remove(ff.name)
	}
}

// emptyPool removes every pooled file.
func (s *Spool) emptyPool() { s.trimFree(-time.Hour) }

// noSpace empties the pool when err says the file system is full: its
// files are the space the next message needs.
func (s *Spool) noSpace(err error) {
	if IsNoSpace(err) {
		s.emptyPool()
	}
}

// freeCount reports the files in the pool (tests).
func (s *Spool) freeCount() int {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return len(s.rec.free)
}

// reuseFile opens an existing spool file for overwriting from its start,
// and fails if anybody holds a lock on it.
func reuseFile(name string) (*os.File, error) {
	f, err := openFile(name, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "lock", Path: name, Err: err}
	}
	return f, nil
}

// sameFile reports whether id's body file is still the file f: a reader
// that opened it by name without the item's lock checks this after reading,
// since a delivered item's file may have been recycled meanwhile. A name
// that leads nowhere is (false, nil): the item was removed in between. An
// error is one of looking, and says nothing either way.
func (s *Spool) sameFile(id string, f *os.File) (bool, error) {
	_, same, err := s.fileOf(id, f)
	return same, err
}

// fileOf is sameFile, with f's size.
func (s *Spool) fileOf(id string, f *os.File) (size int64, same bool, err error) {
	var held, named syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &held); err != nil {
		return 0, false, err
	}
	if err := syscall.Stat(s.path(id, msgExt), &named); err != nil {
		if err == syscall.ENOENT {
			return held.Size, false, nil
		}
		return 0, false, err
	}
	return held.Size, named.Ino == held.Ino && named.Dev == held.Dev, nil
}
