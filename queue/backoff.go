// SPDX-License-Identifier: MIT

package queue

import "time"

// jitterFraction is how much of a delay the jitter may take away. Messages
// that failed together (a target outage) then spread out over 20% of the
// interval instead of hammering the target in lockstep, and a delay never
// exceeds max.
const jitterFraction = 0.2

// Backoff returns the delay before retry number attempt (1 for the first
// retry): initial doubled per attempt, capped at max, minus up to 20% jitter
// drawn from rnd (a source of floats in [0,1); nil means no jitter).
func Backoff(attempt int, initial, max time.Duration, rnd func() float64) time.Duration {
	if initial <= 0 {
		return 0
	}
	if max < initial {
		max = initial
	}
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if rnd != nil {
		f := rnd()
		if f < 0 {
			f = 0
		} else if f >= 1 {
			f = 0.999999
		}
		d -= time.Duration(float64(d) * jitterFraction * f)
	}
	return d
}
