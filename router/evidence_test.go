// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSchemaUpgradeFromVersion1 builds a database exactly as a version-1
// dualmx left it, with data, and checks that opening it adds the evidence
// table and keeps every row.
func TestSchemaUpgradeFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT`,
		migrations[0],
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO addresses (address, alias, target, state, created_at, updated_at) VALUES
			('scriba@hervormdputten.nl', 'scriba@fwd.hervormdputten.nl', 'scriba@hervormdputten.nl', 'confirmed', '2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z')`,
		`INSERT INTO audit (at, actor, address, action) VALUES ('2026-01-01T00:00:00.000000000Z', 'old', 'scriba@hervormdputten.nl', 'add')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openTest(t, path)
	var v int
	if err := s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(migrations) || v < 2 {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(migrations))
	}
	a, err := s.Get(context.Background(), "scriba@fwd.hervormdputten.nl")
	if err != nil || a.State != Confirmed {
		t.Fatalf("address after upgrade: %+v %v", a, err)
	}
	if au, _ := s.Audit(context.Background(), a.Address); len(au) != 1 || au[0].Actor != "old" {
		t.Fatalf("audit after upgrade: %+v", au)
	}
	seedEvidence(t, s, HolderConfirmed)
	if ev, err := s.Evidence(context.Background(), a.Address); err != nil || len(ev) != 1 {
		t.Fatalf("evidence after upgrade: %+v %v", ev, err)
	}
}

// TestSchemaUpgradeFromVersion2 opens a database as a version-2 dualmx left
// it, received_count and all: a reader is told to let the daemon upgrade
// it, the upgrade drops the column and keeps every row and every other
// column, and the triggers the daemon polls still fire.
func TestSchemaUpgradeFromVersion2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT`,
		migrations[0], migrations[1],
		`INSERT INTO schema_version (version) VALUES (2)`,
		`INSERT INTO addresses (address, alias, target, state, created_at, updated_at, last_delivery_at, delivered_count, received_count) VALUES
			('scriba@hervormdputten.nl', 'scriba@fwd.hervormdputten.nl', 'scriba@hervormdputten.onmicrosoft.com', 'forwarding',
			 '2026-01-01T00:00:00.000000000Z', '2026-01-02T00:00:00.000000000Z', '2026-01-03T00:00:00.000000000Z', 12, 34)`,
		`INSERT INTO evidence (address, kind, at, actor, ref) VALUES ('scriba@hervormdputten.nl', 'forward_verified', '2026-01-02T00:00:00.000000000Z', 'relay', 'n1')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	if _, err := OpenReadOnly(path); err == nil || !strings.Contains(err.Error(), "schema version 2 is older") {
		t.Fatalf("read-only open of a version-2 database: %v", err)
	}

	s := openTest(t, path)
	ctx := context.Background()
	a, err := s.Get(ctx, "scriba@fwd.hervormdputten.nl")
	if err != nil || a.State != Forwarding || a.Delivered != 12 || a.Target != "scriba@hervormdputten.onmicrosoft.com" ||
		!a.LastDelivery.Equal(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)) || !a.CreatedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("address after upgrade: %+v %v", a, err)
	}
	var cols int
	if err := s.db.QueryRow(`SELECT count(*) FROM pragma_table_info('addresses') WHERE name = 'received_count'`).Scan(&cols); err != nil || cols != 0 {
		t.Errorf("received_count still there (%d, %v)", cols, err)
	}
	if ev, err := s.Evidence(ctx, a.Address); err != nil || len(ev) != 1 {
		t.Errorf("evidence after upgrade: %+v %v", ev, err)
	}
	g0, _ := s.generation(ctx)
	if _, err := s.Flip(ctx, FlipRequest{Address: a.Address, To: Confirmed}, nil); err != nil {
		t.Fatal(err)
	}
	if g1, _ := s.generation(ctx); g1 == g0 {
		t.Error("a flip after the upgrade did not bump the generation the daemon polls")
	}
	s.Close()
	if r, err := OpenReadOnly(path); err != nil {
		t.Errorf("read-only open after the upgrade: %v", err)
	} else {
		r.Close()
	}
}

func TestRecordEvidence(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", WithClock(func() time.Time { return t0 }))
	seed(t, s, Forwarding, false)
	e, dup, err := s.RecordEvidence(ctx, Evidence{Address: "scriba@fwd.hervormdputten.nl", Kind: ForwardVerified, Ref: "n1", Detail: "probe n1 via relay"})
	if err != nil || dup {
		t.Fatalf("first record: %v dup=%v", err, dup)
	}
	if e.Address != "scriba@hervormdputten.nl" || !e.At.Equal(t0) || e.Actor != CurrentActor() || e.ID == 0 {
		t.Errorf("record = %+v", e)
	}
	// The same probe arriving twice (a replay, or the old host retrying) is one record.
	e2, dup, err := s.RecordEvidence(ctx, Evidence{Address: "scriba@hervormdputten.nl", Kind: ForwardVerified, Ref: "n1"})
	if err != nil || !dup || e2.ID != e.ID {
		t.Fatalf("second record: %+v dup=%v %v", e2, dup, err)
	}
	if _, _, err := s.RecordEvidence(ctx, Evidence{Address: "koster@hervormdputten.nl", Kind: HolderConfirmed}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown address: %v", err)
	}
	if _, _, err := s.RecordEvidence(ctx, Evidence{Address: "scriba@hervormdputten.nl", Kind: "bogus"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown kind: %v", err)
	}
	au, _ := s.Audit(ctx, "scriba@hervormdputten.nl")
	if last := au[len(au)-1]; len(au) != 2 || last.Action != "forward-verified" || last.Detail != "probe n1 via relay" {
		t.Errorf("audit = %+v", au)
	}
}

// TestConfirm: the holder's confirmation is recorded in every state, and
// moves a forwarding address (and only a forwarding one) to confirmed, with
// the evidence and the flip in the audit log.
func TestConfirm(t *testing.T) {
	tests := []struct {
		from State
		want State
	}{
		{Planned, Planned},
		{Provisioned, Provisioned},
		{Forwarding, Confirmed},
		{Confirmed, Confirmed},
		{Migrated, Migrated},
	}
	for _, tc := range tests {
		t.Run(string(tc.from), func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, "", WithClock(func() time.Time { return t0 }))
			seed(t, s, tc.from, false)
			e, flip, err := s.Confirm(ctx, Evidence{Address: "scriba@fwd.hervormdputten.nl", Kind: OldMailboxRemoved, Actor: "admin", Detail: "Anna: by phone"})
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind != HolderConfirmed || e.Address != "scriba@hervormdputten.nl" || e.ID == 0 {
				t.Errorf("evidence = %+v", e)
			}
			a, _ := s.Get(ctx, "scriba@hervormdputten.nl")
			if a.State != tc.want {
				t.Errorf("state %s, want %s", a.State, tc.want)
			}
			au, _ := s.Audit(ctx, "scriba@hervormdputten.nl")
			last := au[len(au)-1]
			if tc.want == tc.from {
				if flip != nil || last.Action != "confirm" {
					t.Errorf("flip %+v; last audit %+v", flip, last)
				}
				return
			}
			if flip == nil || flip.From != Forwarding || flip.To != Confirmed || flip.Actor != "admin" {
				t.Fatalf("flip = %+v", flip)
			}
			if last.Action != ActionFlip || last.Reason != "holder confirmed: Anna: by phone" || au[len(au)-2].Action != "confirm" {
				t.Errorf("audit = %+v", au)
			}
		})
	}
	s := openTest(t, "")
	if _, _, err := s.Confirm(context.Background(), Evidence{Address: "koster@hervormdputten.nl"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown address: %v", err)
	}
}

// TestFlipMigratedNeedsEvidence: each checklist step without evidence, the
// ones in this database and the ones the caller reports, refuses migrated;
// --force with a reason goes past and names them in the audit log.
func TestFlipMigratedNeedsEvidence(t *testing.T) {
	all := EvidenceKinds
	tests := []struct {
		name    string
		have    []EvidenceKind
		missing []MissingEvidence
		force   bool
		want    string // "" means allowed
	}{
		{"all evidence", all, nil, false, ""},
		{"no probe", []EvidenceKind{HolderConfirmed, OldMailboxRemoved}, nil, false, "no verified forward"},
		{"no confirmation", []EvidenceKind{ForwardVerified, OldMailboxRemoved}, nil, false, "no confirmation from the holder"},
		{"old mailbox not removed", []EvidenceKind{ForwardVerified, HolderConfirmed}, nil, false, "no statement that the old mailbox is removed"},
		{"caller's step missing", all, []MissingEvidence{{"shared mailbox not found", "run provision apply"}}, false, "shared mailbox not found"},
		{"forced past", nil, []MissingEvidence{{"account unknown", "x"}}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, "")
			seed(t, s, Confirmed, true)
			seedEvidence(t, s, tt.have...)
			req := FlipRequest{Address: "scriba@hervormdputten.nl", To: Migrated, Missing: tt.missing, Force: tt.force}
			if tt.force {
				req.Reason = "board decision"
			}
			e, err := s.Flip(ctx, req, &fakeSpool{})
			if tt.want != "" {
				var te *TransitionError
				if !errors.As(err, &te) || te.Refusal != RefusedNoEvidence || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Flip = %v, want no_evidence naming %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.force && (!strings.Contains(e.Detail, "account unknown") || !strings.Contains(e.Detail, "no confirmation from the holder")) {
				t.Errorf("forced detail %q does not name what was missing", e.Detail)
			}
		})
	}
}
