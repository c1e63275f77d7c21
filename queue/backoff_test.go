// SPDX-License-Identifier: MIT

package queue

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	zero := func() float64 { return 0 }
	most := func() float64 { return 0.999 }
	for _, tc := range []struct {
		attempt      int
		initial, max time.Duration
		rnd          func() float64
		min, atMost  time.Duration
	}{
		{1, time.Minute, time.Hour, zero, time.Minute, time.Minute},
		{0, time.Minute, time.Hour, zero, time.Minute, time.Minute},
		{2, time.Minute, time.Hour, zero, 2 * time.Minute, 2 * time.Minute},
		{4, time.Minute, time.Hour, zero, 8 * time.Minute, 8 * time.Minute},
		{7, time.Minute, time.Hour, zero, time.Hour, time.Hour},
		{1000, time.Minute, time.Hour, zero, time.Hour, time.Hour},
		{3, time.Minute, time.Hour, most, 192 * time.Second, 4 * time.Minute},
		{1000, time.Minute, time.Hour, most, 48 * time.Minute, time.Hour},
		{1, time.Minute, time.Hour, nil, time.Minute, time.Minute},
		{3, time.Minute, 0, zero, time.Minute, time.Minute},
		{3, 0, time.Hour, zero, 0, 0},
	} {
		got := Backoff(tc.attempt, tc.initial, tc.max, tc.rnd)
		if got < tc.min || got > tc.atMost {
			t.Errorf("Backoff(%d, %v, %v) = %v, want in [%v, %v]", tc.attempt, tc.initial, tc.max, got, tc.min, tc.atMost)
		}
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]bool{}
	for i := 0; i < 10; i++ {
		f := float64(i) / 10
		d := Backoff(5, time.Second, time.Hour, func() float64 { return f })
		if d > 16*time.Second || d < 12800*time.Millisecond {
			t.Fatalf("jittered delay %v out of range", d)
		}
		seen[d] = true
	}
	if len(seen) != 10 {
		t.Errorf("jitter produced %d distinct delays, want 10", len(seen))
	}
}
