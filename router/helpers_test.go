// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/testwait"
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

// failsafe and eventually are internal/testwait's: a generous bound for a
// wait on what must happen, and the wait.
const failsafe = testwait.Failsafe

var eventually = testwait.For

// seedEvidence records the given checklist evidence for scriba@.
func seedEvidence(t *testing.T, s *Store, kinds ...EvidenceKind) {
	t.Helper()
	for _, k := range kinds {
		if _, _, err := s.RecordEvidence(context.Background(), Evidence{Address: "scriba@hervormdputten.nl", Kind: k, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
}
