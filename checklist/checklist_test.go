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
	if c.Holder != "anna.devries@hervormdputten.nl" || c.NextCommand != "dualmx provision apply" || len(c.TenantMissing()) != 3 {
		t.Fatalf("empty tenant: holder %q next %q %q, tenant missing %v", c.Holder, c.Next, c.NextCommand, c.TenantMissing())
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
	if len(c.TenantMissing()) != 0 || c.NextCommand != "dualmx address flip "+addr+" provisioned" {
		t.Fatalf("tenant ready: missing %v, next %q", c.TenantMissing(), c.NextCommand)
	}
	flip(router.Provisioned)
	flip(router.Forwarding)
	if c = get(); c.NextCommand != "dualmx address probe "+addr+" --wait 5m" {
		t.Fatalf("forwarding: next %q", c.NextCommand)
	}
	st.RecordEvidence(ctx, router.Evidence{Address: addr, Kind: router.ForwardVerified, Ref: "n1", Detail: "probe n1"})
	st.RecordDelivery(addr, now, 1)
	if c = get(); c.NextCommand != "dualmx address confirm "+addr+" --by NAME" || step(c, StepForward).At == nil {
		t.Fatalf("verified: next %q, %+v", c.NextCommand, step(c, StepForward))
	}
	st.RecordEvidence(ctx, router.Evidence{Address: addr, Kind: router.HolderConfirmed, Detail: "Anna de Vries"})
	if c = get(); c.NextCommand != "dualmx address flip "+addr+" confirmed" {
		t.Fatalf("confirmed evidence: next %q", c.NextCommand)
	}
	flip(router.Confirmed)
	if c = get(); c.NextCommand != "dualmx address old-removed "+addr+" --by NAME" {
		t.Fatalf("confirmed: next %q", c.NextCommand)
	}
	st.RecordEvidence(ctx, router.Evidence{Address: addr, Kind: router.OldMailboxRemoved, Detail: "removed by Solcon ticket 1"})
	sp.h = 1
	if c = get(); c.Complete() || c.NextCommand != "dualmx queue list" {
		t.Fatalf("held mail: next %q", c.NextCommand)
	}
	sp.h = 0
	if c = get(); !c.Complete() || c.NextCommand != "dualmx address flip "+addr+" migrated" {
		t.Fatalf("complete: %v next %q", c.Complete(), c.NextCommand)
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
		!strings.Contains(m[0].Fix, "docs/microsoft-365.md") || c.NextCommand != m[0].Fix {
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
