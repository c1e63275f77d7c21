// SPDX-License-Identifier: MIT

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWaitingLine: queue list says why mail waits while the daemon has the
// target suspended, with the target's words made safe for a terminal.
func TestWaitingLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "target.json")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	if got := waitingLine(path, now); got != "" {
		t.Errorf("no file: %q", got)
	}
	for _, tc := range []struct {
		json string
		want []string
	}{
		{`{"up":true,"concurrency":4,"concurrency_limit":8,"updated":"2026-11-27T11:59:00Z"}`, nil},
		{`{"up":false,"since":"2026-11-27T11:50:00Z","reason":"451 4.7.500 Server busy\u001b[2J","next_probe":"2026-11-27T12:01:30Z","updated":"2026-11-27T11:59:00Z"}`,
			[]string{"target suspended since ", "(10m0s ago): 451 4.7.500 Server busy\\x1b[2J", "next probe in 1m30s"}},
		{`{"up":`, []string{"target health unknown"}},
	} {
		if err := os.WriteFile(path, []byte(tc.json), 0o600); err != nil {
			t.Fatal(err)
		}
		got := waitingLine(path, now)
		if tc.want == nil && got != "" {
			t.Errorf("%s: %q", tc.json, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.json, got, w)
			}
		}
		if strings.ContainsRune(got, 0x1b) {
			t.Errorf("escape character reached the terminal: %q", got)
		}
	}
}
