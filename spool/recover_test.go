// SPDX-License-Identifier: MIT

package spool

import (
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRecoverQuarantinesOnlyDamage: Recover reads the spool while the
// daemon takes mail and admins act, so what it cannot read is not
// necessarily damaged. A message an admin removed between the read of its
// record and the open of its body is gone, not "metadata without body";
// one whose body cannot be opened for now (too many open files, EIO) is
// left in the spool for the runner's rescan, which reads it again, rather
// than quarantined.
func TestRecoverQuarantinesOnlyDamage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// meta: the item has its <id>.json (its state changed once).
		meta bool
		// open runs before the item's body file is opened.
		open     func(f *fixture, id string) error
		wantLeft bool // still in the spool, and found by the rescan
	}{
		{name: "dropped meanwhile", meta: true, open: func(f *fixture, id string) error {
			adm := f.admin()
			defer adm.Close()
			_, err := adm.Drop(id, "admin", "test")
			return err
		}},
		{name: "too many open files", open: func(*fixture, string) error {
			return &os.PathError{Op: "open", Err: syscall.EMFILE}
		}, wantLeft: true},
		{name: "I/O error with a record", meta: true, open: func(*fixture, string) error {
			return &os.PathError{Op: "open", Err: syscall.EIO}
		}, wantLeft: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			prev := newFixtureAt(t, dir)
			id := prev.spool(testBody, defaultEnv())
			if tc.meta {
				it, _ := prev.sp.Get(id)
				it.State = StateDeferred
				if err := prev.sp.writeMeta(&it); err != nil {
					t.Fatal(err)
				}
			}
			prev.sp.Close()

			h := &hookFS{}
			f := newFixtureAt(t, dir, WithFS(h))
			body := f.sp.BodyPath(id)
			first := true
			h.open = func(name string) error {
				if name != body || !first {
					return nil
				}
				first = false
				return tc.open(f, id)
			}
			var recovered []Entry
			f.sp.Recover(func(b []Entry) bool { recovered = append(recovered, b...); return true })
			if len(recovered) != 0 {
				t.Errorf("recovered %+v", recovered)
			}
			if n := testutil.ToFloat64(f.m.Quarantined); n != 0 {
				t.Errorf("%v quarantined:\n%s", n, f.logs.String())
			}
			_, err := f.sp.Get(id)
			if left := err == nil; left != tc.wantLeft {
				t.Errorf("item in the spool after recovery: %v, want %v", left, tc.wantLeft)
			}
			l, err := f.sp.Rescan(false)
			if err != nil {
				t.Fatal(err)
			}
			found := slices.ContainsFunc(l.Entries, func(e Entry) bool { return e.ID == id })
			if found != tc.wantLeft {
				t.Errorf("rescan found the item: %v, want %v", found, tc.wantLeft)
			}
		})
	}
}
