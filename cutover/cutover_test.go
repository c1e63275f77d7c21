// SPDX-License-Identifier: MIT

package cutover

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

var t0 = time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)

func addrs(states ...router.State) []router.Address {
	var out []router.Address
	for i, s := range states {
		out = append(out, router.Address{Address: string(rune('a'+i)) + "@example.nl", State: s})
	}
	return out
}

func report(findings ...dnscheck.Finding) *dnscheck.Report {
	return &dnscheck.Report{Domain: "example.nl", Findings: findings}
}

var (
	clean    = report(dnscheck.Finding{Check: dnscheck.CheckMX, Level: dnscheck.OK})
	mxErr    = report(dnscheck.Finding{Check: dnscheck.CheckMX, Level: dnscheck.Error, Message: "MX is 0 tenant"})
	spfErr   = report(dnscheck.Finding{Check: dnscheck.CheckSPF, Level: dnscheck.Error, Message: "two SPF records"})
	allMigr  = addrs(router.Migrated, router.Migrated)
	someMigr = addrs(router.Migrated, router.Confirmed)
)

func TestEvaluate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     Inputs
		want   State
		reason string
		rec    Record // compared when Domain is set
	}{
		{"no addresses", Inputs{Before: clean, MXServers: 2}, Preparing, "no addresses", Record{}},
		{"address not migrated", Inputs{Addresses: someMigr, Before: clean, MXServers: 2}, Preparing, "b@example.nl (confirmed)", Record{}},
		{"dns error", Inputs{Addresses: allMigr, Before: spfErr, MXServers: 2}, Preparing, "phase before) has 1 error", Record{}},
		{"ready, remembers the old TTL", Inputs{Addresses: allMigr, Before: clean, MXServers: 2, MXTTL: 300 * time.Second}, Ready, "cutover confirm",
			Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, OldMXSeen: t0}},
		{"switch rolling out", Inputs{Addresses: allMigr, Before: mxErr, MXSwitched: 1, MXServers: 2, Record: Record{Domain: "example.nl", OldMXTTL: time.Hour}}, Ready,
			"switched on 1 of 2", Record{Domain: "example.nl", OldMXTTL: time.Hour}},
		{"switch rolling out, other errors", Inputs{Addresses: allMigr, Before: report(mxErr.Findings[0], spfErr.Findings[0]), MXSwitched: 1, MXServers: 2}, Preparing,
			"1 error", Record{}},
		{"switched just now", Inputs{Addresses: allMigr, Before: mxErr, After: clean, MXSwitched: 2, MXServers: 2, Record: Record{Domain: "example.nl", OldMXTTL: 300 * time.Second}},
			Switched, "2026-04-01 10:10 UTC", Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, SwitchedAt: t0}},
		{"switched, TTL unknown", Inputs{Addresses: allMigr, After: clean, MXSwitched: 2, MXServers: 2}, Switched, "assuming 24h0m0s", Record{}},
		{"draining: mail still arrives", Inputs{After: clean, MXSwitched: 2, MXServers: 2, LastReceived: t0.Add(-time.Hour), QuietPeriod: 72 * time.Hour,
			Record: Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, SwitchedAt: t0.Add(-2 * time.Hour)}}, Draining, "waiting for 72h0m0s without any, until 2026-04-04 09:00 UTC", Record{}},
		{"draining: queue not empty", Inputs{After: clean, MXSwitched: 2, MXServers: 2, LastReceived: t0.Add(-80 * time.Hour), QuietPeriod: 72 * time.Hour, Queued: 3,
			Record: Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, SwitchedAt: t0.Add(-100 * time.Hour)}}, Draining, "3 message(s) still in the queue", Record{}},
		{"quiet measured from the switch", Inputs{After: clean, MXSwitched: 2, MXServers: 2, LastReceived: t0.Add(-200 * time.Hour), QuietPeriod: 72 * time.Hour,
			Record: Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, SwitchedAt: t0.Add(-71 * time.Hour)}}, Draining, "without any", Record{}},
		{"done", Inputs{After: clean, MXSwitched: 2, MXServers: 2, LastReceived: t0.Add(-80 * time.Hour), QuietPeriod: 72 * time.Hour,
			Record: Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, SwitchedAt: t0.Add(-100 * time.Hour)}}, Done, "may be stopped", Record{}},
		{"done but DNS errors after", Inputs{After: spfErr, MXSwitched: 2, MXServers: 2, QuietPeriod: time.Hour,
			Record: Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, SwitchedAt: t0.Add(-100 * time.Hour)}}, Done, "phase after) has 1 error", Record{}},
		{"MX went back: switch forgotten", Inputs{Addresses: allMigr, Before: clean, MXServers: 2, MXTTL: 300 * time.Second,
			Record: Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, SwitchedAt: t0.Add(-time.Hour)}}, Ready, "confirm",
			Record{Domain: "example.nl", OldMXTTL: 300 * time.Second, OldMXSeen: t0}},
		{"record of another domain ignored", Inputs{After: clean, MXSwitched: 2, MXServers: 2,
			Record: Record{Domain: "other.example", OldMXTTL: time.Second, SwitchedAt: t0.Add(-1000 * time.Hour)}}, Switched, "assuming", Record{Domain: "example.nl", SwitchedAt: t0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now, tc.in.Domain = t0, "example.nl"
			st, rec := Evaluate(tc.in)
			if st.State != tc.want {
				t.Errorf("state %s, want %s; reasons: %q", st.State, tc.want, st.Reasons)
			}
			if !strings.Contains(strings.Join(st.Reasons, " | "), tc.reason) {
				t.Errorf("reasons %q do not mention %q", st.Reasons, tc.reason)
			}
			if tc.rec.Domain != "" && rec != tc.rec {
				t.Errorf("record %+v, want %+v", rec, tc.rec)
			}
		})
	}
}

