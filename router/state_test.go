// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseState(t *testing.T) {
	for _, st := range States {
		got, err := ParseState(" " + strings.ToUpper(string(st)) + " ")
		if err != nil || got != st {
			t.Errorf("ParseState(%q) = %q, %v", st, got, err)
		}
	}
	if _, err := ParseState("done"); err == nil || !strings.Contains(err.Error(), "planned, provisioned") {
		t.Errorf("ParseState(done) error = %v, want one listing the states", err)
	}
}

func TestStateAccepts(t *testing.T) {
	want := map[State]bool{Planned: false, Provisioned: false, Forwarding: true, Confirmed: true, Migrated: true, "bogus": false}
	for st, w := range want {
		if st.Accepts() != w {
			t.Errorf("%s.Accepts() = %v, want %v", st, !w, w)
		}
	}
}

func TestFlipTransitions(t *testing.T) {
	const (
		P = Planned
		V = Provisioned
		F = Forwarding
		C = Confirmed
		M = Migrated
	)
	tests := []struct {
		from, to State
		reason   string
		force    bool
		want     Refusal // "" means allowed
	}{
		// One step forward: no reason needed.
		{P, V, "", false, ""},
		{V, F, "", false, ""},
		{F, C, "", false, ""},
		{C, M, "", false, ""},
		{F, C, "holder confirmed by phone", false, ""},
		// Same state.
		{P, P, "", false, RefusedSameState},
		{V, V, "", false, RefusedSameState},
		{F, F, "", false, RefusedSameState},
		{C, C, "x", true, RefusedSameState},
		{M, M, "", false, RefusedSameState},
		// Skipping forward.
		{P, F, "", false, RefusedSkip},
		{P, C, "", false, RefusedSkip},
		{P, M, "", false, RefusedSkip},
		{V, C, "", false, RefusedSkip},
		{V, M, "", false, RefusedSkip},
		{F, M, "", false, RefusedSkip},
		{P, F, "reason alone is not enough", false, RefusedSkip},
		{P, F, "", true, RefusedForceNoReason},
		{P, F, "mailbox made by hand", true, ""},
		{P, M, "legacy address, never forwarded", true, ""},
		{F, M, "holder on holiday, checked by board", true, ""},
		// Backward, any distance: needs a reason.
		{V, P, "", false, RefusedBackwardNoReason},
		{F, V, "", false, RefusedBackwardNoReason},
		{C, F, "", false, RefusedBackwardNoReason},
		{M, C, "", false, RefusedBackwardNoReason},
		{M, P, "", false, RefusedBackwardNoReason},
		{F, P, "   ", false, RefusedBackwardNoReason},
		{V, P, "wrong mailbox", false, ""},
		{F, V, "forward broke SPF", false, ""},
		{C, F, "holder withdrew", false, ""},
		{M, C, "Solcon box still needed", false, ""},
		{M, P, "start over", false, ""},
		{M, P, "", true, RefusedForceNoReason},
		{M, P, "start over", true, ""},
		// Forward one step with force still needs the reason.
		{P, V, "", true, RefusedForceNoReason},
		{P, V, "why not", true, ""},
		// Not a state.
		{P, "done", "", false, RefusedUnknownState},
	}
	ctx := context.Background()
	for _, tt := range tests {
		name := string(tt.from) + "->" + string(tt.to)
		t.Run(name, func(t *testing.T) {
			s := openTest(t, "")
			seed(t, s, tt.from, true)            // a delivery on record: the migrated guard is tested separately
			seedEvidence(t, s, EvidenceKinds...) // and so is the evidence half of it (issue 9)
			before, _ := s.Audit(ctx, "")
			req := FlipRequest{Address: "Scriba@HervormdPutten.nl", To: tt.to, Reason: tt.reason, Actor: "ouderling", Force: tt.force}
			e, err := s.Flip(ctx, req, &fakeSpool{})
			after, _ := s.Audit(ctx, "")
			got, _ := s.Get(ctx, "scriba@hervormdputten.nl")
			if tt.want != "" {
				var te *TransitionError
				if !errors.As(err, &te) || te.Refusal != tt.want || !errors.Is(err, ErrRefused) {
					t.Fatalf("Flip = %v, want refusal %s", err, tt.want)
				}
				if te.Why == "" || te.Fix == "" || !strings.Contains(err.Error(), "scriba@hervormdputten.nl") {
					t.Errorf("refusal message %q lacks address, reason or fix", err)
				}
				if got.State != tt.from || len(after) != len(before) {
					t.Errorf("refused flip changed something: state %s, audit %d -> %d rows", got.State, len(before), len(after))
				}
				return
			}
			if err != nil {
				t.Fatalf("Flip: %v", err)
			}
			if got.State != tt.to {
				t.Errorf("state = %s, want %s", got.State, tt.to)
			}
			if len(after) != len(before)+1 {
				t.Fatalf("audit rows %d -> %d, want one more", len(before), len(after))
			}
			last := after[len(after)-1]
			want := AuditEntry{ID: e.ID, At: e.At, Actor: "ouderling", Address: "scriba@hervormdputten.nl", Action: ActionFlip,
				From: tt.from, To: tt.to, Forced: tt.force, Reason: strings.TrimSpace(tt.reason), Detail: e.Detail}
			if last != want || e != want {
				t.Errorf("audit row\n got %+v\nwant %+v\nreturned %+v", last, want, e)
			}
			if tt.force != strings.HasPrefix(last.Detail, "forced") {
				t.Errorf("detail %q does not note force=%v", last.Detail, tt.force)
			}
		})
	}
}

