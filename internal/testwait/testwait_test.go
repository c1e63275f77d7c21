// SPDX-License-Identifier: MIT

package testwait

import (
	"sync/atomic"
	"testing"
	"time"
)

// fakeTB stops at Fatalf, as testing's runtime.Goexit would, but lets the
// test see it.
type fakeTB struct{ testing.TB }

type fatal struct{}

func (fakeTB) Helper()               {}
func (fakeTB) Fatalf(string, ...any) { panic(fatal{}) }

// failed runs For and says whether it failed the test.
func failed(t *testing.T, timeout time.Duration, cond func() bool) (failed bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				panic(r)
			}
			failed = true
		}
	}()
	For(fakeTB{t}, timeout, "it", cond)
	return false
}

func TestFor(t *testing.T) {
	var n atomic.Int32
	if failed(t, Failsafe, func() bool { return n.Add(1) >= 3 }) {
		t.Error("a condition that comes true failed the wait")
	}
	start := time.Now()
	if !failed(t, 50*time.Millisecond, func() bool { return false }) {
		t.Error("a condition that never holds passed the wait")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", d)
	}
}
