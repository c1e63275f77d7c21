// SPDX-License-Identifier: MIT

package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// spoolFiles lists the entries of the spool directory, ignoring the daemon lock and quarantine dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != daemonLock && e.Name() != quarantineDir && e.Name() != kickFile {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriterCommit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	env := defaultEnv(rcpt("a@fwd.test", "a@domain.test"), rcpt("b@fwd.test", "b@domain.test"))
	env.EightBit, env.SMTPUTF8 = false, true
	id := f.spool(testBody, env)
	if !validID(id) {
		t.Fatalf("id %q", id)
	}
	// One file: the message from offset 0, then the envelope as one JSON
	// line, then the footer that finds it.
	file, err := os.ReadFile(filepath.Join(f.dir, id+".msg"))
	if err != nil || !strings.HasPrefix(string(file), testBody) {
		t.Fatalf("body file = %q, %v", file, err)
	}
	trailer := strings.TrimPrefix(string(file), testBody)
	nl := strings.IndexByte(trailer, '\n')
	if nl < 0 || trailer[nl:] != fmt.Sprintf("\nDUALMX-ENVELOPE %010d %020d\n", nl, len(testBody)) {
		t.Fatalf("trailer = %q", trailer)
	}
	raw := []byte(trailer[:nl])
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "id", "from", "recipients", "received_at", "client_ip", "helo", "eight_bit", "smtputf8", "size", "state", "attempts", "next_attempt", "dsn"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metadata lacks %q:\n%s", k, raw)
		}
	}
	it, err := f.sp.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if it.Size != int64(len(testBody)) || it.State != StatePending || !it.SMTPUTF8 || it.EightBit || len(it.Recipients) != 2 || it.Recipients[1].State != RcptPending {
		t.Errorf("item = %+v", it)
	}
	if m["version"] != float64(2) {
		t.Errorf("version = %v, want 2", m["version"])
	}
	if got := spoolFiles(t, f.dir); !slices.Equal(got, []string{id + ".msg"}) {
		t.Errorf("spool holds %v", got)
	}
	// 8-bit content marks the message 8-bit even when the client did not say so.
	id2 := f.spool("Subject: caf\xc3\xa9\r\n\r\nx\r\n", defaultEnv())
	if it, _ := f.sp.Get(id2); !it.EightBit {
		t.Error("8-bit body not detected")
	}
	ids := []string{id, id2}
	items, err := f.sp.List()
	if err != nil || len(items) != 2 || items[0].ID != ids[0] || items[1].ID != ids[1] {
		t.Errorf("List = %v, %v", items, err)
	}
}

func TestWriterAbortAndRejects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w, err := f.sp.NewWriter(defaultEnv())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	w.Abort()
	if got := spoolFiles(t, f.dir); len(got) != 0 {
		t.Errorf("abort left %v", got)
	}
	if _, err := f.sp.NewWriter(Envelope{From: "a@b.test"}); err == nil {
		t.Error("no recipients accepted")
	}
	if _, err := f.sp.NewWriter(Envelope{From: "a@b.test", Recipients: []Recipient{{Rcpt: "x@y.test"}}}); err == nil {
		t.Error("recipient without target accepted")
	}
	if _, err := f.sp.Get("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("path traversal: %v", err)
	}
}

// fullFS fails writes with ENOSPC once budget bytes of files matching match were written.
type fullFS struct {
	OSFS
	budget int
	match  string
}

type fullFile struct {
	f    *os.File
	left *int
}

func (ff fullFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	return ff.wrap(f, name), nil
}

func (ff fullFS) Reuse(name string) (File, error) {
	f, err := reuseFile(name)
	if err != nil {
		return nil, err
	}
	return ff.wrap(f, name), nil
}

func (ff fullFS) wrap(f *os.File, name string) File {
	left := ff.budget
	if !strings.Contains(filepath.Base(name), ff.match) {
		left = 1 << 30
	}
	return &fullFile{f: f, left: &left}
}

