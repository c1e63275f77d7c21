// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/metrics"
)

// fakeClock is advanced by hand, so staleness is tested without waiting 30s.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func runTable(t *testing.T, tb *Table, every time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx, every); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestLookup(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	add := func(addr, alias, target string, st State) {
		t.Helper()
		if _, err := s.Add(ctx, addr, alias, target, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.Exec(`UPDATE addresses SET state = ? WHERE address = ?`, string(st), addr); err != nil {
			t.Fatal(err)
		}
	}
	add("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "", Forwarding)
	add("koster@hervormdputten.nl", "koster@fwd.hervormdputten.nl", "koster@x.onmicrosoft.com", Confirmed)
	add("kerkrentmeester@hervormdputten.nl", "krm@fwd.hervormdputten.nl", "", Migrated)
	add("diaken@hervormdputten.nl", "diaken@fwd.hervormdputten.nl", "", Provisioned)
	add("organist@hervormdputten.nl", "organist@fwd.hervormdputten.nl", "", Planned)

	tb := NewTable(s, nil, nil)
	if _, err := tb.Lookup("scriba@fwd.hervormdputten.nl"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lookup before Load = %v, want ErrUnavailable", err)
	}
	if tb.Snapshot() != nil {
		t.Error("Snapshot before Load is not empty")
	}
	if err := tb.Load(ctx); err != nil {
		t.Fatal(err)
	}
	scriba := Route{"scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "scriba@hervormdputten.nl", Forwarding}
	tests := []struct {
		rcpt string
		want Route
		err  error
	}{
		{"scriba@fwd.hervormdputten.nl", scriba, nil},
		{"SCRIBA@Fwd.HervormdPutten.NL", scriba, nil},
		{" scriba@hervormdputten.nl ", scriba, nil},
		{"koster@fwd.hervormdputten.nl", Route{"koster@hervormdputten.nl", "koster@fwd.hervormdputten.nl", "koster@x.onmicrosoft.com", Confirmed}, nil},
		{"krm@fwd.hervormdputten.nl", Route{"kerkrentmeester@hervormdputten.nl", "krm@fwd.hervormdputten.nl", "kerkrentmeester@hervormdputten.nl", Migrated}, nil},
		{"diaken@fwd.hervormdputten.nl", Route{"diaken@hervormdputten.nl", "diaken@fwd.hervormdputten.nl", "diaken@hervormdputten.nl", Provisioned}, ErrNotAccepting},
		{"organist@hervormdputten.nl", Route{"organist@hervormdputten.nl", "organist@fwd.hervormdputten.nl", "organist@hervormdputten.nl", Planned}, ErrNotAccepting},
		{"predikant@fwd.hervormdputten.nl", Route{}, ErrUnknown},
		{"scriba%evil.example@fwd.hervormdputten.nl", Route{}, ErrUnknown},
		{"", Route{}, ErrUnknown},
	}
	for _, tt := range tests {
		got, err := tb.Lookup(tt.rcpt)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v, %v", tt.rcpt, got, err, tt.want, tt.err)
		}
	}
	snap := tb.Snapshot()
	if len(snap) != 5 || snap[0] != (metrics.AddressState{Address: "diaken@hervormdputten.nl", State: "provisioned"}) {
		t.Errorf("Snapshot = %+v", snap)
	}
}

