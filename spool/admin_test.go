// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAdminBounceAndDrop(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	adm := f.admin()
	id := f.spool(testBody, defaultEnv())
	dsnID, err := adm.Bounce(id, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sp.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("bounced original still there: %v", err)
	}
	dsn, err := f.sp.Get(dsnID)
	if err != nil || !dsn.DSN || dsn.From != "" || dsn.Recipients[0].Target != "alice@sender.test" {
		t.Fatalf("DSN item = %+v, %v", dsn, err)
	}
	// No DSN about a DSN, nor to the null sender.
	if _, err := adm.Bounce(dsnID, "admin"); !errors.Is(err, ErrState) {
		t.Errorf("bounce of a DSN: %v", err)
	}
	it, err := adm.Drop(dsnID, "admin", "test")
	if err != nil || it.ID != dsnID || !it.DSN {
		t.Errorf("Drop = %+v, %v", it, err)
	}
	if items, _ := f.sp.List(); len(items) != 0 {
		t.Errorf("spool not empty: %v", items)
	}
	if _, err := adm.Drop("20250101T000000.000000Z-00000000", "admin", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("drop of unknown id: %v", err)
	}
}

// TestRemovedBetweenOpenAndLock: an item dropped by an admin command, or
// moved aside, in the moment between a delivery attempt opening its file and
// locking it must not leave the attempt holding a lock on that file: the
// claim finds nothing, and nothing is delivered.
func TestRemovedBetweenOpenAndLock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		remove func(f *fixture, admin *Spool, id string) error
	}{
		{"dropped", func(f *fixture, admin *Spool, id string) error {
			_, err := admin.Drop(id, "test", "dropped in the window")
			return err
		}},
		{"moved aside", func(f *fixture, admin *Spool, id string) error {
			return os.Rename(f.sp.BodyPath(id), filepath.Join(f.dir, quarantineDir, id+msgExt))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &hookFS{}
			f := newFixture(t, WithFS(h))
			id := f.spool(testBody, defaultEnv())
			admin, err := OpenAdmin(f.dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			removed := make(chan error, 1)
			h.opened = func(name string) {
				if name != f.sp.BodyPath(id) {
					return
				}
				h.opened = nil
				removed <- tc.remove(f, admin, id)
			}
			c, err := f.sp.Claim(id)
			if err := <-removed; err != nil {
				t.Fatal(err)
			}
			if !errors.Is(err, ErrNotFound) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("Claim after the item left = %v, want ErrNotFound", err)
			}
			if _, err := f.sp.Claim(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("a later claim = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestAdminWaitsForClaim: an admin command waits for a delivery attempt in
// progress (up to its wait) and then fails with ErrBusy, changing nothing.
func TestAdminWaitsForClaim(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.spool(testBody, defaultEnv())
	c, err := f.sp.Claim(id)
	if err != nil {
		t.Fatal(err)
	}
	adm := f.admin()
	for name, op := range map[string]func() error{
		"drop":    func() error { _, err := adm.Drop(id, "admin", "test"); return err },
		"bounce":  func() error { _, err := adm.Bounce(id, "admin"); return err },
		"retry":   func() error { return adm.Retry(id) },
		"release": func() error { return adm.Release(id) },
		"body":    func() error { _, err := adm.Body(id); return err },
	} {
		if err := op(); !errors.Is(err, ErrBusy) {
			t.Errorf("%s during an attempt: %v, want ErrBusy", name, err)
		}
	}
	if _, err := f.sp.Claim(id); !errors.Is(err, ErrBusy) {
		t.Errorf("a second claim: %v, want ErrBusy", err)
	}
	c.Close()
	if err := adm.Retry(id); err != nil {
		t.Errorf("retry after the attempt: %v", err)
	}
}