type auditLog []router.AuditEntry

func (a *auditLog) AppendAudit(_ context.Context, e router.AuditEntry) error {
	*a = append(*a, e)
	return nil
}

func TestConfirm(t *testing.T) {
	ready := Status{Domain: "example.nl", State: Ready, Addresses: 2, Migrated: 2, MXServers: 2}
	preparing := Status{Domain: "example.nl", State: Preparing, Reasons: []string{"1 of 2 address(es) not migrated: b@example.nl (confirmed)"}}
	for _, tc := range []struct {
		name    string
		st      Status
		req     ConfirmRequest
		wantErr string
		audited bool
	}{
		{"ready", ready, ConfirmRequest{Actor: "admin"}, "", true},
		{"not ready", preparing, ConfirmRequest{Actor: "admin"}, "not ready for the MX change: it is preparing (1 of 2", false},
		{"force without reason", preparing, ConfirmRequest{Actor: "admin", Force: true, Reason: "  "}, "--force needs --reason", false},
		{"forced", preparing, ConfirmRequest{Actor: "admin", Force: true, Reason: "b@ never receives mail"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log auditLog
			e, err := Confirm(context.Background(), &log, tc.st, tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(tc.wantErr, "not ready") && !errors.Is(err, ErrNotReady) {
					t.Errorf("err is not ErrNotReady")
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := len(log) == 1; got != tc.audited {
				t.Fatalf("audited = %v, want %v", got, tc.audited)
			}
			if tc.audited {
				if log[0] != e || e.Action != ActionConfirm || e.Address != "example.nl" || e.Forced != tc.req.Force || e.Reason != strings.TrimSpace(tc.req.Reason) {
					t.Errorf("audit entry %+v", log[0])
				}
				if tc.req.Force && !strings.Contains(e.Detail, "forced past: 1 of 2 address(es) not migrated") {
					t.Errorf("forced confirm does not record what it overrode: %q", e.Detail)
				}
			}
		})
	}
}

func TestLastReceived(t *testing.T) {
	a := []router.Address{{LastDelivery: t0.Add(-time.Hour)}, {LastDelivery: t0.Add(-3 * time.Hour)}, {}}
	sp := &fakeSpool{items: []spool.Item{{ReceivedAt: t0.Add(-2 * time.Hour)}, {ReceivedAt: t0, DSN: true}}}
	lastReceived := func() time.Time {
		n, arrived, err := summarize(sp)
		if err != nil || n != len(sp.items) {
			t.Fatalf("summarize: %d, %v", n, err)
		}
		return LastReceived(a, arrived)
	}
	if got := lastReceived(); !got.Equal(t0.Add(-time.Hour)) {
		t.Errorf("LastReceived = %v, want an hour before t0 (DSNs are not traffic)", got)
	}
	sp.items = append(sp.items, spool.Item{ReceivedAt: t0.Add(-time.Minute)})
	if got := lastReceived(); !got.Equal(t0.Add(-time.Minute)) {
		t.Errorf("LastReceived = %v, want the queued message's arrival", got)
	}
	if got := LastReceived(nil, time.Time{}); !got.IsZero() {
		t.Errorf("LastReceived of nothing = %v", got)
	}
}