func TestFlipMigratedGuard(t *testing.T) {
	tests := []struct {
		name        string
		spool       *fakeSpool // nil: no checker at all
		delivered   bool
		reason      string
		force       bool
		want        Refusal
		whyOrDetail string
	}{
		{"clear", &fakeSpool{}, true, "", false, "", ""},
		{"queued mail", &fakeSpool{queued: 2}, true, "", false, RefusedPendingMail, "2 queued and 0 held"},
		{"held mail", &fakeSpool{held: 1}, true, "", false, RefusedPendingMail, "0 queued and 1 held"},
		{"no delivery yet", &fakeSpool{}, false, "", false, RefusedNoDelivery, "no delivery through the relay yet\n      dualmx address probe scriba@hervormdputten.nl --wait 5m"},
		{"held and no delivery", &fakeSpool{held: 1}, false, "", false, RefusedPendingMail, "0 queued and 1 held message(s) in the spool (wait, or release or drop them)\n      dualmx queue list\n  - no delivery"},
		{"checker error", &fakeSpool{err: errSpool}, true, "", false, RefusedPendingUnknown, "permission denied"},
		{"no checker", nil, true, "", false, RefusedPendingUnknown, "could not be checked"},
		{"reason is not force", &fakeSpool{held: 1}, true, "board decided", false, RefusedPendingMail, "held"},
		{"force without reason", &fakeSpool{held: 1}, true, "", true, RefusedForceNoReason, "needs a reason"},
		{"force past held", &fakeSpool{held: 1}, true, "held spam, dropped later", true, "", "forced: 0 queued and 1 held"},
		{"force past no delivery", &fakeSpool{}, false, "address unused for years", true, "", "forced: no delivery through the relay"},
		{"force past checker error", &fakeSpool{err: errSpool}, true, "spool on other host", true, "", "permission denied"},
		{"force, nothing to force", &fakeSpool{}, true, "belt and braces", true, "", "forced"},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, "")
			seed(t, s, Confirmed, tt.delivered)
			// Issue 9: migrated also needs the checklist's evidence; this
			// test is about the spool and delivery half of the guard.
			seedEvidence(t, s, EvidenceKinds...)
			var pc PendingChecker
			if tt.spool != nil {
				pc = tt.spool
			}
			e, err := s.Flip(ctx, FlipRequest{Address: "scriba@fwd.hervormdputten.nl", To: Migrated, Reason: tt.reason, Force: tt.force}, pc)
			got, _ := s.Get(ctx, "scriba@hervormdputten.nl")
			if tt.want != "" {
				var te *TransitionError
				if !errors.As(err, &te) || te.Refusal != tt.want {
					t.Fatalf("Flip = %v, want refusal %s", err, tt.want)
				}
				if !strings.Contains(err.Error(), tt.whyOrDetail) || !strings.Contains(err.Error(), "--force") {
					t.Errorf("message %q lacks %q or the --force hint", err, tt.whyOrDetail)
				}
				if got.State != Confirmed {
					t.Errorf("state = %s after refusal", got.State)
				}
				return
			}
			if err != nil {
				t.Fatalf("Flip: %v", err)
			}
			if got.State != Migrated || !strings.Contains(e.Detail, tt.whyOrDetail) || e.Forced != tt.force {
				t.Errorf("state %s, entry %+v; want migrated with detail containing %q", got.State, e, tt.whyOrDetail)
			}
			if e.Actor != CurrentActor() {
				t.Errorf("actor = %q, want the OS user %q", e.Actor, CurrentActor())
			}
			if tt.spool != nil && (len(tt.spool.asked) != 1 || tt.spool.asked[0] != "scriba@hervormdputten.nl") {
				t.Errorf("spool asked about %q, want the public address once", tt.spool.asked)
			}
		})
	}
}

func TestFlipUnknownAddress(t *testing.T) {
	s := openTest(t, "")
	_, err := s.Flip(context.Background(), FlipRequest{Address: "koster@hervormdputten.nl", To: Provisioned}, nil)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "koster@hervormdputten.nl") {
		t.Errorf("Flip unknown = %v, want ErrNotFound naming the address", err)
	}
	_, err = s.Flip(context.Background(), FlipRequest{Address: "koster%x@hervormdputten.nl", To: Provisioned}, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Flip invalid = %v, want ErrInvalid", err)
	}
}
