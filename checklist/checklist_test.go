// SPDX-License-Identifier: MIT

package checklist

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
	"github.com/dualmx/dualmx/provisioning"
	"github.com/dualmx/dualmx/router"
)

type spool struct{ q, h int }

func (s spool) Pending(string) (int, int, error) { return s.q, s.h, nil }

const addr = "scriba@hervormdputten.nl"

func status(c Checklist) map[string]Status {
	m := map[string]Status{}
	for _, s := range c.Steps {
		m[s.ID] = s.Status
	}
	return m
}

func step(c Checklist, id string) Step {
	for _, s := range c.Steps {
		if s.ID == id {
			return s
		}
	}
	return Step{}
}

// TestWalkThrough follows one address from planned to ready for migrated:
// at each stage the checklist shows the evidence there is, the next step and
// its command, and TenantMissing feeds the router's guard.
func TestWalkThrough(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) // anna holds scriba
	d, err := provisioning.LoadFile("../provisioning/testdata/desired.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := router.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Add(ctx, addr, "scriba@fwd.hervormdputten.nl", "", "test"); err != nil {
		t.Fatal(err)
	}
	tn := m365test.New(t, "hervormdputten.nl")
	g, x := tn.Clients(m365.Retry{Attempts: 1})
	sp := &spool{}
	src := Sources{Store: st, Spool: sp, Tenant: M365{g, x}, Desired: d, Now: func() time.Time { return now }}
	get := func() Checklist {
		t.Helper()
		c, err := For(ctx, src, addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	flip := func(to router.State) {
		t.Helper()
		if _, err := st.Flip(ctx, router.FlipRequest{Address: addr, To: to, Actor: "test"}, sp); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing in the tenant yet.
	c := get()
	if s := status(c); s[StepAccount] != Missing || s[StepMailbox] != Missing || s[StepForward] != Missing || s[StepSpool] != Done {
		t.Fatalf("empty tenant: %+v", c.Steps)
	}
	if c.Holder != "anna.devries@hervormdputten.nl" || c.Next.Command != "dualmx provision apply" || len(c.TenantMissing()) != 3 {
		t.Fatalf("empty tenant: holder %q next %+v, tenant missing %v", c.Holder, c.Next, c.TenantMissing())
	}

	tn.AddUser("anna.devries@hervormdputten.nl", "Anna de Vries")
	tn.AddSharedMailbox(addr, "Scriba")
	tn.AddGrant(addr, "anna.devries@hervormdputten.nl", m365.FullAccess)
	c = get()
	if s := step(c, StepAccess); s.Status != Missing || !strings.Contains(s.Evidence, "lacks SendAs") {
		t.Errorf("access without SendAs: %+v", s)
	}
	if s := step(c, StepAccount); s.Status != Done || !strings.Contains(s.Evidence, "sign-in not known") {
		t.Errorf("account on a tenant without sign-in reports: %+v", s)
	}

	tn.AddGrant(addr, "anna.devries@hervormdputten.nl", m365.SendAs)
	tn.SetSignIn("anna.devries@hervormdputten.nl", time.Time{})
	if s := step(get(), StepAccount); s.Status != Missing || !strings.Contains(s.Evidence, "never signed in") || !strings.Contains(s.Command, "Anna de Vries") {
		t.Errorf("never signed in: %+v", s)
	}
	tn.SetSignIn("anna.devries@hervormdputten.nl", now.Add(-time.Hour))
	c = get()
	if len(c.TenantMissing()) != 0 || c.Next.Command != "dualmx address flip "+addr+" provisioned" {
		t.Fatalf("tenant ready: missing %v, next %q", c.TenantMissing(), c.Next.Command)
	}
	flip(router.Provisioned)
	flip(router.Forwarding)
	if c = get(); c.Next.Command != "dualmx address probe "+addr+" --wait 5m" {
		t.Fatalf("forwarding: next %q", c.Next.Command)
	}
	st.RecordEvidence(ctx, router.Evidence{Address: addr, Kind: router.ForwardVerified, Ref: "n1", Detail: "probe n1"})
	st.RecordDelivery(addr, now, 1)
	if c = get(); c.Next.Command != "dualmx address confirm "+addr+" --by NAME" || step(c, StepForward).At == nil {
		t.Fatalf("verified: next %q, %+v", c.Next.Command, step(c, StepForward))
	}
	st.RecordEvidence(ctx, router.Evidence{Address: addr, Kind: router.HolderConfirmed, Detail: "Anna de Vries"})
	if c = get(); c.Next.Command != "dualmx address flip "+addr+" confirmed" {
		t.Fatalf("confirmed evidence: next %q", c.Next.Command)
	}
	flip(router.Confirmed)
	if c = get(); c.Next.Command != "dualmx address old-removed "+addr+" --by NAME" {
		t.Fatalf("confirmed: next %q", c.Next.Command)
	}
	st.RecordEvidence(ctx, router.Evidence{Address: addr, Kind: router.OldMailboxRemoved, Detail: "removed by Solcon ticket 1"})
	sp.h = 1
	if c = get(); c.Complete() || c.Next.Command != "dualmx queue list" {
		t.Fatalf("held mail: next %q", c.Next.Command)
	}
	sp.h = 0
	if c = get(); !c.Complete() || c.Next.Command != "dualmx address flip "+addr+" migrated" {
		t.Fatalf("complete: %v next %q", c.Complete(), c.Next.Command)
	}
}

// TestNextStep: the next step is data, step and reason and command apart:
// an open step gives its title, its evidence and its command (or what is
// needed where there is none), a state change only its words and command,
// and a migrated address none.
func TestNextStep(t *testing.T) {
	ctx := context.Background()
	st, _ := router.Open(filepath.Join(t.TempDir(), "state.db"))
	defer st.Close()
	st.Add(ctx, addr, "scriba@fwd.hervormdputten.nl", "", "test")
	c, err := For(ctx, Sources{Store: st}, addr)
	if err != nil {
		t.Fatal(err)
	}
	want := NextStep{Step: "holder's account exists and has signed in", Reason: "not checked (the config has no m365: section)",
		Need: "add one to check them (docs/microsoft-365.md)"}
	if c.Next == nil || *c.Next != want {
		t.Errorf("open step without a command: %+v, want %+v", c.Next, want)
	}
	for _, tc := range []struct {
		state router.State
		want  *NextStep
	}{
		{router.Planned, &NextStep{Step: "move " + addr + " to provisioned", Command: "dualmx address flip " + addr + " provisioned"}},
		{router.Forwarding, &NextStep{Step: "forward verified (probe)", Reason: "no record", Command: "dualmx address probe " + addr + " --wait 5m"}},
		{router.Migrated, nil},
	} {
		c := Checklist{Address: addr, State: tc.state, Steps: []Step{
			{ID: StepAccount, Status: Done},
			{ID: StepForward, Title: "forward verified (probe)", Status: Missing, Evidence: "no record", Command: "dualmx address probe " + addr + " --wait 5m"},
		}}
		got := next(c)
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("%s: next = %+v, want %+v", tc.state, got, tc.want)
		}
	}
}

// TestNoTenant: without Microsoft 365 access or a desired-state file the
// tenant steps are unknown, never done, so they still block migrated; they
// are one item, offering no command, since none can prove them without an
// m365: section, but saying what is needed.
func TestNoTenant(t *testing.T) {
	ctx := context.Background()
	st, _ := router.Open(filepath.Join(t.TempDir(), "state.db"))
	defer st.Close()
	st.Add(ctx, addr, "scriba@fwd.hervormdputten.nl", "", "test")
	c, err := For(ctx, Sources{Store: st}, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := status(c)
	if s[StepAccount] != Unknown || s[StepMailbox] != Unknown || s[StepAccess] != Unknown || s[StepSpool] != Unknown {
		t.Fatalf("steps %+v", c.Steps)
	}
	if m := c.TenantMissing(); len(m) != 1 || !strings.Contains(m[0].Problem, "no m365: section") || strings.Contains(m[0].Fix, "dualmx") ||
		!strings.Contains(m[0].Fix, "docs/microsoft-365.md") || c.Next == nil || c.Next.Need != m[0].Fix {
		t.Errorf("tenant missing = %+v", m)
	}
}

// TestTenantCommandsFitTheConfig: a tenant step offers "provision apply"
// only where it can work, with Microsoft 365 access and a desired-state file;
// otherwise the step says what is needed and offers no command.
func TestTenantCommandsFitTheConfig(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	d, err := provisioning.LoadFile("../provisioning/testdata/desired.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := router.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Add(ctx, addr, "scriba@fwd.hervormdputten.nl", "", "test"); err != nil {
		t.Fatal(err)
	}
	tn := m365test.New(t, "hervormdputten.nl")
	g, x := tn.Clients(m365.Retry{Attempts: 1})
	for _, tc := range []struct {
		name      string
		tenant    Tenant
		desired   *provisioning.Desired
		wantFix   string
		wantWords string
		items     int
	}{
		{"neither", nil, nil, "", "no m365: section", 1},
		{"desired-state file only", nil, d, "", "no m365: section", 1},
		{"tenant only", M365{g, x}, nil, "", "no desired-state file", 2},
		{"both", M365{g, x}, d, "dualmx provision apply", "no mailbox", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := For(ctx, Sources{Store: st, Tenant: tc.tenant, Desired: tc.desired, Now: func() time.Time { return now }}, addr)
			if err != nil {
				t.Fatal(err)
			}
			m := c.TenantMissing()
			if len(m) != tc.items {
				t.Fatalf("%d items, want %d: %+v", len(m), tc.items, m)
			}
			var words bool
			for _, it := range m {
				if tc.wantFix == "" && it.Fix != "" && strings.Contains(it.Fix, "provision apply") {
					t.Errorf("offers %q, which cannot work here: %+v", it.Fix, it)
				}
				if tc.wantFix != "" && it.Fix != tc.wantFix {
					t.Errorf("fix %q, want %q", it.Fix, tc.wantFix)
				}
				words = words || strings.Contains(it.Problem, tc.wantWords)
			}
			if !words {
				t.Errorf("no item says %q: %+v", tc.wantWords, m)
			}
		})
	}
}
