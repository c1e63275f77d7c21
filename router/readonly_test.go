// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dirState is what a read-only open must leave alone: the files in the
// directory, with size and modification time but for the -shm file, whose
// lock bytes a reader that may write it (root) does use.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		line := e.Name()
		if !strings.HasSuffix(line, "-shm") {
			line += " " + fi.ModTime().Format(time.RFC3339Nano) + " " + strconv.FormatInt(fi.Size(), 10)
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestOpenKeepsWALFiles: the -wal and -shm files outlive the last
// connection, so a user who may read the state but not create files beside
// it can still open it read-only while the daemon is stopped.
func TestOpenKeepsWALFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, s, Forwarding, false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after Close: %v", err)
		}
	}
}

// TestOpenReadOnly: a read-only open reads what was committed, with the
// daemon's connection open or closed and with or without the WAL files, and
// creates or changes nothing, whichever user runs it (root included: SQLite
// would create a -shm file root owns).
func TestOpenReadOnly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dir    string // a directory name with characters a file: URI must escape
		writer bool   // a read-write connection stays open (the daemon runs)
		noWAL  bool   // -wal and -shm gone: a clean close by an older dualmx
	}{
		{name: "daemon running", writer: true},
		{name: "daemon stopped"},
		{name: "no WAL files", noWAL: true},
		{name: "odd directory name", dir: "state dir #1 100%", writer: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), tc.dir)
			if err := os.MkdirAll(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "state.db")
			w, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			seed(t, w, Forwarding, true)
			if !tc.writer {
				w.Close()
			} else {
				defer w.Close()
			}
			if tc.noWAL {
				os.Remove(path + "-wal")
				os.Remove(path + "-shm")
			}
			before := dirState(t, dir)

			r, err := OpenReadOnly(path)
			if err != nil {
				t.Fatalf("OpenReadOnly: %v", err)
			}
			a, err := r.Get(ctx, "scriba@fwd.hervormdputten.nl")
			if err != nil || a.State != Forwarding || a.LastDelivery.IsZero() {
				t.Fatalf("Get = %+v, %v", a, err)
			}
			if tc.writer {
				// A commit made while the reader is open is seen by its next read.
				if _, err := w.Add(ctx, "koster@hervormdputten.nl", "koster@fwd.hervormdputten.nl", "", "test"); err != nil {
					t.Fatal(err)
				}
				before = dirState(t, dir)
				if l, err := r.List(ctx); err != nil || len(l) != 2 {
					t.Fatalf("List after a commit = %d addresses, %v", len(l), err)
				}
			}
			if _, err := r.Add(ctx, "x@hervormdputten.nl", "x@fwd.hervormdputten.nl", "", "test"); !errors.Is(err, ErrReadOnly) {
				t.Errorf("Add on a read-only store = %v, want ErrReadOnly", err)
			}
			if _, err := r.Flip(ctx, FlipRequest{Address: a.Address, To: Confirmed}, nil); !errors.Is(err, ErrReadOnly) {
				t.Errorf("Flip on a read-only store = %v, want ErrReadOnly", err)
			}
			r.Close()
			if after := dirState(t, dir); after != before {
				t.Errorf("a read-only open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestOpenReadOnlyRefuses: no database, or one whose schema is older than
// this dualmx's, is an error naming what to do, and nothing is created.
func TestOpenReadOnlyRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	if _, err := OpenReadOnly(path); !errors.Is(err, ErrNoState) {
		t.Errorf("no database: %v, want ErrNoState", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("OpenReadOnly of a missing database left %d file(s)", len(entries))
	}

	s := openTest(t, path)
	if _, err := s.db.Exec(`UPDATE schema_version SET version = 1`); err != nil {
		t.Fatal(err)
	}
	_, err := OpenReadOnly(path)
	if err == nil || !strings.Contains(err.Error(), "older than this dualmx's") || !strings.Contains(err.Error(), "upgrades it") {
		t.Errorf("old schema: %v", err)
	}

	os.Remove(path + "-shm")
	if _, err := OpenReadOnly(path); err == nil || !strings.Contains(err.Error(), "-shm") {
		t.Errorf("a -wal without its -shm: %v", err)
	}
	if _, err := os.Stat(path + "-shm"); err == nil {
		t.Error("OpenReadOnly created a -shm file")
	}
}

// TestEmpty: the state before the daemon's first start reads as nothing,
// through more than one call (one in-memory database, not one per
// connection), and refuses writes.
func TestEmpty(t *testing.T) {
	ctx := context.Background()
	s, err := Empty()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		if l, err := s.List(ctx); err != nil || len(l) != 0 {
			t.Fatalf("List = %v, %v", l, err)
		}
		if _, err := s.Get(ctx, "x@hervormdputten.nl"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get = %v, want ErrNotFound", err)
		}
		if a, err := s.Audit(ctx, "x@hervormdputten.nl"); err != nil || len(a) != 0 {
			t.Errorf("Audit = %v, %v", a, err)
		}
	}
	if _, err := s.Add(ctx, "x@hervormdputten.nl", "x@fwd.hervormdputten.nl", "", "test"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Add = %v, want ErrReadOnly", err)
	}
}