func (f *fullFile) Write(p []byte) (int, error) {
	if len(p) > *f.left {
		n, _ := f.f.Write(p[:*f.left])
		*f.left = 0
		return n, &os.PathError{Op: "write", Path: f.f.Name(), Err: syscall.ENOSPC}
	}
	*f.left -= len(p)
	return f.f.Write(p)
}
func (f *fullFile) Truncate(n int64) error { return f.f.Truncate(n) }
func (f *fullFile) Sync() error            { return f.f.Sync() }
func (f *fullFile) Close() error           { return f.f.Close() }

func TestDiskFull(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 16<<10) // 256 KiB, beyond the write buffer
	for _, tc := range []struct {
		name  string
		fs    fullFS
		body  string
		where string // "write" or "commit"
	}{
		{"body mid-write", fullFS{budget: 100 << 10, match: ".msg"}, big, "write"},
		{"body at flush", fullFS{budget: 10, match: ".msg"}, testBody, "commit"},
		{"envelope trailer", fullFS{budget: len(testBody) + 10, match: ".msg"}, testBody, "commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := Open(dir, nil, nil, WithFS(tc.fs))
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			w, err := sp.NewWriter(defaultEnv())
			if err != nil {
				t.Fatal(err)
			}
			var werr error
			for i := 0; i < len(tc.body) && werr == nil; i += 4096 {
				_, werr = w.Write([]byte(tc.body[i:min(i+4096, len(tc.body))]))
			}
			_, cerr := w.Commit()
			if tc.where == "write" && !IsNoSpace(werr) {
				t.Errorf("write error = %v, want ENOSPC", werr)
			}
			if !errors.Is(cerr, syscall.ENOSPC) || !IsNoSpace(cerr) {
				t.Errorf("commit error = %v, want ENOSPC", cerr)
			}
			if got := spoolFiles(t, dir); len(got) != 0 {
				t.Errorf("half-written files remain: %v", got)
			}
		})
	}
}

func TestRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A valid item, written by a previous daemon.
	sp, err := Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := sp.NewWriter(defaultEnv())
	w.Write([]byte(testBody))
	good, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	it, _ := sp.Get(good)
	it.State = StateDeferred
	sp.writeMeta(&it)
	sp.Close()

	id := func(n int) string { return fmt.Sprintf("20250101T000000.00000%dZ-0000000%d", n, n) }
	plant := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	plant(tmpPrefix+id(1)+".msg", "half a message")
	plant(tmpPrefix+id(1)+".json.abcd", "{")
	plant(id(2)+".msg", "body")
	plant(id(2)+".json", "{not json")
	plant(id(3)+".msg", "orphan body")
	meta := it
	meta.ID = id(4)
	b, _ := json.Marshal(meta)
	plant(id(4)+".json", string(b))
	meta.ID = id(5)
	meta.Size = 999
	b, _ = json.Marshal(meta)
	plant(id(5)+".json", string(b))
	plant(id(5)+".msg", "truncated")
	meta.ID, meta.Size, meta.Version = id(6), 4, 99
	b, _ = json.Marshal(meta)
	plant(id(6)+".json", string(b))
	plant(id(6)+".msg", "body")

	f := newFixtureAt(t, dir)
	// Open removed the temp files and the record without a message; the
	// rest is Recover's, which the daemon runs while it takes mail.
	if got := testutil.ToFloat64(f.m.Quarantined); got != 1 {
		t.Errorf("quarantined metric after Open = %v, want 1", got)
	}
	var recovered []Entry
	if !f.sp.Recover(func(b []Entry) bool { recovered = append(recovered, b...); return true }) {
		t.Fatal("Recover found nothing to do")
	}
	if len(recovered) != 1 || recovered[0].ID != good || recovered[0].State != StateDeferred {
		t.Errorf("recovered %+v", recovered)
	}
	if f.sp.Recover(nil) {
		t.Error("Recover ran twice")
	}
	if got := testutil.ToFloat64(f.m.Quarantined); got != 5 {
		t.Errorf("quarantined metric = %v, want 5", got)
	}
	if got := spoolFiles(t, dir); !slices.Equal(got, []string{good + ".json", good + ".msg"}) {
		t.Errorf("spool after recovery: %v", got)
	}
	q, _ := os.ReadDir(filepath.Join(dir, quarantineDir))
	var qn []string
	for _, e := range q {
		qn = append(qn, e.Name())
	}
	want := []string{id(2) + ".json", id(2) + ".msg", id(3) + ".msg", id(4) + ".json", id(5) + ".json", id(5) + ".msg", id(6) + ".json", id(6) + ".msg"}
	if !slices.Equal(qn, want) {
		t.Errorf("quarantine = %v\nwant %v", qn, want)
	}
	if items, _ := f.sp.List(); len(items) != 1 || items[0].ID != good || items[0].State != StateDeferred {
		t.Errorf("items = %+v", items)
	}
	if !strings.Contains(f.logs.String(), "quarantined") {
		t.Error("quarantine not logged")
	}
	// The recovered item can be claimed for delivery, its message intact.
	c, body := claimed(t, f.sp, good)
	defer c.Close()
	if body != testBody || c.Item().State != StateDeferred {
		t.Errorf("recovered item: %q, %+v", body, c.Item())
	}
}

