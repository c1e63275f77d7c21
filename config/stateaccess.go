// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Access is what a process needs of state_dir.
type Access int

// Accesses.
const (
	// ReadState: the admin commands that only show (address list, queue
	// list, ...) read the database, its -wal and -shm files and the spool.
	ReadState Access = iota
	// WriteState: the daemon and the commands that change the state create
	// and write state_dir and everything in it.
	WriteState
)

// AccessError says which file of the state the user running this process
// cannot use, and who owns what stands in the way.
type AccessError struct {
	Path string // the file or directory
	Need string // "read", "write" or "create"
	// Blocker is the directory in the way when it is not Path itself: the
	// parent Path would be created in, or one that cannot be searched.
	Blocker string
	User    string // who this process runs as
	// Owner, Group and Mode are those of Blocker, else of Path.
	Owner, Group string
	Mode         fs.FileMode
	Err          error
}

func (e *AccessError) Error() string {
	what := fmt.Sprintf("owner %s, group %s, mode %04o", e.Owner, e.Group, e.Mode.Perm())
	switch {
	case e.Blocker == "":
		return fmt.Sprintf("user %s cannot %s %s (%s)", e.User, e.Need, e.Path, what)
	case e.Need == "create":
		return fmt.Sprintf("user %s cannot create %s: it may not write %s (%s)", e.User, e.Path, e.Blocker, what)
	}
	return fmt.Sprintf("user %s cannot %s %s: it may not enter %s (%s)", e.User, e.Need, e.Path, e.Blocker, what)
}

func (e *AccessError) Unwrap() error { return e.Err }

// CheckStateAccess checks, as the user this process runs as, that it can do
// what need asks of state_dir: for WriteState, create state_dir (or write it
// when it exists) and read and write the database files and the spool
// directories that exist; for ReadState, read them. The error is an
// *AccessError, or another error when a file cannot even be looked at.
//
// It asks the kernel (faccessat with the effective IDs), so groups, ACLs and
// read-only mounts count. Root passes every check except on read-only
// mounts; say so to an admin who checks as root.
func (c *Config) CheckStateAccess(need Access) error {
	type check struct {
		path string
		mode uint32
		dir  bool
	}
	rw := uint32(unix.R_OK | unix.W_OK)
	var checks []check
	if need == WriteState {
		if _, err := os.Stat(c.StateDir); errors.Is(err, fs.ErrNotExist) {
			// MkdirAll will create it: the nearest existing ancestor
			// must take a new entry.
			parent := filepath.Dir(c.StateDir)
			for {
				if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
					break
				}
				parent = filepath.Dir(parent)
			}
			if err := accessible(parent, unix.W_OK|unix.X_OK); err != nil {
				return accessError(c.StateDir, "create", parent, err)
			}
			return nil
		}
		checks = []check{{c.StateDir, unix.W_OK | unix.X_OK, true}}
		for _, f := range []string{c.DBPath(), c.DBPath() + "-wal", c.DBPath() + "-shm"} {
			checks = append(checks, check{f, rw, false})
		}
		checks = append(checks, check{c.SpoolDir(), unix.W_OK | unix.X_OK, true},
			check{filepath.Join(c.SpoolDir(), "quarantine"), unix.W_OK | unix.X_OK, true})
	} else {
		checks = []check{{c.StateDir, unix.X_OK, true}}
		for _, f := range []string{c.DBPath(), c.DBPath() + "-wal", c.DBPath() + "-shm"} {
			checks = append(checks, check{f, unix.R_OK, false})
		}
		checks = append(checks, check{c.SpoolDir(), unix.R_OK | unix.X_OK, true})
	}
	for i, ck := range checks {
		fi, err := os.Stat(ck.path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && i > 0:
			continue // made when first needed
		case errors.Is(err, fs.ErrPermission):
			// A directory above it cannot be searched: say which.
			return accessError(ck.path, "read", blocker(ck.path), err)
		case err != nil:
			return fmt.Errorf("state_dir: %w", err)
		}
		if ck.dir && !fi.IsDir() {
			return fmt.Errorf("state_dir: %s is not a directory", ck.path)
		}
		if err := accessible(ck.path, ck.mode); err != nil {
			verb := "read"
			if ck.mode&unix.W_OK != 0 {
				verb = "write"
			}
			return accessError(ck.path, verb, "", err)
		}
	}
	return nil
}

func accessible(path string, mode uint32) error {
	return unix.Faccessat(unix.AT_FDCWD, path, mode, unix.AT_EACCESS)
}

// accessError describes what stands in the way: blocker if set, else path.
func accessError(path, need, blocker string, err error) error {
	e := &AccessError{Path: path, Need: need, Blocker: blocker, User: currentUser(), Owner: "?", Group: "?", Err: err}
	look := path
	if blocker != "" {
		look = blocker
	}
	if fi, serr := os.Stat(look); serr == nil {
		e.Mode = fi.Mode()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.Owner, e.Group = userName(st.Uid), groupName(st.Gid)
		}
	}
	return e
}

// blocker finds the first directory on the way to path that this user
// cannot search.
func blocker(path string) string {
	var last string
	for d := filepath.Dir(path); d != filepath.Dir(d); d = filepath.Dir(d) {
		if accessible(d, unix.X_OK) != nil {
			last = d
		}
	}
	if last == "" {
		return filepath.Dir(path)
	}
	return last
}

func currentUser() string { return userName(uint32(os.Geteuid())) }

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return "uid " + strconv.FormatUint(uint64(uid), 10)
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return g.Name
	}
	return "gid " + strconv.FormatUint(uint64(gid), 10)
}

// StateOwner names the owner of state_dir, the user the daemon runs as and
// the commands that change the state should run as; "" if state_dir does
// not exist.
func (c *Config) StateOwner() string {
	fi, err := os.Stat(c.StateDir)
	if err != nil {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return userName(st.Uid)
	}
	return ""
}

// StateProblems is what check-config says about state_dir: whether the user
// it runs as, meant to be the one that runs dualmx serve, can create and
// write it (CheckStateAccess with WriteState). As root, which may write
// anything, it warns that the check proves nothing about the service user.
func (c *Config) StateProblems() Problems {
	var ps Problems
	line := c.line("state_dir")
	err := c.CheckStateAccess(WriteState)
	var ae *AccessError
	switch {
	case errors.As(err, &ae):
		owner := c.StateOwner()
		if owner == "" || owner == ae.User {
			owner = "the service user"
		}
		ps.add(c.Path, line, "state_dir", "%s. The user that runs dualmx serve must be able to create state_dir and read and write everything in it, "+
			"and check-config checks as the user it runs as: run it as that user (sudo -u %s dualmx check-config). "+
			"Commands that change the state run as that user too; those that only show need read access (its group)", ae, owner)
	case err != nil:
		ps.add(c.Path, line, "state_dir", "%v", err)
	}
	if os.Geteuid() == 0 {
		ps = append(ps, Problem{File: c.Path, Line: line, Key: "state_dir", Warning: true,
			Msg: "checked as root, who may read and write anything: run check-config as the user that runs dualmx serve " +
				"(e.g. sudo -u dualmx dualmx check-config) to check that user's access to state_dir and the key files"})
	}
	return ps
}
