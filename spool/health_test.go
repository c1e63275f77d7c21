// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestHealth: the spool is healthy while its directory takes a synced
// write and no directory fsync has failed; after one it stays unhealthy,
// though the directory still takes a write.
func TestHealth(t *testing.T) {
	t.Parallel()
	t.Run("sound", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		if err := f.sp.Health(); err != nil {
			t.Fatal(err)
		}
		if got := spoolFiles(t, f.dir); len(got) != 0 {
			t.Errorf("the check left %v", got)
		}
	})
	t.Run("full", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, WithFS(fullFS{budget: 0, match: "health"}))
		if err := f.sp.Health(); !IsNoSpace(err) {
			t.Errorf("Health on a full disk = %v", err)
		}
		if got := spoolFiles(t, f.dir); len(got) != 0 {
			t.Errorf("the check left %v", got)
		}
	})
	t.Run("a directory fsync failed", func(t *testing.T) {
		t.Parallel()
		h := &hookFS{}
		f := newFixture(t, WithFS(h))
		if err := f.sp.Health(); err != nil {
			t.Fatal(err)
		}
		h.syncDir = func(string) error { return &os.PathError{Op: "sync", Path: f.dir, Err: syscall.EIO} }
		w, err := f.sp.NewWriter(defaultEnv())
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(testBody))
		if _, err := w.Commit(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("commit: %v", err)
		}
		h.syncDir = nil
		// The answer is kept for a second; then it is looked at again.
		waitFor(t, failsafe, "Health to see the failure", func() bool { return f.sp.Health() != nil })
		if err := f.sp.Health(); !errors.Is(err, syscall.EIO) {
			t.Errorf("Health = %v, want the fsync's EIO", err)
		}
		time.Sleep(healthEvery)
		if err := f.sp.Health(); !errors.Is(err, syscall.EIO) {
			t.Errorf("Health later = %v, want it to stick", err)
		}
	})
}
