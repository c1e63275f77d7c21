// SPDX-License-Identifier: MIT

// Package secretfile reads the files that hold dualmx's secrets: private
// keys, shared secrets, passwords. Such a file must be accessible by its
// owner only (mode 0600 or stricter), as OpenSSH requires of a key: one that
// group or others can read must be treated as leaked, and starting with it
// would hide that. Errors name the file and its mode, never its contents.
package secretfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// ModeError is a secret file that group or others may access.
type ModeError struct {
	Path string
	Mode fs.FileMode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("%s is accessible by group or others (mode %04o); chmod 600 it", e.Path, e.Mode)
}

// checkMode refuses a mode with any group or other bit. Windows has no such
// bits (Go makes them up from the read-only flag), so nothing is refused there.
func checkMode(path string, fi fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &ModeError{Path: path, Mode: perm}
	}
	return nil
}

// Check reports whether the file at path may hold a secret, without reading
// it (for a config check before anything starts).
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return checkMode(path, fi)
}

// Read reads the secret file at path, up to max bytes (a longer file is an
// error). The mode checked is that of the file opened, not of the path, so a
// path swapped in between cannot pass the check with one file and be read
// as another.
func Read(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if err := checkMode(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is longer than %d bytes", path, max)
	}
	return b, nil
}

// Create writes data to a new file at path, mode 0600, and fsyncs it. An
// existing file is never replaced (the error wraps fs.ErrExist): a key
// overwritten would silently invalidate what was published for it. A file
// that could not be written whole is removed.
func Create(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
