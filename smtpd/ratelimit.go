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

func newReturnLimits(r *Returns) *returnLimits {
	return &returnLimits{all: float64(r.PerHour), client: float64(r.PerClientPerHour), dest: float64(r.PerDestinationPerHour),
		clients: make(map[netip.Prefix]*bucket), dests: make(map[string]*bucket)}
}

// take takes one token from each limit for a return from ip to the address
// orig, or none when any limit is reached. It names the limit that refused
// (a bounded reason: rate_limited, client_rate_limited,
// destination_rate_limited), and first is set when that limit has just run
// dry, the one refusal to log.
func (l *returnLimits) take(ip netip.Addr, orig string, now time.Time) (refused string, first bool) {
	dom := strings.ToLower(strings.TrimSuffix(orig[strings.LastIndexByte(orig, '@')+1:], "."))
	l.mu.Lock()
	defer l.mu.Unlock()
	type limit struct {
		b       *bucket
		perHour float64
		reason  string
	}
	var ls []limit
	if l.all > 0 {
		ls = append(ls, limit{&l.total, l.all, "rate_limited"})
	}
	if l.client > 0 {
		b, ok := bucketFor(l.clients, clientKey(ip), l.client, now)
		if !ok {
			return "client_rate_limited", false
		}
		ls = append(ls, limit{b, l.client, "client_rate_limited"})
	}
	if l.dest > 0 {
		b, ok := bucketFor(l.dests, dom, l.dest, now)
		if !ok {
			return "destination_rate_limited", false
		}
		ls = append(ls, limit{b, l.dest, "destination_rate_limited"})
	}
	for _, x := range ls {
		if x.b.level(x.perHour, now) < 1 {
			first = !x.b.warned
			x.b.warned = true
			return x.reason, first
		}
	}
	for _, x := range ls {
		x.b.tokens--
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