// TestTableSeesFlipFromOtherHandle is the CLI and the daemon as two processes
// on one file: a flip through one is routed by the other after its next poll
// (here every 50 ms; the test waits up to failsafe, not a measure of speed).
func TestTableSeesFlipFromOtherHandle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	daemon, cli := openTest(t, path), openTest(t, path)
	seed(t, cli, Provisioned, false)

	m := metrics.New()
	tb := NewTable(daemon, m, nil)
	m.WatchAddresses(metrics.Labels(States), tb.Snapshot)
	if err := tb.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runTable(t, tb, 50*time.Millisecond)
	if _, err := tb.Lookup("scriba@fwd.hervormdputten.nl"); !errors.Is(err, ErrNotAccepting) {
		t.Fatalf("before flip: %v, want ErrNotAccepting", err)
	}
	reloads := testutil.ToFloat64(m.RouterReloads)

	if _, err := cli.Flip(ctx, FlipRequest{Address: "scriba@hervormdputten.nl", To: Forwarding}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, failsafe, "daemon routes scriba after the CLI flip", func() bool {
		r, err := tb.Lookup("scriba@fwd.hervormdputten.nl")
		return err == nil && r.State == Forwarding
	})
	if got := testutil.ToFloat64(m.RouterReloads); got <= reloads {
		t.Errorf("RouterReloads = %v, want more than %v", got, reloads)
	}

	// Counters are not routing: they must not cost the daemon a reload each.
	reloads = testutil.ToFloat64(m.RouterReloads)
	for i := 0; i < 5; i++ {
		if err := daemon.RecordDelivery("scriba@hervormdputten.nl", t0, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Add(ctx, "koster@hervormdputten.nl", "koster@fwd.hervormdputten.nl", "", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, failsafe, "daemon knows koster after the CLI add", func() bool {
		_, err := tb.Lookup("koster@fwd.hervormdputten.nl")
		return errors.Is(err, ErrNotAccepting)
	})
	if got := testutil.ToFloat64(m.RouterReloads); got != reloads+1 {
		t.Errorf("RouterReloads went %v -> %v, want exactly one reload for the add", reloads, got)
	}
	if n, err := testutil.GatherAndCount(m.Registry, "dualmx_address_state"); err != nil || n != 2*len(States) {
		t.Errorf("dualmx_address_state series = %d, %v; want %d", n, err, 2*len(States))
	}
}

// TestTableDuringLongWriteTransaction: in WAL mode a writer in another process
// does not block readers, so the daemon keeps routing and stays fresh while
// the CLI holds a long transaction, and sees its change once committed.
func TestTableDuringLongWriteTransaction(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	daemon, cli := openTest(t, path), openTest(t, path)
	seed(t, cli, Forwarding, false)
	clock := &fakeClock{t: t0}
	m := metrics.New()
	tb := NewTable(daemon, m, nil)
	tb.Now, tb.MaxStale = clock.Now, time.Minute
	if err := tb.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runTable(t, tb, 20*time.Millisecond)

	tx, err := cli.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`UPDATE addresses SET state = 'confirmed'`); err != nil {
		t.Fatal(err)
	}
	// Several polls, each stamping the fake clock, while the transaction is open.
	for i := 0; i < 3; i++ {
		before := testutil.ToFloat64(m.RouterReloads) + testutil.ToFloat64(m.RouterReloadErrors)
		clock.Advance(50 * time.Second)
		eventually(t, failsafe, "a poll completes during the write", func() bool {
			_, err := tb.Lookup("scriba@fwd.hervormdputten.nl")
			return err == nil && tb.lastOK.Load() == clock.Now().UnixNano()
		})
		if after := testutil.ToFloat64(m.RouterReloads) + testutil.ToFloat64(m.RouterReloadErrors); after != before {
			t.Errorf("uncommitted write caused reloads or errors: %v -> %v", before, after)
		}
	}
	if r, _ := tb.Lookup("scriba@fwd.hervormdputten.nl"); r.State != Forwarding {
		t.Errorf("uncommitted state leaked: %s", r.State)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	eventually(t, failsafe, "committed change is routed", func() bool {
		r, err := tb.Lookup("scriba@fwd.hervormdputten.nl")
		return err == nil && r.State == Confirmed
	})
}

// TestTableStaleWhenDatabaseLocked: another process holds the database
// exclusively, the only way a WAL reader is locked out. Lookup answers from
// memory up to MaxStale, then ErrUnavailable (451), and recovers once the lock
// is gone.
func TestTableStaleWhenDatabaseLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	daemon := openTest(t, path, WithBusyTimeout(20*time.Millisecond))
	seed(t, daemon, Forwarding, false)
	// A WAL connection keeps a shared lock while open, which would stop the
	// other process from taking its exclusive lock; without idle connections
	// the daemon reopens one per poll and then meets the lock instead.
	daemon.db.SetMaxIdleConns(0)

	clock := &fakeClock{t: t0}
	m := metrics.New()
	tb := NewTable(daemon, m, nil)
	tb.Now, tb.MaxStale = clock.Now, 30*time.Second
	if err := tb.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runTable(t, tb, 10*time.Millisecond)

	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`PRAGMA locking_mode = EXCLUSIVE`, `BEGIN EXCLUSIVE`, `UPDATE addresses SET state = 'planned'`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	errs := testutil.ToFloat64(m.RouterReloadErrors)
	eventually(t, failsafe, "polls fail while locked", func() bool {
		return testutil.ToFloat64(m.RouterReloadErrors) >= errs+2
	})
	clock.Advance(29 * time.Second)
	if r, err := tb.Lookup("scriba@fwd.hervormdputten.nl"); err != nil || r.State != Forwarding {
		t.Fatalf("within MaxStale: %+v, %v; want the remembered route", r, err)
	}
	clock.Advance(2 * time.Second)
	if _, err := tb.Lookup("scriba@fwd.hervormdputten.nl"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("past MaxStale: %v, want ErrUnavailable", err)
	}
	if _, err := tb.Lookup("nobody@fwd.hervormdputten.nl"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown rcpt past MaxStale: %v, want ErrUnavailable, not a 550 from stale data", err)
	}

	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	other.Close() // exclusive locking mode holds the lock until the connection closes
	eventually(t, failsafe, "recovers after the lock goes", func() bool {
		_, err := tb.Lookup("scriba@fwd.hervormdputten.nl")
		return errors.Is(err, ErrNotAccepting) // and sees the other process's change
	})
}
