// SPDX-License-Identifier: MIT

package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTrailerDamage: every way a committed body file can be cut or written
// over is caught as corrupt, never read as a shorter message. (Bytes after
// the footer are what a crash may leave of a verdict: TestVerdictAppended.)
func TestTrailerDamage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.spool(testBody, defaultEnv())
	path := f.sp.BodyPath(id)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"last byte cut", func(b []byte) []byte { return b[:len(b)-1] }},
		{"footer cut", func(b []byte) []byte { return b[:len(b)-footerLen+3] }},
		{"only the body", func(b []byte) []byte { return b[:len(testBody)] }},
		{"body byte removed", func(b []byte) []byte { return append(b[:10:10], b[11:]...) }},
		{"footer digit garbled", func(b []byte) []byte { c := slices.Clone(b); c[len(c)-5] = 'x'; return c }},
		{"json lengths swapped", func(b []byte) []byte {
			c := slices.Clone(b)
			copy(c[len(c)-footerLen:], "\nDUALMX-ENVELOPE 0000000000 00000000000000000000\n")
			return c
		}},
		{"empty", func([]byte) []byte { return nil }},
		// A footer that adds up must end where the envelope does: one
		// found behind the end of the file is no footer.
		{"footer moved behind a verdict", func(b []byte) []byte {
			c := slices.Clone(b[:len(b)-footerLen])
			c = append(c, "x"...)
			return append(c, b[len(b)-footerLen:]...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.msg")
			if err := os.WriteFile(p, tc.damage(slices.Clone(orig)), 0o640); err != nil {
				t.Fatal(err)
			}
			fh, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			if it, n, err := readTrailer(fh); !errors.Is(err, ErrCorrupt) {
				t.Errorf("readTrailer = %+v, %d, %v; want ErrCorrupt", it, n, err)
			}
		})
	}
	// The undamaged file reads back as committed.
	fh, _ := os.Open(path)
	defer fh.Close()
	it, n, err := readTrailer(fh)
	if err != nil || n != int64(len(testBody)) || it.ID != id || it.Version != FormatVersion {
		t.Errorf("readTrailer = %+v, %d, %v", it, n, err)
	}
	rc, err := f.sp.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != testBody {
		t.Errorf("Body = %q, %v; want the message alone", b, err)
	}
}

// TestStateChangeWritesMetadataBeside: the body file is never rewritten;
// a deferral writes <id>.json, which from then on is the item's record, and
// delivery removes both files.
func TestStateChangeWritesMetadataBeside(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.spool(testBody, defaultEnv())
	before, _ := os.ReadFile(f.sp.BodyPath(id))
	// An attempt that ends in a deferral records it.
	c, _ := claimed(t, f.sp, id)
	c.Item().State = StateDeferred
	c.Item().Attempts++
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := spoolFiles(t, f.dir); !slices.Equal(got, []string{id + ".json", id + ".msg"}) {
		t.Errorf("spool after a deferral holds %v", got)
	}
	if after, _ := os.ReadFile(f.sp.BodyPath(id)); string(after) != string(before) {
		t.Error("the body file changed")
	}
	f.sp.forget(id) // the record on disk alone
	c, msg := claimed(t, f.sp, id)
	if msg != testBody || c.Item().State != StateDeferred || c.Item().Attempts != 1 {
		t.Errorf("the next attempt reads %q, %+v", msg, c.Item())
	}
	if err := c.Delivered(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The body file joins the pool once the claim ends.
	if got := f.beyondPool(spoolFiles(t, f.dir)); len(got) != 0 {
		t.Errorf("left after delivery: %v", got)
	}
}

// TestVersion1ItemsStillDelivered: items left by a dualmx that wrote two
// files at commit (version 1) are recovered, updated in place and delivered
// byte for byte after an upgrade.
func TestVersion1ItemsStillDelivered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id := "20250101T000000.000001Z-0000abcd"
	now := time.Now().UTC()
	it := Item{Version: 1, ID: id, From: "alice@sender.test", ReceivedAt: now, State: StateDeferred, NextAttempt: now,
		Size: int64(len(testBody)), Recipients: []Recipient{{Rcpt: "a@fwd.test", Address: "a@domain.test", Target: "a@domain.test", State: RcptPending}}}
	b, _ := json.MarshalIndent(it, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, id+".msg"), []byte(testBody), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".json"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	f := newFixtureAt(t, dir)
	if q := spoolFiles(t, filepath.Join(dir, quarantineDir)); len(q) != 0 {
		t.Fatalf("version 1 item quarantined: %v", q)
	}
	got, err := f.sp.Get(id)
	if err != nil || got.Version != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	// An admin change keeps the item's version: its body has no trailer.
	if err := f.sp.Retry(id); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.sp.Get(id); got.Version != 1 {
		t.Errorf("version after an update = %d, want 1", got.Version)
	}
	c, msg := claimed(t, f.sp, id)
	if msg != testBody {
		t.Errorf("an attempt reads %q", msg)
	}
	if err := c.Delivered(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := f.sp.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("delivered item still there: %v", err)
	}
	// Its record checks the body by length alone: its file is not reused.
	if n := len(freeFiles(t, dir)); n != 0 || f.sp.freeCount() != 0 {
		t.Errorf("a version 1 item's file was kept for reuse (%d on disk)", n)
	}
}

