// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAddGetList(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", WithClock(func() time.Time { return t0 }))
	a, err := s.Add(ctx, " Scriba@HervormdPutten.nl", "SCRIBA@fwd.hervormdputten.nl", "", "ouderling")
	if err != nil {
		t.Fatal(err)
	}
	want := Address{Address: "scriba@hervormdputten.nl", Alias: "scriba@fwd.hervormdputten.nl",
		Target: "scriba@hervormdputten.nl", State: Planned, CreatedAt: t0, UpdatedAt: t0}
	if a != want {
		t.Errorf("Add = %+v, want %+v", a, want)
	}
	if _, err := s.Add(ctx, "koster@hervormdputten.nl", "koster@fwd.hervormdputten.nl", "koster@hervormdputten.onmicrosoft.com", "ouderling"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"scriba@hervormdputten.nl", "Scriba@FWD.hervormdputten.nl"} {
		got, err := s.Get(ctx, key)
		if err != nil || got != want {
			t.Errorf("Get(%q) = %+v, %v; want %+v", key, got, err, want)
		}
	}
	if _, err := s.Get(ctx, "nobody@hervormdputten.nl"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown = %v, want ErrNotFound", err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].Address != "koster@hervormdputten.nl" || list[0].Target != "koster@hervormdputten.onmicrosoft.com" {
		t.Errorf("List = %+v, %v", list, err)
	}
	audit, err := s.Audit(ctx, "scriba@fwd.hervormdputten.nl")
	if err != nil || len(audit) != 1 {
		t.Fatalf("Audit(alias) = %+v, %v; want the add entry", audit, err)
	}
	e := audit[0]
	if e.Action != ActionAdd || e.Actor != "ouderling" || e.To != Planned || e.From != "" || !e.At.Equal(t0) ||
		!strings.Contains(e.Detail, "scriba@fwd.hervormdputten.nl") {
		t.Errorf("add audit entry = %+v", e)
	}
}

