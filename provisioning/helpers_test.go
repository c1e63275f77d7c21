// SPDX-License-Identifier: MIT

package provisioning

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/testlog"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
	"github.com/dualmx/dualmx/router"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	testDomain = "hervormdputten.nl"
	testSKU    = "c42b9cae-ea4f-4ab7-9717-81576235ccac"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(day string) {
	t, err := time.ParseInLocation("2006-01-02 15:04", day+" 09:00", mustZone("Europe/Amsterdam"))
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func mustZone(n string) *time.Location {
	l, err := time.LoadLocation(n)
	if err != nil {
		panic(err)
	}
	return l
}

type world struct {
	t      *testing.T
	tn     *m365test.Tenant
	store  *router.Store
	clock  *clock
	env    Env
	logs   *testlog.Buffer
	dir    string
	sleeps int
}

// newWorld starts a fake tenant with the licence and the welcome sender,
// a state database in a temp dir and a fixed clock.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, tn: m365test.New(t, testDomain), clock: &clock{}, logs: &testlog.Buffer{}, dir: t.TempDir()}
	w.clock.set("2026-03-10")
	w.tn.AddSKU(testSKU, "O365_BUSINESS_PREMIUM", 25)
	w.tn.AddUser("ithelp@"+testDomain, "IT help")
	st, err := router.Open(filepath.Join(w.dir, "state.db"), router.WithClock(w.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w.store = st
	var mu sync.Mutex
	g, x := w.tn.Clients(m365.Retry{Poll: time.Second, NotFoundWait: 20 * time.Second, MailboxWait: 20 * time.Second,
		Sleep: func(context.Context, time.Duration) error { mu.Lock(); w.sleeps++; mu.Unlock(); return nil }})
	w.env = Env{Dir: g, MB: x, Ledger: st, Now: w.clock.now, Actor: "test",
		Log: slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(func() {
		if v := w.tn.Violations(); len(v) > 0 {
			t.Errorf("requests not in the documented shape: %q", v)
		}
	})
	return w
}

func (w *world) load(name string) *Desired {
	w.t.Helper()
	d, err := LoadFile(filepath.Join("testdata", name))
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *world) parse(src string) *Desired {
	w.t.Helper()
	d, err := Parse("desired.yaml", []byte(src))
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *world) plan(d *Desired) (*Plan, *Actual) {
	w.t.Helper()
	p, a, err := MakePlan(context.Background(), w.env, d)
	if err != nil {
		w.t.Fatal(err)
	}
	return p, a
}

// apply plans and applies, and fails the test on anything but success.
func (w *world) apply(d *Desired) *Summary {
	w.t.Helper()
	p, a := w.plan(d)
	s, err := Apply(context.Background(), w.env, d, a, p)
	if err != nil {
		var b bytes.Buffer
		s.WriteText(&b)
		w.t.Fatalf("apply: %v\n%s", err, b.String())
	}
	return s
}

func (w *world) report(d *Desired) []AccessRow {
	w.t.Helper()
	a, err := ObserveAll(context.Background(), w.env, d)
	if err != nil {
		w.t.Fatal(err)
	}
	return Report(d, a, DateOf(w.clock.now(), d.TimeZone))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
