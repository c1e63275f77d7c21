// SPDX-License-Identifier: MIT

package smtpd

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// maxRateKeys bounds each table of per-client and per-destination buckets.
// A key is made only by a return that passed every other check (a valid SRS
// address, the guard, the global limit), so the tables stay small; a full
// one refuses new keys rather than grow.
const maxRateKeys = 4096

// bucket is a token bucket holding up to perHour tokens, refilled
// continuously at perHour an hour. A missing bucket is a full one.
type bucket struct {
	tokens float64
	last   time.Time
	// warned is set while the bucket is empty and that has been logged.
	warned bool
}

// level refills b to now and returns its tokens.
func (b *bucket) level(perHour float64, now time.Time) float64 {
	if b.last.IsZero() {
		b.tokens = perHour
	} else if now.After(b.last) {
		b.tokens = min(perHour, b.tokens+now.Sub(b.last).Hours()*perHour)
	}
	b.last = now
	if b.tokens >= 1 {
		b.warned = false
	}
	return b.tokens
}

// returnLimits holds the rate limits of returns: in all, per client network
// and per destination domain.
type returnLimits struct {
	all, client, dest float64 // per hour; 0 means unlimited

	mu      sync.Mutex
	total   bucket
	clients map[netip.Prefix]*bucket
	dests   map[string]*bucket
}

func newReturnLimits(r *ReturnPolicy) *returnLimits {
	return &returnLimits{all: float64(r.PerHour), client: float64(r.PerClientPerHour), dest: float64(r.PerDestinationPerHour),
		clients: make(map[netip.Prefix]*bucket), dests: make(map[string]*bucket)}
}

// A return's tokens are taken only when its message is about to be
// committed, not at RCPT: a client that gives RCPT and then RSET, or sends
// DATA that is then refused as no return, would otherwise spend the reserve
// without returning anything, and keep real bounces out. RCPT checks that
// the return would fit (check); DATA takes the tokens of all its returns at
// once (take), and gives them back if the commit fails (give).

// limit is one bucket a return draws from, how many it needs, and the
// reason that names it when it is dry.
type limit struct {
	b       *bucket
	perHour float64
	need    float64
	reason  string
}

// draws lists the buckets that returns from ip to the addresses origs draw
// from, with how many tokens each needs; refused names the limit whose table
// is full and has no room for the bucket.
func (l *returnLimits) draws(ip netip.Addr, origs []string, now time.Time) (ls []limit, refused string) {
	n := float64(len(origs))
	if l.all > 0 {
		ls = append(ls, limit{&l.total, l.all, n, "rate_limited"})
	}
	if l.client > 0 {
		b, ok := bucketFor(l.clients, clientKey(ip), l.client, now)
		if !ok {
			return nil, "client_rate_limited"
		}
		ls = append(ls, limit{b, l.client, n, "client_rate_limited"})
	}
	if l.dest > 0 {
		need := map[string]float64{}
		var order []string
		for _, o := range origs {
			d := destination(o)
			if need[d] == 0 {
				order = append(order, d)
			}
			need[d]++
		}
		for _, d := range order {
			b, ok := bucketFor(l.dests, d, l.dest, now)
			if !ok {
				return nil, "destination_rate_limited"
			}
			ls = append(ls, limit{b, l.dest, need[d], "destination_rate_limited"})
		}
	}
	return ls, ""
}

// destination is the domain a return to orig goes to, the key of its limit.
func destination(orig string) string {
	return strings.ToLower(strings.TrimSuffix(orig[strings.LastIndexByte(orig, '@')+1:], "."))
}

// check reports whether one more return, to orig, fits the limits beside
// the returns to pending already in the transaction, without taking
// anything. It names the limit that refused (a bounded reason:
// rate_limited, client_rate_limited, destination_rate_limited); first is
// set when that limit has just run dry, the one refusal to log.
func (l *returnLimits) check(ip netip.Addr, orig string, pending []string, now time.Time) (refused string, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, refused := l.draws(ip, append(pending[:len(pending):len(pending)], orig), now)
	if refused != "" {
		return refused, false
	}
	return dry(ls, now)
}

// take takes the tokens of returns from ip to origs from every limit, all
// or none; refused and first as for check.
func (l *returnLimits) take(ip netip.Addr, origs []string, now time.Time) (refused string, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, refused := l.draws(ip, origs, now)
	if refused != "" {
		return refused, false
	}
	if refused, first = dry(ls, now); refused != "" {
		return refused, first
	}
	for _, x := range ls {
		x.b.tokens -= x.need
	}
	return "", false
}

// give gives back what take took for a message that was then not
// committed after all.
func (l *returnLimits) give(ip netip.Addr, origs []string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, _ := l.draws(ip, origs, now)
	for _, x := range ls {
		x.b.tokens = min(x.perHour, x.b.level(x.perHour, now)+x.need)
	}
}

// dry names the first limit in ls without the tokens it needs.
func dry(ls []limit, now time.Time) (refused string, first bool) {
	for _, x := range ls {
		if x.b.level(x.perHour, now) < x.need {
			first = !x.b.warned
			x.b.warned = true
			return x.reason, first
		}
	}
	return "", false
}

// bucketFor finds or makes the bucket of key. A full table first drops the
// buckets that have refilled (the same as absent); ok is false when it is
// still full.
func bucketFor[K comparable](m map[K]*bucket, key K, perHour float64, now time.Time) (*bucket, bool) {
	if b := m[key]; b != nil {
		return b, true
	}
	if len(m) >= maxRateKeys {
		for k, b := range m {
			if b.level(perHour, now) >= perHour {
				delete(m, k)
			}
		}
		if len(m) >= maxRateKeys {
			return nil, false
		}
	}
	b := &bucket{}
	m[key] = b
	return b, true
}
