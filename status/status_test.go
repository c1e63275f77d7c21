// SPDX-License-Identifier: MIT

package status

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

type addrs struct {
	list []router.Address
	err  error
}

func (a addrs) List(context.Context) ([]router.Address, error) { return a.list, a.err }

type fakeSpool struct {
	items []spool.Item
	err   error
}

func (s fakeSpool) Walk(fn func(*spool.Item) bool) error {
	if s.err != nil {
		return s.err
	}
	for i := range s.items {
		if !fn(&s.items[i]) {
			break
		}
	}
	return nil
}

type cut struct {
	st metrics.CutoverStatus
	ok bool
}

func (c cut) Cutover() (metrics.CutoverStatus, bool) { return c.st, c.ok }

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func item(id, state, from string, age time.Duration, rcpts ...string) spool.Item {
	it := spool.Item{ID: id, State: spool.State(state), From: from, ReceivedAt: now.Add(-age), Attempts: 2,
		LastError: "451 4.7.500 try later"}
	for _, r := range rcpts {
		it.Recipients = append(it.Recipients, spool.Recipient{Rcpt: r, Address: r, Target: r, State: spool.RcptPending})
	}
	return it
}

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func newHandler(a AddressLister, s SpoolLister, c CutoverSource) *Handler {
	return New(Options{Hostname: "relay.example.nl", Addresses: a, Spool: s, Cutover: c,
		Now: func() time.Time { return now }, Location: time.UTC})
}

