// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// t0 is a fixed clock for stores whose timestamps a test compares.
var t0 = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)

func openTest(t *testing.T, path string, opts ...Option) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "state.db")
	}
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seed adds scriba@ and puts it straight into state st, bypassing the rules
// the test is about; delivered sets a last delivery on record.
func seed(t *testing.T, s *Store, st State, delivered bool) Address {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Add(ctx, "scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "", "test"); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE addresses SET state = ?`, string(st)); err != nil {
		t.Fatal(err)
	}
	if delivered {
		if err := s.RecordDelivery("scriba@hervormdputten.nl", t0, 1); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Get(ctx, "scriba@hervormdputten.nl")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type fakeSpool struct {
	queued, held int
	err          error
	asked        []string
}

func (f *fakeSpool) Pending(address string) (int, int, error) {
	f.asked = append(f.asked, address)
	return f.queued, f.held, f.err
}

var errSpool = errors.New("spool: permission denied")

// failsafe bounds a wait for something that must happen. It only ends a
// test that would otherwise hang, so it is generous: a loaded machine (the
// suite runs with -race beside other builds) may take many seconds for
// what takes milliseconds on a quiet one.
const failsafe = 30 * time.Second

// eventually polls cond until it holds or the deadline passes: no fixed sleeps.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seedEvidence records the given checklist evidence for scriba@.
func seedEvidence(t *testing.T, s *Store, kinds ...EvidenceKind) {
	t.Helper()
	for _, k := range kinds {
		if _, _, err := s.RecordEvidence(context.Background(), Evidence{Address: "scriba@hervormdputten.nl", Kind: k, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
}
