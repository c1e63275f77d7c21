// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dualmx/dualmx/metrics"
)

// Lookup errors. ErrUnknown and ErrNotAccepting both mean 550 5.1.1 but are
// kept apart for logs and metrics; ErrUnavailable means 451 4.3.0.
var (
	ErrUnknown      = errors.New("unknown recipient")
	ErrNotAccepting = errors.New("recipient not accepting mail in its current state")
	ErrUnavailable  = errors.New("routing table unavailable")
)

// DefaultMaxStale is how long Lookup keeps answering from memory after the
// database stopped answering. Beyond it, a flip the admin made could be
// missed for too long, so the relay defers mail instead of guessing.
const DefaultMaxStale = 30 * time.Second

// Table is the daemon's in-memory routing table. Lookup never touches the
// database; Run keeps the table in step with it.
type Table struct {
	store *Store
	m     *metrics.Metrics
	log   *slog.Logger

	// MaxStale and Now may be set before Load or Run; zero values mean
	// DefaultMaxStale and time.Now.
	MaxStale time.Duration
	Now      func() time.Time

	cur    atomic.Pointer[snapshot]
	lastOK atomic.Int64 // unix nanoseconds of the last successful read of the database

	reload  sync.Mutex // serialises Load, so an older snapshot never replaces a newer one
	failing atomic.Bool
}

type snapshot struct {
	gen     int64
	byAlias map[string]*Route
	byAddr  map[string]*Route
	states  []metrics.AddressState
}

// NewTable creates an empty table; Lookup answers ErrUnavailable until the
// first Load succeeds. m and log may be nil.
func NewTable(s *Store, m *metrics.Metrics, log *slog.Logger) *Table {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Table{store: s, m: m, log: log}
}

func (t *Table) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Table) maxStale() time.Duration {
	if t.MaxStale > 0 {
		return t.MaxStale
	}
	return DefaultMaxStale
}

// Load reads the whole table from the database and swaps it in. Without Run,
// Lookup turns to ErrUnavailable MaxStale after the last Load.
func (t *Table) Load(ctx context.Context) error {
	t.reload.Lock()
	defer t.reload.Unlock()
	gen, routes, err := t.store.routes(ctx)
	if err != nil {
		t.failed(err)
		return fmt.Errorf("load routing table: %w", err)
	}
	t.install(gen, routes)
	return nil
}

func (t *Table) install(gen int64, routes []Route) {
	sn := &snapshot{
		gen:     gen,
		byAlias: make(map[string]*Route, len(routes)),
		byAddr:  make(map[string]*Route, len(routes)),
		states:  make([]metrics.AddressState, 0, len(routes)),
	}
	for i := range routes {
		r := &routes[i]
		sn.byAlias[r.Alias] = r
		sn.byAddr[r.Address] = r
		sn.states = append(sn.states, metrics.AddressState{Address: r.Address, State: string(r.State)})
	}
	old := t.cur.Swap(sn)
	t.ok()
	if t.m != nil {
		t.m.RouterReloads.Inc()
	}
	if old == nil || old.gen != gen {
		t.log.Info("routing table loaded", "generation", gen, "addresses", len(routes))
	}
}

func (t *Table) ok() {
	t.lastOK.Store(t.now().UnixNano())
	if t.failing.Swap(false) {
		t.log.Info("state database readable again")
	}
}

// failed logs only the first of a run of errors: the poll repeats every
// interval and a locked database would otherwise flood the log.
func (t *Table) failed(err error) {
	if t.m != nil {
		t.m.RouterReloadErrors.Inc()
	}
	if !t.failing.Swap(true) {
		t.log.Warn("cannot read state database; routing from memory", "err", err, "max_stale", t.maxStale())
	}
}

// poll reloads only when the generation moved, so an idle relay costs one
// single-row read per interval.
func (t *Table) poll(ctx context.Context) {
	gen, err := t.store.generation(ctx)
	if err != nil {
		t.failed(err)
		return
	}
	if sn := t.cur.Load(); sn != nil && sn.gen == gen {
		t.ok()
		return
	}
	_ = t.Load(ctx) // failure already counted and logged
}

// Run polls the database every interval (use well under a second, so a CLI
// change is live within one) until ctx ends. It loads the table first if
// that has not happened yet.
func (t *Table) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		// Bound each poll so a database stuck behind a lock cannot hold the
		// loop past the staleness bound without it being noticed.
		pctx, cancel := context.WithTimeout(ctx, max(every, t.maxStale()/2))
		t.poll(pctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Lookup finds the route for an RCPT address: by alias first, then by public
// address, case-insensitively. With ErrNotAccepting the route is returned as
// well, for the log line.
func (t *Table) Lookup(rcpt string) (Route, error) {
	sn := t.cur.Load()
	if sn == nil {
		return Route{}, fmt.Errorf("%s: %w: not loaded yet", rcpt, ErrUnavailable)
	}
	if age := t.now().Sub(time.Unix(0, t.lastOK.Load())); age > t.maxStale() {
		return Route{}, fmt.Errorf("%s: %w: state database unreadable for %s", rcpt, ErrUnavailable, age.Round(time.Second))
	}
	key, err := NormalizeAddress(rcpt)
	if err != nil {
		return Route{}, fmt.Errorf("%w: %w", ErrUnknown, err)
	}
	r, ok := sn.byAlias[key]
	if !ok {
		if r, ok = sn.byAddr[key]; !ok {
			return Route{}, fmt.Errorf("%s: %w", key, ErrUnknown)
		}
	}
	if !r.State.Accepts() {
		return *r, fmt.Errorf("%s is %s: %w", key, r.State, ErrNotAccepting)
	}
	return *r, nil
}

// Snapshot lists every address and its state, for metrics.WatchAddresses.
func (t *Table) Snapshot() []metrics.AddressState {
	sn := t.cur.Load()
	if sn == nil {
		return nil
	}
	return append([]metrics.AddressState(nil), sn.states...)
}