// TestEscapesEverythingFromData: an address, alias, sender, recipient,
// last error or cutover check that carries markup shows as text, never as markup.
func TestEscapesEverythingFromData(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	a := addrs{list: []router.Address{{Address: "x" + evil + "@example.nl", Alias: "alias" + evil, State: router.State(`forwarding" onmouseover="x`)}}}
	it := item("20261127T100000.000000Z-aaaaaaaa", "held", "from"+evil+"@evil.test", time.Hour, "to"+evil+"@example.nl")
	it.LastError = "550 " + evil
	s := fakeSpool{items: []spool.Item{it}}
	c := cut{ok: true, st: metrics.CutoverStatus{State: "ready", Up: true, LastRun: now, Checks: map[string]string{"mx" + evil: "ok"}}}
	h := New(Options{Hostname: "relay" + evil, Addresses: a, Spool: s, Cutover: c, Now: func() time.Time { return now }})
	resp, body := get(t, h, http.MethodGet, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if strings.Contains(strings.ToLower(body), "<script") {
		t.Errorf("page contains a script element:\n%s", body)
	}
	for _, want := range []string{
		"x&lt;script&gt;alert(1)&lt;/script&gt;@example.nl",
		"alias&lt;script&gt;",
		"from&lt;script&gt;",
		"to&lt;script&gt;",
		"550 &lt;script&gt;",
		"mx&lt;script&gt;",
		"relay&lt;script&gt;",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks escaped %q", want)
		}
	}
	// A state from the database never picks a class name or breaks out of the attribute.
	if strings.Contains(body, `onmouseover="x`) {
		t.Errorf("state broke out of its attribute:\n%s", body)
	}
	if !strings.Contains(body, `class="badge s-other"`) {
		t.Errorf("unknown state not mapped to s-other")
	}
	if got := resp.Header.Get("Content-Security-Policy"); !strings.Contains(got, "default-src 'none'") || strings.Contains(got, "script-src") {
		t.Errorf("Content-Security-Policy = %q", got)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
}

// TestShowsControlsAsEscapes: a reply or address that carries a terminal
// escape or a bidi override, which would reorder the text around it in the
// browser, shows as its escape.
func TestShowsControlsAsEscapes(t *testing.T) {
	it := item("20261127T100000.000000Z-aaaaaaaa", "deferred", "author\u202e@evil.test", time.Hour, "scriba@example.nl")
	it.LastError = "451 \x1b[2J \u2066txt.exe"
	h := newHandler(addrs{}, fakeSpool{items: []spool.Item{it}}, nil)
	_, body := get(t, h, http.MethodGet, "/")
	for _, raw := range []string{"\u202e", "\u2066", "\x1b"} {
		if strings.Contains(body, raw) {
			t.Errorf("page holds %q raw", raw)
		}
	}
	for _, want := range []string{`author\u202e@evil.test`, `451 \x1b[2J \u2066txt.exe`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

var rowID = regexp.MustCompile(`<code>(2026[0-9T.Z]+-[0-9a-f]{8})</code>`)

// TestHeldFirst: held messages lead the queue table whatever their age;
// the rest follow oldest first.
func TestHeldFirst(t *testing.T) {
	s := fakeSpool{items: []spool.Item{
		item("20261127T090000.000000Z-00000001", "deferred", "a@example.org", 3*time.Hour, "scriba@example.nl"),
		item("20261127T100000.000000Z-00000002", "pending", "b@example.org", 2*time.Hour, "scriba@example.nl"),
		item("20261127T110000.000000Z-00000003", "held", "c@example.org", time.Hour, "koster@example.nl"),
		item("20261127T113000.000000Z-00000004", "deferred", "d@example.org", 30*time.Minute, "scriba@example.nl"),
		item("20261127T115000.000000Z-00000005", "held", "e@example.org", 10*time.Minute, "koster@example.nl"),
	}}
	_, body := get(t, newHandler(addrs{}, s, nil), http.MethodGet, "/status")
	var ids []string
	for _, m := range rowID.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1][len(m[1])-1:])
	}
	if got, want := strings.Join(ids, ""), "35124"; got != want {
		t.Errorf("queue order = %s, want %s (held first, then oldest first)", got, want)
	}
	for _, want := range []string{"<b>2</b> held", "<b>2</b> deferred", "<b>1</b> pending", "oldest arrived <b>3 h ago</b>"} {
		if !strings.Contains(body, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}

// TestAddressesWithCounts: each address shows its alias, state, last delivery
// (or never) and its delivered, queued and held counts.
func TestAddressesWithCounts(t *testing.T) {
	a := addrs{list: []router.Address{
		{Address: "koster@example.nl", Alias: "koster@fwd.example.nl", State: router.Forwarding},
		{Address: "scriba@example.nl", Alias: "scriba@fwd.example.nl", State: router.Confirmed,
			LastDelivery: now.Add(-26 * time.Hour), Delivered: 42},
	}}
	s := fakeSpool{items: []spool.Item{
		item("20261127T110000.000000Z-00000003", "held", "c@example.org", time.Hour, "koster@example.nl"),
		item("20261127T110000.000000Z-00000004", "deferred", "c@example.org", time.Hour, "koster@example.nl", "scriba@example.nl"),
	}}
	_, body := get(t, newHandler(a, s, nil), http.MethodGet, "/")
	rows := regexp.MustCompile(`(?s)<tr>\s*<td data-label="Address">(.*?)</tr>`).FindAllStringSubmatch(body, -1)
	if len(rows) != 2 {
		t.Fatalf("%d address rows, want 2:\n%s", len(rows), body)
	}
	cells := func(row string) string {
		row = regexp.MustCompile(`<[^>]+>`).ReplaceAllString(row, "")
		return strings.Join(strings.Fields(row), " ")
	}
	if got, want := cells(rows[0][1]), "koster@example.nl koster@fwd.example.nl forwarding - never 0 1 1"; got != want {
		t.Errorf("koster row = %q, want %q", got, want)
	}
	if got, want := cells(rows[1][1]), "scriba@example.nl scriba@fwd.example.nl confirmed - 2026-11-26 10:00 UTC (1 d 2 h ago) 42 1 0"; got != want {
		t.Errorf("scriba row = %q, want %q", got, want)
	}
	for _, want := range []string{"<b>1</b> forwarding", "<b>1</b> confirmed", "Not configured"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestCutoverState(t *testing.T) {
	c := cut{ok: true, st: metrics.CutoverStatus{State: "switched", Up: false, LastRun: now.Add(-5 * time.Minute),
		Checks: map[string]string{"spf": "warning", "mx": "ok"}}}
	_, body := get(t, newHandler(addrs{}, fakeSpool{}, c), http.MethodGet, "/")
	for _, want := range []string{
		`<span class="badge s-switched">switched</span>`,
		"last DNS check 2026-11-27 11:55 UTC (5 min ago)",
		"the last DNS check could not run",
		`<td data-label="DNS check">mx</td><td data-label="Result"><span class="badge s-ok">ok</span>`,
		`<td data-label="DNS check">spf</td><td data-label="Result"><span class="badge s-warning">warning</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Index(body, ">mx<") > strings.Index(body, ">spf<") {
		t.Error("checks not sorted by name")
	}
	_, body = get(t, newHandler(addrs{}, fakeSpool{}, cut{ok: true}), http.MethodGet, "/")
	if !strings.Contains(body, "not checked yet") {
		t.Error("a watcher without a result yet is not shown as such")
	}
}

// TestPartialFailure: one source failing still shows the other, with the error.
func TestPartialFailure(t *testing.T) {
	a := addrs{err: errors.New("database is locked")}
	s := fakeSpool{items: []spool.Item{item("20261127T110000.000000Z-00000003", "held", "c@example.org", time.Hour, "koster@example.nl")}}
	resp, body := get(t, newHandler(a, s, nil), http.MethodGet, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !strings.Contains(body, "Could not read the state database: database is locked") || !strings.Contains(body, "c@example.org") {
		t.Errorf("page does not show both the error and the queue:\n%s", body)
	}
	_, body = get(t, newHandler(addrs{}, fakeSpool{err: errors.New("permission denied")}, nil), http.MethodGet, "/")
	if !strings.Contains(body, "Could not read the spool: permission denied") || strings.Contains(body, "The queue is empty") {
		t.Errorf("spool error not shown, or shown as an empty queue:\n%s", body)
	}
}

// TestReadOnly: only GET and HEAD; the page has no forms.
func TestReadOnly(t *testing.T) {
	h := newHandler(addrs{}, fakeSpool{}, nil)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		resp, _ := get(t, h, m, "/")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, resp.StatusCode)
		}
	}
	resp, body := get(t, h, http.MethodHead, "/")
	if resp.StatusCode != http.StatusOK || body != "" {
		t.Errorf("HEAD: status %d, %d bytes", resp.StatusCode, len(body))
	}
	_, body = get(t, h, http.MethodGet, "/")
	if strings.Contains(body, "<form") {
		t.Error("the page has a form")
	}
	if !strings.Contains(body, `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
		t.Error("no viewport meta: the page would not fit a phone")
	}
}

// TestQueueBounded: a huge queue shows MaxQueueRows rows, held first, and says how many more.
func TestQueueBounded(t *testing.T) {
	var items []spool.Item
	for i := range 10 {
		items = append(items, item("20261127T100000.000000Z-0000000"+string(rune('0'+i)), "deferred", "a@example.org", time.Hour, "x@example.nl"))
	}
	items = append(items, item("20261127T110000.000000Z-0000000a", "held", "a@example.org", time.Minute, "x@example.nl"))
	h := New(Options{Addresses: addrs{}, Spool: fakeSpool{items: items}, MaxQueueRows: 3, Now: func() time.Time { return now }})
	_, body := get(t, h, http.MethodGet, "/")
	ids := rowID.FindAllStringSubmatch(body, -1)
	if len(ids) != 3 || !strings.HasSuffix(ids[0][1], "a") {
		t.Errorf("rows = %v, want 3 with the held one first", ids)
	}
	if !strings.Contains(body, "… and 8 more") {
		t.Error("no note about the rows left out")
	}
}

func TestDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Second:                  "just now",
		42 * time.Second:                 "42 s ago",
		5 * time.Minute:                  "5 min ago",
		2 * time.Hour:                    "2 h ago",
		2*time.Hour + 5*time.Minute:      "2 h 5 min ago",
		3 * 24 * time.Hour:               "3 d ago",
		3*24*time.Hour + 4*time.Hour + 1: "3 d 4 h ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestChecklistColumn: each address shows how many checklist steps have
// evidence and the next step; an address whose checklist cannot be built
// says so instead of guessing.
func TestChecklistColumn(t *testing.T) {
	a := addrs{list: []router.Address{
		{Address: "koster@example.nl", Alias: "koster@fwd.example.nl", State: router.Forwarding},
		{Address: "scriba@example.nl", Alias: "scriba@fwd.example.nl", State: router.Confirmed},
	}}
	h := New(Options{Addresses: a, Spool: fakeSpool{}, Now: func() time.Time { return now }, Location: time.UTC,
		Checklist: func(_ context.Context, addr string) (Progress, error) {
			if addr == "koster@example.nl" {
				return Progress{}, errors.New("database busy")
			}
			return Progress{Done: 5, Total: 8, Next: "<confirm> the holder"}, nil
		}})
	_, body := get(t, h, http.MethodGet, "/")
	if !strings.Contains(body, `<td data-label="Checklist">5/8 · next: &lt;confirm&gt; the holder</td>`) {
		t.Errorf("checklist cell missing or unescaped:\n%s", body)
	}
	if !strings.Contains(body, `<td data-label="Checklist">not known</td>`) {
		t.Errorf("failed checklist not shown as not known:\n%s", body)
	}
}

type target struct{ st metrics.TargetStatus }

func (t target) Target() (metrics.TargetStatus, bool) { return t.st, true }

// TestTargetLine: the page says whether the target is up, and when it is
// suspended, since when, why (escaped) and how much mail waits for it.
func TestTargetLine(t *testing.T) {
	for _, tc := range []struct {
		st   metrics.TargetStatus
		want []string
	}{
		{metrics.TargetStatus{Up: true, Concurrency: 5, ConcurrencyLimit: 8}, []string{"s-ok\">up</span>", "5 of 8 sessions"}},
		{metrics.TargetStatus{Since: now.Add(-10 * time.Minute), Reason: "451 4.7.500 Server busy <b>", NextProbe: now.Add(90 * time.Second), Parked: 1200},
			[]string{"suspended</span> since 2026-11-27 11:50 UTC (10 min ago): 451 4.7.500 Server busy &lt;b&gt;.", "1200 message(s) wait", "next probe in 1 min"}},
	} {
		h := New(Options{Addresses: addrs{}, Spool: fakeSpool{}, Target: target{tc.st}, Now: func() time.Time { return now }, Location: time.UTC})
		_, body := get(t, h, "GET", "/")
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("page lacks %q:\n%s", w, body[strings.Index(body, `<section id="queue">`):][:600])
			}
		}
	}
}
