// SPDX-License-Identifier: MIT

// Package status renders the relay's read-only status page: the addresses with
// their state, alias, last delivery and counts; the queue, held mail first; and
// the domain's cutover state. It is plain server-rendered HTML (html/template,
// so every value is escaped), needs no JavaScript and fits a phone screen.
// The page changes nothing: it has no forms and answers only GET and HEAD.
package status

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

// AddressLister lists the addresses; *router.Store is one.
type AddressLister interface {
	List(ctx context.Context) ([]router.Address, error)
}

// SpoolLister reads the messages in the spool one at a time (Walk), so
// that the page holds only the rows it shows; *spool.Spool is one.
type SpoolLister interface {
	Walk(fn func(it *spool.Item) bool) error
}

// CutoverSource reports the cutover watcher's latest result; ok is false when
// no watcher runs. *metrics.Metrics is one.
type CutoverSource interface {
	Cutover() (s metrics.CutoverStatus, ok bool)
}

// TargetSource reports the target's health; ok is false when nothing
// watches it. *metrics.Metrics is one.
type TargetSource interface {
	Target() (s metrics.TargetStatus, ok bool)
}

// Options configure the page. Addresses and Spool are required.
type Options struct {
	// Hostname names the relay in the page title.
	Hostname  string
	Addresses AddressLister
	Spool     SpoolLister
	// Cutover may be nil: the page then says the cutover is not configured.
	Cutover CutoverSource
	// Target may be nil: the page then has no line on the target.
	Target TargetSource
	// Checklist, when set, gives each address's migration checklist as
	// steps with evidence out of all steps, and the next step.
	Checklist func(ctx context.Context, address string) (Progress, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Location is the time zone times are shown in; nil means time.Local.
	Location *time.Location
	// MaxQueueRows bounds the queue table (held mail comes first, so it is
	// shown); 0 means 200.
	MaxQueueRows int
	// Timeout bounds reading the state database; 0 means 5 seconds.
	Timeout time.Duration
	// Logger receives errors writing the response; nil discards them.
	Logger *slog.Logger
}

// Progress summarises an address's migration checklist.
type Progress struct {
	Done, Total int
	Next        string
}

// Handler serves the status page.
type Handler struct {
	o Options
}

// New returns the status page handler.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.MaxQueueRows <= 0 {
		o.MaxQueueRows = 200
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{o: o}
}

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"stateClass": stateClass,
}).Parse(pageHTML))

// knownStates are the values stateClass lets into a class attribute.
var knownStates = []string{
	"planned", "provisioned", "forwarding", "confirmed", "migrated", // addresses
	"pending", "deferred", "held", // queue
	"preparing", "ready", "switched", "draining", "done", // cutover
	"ok", "warning", "error", // DNS checks
}

// stateClass maps a state to a CSS class; anything unexpected gets "other",
// so data never chooses the class name.
func stateClass(s string) string {
	if slices.Contains(knownStates, s) {
		return "s-" + s
	}
	return "s-other"
}

// ServeHTTP renders the page. Sections whose data cannot be read say so and
// the rest of the page is still shown.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	p := h.build(ctx)
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		h.o.Logger.Error("status page: render", "err", err)
		http.Error(w, "status page could not be rendered", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	// No scripts, no frames, no outside resources: only the inline style sheet.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodHead {
		return
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		h.o.Logger.Debug("status page: write", "err", err)
	}
}

// page is what the template renders.
type page struct {
	Hostname  string
	Generated string

	AddressError string
	Addresses    []addressRow
	StateCounts  []count

	QueueError string
	Queue      []queueRow
	QueueMore  int
	Pending    int
	Deferred   int
	Held       int
	Oldest     string

	Cutover cutoverView
	Target  *targetView
}

// targetView is the line on the target's health.
type targetView struct {
	Up               bool
	Concurrency, Max int
	Since, Reason    string
	NextProbe        string
	Parked           int
}

type count struct {
	Name string
	N    int
}

type addressRow struct {
	Address, Alias, State string
	Checklist             string // "5/8 · next: …", "" when not available
	LastDelivery          string // "" for never
	LastDeliveryAgo       string
	Delivered             int64
	Queued, Held          int
}

type queueRow struct {
	ID, State, Age, From, To, LastError string
	Attempts                            int
	Next                                string
}

type cutoverView struct {
	Configured bool
	State      string // "" before the first successful check
	Up         bool
	LastRun    string
	Checks     []check
}

type check struct{ Name, Level string }

// keepFirst adds it to shown, the first n items in spool.HeldFirst order
// seen so far, sorted, if it is one of them.
func keepFirst(shown []spool.Item, it *spool.Item, n int) []spool.Item {
	i, _ := slices.BinarySearchFunc(shown, *it, spool.CompareHeldFirst)
	if i >= n {
		return shown
	}
	shown = slices.Insert(shown, i, *it)
	if len(shown) > n {
		shown[n] = spool.Item{} // its recipients are not kept either
		shown = shown[:n]
	}
	return shown
}

