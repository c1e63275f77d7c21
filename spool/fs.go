// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// FS is the spool's seam to the file system: the files it creates and
// reuses, opens by name, renames and removes, and the fsyncs of its
// directory all go through it (reads of a file already open, and directory
// listings, do not). A test wraps OSFS to fail a write at a chosen byte (a
// full disk), a rename, a removal or a directory fsync, or to act in the
// moment after a file was opened by name, and checks that nothing
// half-written remains and nothing is sent twice.
type FS interface {
	// Create creates name for writing and fails if it exists.
	Create(name string) (File, error)
	// Reuse opens the existing file name for writing over it from its
	// start, and fails if anybody holds a flock on it (see reuseFile).
	Reuse(name string) (File, error)
	// Open opens name for reading (and locking).
	Open(name string) (*os.File, error)
	// Append opens the existing file name for appending.
	Append(name string) (File, error)
	// Rename renames from to to, replacing to.
	Rename(from, to string) error
	// Remove removes name.
	Remove(name string) error
	// SyncDir fsyncs the directory d, which makes the renames and
	// removals in it durable.
	SyncDir(d *os.File) error
}

// File is a spool file being written.
type File interface {
	Write(p []byte) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// OSFS is the real file system.
type OSFS struct{}

func (OSFS) Create(name string) (File, error) {
	return openFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
}

func (OSFS) Reuse(name string) (File, error) { return reuseFile(name) }

func (OSFS) Open(name string) (*os.File, error) { return openFile(name, os.O_RDONLY, 0) }

func (OSFS) Append(name string) (File, error) { return openFile(name, os.O_WRONLY|os.O_APPEND, 0) }

func (OSFS) Rename(from, to string) error { return rename(from, to) }

func (OSFS) Remove(name string) error { return os.Remove(name) }

func (OSFS) SyncDir(d *os.File) error { return d.Sync() }

// openFile is os.OpenFile without the attempt to register a regular file
// with the network poller, which on Linux costs three failed or undone
// system calls per open; spool files are opened twice per message.
func openFile(name string, flag int, perm uint32) (*os.File, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(name, flag|syscall.O_CLOEXEC, perm)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// rename is os.Rename without its look at the new name first (os.Rename
// refuses to replace a directory); the spool's names are never directories,
// and the look is a failed system call per rename.
func rename(from, to string) error {
	if err := ignoringEINTR(func() error { return syscall.Rename(from, to) }); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// IsNoSpace reports whether err means the spool's file system is full or over
// quota, the case where the SMTP server answers 452 4.3.1 rather than 451.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// syncDir makes renames and removals in dir durable; without it a crash can
// bring back a deleted item or lose a renamed one.
func syncDir(fsys FS, dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = fsys.SyncDir(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// groupSync coalesces directory fsyncs: every caller that renamed or removed
// something in dir waits for one fsync that started after its change, and
// concurrent callers share that fsync. Twenty sessions committing at once then
// cost a few directory syncs, not twenty, with the same guarantee each.
type groupSync struct {
	dir       string
	fs        FS
	d         *os.File // kept open: opening the directory per sync costs as much as the sync
	mu        sync.Mutex
	cond      *sync.Cond
	requested uint64 // Sync calls so far
	completed uint64 // every request up to this one is durable
	running   bool
	// failed is set by a failed fsync and never cleared: the kernel reports
	// a writeback error once, and a retry that then succeeds proves nothing
	// about the renames before it. Every later Sync fails with it.
	failed error
}

// broken returns the failure that stopped the directory's fsyncs, if any.
func (g *groupSync) broken() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}

func newGroupSync(dir string, fsys FS) *groupSync {
	g := &groupSync{dir: dir, fs: fsys}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Note registers a change in the directory that must become durable but
// that nobody waits for: the next Sync by anyone covers it, and Flush
// forces one when no Sync comes.
func (g *groupSync) Note() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requested++
	return g.requested
}

// durable returns the number of the last change (Note or Sync) known to be
// durable: every change numbered up to it is.
func (g *groupSync) durable() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.completed
}

// Flush makes every noted change durable, if any is not yet.
func (g *groupSync) Flush() error {
	g.mu.Lock()
	pending := g.completed < g.requested
	g.mu.Unlock()
	if !pending {
		return nil
	}
	return g.Sync()
}

// Sync returns once a directory fsync that began after the call has finished.
func (g *groupSync) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requested++
	mine := g.requested
	for g.completed < mine {
		if g.failed != nil {
			return g.failed
		}
		if g.running {
			g.cond.Wait()
			continue
		}
		// This fsync covers every request registered so far, ours included.
		g.running = true
		// Sessions whose file fsync has just returned are about to
		// rename and ask too: letting them run first puts them in this
		// fsync rather than the next (a quarter fewer under load).
		g.mu.Unlock()
		runtime.Gosched()
		g.mu.Lock()
		upto := g.requested
		d := g.d
		g.mu.Unlock()
		var err error
		synced := false // err, if any, came from the fsync itself
		if d == nil {
			d, err = os.Open(g.dir)
		}
		if err == nil {
			synced = true
			err = g.fs.SyncDir(d)
		}
		g.mu.Lock()
		if err != nil && synced {
			g.failed = fmt.Errorf("directory fsync failed; what was renamed or removed since the last good one may not be on disk, so the spool takes nothing more until dualmx is restarted: %w", err)
			err = g.failed
		}
		switch {
		case err == nil:
			g.d = d
		case d != nil:
			// Next time with a fresh descriptor.
			d.Close()
			g.d = nil
		}
		g.running = false
		g.cond.Broadcast()
		if err != nil {
			// After a failed fsync the waiters find failed; after a
			// failed open (nothing was synced) they try again.
			return err
		}
		g.completed = max(g.completed, upto)
	}
	return nil
}