func TestAddInvalid(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name                   string
		address, alias, target string
		want                   error
		say                    string
	}{
		{"percent in address", "scriba%x@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "", ErrInvalid, "address"},
		{"bang in alias", "scriba@hervormdputten.nl", "x!scriba@fwd.hervormdputten.nl", "", ErrInvalid, "alias"},
		{"source route alias", "scriba@hervormdputten.nl", "@evil.example:scriba@fwd.hervormdputten.nl", "", ErrInvalid, "source route"},
		{"quoted alias", "scriba@hervormdputten.nl", `"scriba"@fwd.hervormdputten.nl`, "", ErrInvalid, "quotes"},
		{"space in target", "scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "scriba @x.nl", ErrInvalid, "target"},
		{"trailing dot alias", "scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl.", "", ErrInvalid, "end with '.'"},
		{"empty alias", "scriba@hervormdputten.nl", "", "", ErrInvalid, "empty address"},
		{"empty local", "@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "", ErrInvalid, "empty local part"},
		{"empty domain", "scriba@hervormdputten.nl", "scriba@", "", ErrInvalid, "empty domain"},
		{"alias is address", "scriba@hervormdputten.nl", "SCRIBA@hervormdputten.nl", "", ErrInvalid, "alias must differ"},
		{"target is alias", "scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "scriba@fwd.hervormdputten.nl", ErrInvalid, "loop"},
		{"duplicate address", "koster@hervormdputten.nl", "koster2@fwd.hervormdputten.nl", "", ErrExists, "address koster@hervormdputten.nl is already the address of koster@"},
		{"duplicate alias", "koster2@hervormdputten.nl", "koster@fwd.hervormdputten.nl", "", ErrExists, "alias koster@fwd.hervormdputten.nl is already the alias of koster@"},
		{"alias is another address", "koster2@hervormdputten.nl", "koster@hervormdputten.nl", "", ErrExists, "alias koster@hervormdputten.nl is already the address of koster@"},
		{"address is another alias", "koster@fwd.hervormdputten.nl", "k@fwd2.hervormdputten.nl", "", ErrExists, "address koster@fwd.hervormdputten.nl is already the alias of koster@"},
		{"target is another alias", "koster2@hervormdputten.nl", "koster2@fwd.hervormdputten.nl", "koster@fwd.hervormdputten.nl", ErrInvalid, "back into the relay"},
		{"alias is another target", "koster2@hervormdputten.nl", "koster@m365.hervormdputten.nl", "", ErrInvalid, "back into the relay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, "")
			if _, err := s.Add(ctx, "koster@hervormdputten.nl", "koster@fwd.hervormdputten.nl", "koster@m365.hervormdputten.nl", ""); err != nil {
				t.Fatal(err)
			}
			_, err := s.Add(ctx, tt.address, tt.alias, tt.target, "")
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.say) {
				t.Fatalf("Add = %v, want %v saying %q", err, tt.want, tt.say)
			}
			list, _ := s.List(ctx)
			audit, _ := s.Audit(ctx, "")
			if len(list) != 1 || len(audit) != 1 {
				t.Errorf("refused Add left %d addresses and %d audit rows, want 1 and 1", len(list), len(audit))
			}
		})
	}
}

func TestRecordDelivery(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	seed(t, s, Forwarding, false)
	later, earlier := t0.Add(time.Hour), t0.Add(-time.Hour)
	for _, step := range []struct {
		key string
		at  time.Time
		n   int
	}{{"scriba@hervormdputten.nl", t0, 2}, {"Scriba@fwd.hervormdputten.nl", later, 1}, {"scriba@hervormdputten.nl", earlier, 3}, {"scriba@hervormdputten.nl", later.Add(time.Hour), 0}} {
		if err := s.RecordDelivery(step.key, step.at, step.n); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := s.Get(ctx, "scriba@hervormdputten.nl")
	if a.Delivered != 6 || !a.LastDelivery.Equal(later) {
		t.Errorf("got delivered %d last %v; want 6, %v (out-of-order reports never move it back)", a.Delivered, a.LastDelivery, later)
	}
	if err := s.RecordDelivery("nobody@hervormdputten.nl", t0, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("RecordDelivery unknown = %v, want ErrNotFound", err)
	}
}

func TestAppendAudit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", WithClock(func() time.Time { return t0 }))
	seed(t, s, Forwarding, false)
	if err := s.AppendAudit(ctx, AuditEntry{Address: "Scriba@hervormdputten.nl", Action: "drop", Reason: "spam", Detail: "queue id 01HX"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, AuditEntry{Address: "x", Action: " "}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AppendAudit without action = %v, want ErrInvalid", err)
	}
	all, _ := s.Audit(ctx, "")
	mine, _ := s.Audit(ctx, "scriba@hervormdputten.nl")
	if len(all) != 2 || len(mine) != 2 {
		t.Fatalf("audit has %d rows (%d for scriba), want 2", len(all), len(mine))
	}
	e := mine[1]
	if e.Action != "drop" || e.Address != "scriba@hervormdputten.nl" || e.Actor != CurrentActor() || !e.At.Equal(t0) || e.Reason != "spam" || e.ID <= mine[0].ID {
		t.Errorf("drop entry = %+v", e)
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTest(t, path)
	seed(t, s, Planned, false)
	s.Close()
	s = openTest(t, path) // reopening migrates nothing and keeps the data
	if _, err := s.Get(context.Background(), "scriba@hervormdputten.nl"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	if _, err := s.db.Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer than this dualmx") {
		t.Errorf("Open of a newer schema = %v, want a refusal", err)
	}
	if _, err := Open("state.db?mode=ro"); err == nil {
		t.Error("Open accepted a path with '?'")
	}
}

// TestConcurrentWriters runs the daemon's counters and the CLI's flips and
// audit appends through two handles at once: with IMMEDIATE transactions and
// busy_timeout none of them may fail with "database is locked".
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	daemon, cli := openTest(t, path), openTest(t, path)
	seed(t, cli, Provisioned, false)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				errs <- daemon.RecordDelivery("scriba@hervormdputten.nl", t0, 1)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				errs <- cli.AppendAudit(ctx, AuditEntry{Address: "scriba@hervormdputten.nl", Action: "release"})
			}
		}()
	}
	for _, to := range []State{Forwarding, Confirmed} {
		_, err := cli.Flip(ctx, FlipRequest{Address: "scriba@hervormdputten.nl", To: to}, nil)
		errs <- err
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a, _ := cli.Get(ctx, "scriba@hervormdputten.nl")
	if a.Delivered != 100 || a.State != Confirmed {
		t.Errorf("got %+v; want 100 delivered, confirmed", a)
	}
}