func TestDaemonLockAndAdminOpen(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := Open(f.dir, nil, nil); !errors.Is(err, ErrDaemonRunning) {
		t.Fatalf("second daemon: %v", err)
	}
	// A temp file of a transaction in progress survives an admin open.
	w, _ := f.sp.NewWriter(defaultEnv())
	w.Write([]byte("in progress"))
	if _, err := OpenAdmin(f.dir, nil); err != nil {
		t.Fatal(err)
	}
	if id, err := w.Commit(); err != nil || id == "" {
		t.Fatalf("commit after admin open: %v", err)
	}
	if _, err := OpenAdmin(filepath.Join(f.dir, "nope"), nil); err == nil {
		t.Error("admin open of a missing spool succeeded")
	}
}

func TestPending(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.spool(testBody, defaultEnv(rcpt("s@fwd.test", "scriba@domain.test")))
	held := f.spool(testBody, defaultEnv(rcpt("s@fwd.test", "scriba@domain.test"), rcpt("k@fwd.test", "koster@domain.test")))
	it, _ := f.sp.Get(held)
	it.State = StateHeld
	it.Recipients[0].State = RcptFailed
	it.Recipients[1].State = RcptDelivered
	f.sp.writeMeta(&it)
	for _, tc := range []struct {
		addr         string
		queued, held int
	}{{"scriba@domain.test", 1, 1}, {"SCRIBA@domain.test", 1, 1}, {"koster@domain.test", 0, 0}, {"other@domain.test", 0, 0}} {
		q, h, err := f.sp.Pending(tc.addr)
		if err != nil || q != tc.queued || h != tc.held {
			t.Errorf("Pending(%s) = %d, %d, %v; want %d, %d", tc.addr, q, h, err, tc.queued, tc.held)
		}
	}
	st := f.sp.Stats(time.Now().Add(time.Minute))
	if st.ByState["pending"] != 1 || st.ByState["held"] != 1 || st.OldestAgeSeconds < 59 {
		t.Errorf("stats = %+v", st)
	}
}

