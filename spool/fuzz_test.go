// SPDX-License-Identifier: MIT

package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// FuzzParseMeta: the spool's envelope records are read back from disk, where
// anything may have happened to them. parseMeta never panics, every error it
// returns marks the item corrupt (so it is quarantined, not retried), and an
// item it accepts survives a write-and-read round trip unchanged.
func FuzzParseMeta(f *testing.F) {
	good := Item{Version: FormatVersion, ID: "20260101T000000.000001Z-0000abcd", From: "a@example.org",
		Recipients: []Recipient{{Rcpt: "s@fwd.example.nl", Address: "s@example.nl", Target: "s@example.nl", State: RcptPending}},
		ReceivedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Size: 42, State: StateDeferred, Attempts: 2,
		NextAttempt: time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC), LastError: "451 4.3.0 later"}
	b, _ := json.MarshalIndent(good, "", "  ")
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(`{"version":1,"id":"../../etc/passwd","recipients":[{"target":"x","state":"pending"}],"state":"pending","received_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"version":1}`))
	f.Add([]byte("null"))
	f.Add([]byte(`{"recipients":[null]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		it, err := parseMeta(in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not marked corrupt", err)
			}
			return
		}
		if !validID(it.ID) || len(it.Recipients) == 0 {
			t.Fatalf("accepted %+v", it)
		}
		out, err := json.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseMeta(out)
		if err != nil {
			t.Fatalf("round trip refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalize(it), normalize(again)) {
			t.Fatalf("round trip changed the item:\n%+v\n%+v", it, again)
		}
	})
}

// normalize drops what JSON cannot carry exactly (monotonic clock, location
// pointers) so two readings of one record compare equal.
func normalize(it *Item) Item {
	c := *it
	c.end = 0 // where it was read from
	fix := func(t *time.Time) { *t = t.UTC().Round(0) }
	fix(&c.ReceivedAt)
	fix(&c.NextAttempt)
	fix(&c.LastAttempt)
	fix(&c.ReleasedAt)
	c.Recipients = append([]Recipient(nil), it.Recipients...)
	for i := range c.Recipients {
		fix(&c.Recipients[i].DeliveredAt)
	}
	return c
}

// FuzzReadTrailer: a body file read back from disk may be cut, extended or
// overwritten. readTrailer never panics, every error it returns marks the
// item corrupt, and what it accepts adds up: the body ends where the
// envelope begins and the envelope's size says so.
func FuzzReadTrailer(f *testing.F) {
	good := Item{Version: FormatVersion, ID: "20260101T000000.000001Z-0000abcd", From: "a@example.org",
		Recipients: []Recipient{{Rcpt: "s@fwd.example.nl", Address: "s@example.nl", Target: "s@example.nl", State: RcptPending}},
		ReceivedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Size: 9, State: StatePending}
	file, _ := appendTrailer([]byte("Subject:\n"), &good)
	f.Add(file)
	f.Add(file[:len(file)-1])
	f.Add(append(file, '\n'))
	withVerdict, _ := appendVerdict(slices.Clone(file), good.ID, "Authentication-Results: relay.test; spf=pass\r\n")
	f.Add(withVerdict)
	f.Add(withVerdict[:len(withVerdict)-5])
	f.Add(append(slices.Clone(file), make([]byte, 40)...))
	f.Add([]byte("\nDUALMX-ENVELOPE 0000000002 00000000000000000000\n"))
	f.Add([]byte("{}\nDUALMX-ENVELOPE 0000000002 00000000000000000000\n"))
	f.Add([]byte("\nDUALMX-ENVELOPE 0000000001 18446744073709551615\n"))
	f.Add([]byte("x\nDUALMX-ENVELOPE 0000000001 18446744073709551634\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		// In memory: a file per input makes the fuzzer crawl.
		it, n, err := readTrailerAt(bytes.NewReader(in), int64(len(in)))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not marked corrupt", err)
			}
			return
		}
		if n != it.Size || n < 0 || n+int64(footerLen) > int64(len(in)) || it.Version != FormatVersion {
			t.Fatalf("accepted %d body bytes of %d for %+v", n, len(in), it)
		}
		again, err := appendTrailer(slices.Clone(in[:n]), it)
		if err != nil {
			t.Fatal(err)
		}
		if it2, n2, err := readTrailerAt(bytes.NewReader(again), int64(len(again))); err != nil || n2 != n || !reflect.DeepEqual(normalize(it), normalize(it2)) {
			t.Fatalf("rewritten trailer reads back as %+v, %d, %v", it2, n2, err)
		}
	})
}
