// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// EvidenceKind names a migration step that dualmx itself records proof of.
// The other steps (account, shared mailbox, holder access) are proven by
// asking Microsoft 365, and the delivery and spool steps by the address row
// and the spool.
type EvidenceKind string

// Evidence kinds.
const (
	// ForwardVerified: a probe message carrying a valid marker arrived
	// through the old host's forward (recorded by the relay).
	ForwardVerified EvidenceKind = "forward_verified"
	// HolderConfirmed: the holder said both accounts work (dualmx address confirm).
	HolderConfirmed EvidenceKind = "holder_confirmed"
	// OldMailboxRemoved: an admin stated the old host's mailbox is gone.
	OldMailboxRemoved EvidenceKind = "old_mailbox_removed"
)

// EvidenceKinds lists the kinds in checklist order.
var EvidenceKinds = []EvidenceKind{ForwardVerified, HolderConfirmed, OldMailboxRemoved}

// Audit action written with each kind.
var evidenceAction = map[EvidenceKind]string{
	ForwardVerified:   "forward-verified",
	HolderConfirmed:   "confirm",
	OldMailboxRemoved: "old-mailbox-removed",
}

// Evidence is one recorded proof.
type Evidence struct {
	ID      int64        `json:"id"`
	Address string       `json:"address"`
	Kind    EvidenceKind `json:"kind"`
	At      time.Time    `json:"at"`
	Actor   string       `json:"actor"`
	// Ref makes a record unique per kind (a probe's nonce); "" for none.
	Ref    string `json:"ref,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// MissingEvidence is a step without proof, in words, with the one command
// that proves it (or makes it true). Fix is empty when no command can with
// the current config; Problem then says what is needed.
type MissingEvidence struct {
	Problem, Fix string
}

// RecordEvidence stores e for its address (public address or alias) with an
// audit entry, in one transaction. At defaults to now, Actor to the OS user.
// A record whose Kind and Ref were stored before is not stored again: dup is
// then true and the earlier record is returned.
func (s *Store) RecordEvidence(ctx context.Context, e Evidence) (_ Evidence, dup bool, _ error) {
	key, err := s.prepareEvidence(&e)
	if err != nil {
		return Evidence{}, false, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		e, dup, err = s.insertEvidence(ctx, tx, key, e)
		return err
	})
	if err != nil {
		return Evidence{}, false, fmt.Errorf("evidence %s %s: %w", e.Kind, key, err)
	}
	return e, dup, nil
}

// Confirm records the holder's confirmation (step 3, Kind HolderConfirmed
// whatever e says) and moves a forwarding address to confirmed, in one
// transaction: the confirmation is what the confirmed state means. flip is
// that state change, nil when the address was in another state (earlier,
// it stays there: the confirmation is kept as evidence for later; further,
// it has been confirmed already).
func (s *Store) Confirm(ctx context.Context, e Evidence) (_ Evidence, flip *AuditEntry, _ error) {
	e.Kind = HolderConfirmed
	key, err := s.prepareEvidence(&e)
	if err != nil {
		return Evidence{}, nil, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if e, _, err = s.insertEvidence(ctx, tx, key, e); err != nil {
			return err
		}
		a, err := getAddress(ctx, tx, key)
		if err != nil || a.State != Forwarding {
			return err
		}
		entry, err := s.flip(ctx, tx, a, FlipRequest{Address: a.Address, To: Confirmed, Actor: e.Actor, Reason: "holder confirmed: " + e.Detail}, nil)
		flip = &entry
		return err
	})
	if err != nil {
		return Evidence{}, nil, fmt.Errorf("evidence %s %s: %w", e.Kind, key, err)
	}
	return e, flip, nil
}

// prepareEvidence checks e's kind and address and fills its defaults; it
// returns the address's lookup key.
func (s *Store) prepareEvidence(e *Evidence) (string, error) {
	if _, ok := evidenceAction[e.Kind]; !ok {
		return "", fmt.Errorf("evidence: %w: unknown kind %q", ErrInvalid, e.Kind)
	}
	key, err := NormalizeAddress(e.Address)
	if err != nil {
		return "", fmt.Errorf("evidence: %w", err)
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	e.At = e.At.UTC()
	e.Actor = actorOr(e.Actor)
	e.Ref, e.Detail = strings.TrimSpace(e.Ref), strings.TrimSpace(e.Detail)
	return key, nil
}

// insertEvidence stores e for the address at key with its audit entry,
// unless a record of the same Kind and Ref is there already.
func (s *Store) insertEvidence(ctx context.Context, tx *sql.Tx, key string, e Evidence) (_ Evidence, dup bool, _ error) {
	a, err := getAddress(ctx, tx, key)
	if err != nil {
		return e, false, err
	}
	e.Address = a.Address
	if e.Ref != "" {
		prev, err := scanEvidence(tx.QueryRowContext(ctx, `SELECT `+evidenceColumns+` FROM evidence WHERE kind = ? AND ref = ?`, string(e.Kind), e.Ref))
		switch {
		case err == nil:
			return prev, true, nil
		case !errors.Is(err, sql.ErrNoRows):
			return e, false, err
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO evidence (address, kind, at, actor, ref, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		e.Address, string(e.Kind), s.stamp(e.At), e.Actor, e.Ref, e.Detail)
	if err != nil {
		return e, false, err
	}
	if e.ID, err = res.LastInsertId(); err != nil {
		return e, false, err
	}
	_, err = insertAudit(ctx, tx, s.stamp(e.At), AuditEntry{Actor: e.Actor, Address: e.Address, Action: evidenceAction[e.Kind], Detail: e.Detail})
	return e, false, err
}

const evidenceColumns = `id, address, kind, at, actor, ref, detail`

func scanEvidence(r scanner) (Evidence, error) {
	var e Evidence
	var kind, at string
	if err := r.Scan(&e.ID, &e.Address, &kind, &at, &e.Actor, &e.Ref, &e.Detail); err != nil {
		return Evidence{}, err
	}
	e.Kind = EvidenceKind(kind)
	t, err := time.Parse(timeLayout, at)
	if err != nil {
		return Evidence{}, fmt.Errorf("evidence %d: %w", e.ID, err)
	}
	e.At = t
	return e, nil
}

type rowsQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func listEvidence(ctx context.Context, q rowsQuerier, address string) ([]Evidence, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+evidenceColumns+` FROM evidence WHERE address = ? ORDER BY id`, address)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Evidence
	for rows.Next() {
		e, err := scanEvidence(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Evidence returns every record for an address (public address or alias), oldest first.
func (s *Store) Evidence(ctx context.Context, address string) ([]Evidence, error) {
	a, err := s.Get(ctx, address)
	if err != nil {
		return nil, err
	}
	out, err := listEvidence(ctx, s.db, a.Address)
	if err != nil {
		return nil, fmt.Errorf("evidence %s: %w", a.Address, err)
	}
	return out, nil
}

// Latest picks the newest record of each kind.
func Latest(list []Evidence) map[EvidenceKind]Evidence {
	m := map[EvidenceKind]Evidence{}
	for _, e := range list {
		if p, ok := m[e.Kind]; !ok || !e.At.Before(p.At) {
			m[e.Kind] = e
		}
	}
	return m
}

// evidenceProblems is the checklist half of the migrated guard: the steps
// proven in this database, read inside the flip's transaction, plus what the
// caller found missing outside it.
func evidenceProblems(ctx context.Context, tx *sql.Tx, a Address, missing []MissingEvidence) (_ []MissingEvidence, first Refusal, _ error) {
	list, err := listEvidence(ctx, tx, a.Address)
	if err != nil {
		return nil, "", fmt.Errorf("evidence: %w", err)
	}
	have := Latest(list)
	out := append([]MissingEvidence(nil), missing...)
	if _, ok := have[ForwardVerified]; !ok {
		out = append(out, MissingEvidence{"no verified forward at the old host", probeCommand(a.Address)})
	}
	if _, ok := have[HolderConfirmed]; !ok {
		out = append(out, MissingEvidence{"no confirmation from the holder that both accounts work",
			"dualmx address confirm " + a.Address + " --by NAME"})
	}
	if _, ok := have[OldMailboxRemoved]; !ok {
		out = append(out, MissingEvidence{"no statement that the old mailbox is removed",
			"dualmx address old-removed " + a.Address + " --by NAME"})
	}
	if len(out) > 0 {
		first = RefusedNoEvidence
	}
	return out, first, nil
}
