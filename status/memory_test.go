// SPDX-License-Identifier: MIT

package status

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/spool"
)

// backlog is a spool of n messages that makes each one as it is read, as
// spool.Spool.Walk reads each from its file: whatever stays in memory
// during the walk is the page's. Every sampleEvery items it notes the
// live heap.
type backlog struct {
	n, sampleEvery int
	peak           uint64
}

func (b *backlog) Walk(fn func(*spool.Item) bool) error {
	for i := range b.n {
		it := item(fmt.Sprintf("20261127T100000.%06dZ-%08x", i%1000000, i), "deferred", "alice@sender.example",
			time.Duration(b.n-i)*time.Second, fmt.Sprintf("user%d@example.nl", i%20), "other@example.nl")
		it.LastError = strings.Repeat("451 4.7.500 try later ", 5)
		if i%7 == 0 {
			it.State = spool.StateHeld
		}
		if !fn(&it) {
			break
		}
		if i%b.sampleEvery == 0 {
			b.peak = max(b.peak, liveHeap())
		}
	}
	return nil
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestQueueTableMemoryBounded: the status page reads the spool one message
// at a time and keeps only the rows it shows, so what it holds while it
// builds does not grow with the backlog (a page holding every item costs
// about 70-100 MB for 100 000 spooled, against the 128 MiB the daemon has).
// Not parallel: the live heap is the process's.
func TestQueueTableMemoryBounded(t *testing.T) {
	const rows = 50
	growth := map[int]uint64{}
	for _, n := range []int{1000, 20000} {
		b := &backlog{n: n, sampleEvery: 500}
		h := New(Options{Addresses: addrs{}, Spool: b, MaxQueueRows: rows, Now: func() time.Time { return now }})
		base := liveHeap()
		_, body := get(t, h, http.MethodGet, "/")
		if got := len(rowID.FindAllStringSubmatch(body, -1)); got != rows {
			t.Fatalf("%d messages: %d rows, want %d", n, got, rows)
		}
		if want := fmt.Sprintf("… and %d more", n-rows); !strings.Contains(body, want) {
			t.Errorf("%d messages: no %q", n, want)
		}
		if b.peak > base {
			growth[n] = b.peak - base
		}
	}
	// 19 000 more messages held would be several MB (a few hundred bytes
	// each); the rows shown are the same 50.
	if d := int64(growth[20000]) - int64(growth[1000]); d > 1<<20 {
		t.Errorf("the page held %d KB while reading 1 000 messages and %d KB for 20 000: it keeps what it does not show",
			growth[1000]>>10, growth[20000]>>10)
	}
	t.Logf("held while reading: %d KB for 1 000 messages, %d KB for 20 000", growth[1000]>>10, growth[20000]>>10)
}