// TestRememberedEnvelopeIsOnlyAShortcut: the daemon keeps what it just
// committed to skip reading it back, but a body damaged on disk is still
// caught, and an admin's removal in another process still wins.
func TestRememberedEnvelopeIsOnlyAShortcut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	damaged := f.spool(testBody, defaultEnv())
	dropped := f.spool(testBody, defaultEnv())
	good := f.spool(testBody, defaultEnv())
	for _, id := range []string{damaged, dropped, good} {
		if _, ok := f.sp.recall(id); !ok {
			t.Fatalf("%s: committed envelope not remembered", id)
		}
	}
	if err := os.Truncate(f.sp.BodyPath(damaged), int64(len(testBody))-3); err != nil {
		t.Fatal(err)
	}
	admin, err := OpenAdmin(f.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Drop(dropped, "test", "not wanted"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sp.Claim(damaged); !errors.Is(err, ErrCorrupt) {
		t.Errorf("claim of a damaged item: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, quarantineDir, damaged+msgExt)); err != nil {
		t.Errorf("damaged item not quarantined: %v", err)
	}
	if _, err := f.sp.Claim(dropped); !errors.Is(err, ErrNotFound) {
		t.Errorf("claim of a dropped item: %v", err)
	}
	c, msg := claimed(t, f.sp, good)
	if msg != testBody {
		t.Errorf("good item reads %q", msg)
	}
	if err := c.Delivered(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, id := range []string{damaged, dropped, good} {
		if _, ok := f.sp.recall(id); ok {
			t.Errorf("%s: still remembered after it left the spool", id)
		}
	}
}

// TestVerdictAppended: the arrival verdict of an item whose record is its
// trailer is appended to its body file, with no new file and no change to a
// byte before the trailer's end, and every later claim reads it. Whatever a
// crash can leave of the append (nothing, a part, zeros, bytes of a block
// never finished) reads as the item as committed, never as damage, and the
// next KeepVerdict writes the verdict over it. An item with <id>.json, and a
// verdict too long to append, get it in <id>.json.
func TestVerdictAppended(t *testing.T) {
	t.Parallel()
	const fields = "Authentication-Results: relay.test; spf=pass smtp.mailfrom=sender.test\r\n"
	f := newFixture(t)
	id := f.spool(testBody, defaultEnv())
	committed, _ := os.ReadFile(f.sp.BodyPath(id))

	keep := func(id, v string) {
		t.Helper()
		c, _ := claimed(t, f.sp, id)
		defer c.Close()
		if err := c.KeepVerdict(v); err != nil {
			t.Fatal(err)
		}
	}
	read := func(id string) *Item {
		t.Helper()
		f.sp.forget(id) // what is on disk
		c, msg := claimed(t, f.sp, id)
		defer c.Close()
		if msg != testBody {
			t.Errorf("message reads %q", msg)
		}
		it := *c.Item()
		return &it
	}
	keep(id, fields)
	if got := spoolFiles(t, f.dir); !slices.Equal(got, []string{id + ".msg"}) {
		t.Errorf("spool after KeepVerdict holds %v", got)
	}
	withVerdict, _ := os.ReadFile(f.sp.BodyPath(id))
	block, _ := appendVerdict(nil, id, fields)
	if string(withVerdict) != string(committed)+string(block) {
		t.Errorf("body file after KeepVerdict:\n%q\nwant the committed file and\n%q", withVerdict, block)
	}
	if it := read(id); it.Prepend != fields || it.State != StatePending || it.Attempts != 0 {
		t.Errorf("claimed after KeepVerdict: %+v", it)
	}
	if it, err := f.sp.Get(id); err != nil || it.Prepend != fields {
		t.Errorf("Get = %+v, %v", it, err)
	}
	keep(id, "Authentication-Results: other\r\n") // kept once
	if b, _ := os.ReadFile(f.sp.BodyPath(id)); string(b) != string(withVerdict) {
		t.Error("a second verdict changed the file")
	}

	// What a crash may leave.
	zeros := make([]byte, len(block))
	for _, tc := range []struct {
		name string
		tail []byte
	}{
		{"nothing", nil},
		{"a byte", block[:1]},
		{"half", block[:len(block)/2]},
		{"all but the last byte", block[:len(block)-1]},
		{"zeros", zeros},
		{"half, then zeros", append(slices.Clone(block[:len(block)/2]), zeros[len(block)/2:]...)},
		{"zeros where the JSON was", append(slices.Clone(zeros[:len(block)-verdictFooterLen]), block[len(block)-verdictFooterLen:]...)},
		{"another item's verdict", func() []byte { b, _ := appendVerdict(nil, "20250101T000000.000001Z-0000abcd", fields); return b }()},
		{"stray bytes", []byte("x\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(f.sp.BodyPath(id), append(slices.Clone(committed), tc.tail...), 0o640); err != nil {
				t.Fatal(err)
			}
			if it := read(id); it.Prepend != "" {
				t.Errorf("read a verdict from %q: %q", tc.tail, it.Prepend)
			}
			keep(id, fields)
			if b, _ := os.ReadFile(f.sp.BodyPath(id)); string(b) != string(withVerdict) {
				t.Errorf("KeepVerdict over %q left\n%q", tc.tail, b)
			}
		})
	}

	// An item with <id>.json keeps the verdict there; so does one whose
	// verdict is too long to append.
	deferred := f.spool(testBody, defaultEnv())
	c, _ := claimed(t, f.sp, deferred)
	c.Item().State = StateDeferred
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	long := f.spool(testBody, defaultEnv())
	keep(deferred, fields)
	longFields := "X-Long: " + strings.Repeat("a", maxVerdictJSON) + "\r\n"
	keep(long, longFields)
	for id, want := range map[string]string{deferred: fields, long: longFields} {
		if b, _ := os.ReadFile(f.sp.BodyPath(id)); string(b) != string(committedFile(t, b)) {
			t.Errorf("%s: body file changed", id)
		}
		if it := read(id); it.Prepend != want || !it.hasMeta {
			t.Errorf("%s: Prepend %.40q, metadata %v", id, it.Prepend, it.hasMeta)
		}
	}
}

// committedFile is b up to its envelope trailer's end.
func committedFile(t *testing.T, b []byte) []byte {
	t.Helper()
	it, _, err := readTrailerAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return b[:it.end]
}