func (h *Handler) build(ctx context.Context) page {
	now := h.o.Now()
	p := page{Hostname: h.o.Hostname, Generated: h.stamp(now)}

	// Per public address: messages still holding undelivered mail for it.
	queued, held := map[string]int{}, map[string]int{}
	// The rows shown: held mail waits for a person, so it comes first; the
	// rest in arrival order. Only those are kept, whatever the backlog.
	var shown []spool.Item
	total := 0
	var oldest time.Time
	err := h.o.Spool.Walk(func(it *spool.Item) bool {
		total++
		switch it.State {
		case spool.StatePending:
			p.Pending++
		case spool.StateDeferred:
			p.Deferred++
		case spool.StateHeld:
			p.Held++
		}
		if oldest.IsZero() || it.ReceivedAt.Before(oldest) {
			oldest = it.ReceivedAt
		}
		it.CountPending(queued, held)
		shown = keepFirst(shown, it, h.o.MaxQueueRows)
		return true
	})
	if err != nil {
		p.QueueError = err.Error()
	}
	if total > 0 {
		p.Oldest = ago(now.Sub(oldest))
	}
	for _, it := range shown {
		p.Queue = append(p.Queue, h.queueRow(now, it))
	}
	p.QueueMore = total - len(shown)

	addrs, err := h.o.Addresses.List(ctx)
	if err != nil {
		p.AddressError = err.Error()
	}
	byState := map[string]int{}
	for _, a := range addrs {
		row := addressRow{Address: visible.String(a.Address), Alias: visible.String(a.Alias), State: string(a.State), Delivered: a.Delivered,
			Queued: queued[strings.ToLower(a.Address)], Held: held[strings.ToLower(a.Address)]}
		if !a.LastDelivery.IsZero() {
			row.LastDelivery = h.stamp(a.LastDelivery)
			row.LastDeliveryAgo = ago(now.Sub(a.LastDelivery))
		}
		if h.o.Checklist != nil {
			if pr, err := h.o.Checklist(ctx, a.Address); err == nil {
				row.Checklist = fmt.Sprintf("%d/%d", pr.Done, pr.Total)
				if pr.Next != "" {
					row.Checklist += " · next: " + visible.String(pr.Next)
				}
			} else {
				row.Checklist = "not known"
			}
		}
		p.Addresses = append(p.Addresses, row)
		byState[string(a.State)]++
	}
	for _, st := range router.States {
		if n := byState[string(st)]; n > 0 {
			p.StateCounts = append(p.StateCounts, count{Name: string(st), N: n})
		}
		delete(byState, string(st))
	}
	for _, st := range slices.Sorted(mapKeys(byState)) {
		p.StateCounts = append(p.StateCounts, count{Name: st, N: byState[st]})
	}

	if h.o.Target != nil {
		if ts, ok := h.o.Target.Target(); ok {
			v := &targetView{Up: ts.Up, Concurrency: ts.Concurrency, Max: ts.ConcurrencyLimit, Parked: ts.Parked,
				Reason: visible.String(ts.Reason)}
			if !ts.Up {
				v.Since = h.stamp(ts.Since) + " (" + ago(now.Sub(ts.Since)) + ")"
				if d := ts.NextProbe.Sub(now); d > 0 {
					v.NextProbe = "in " + dur(d)
				} else {
					v.NextProbe = "now"
				}
			}
			p.Target = v
		}
	}
	if h.o.Cutover != nil {
		if cs, ok := h.o.Cutover.Cutover(); ok {
			p.Cutover = cutoverView{Configured: true, State: cs.State, Up: cs.Up}
			if !cs.LastRun.IsZero() {
				p.Cutover.LastRun = h.stamp(cs.LastRun) + " (" + ago(now.Sub(cs.LastRun)) + ")"
			}
			for _, name := range slices.Sorted(mapKeys(cs.Checks)) {
				p.Cutover.Checks = append(p.Cutover.Checks, check{Name: name, Level: cs.Checks[name]})
			}
		}
	}
	return p
}

func (h *Handler) queueRow(now time.Time, it spool.Item) queueRow {
	var to []string
	for _, rc := range it.Recipients {
		if rc.State == spool.RcptDelivered {
			continue
		}
		t := rc.Address
		if t == "" {
			t = rc.Target
		}
		if !slices.Contains(to, t) {
			to = append(to, t)
		}
	}
	from := it.From
	if from == "" {
		from = "<>"
	}
	// html/template makes the values safe for HTML; visible.String also
	// shows the characters that would reorder the page's text around them
	// (bidi overrides in a hostile reply or address) as escapes.
	row := queueRow{ID: it.ID, State: string(it.State), Age: ago(now.Sub(it.ReceivedAt)), From: visible.String(from),
		To: visible.String(strings.Join(to, ", ")), LastError: visible.String(it.LastError), Attempts: it.Attempts}
	if it.State == spool.StateDeferred && !it.NextAttempt.IsZero() {
		if d := it.NextAttempt.Sub(now); d > 0 {
			row.Next = "in " + dur(d)
		} else {
			row.Next = "now"
		}
	}
	return row
}

func (h *Handler) stamp(t time.Time) string {
	return t.In(h.o.Location).Format("2006-01-02 15:04 MST")
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ago renders a past duration for people: "just now", "5 min ago", "3 d 4 h ago".
func ago(d time.Duration) string {
	if d < 5*time.Second {
		return "just now"
	}
	return dur(d) + " ago"
}

// dur renders a duration with its two largest units.
func dur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	default:
		days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if h == 0 {
			return fmt.Sprintf("%d d", days)
		}
		return fmt.Sprintf("%d d %d h", days, h)
	}
}
