// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Retry bounds how the clients retry throttling and transient failures.
// Both services go through the same loop, so a 429 is handled the same way
// whether Graph or Exchange sent it.
type Retry struct {
	// Attempts is the total number of tries of one call (default 6).
	Attempts int
	// Base is the first backoff delay when the server gave no Retry-After
	// (default 1s); it doubles per attempt up to Max (default 60s).
	Base, Max time.Duration
	// NotFoundWait bounds how long a just-created object may still read as
	// not found (Graph replica lag, a mailbox that appears after licensing).
	// Default 2 minutes; Exchange mailboxes use MailboxWait.
	NotFoundWait time.Duration
	// MailboxWait bounds the wait for a newly licensed user's mailbox
	// (default 30 minutes; Microsoft gives no figure).
	MailboxWait time.Duration
	// Poll is the interval of those waits (default 10s).
	Poll time.Duration
	// Sleep waits d or until ctx ends; tests replace it to run instantly
	// and to see the delays asked for.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 6
	}
	if r.Base <= 0 {
		r.Base = time.Second
	}
	if r.Max <= 0 {
		r.Max = time.Minute
	}
	if r.NotFoundWait <= 0 {
		r.NotFoundWait = 2 * time.Minute
	}
	if r.MailboxWait <= 0 {
		r.MailboxWait = 30 * time.Minute
	}
	if r.Poll <= 0 {
		r.Poll = 10 * time.Second
	}
	if r.Sleep == nil {
		r.Sleep = sleepCtx
	}
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff is the delay before try attempt+1 when the server named none:
// exponential from base, capped, with up to 50% jitter so that parallel
// runs do not retry in step.
func backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

type temporary interface {
	temporary() bool
	retryAfter() time.Duration
}

// do runs call until it succeeds, fails for good, or the attempts run out.
// A Retry-After from the server is obeyed as given; it is Microsoft telling
// us when it will answer, and guessing shorter only earns another 429.
func (r Retry) do(ctx context.Context, call func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = call(); err == nil {
			return nil
		}
		var t temporary
		if !errors.As(err, &t) || !t.temporary() || attempt >= r.Attempts {
			return err
		}
		d := t.retryAfter()
		if d <= 0 {
			d = backoff(attempt, r.Base, r.Max)
		}
		if serr := r.Sleep(ctx, d); serr != nil {
			return err
		}
	}
}

// waitFound retries call while it reports ErrNotFound, for at most limit,
// polling every r.Poll. It is for objects we know exist or are about to.
func (r Retry) waitFound(ctx context.Context, limit time.Duration, call func() error) error {
	var waited time.Duration
	for {
		err := call()
		if err == nil || !errors.Is(err, ErrNotFound) || waited >= limit {
			return err
		}
		if serr := r.Sleep(ctx, r.Poll); serr != nil {
			return err
		}
		waited += r.Poll
	}
}
