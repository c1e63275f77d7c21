// SPDX-License-Identifier: MIT

// Package router owns the per-address migration state (a SQLite database shared
// by the daemon and the admin CLI), the rules for moving an address between
// states, the audit log of every change, and the in-memory routing table the
// SMTP server consults for each RCPT.
package router

import (
	"errors"
	"fmt"
	"strings"
)

// State is where an address is in its migration.
type State string

// The states in their forward order.
const (
	Planned     State = "planned"     // known, nothing exists at Microsoft 365 yet
	Provisioned State = "provisioned" // personal account, shared mailbox and holder access exist
	Forwarding  State = "forwarding"  // the old host forwards to the relay: dual delivery
	Confirmed   State = "confirmed"   // the holder confirmed both mailboxes work
	Migrated    State = "migrated"    // old mailbox removed; the alias may still carry mail until the MX cutover
)

// States lists every state in forward order.
var States = []State{Planned, Provisioned, Forwarding, Confirmed, Migrated}

// ParseState accepts a state name in any case, as typed on the command line.
func ParseState(s string) (State, error) {
	st := State(strings.ToLower(strings.TrimSpace(s)))
	if st.index() < 0 {
		return "", fmt.Errorf("unknown state %q (want one of %s)", s, stateNames())
	}
	return st, nil
}

func stateNames() string {
	names := make([]string, len(States))
	for i, s := range States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Accepts reports whether the relay takes mail for an address in this state.
// Migrated still accepts: until the domain's MX moves, the old host may keep
// forwarding through a forward-only alias, and refusing that mail would lose it.
func (s State) Accepts() bool {
	return s == Forwarding || s == Confirmed || s == Migrated
}

func (s State) String() string { return string(s) }

// index is the position in States, -1 for an unknown state.
func (s State) index() int {
	for i, x := range States {
		if x == s {
			return i
		}
	}
	return -1
}

// ErrRefused is matched by every *TransitionError.
var ErrRefused = errors.New("transition refused")

// Refusal says, as data, why a transition was refused.
type Refusal string

// Refusal values.
const (
	RefusedSameState        Refusal = "same_state"
	RefusedUnknownState     Refusal = "unknown_state"
	RefusedBackwardNoReason Refusal = "backward_needs_reason"
	RefusedSkip             Refusal = "skips_steps"
	RefusedForceNoReason    Refusal = "force_needs_reason"
	RefusedPendingMail      Refusal = "pending_mail"
	RefusedNoDelivery       Refusal = "no_delivery"
	RefusedPendingUnknown   Refusal = "pending_unknown"
	RefusedNoEvidence       Refusal = "no_evidence"
)

// TransitionError explains a refused flip in words an admin can act on.
type TransitionError struct {
	Address  string
	From, To State
	Refusal  Refusal
	Why      string // what is wrong
	Fix      string // what to do about it
	// Missing is, for a refused move to migrated, each thing without proof
	// with the command that proves it; Why and Fix then summarise.
	Missing []MissingEvidence
}

func (e *TransitionError) Error() string {
	if len(e.Missing) == 0 {
		msg := fmt.Sprintf("%s: cannot move from %s to %s: %s", e.Address, e.From, e.To, e.Why)
		if e.Fix != "" {
			msg += "; " + e.Fix
		}
		return msg
	}
	// One line per command: two problems one command proves share a line.
	var b strings.Builder
	fmt.Fprintf(&b, "%s stays %s: %s needs proof of each step; missing:", e.Address, e.From, e.To)
	var order []string
	byFix := map[string][]string{}
	for _, m := range e.Missing {
		key := m.Fix
		if key == "" {
			key = "\x00" + m.Problem // no command: a line of its own
		}
		if _, ok := byFix[key]; !ok {
			order = append(order, key)
		}
		byFix[key] = append(byFix[key], m.Problem)
	}
	for _, key := range order {
		b.WriteString("\n  - " + strings.Join(byFix[key], "; "))
		if !strings.HasPrefix(key, "\x00") {
			b.WriteString("\n      " + key)
		}
	}
	fmt.Fprintf(&b, "\nTo move anyway, with the reason in the audit log:\n      dualmx address flip %s %s --force --reason \"...\"", e.Address, e.To)
	return b.String()
}

// Is makes errors.Is(err, ErrRefused) true for every refusal.
func (e *TransitionError) Is(target error) bool { return target == ErrRefused }

// checkStep applies the rules that depend only on the two states and the
// request; the migrated guard needs the spool and the delivery record and
// lives in Store.Flip.
func checkStep(addr string, from State, req FlipRequest) error {
	refuse := func(r Refusal, why, fix string) error {
		return &TransitionError{Address: addr, From: from, To: req.To, Refusal: r, Why: why, Fix: fix}
	}
	fi, ti := from.index(), req.To.index()
	if ti < 0 {
		return refuse(RefusedUnknownState, fmt.Sprintf("%q is not a state", req.To), "use one of "+stateNames())
	}
	if fi < 0 {
		return refuse(RefusedUnknownState, fmt.Sprintf("the database holds unknown state %q", from),
			"check which dualmx version wrote it")
	}
	reason := strings.TrimSpace(req.Reason) != ""
	switch {
	case fi == ti:
		return refuse(RefusedSameState, fmt.Sprintf("it is already %s", from), "nothing to do")
	case req.Force && !reason:
		return refuse(RefusedForceNoReason, "--force needs a reason for the audit log",
			`add --reason "why this is safe"`)
	case ti < fi && !reason:
		return refuse(RefusedBackwardNoReason, "moving back needs a reason for the audit log",
			`add --reason "what went wrong"`)
	case ti > fi+1 && !req.Force:
		return refuse(RefusedSkip, fmt.Sprintf("that skips %s", strings.Join(stepNames(fi+1, ti), ", ")),
			fmt.Sprintf("move to %s first, or use --force with --reason", States[fi+1]))
	}
	return nil
}

func stepNames(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, string(States[i]))
	}
	return out
}
