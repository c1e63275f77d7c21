// SPDX-License-Identifier: MIT

// Package testwait is how tests wait for something that must happen.
package testwait

import (
	"testing"
	"time"
)

// Failsafe bounds a wait for something that must happen. It only ends a
// test that would otherwise hang, so it is generous: a loaded machine (the
// suite runs with -race beside other builds) may take many seconds for
// what takes milliseconds on a quiet one. A wait that checks something
// did not happen, or how long something took, sets its own window.
const Failsafe = 30 * time.Second

// For polls cond until it holds, and fails t if it does not within
// timeout; what names the awaited thing in the failure.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