// TestItemHelpers: what the CLI and the status page read from the items
// (their addresses, the held-first order, the counts per address) is the
// spool's one answer, and Made tells a spool from a directory opening would
// change.
func TestItemHelpers(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := func(addr string, st RcptState) Recipient {
		return Recipient{Rcpt: addr, Address: addr, Target: addr, State: st}
	}
	items := []Item{
		{ID: "c", State: StatePending, ReceivedAt: t0.Add(2 * time.Minute), Recipients: []Recipient{r("Scriba@x.nl", RcptPending), r("scriba@x.nl", RcptPending)}},
		{ID: "b", State: StateHeld, ReceivedAt: t0.Add(3 * time.Minute), Recipients: []Recipient{r("scriba@x.nl", RcptFailed), r("koster@x.nl", RcptDelivered)}},
		{ID: "a", State: StateDeferred, ReceivedAt: t0.Add(time.Minute), Recipients: []Recipient{r("koster@x.nl", RcptPending), {Rcpt: "odd", Target: "odd"}}},
		{ID: "d", State: StateHeld, ReceivedAt: t0, Recipients: []Recipient{r("koster@x.nl", RcptFailed)}},
	}
	if got := items[1].Addresses(); !slices.Equal(got, []string{"scriba@x.nl", "koster@x.nl"}) {
		t.Errorf("Addresses = %v", got)
	}
	if got := items[2].Addresses(); !slices.Equal(got, []string{"koster@x.nl"}) {
		t.Errorf("Addresses without an address = %v", got)
	}
	q, h := CountPending(items)
	if q["scriba@x.nl"] != 1 || h["scriba@x.nl"] != 1 || q["koster@x.nl"] != 1 || h["koster@x.nl"] != 1 || len(q)+len(h) != 4 {
		t.Errorf("CountPending = %v, %v", q, h)
	}
	HeldFirst(items)
	var order []string
	for _, it := range items {
		order = append(order, it.ID)
	}
	if !slices.Equal(order, []string{"d", "b", "a", "c"}) {
		t.Errorf("HeldFirst order %v", order)
	}

	dir := t.TempDir()
	if Made(dir) {
		t.Error("an empty directory is a spool")
	}
	sp, err := OpenAdmin(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if !Made(dir) {
		t.Error("an opened spool is not made")
	}
}

// TestGroupSyncCoversEveryCaller: concurrent callers all return only after a
// directory fsync that began after their call, and share fsyncs.
func TestGroupSyncCoversEveryCaller(t *testing.T) {
	t.Parallel()
	g := newGroupSync(t.TempDir(), OSFS{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- g.Sync()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if g.completed != 50 || g.requested != 50 {
		t.Fatalf("requested %d, completed %d", g.requested, g.completed)
	}
	bad := newGroupSync(filepath.Join(t.TempDir(), "missing"), OSFS{})
	if err := bad.Sync(); err == nil {
		t.Fatal("a failing fsync must be reported")
	}
}

// validID, written out for speed, accepts exactly what the id's regular
// expression does: ids name files, and an admin's input must never lead
// outside the spool.
func TestValidID(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9a-f]{8}$`)
	good := newID(time.Now())
	cases := []string{good, "20250101T000000.000001Z-0000abcd", "", "x", "../../etc/passwd",
		"20250101T000000.000001Z-0000ABCD", "20250101T000000.000001Z-0000abc", "20250101T000000.000001Z-0000abcde",
		"20250101T000000X000001Z-0000abcd", "2025010aT000000.000001Z-0000abcd", "20250101T000000.000001Z/0000abcd",
		"20250101T000000.000001Z-0000abc/", "20250101t000000.000001Z-0000abcd", "20250101T000000.000001z-0000abcd",
		"20250101T000000.000001Z-0000abcg", "\x0020250101T000000.000001Z-0000abc"}
	for i := range len(good) {
		for _, c := range []byte{'0', 'a', 'f', 'g', 'Z', 'T', '.', '-', '/', 0, 0xff} {
			b := []byte(good)
			b[i] = c
			cases = append(cases, string(b))
		}
	}
	for _, id := range cases {
		if got, want := validID(id), re.MatchString(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}

// TestWalk: Walk hands every item over, oldest first, and stops when told.
func TestWalk(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var ids []string
	for range 3 {
		ids = append(ids, f.spool(testBody, defaultEnv()))
	}
	var seen []string
	if err := f.sp.Walk(func(it *Item) bool { seen = append(seen, it.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, ids) {
		t.Errorf("walked %v, want %v", seen, ids)
	}
	seen = nil
	f.sp.Walk(func(it *Item) bool { seen = append(seen, it.ID); return len(seen) < 2 })
	if !slices.Equal(seen, ids[:2]) {
		t.Errorf("walked %v after stopping at 2, want %v", seen, ids[:2])
	}
}
