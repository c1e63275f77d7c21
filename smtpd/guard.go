// SPDX-License-Identifier: MIT

package smtpd

import (
	"net/netip"
	"sync"
	"time"
)

// An SRS hash is four base64 characters compared without regard to case
// (postsrsd's default, kept for interoperability): about 2^21 values. Left
// alone, a client finds a valid address for any victim in a minute by
// trying, and a valid address makes this relay deliver to the victim. The
// guard makes each wrong guess expensive: a client network gets a few per
// penalty period and is then cut off from the SRS domain for the rest of it,
// and all clients together get a small hourly budget, after which SRS
// addresses are not even checked until it refills.
//
// The budget would let a few networks defer every return by keeping it
// spent, so the clients that real returns come from (ReturnPolicy.Sources,
// Microsoft 365's outbound servers) do not draw on it: they have only the
// per-network allowance, with a shorter penalty, because their networks are
// shared by every tenant and a penalty there defers real bounces.
//
// Defaults, each overridable in ReturnPolicy.
const (
	defaultMaxInvalid     = 3
	defaultPenalty        = time.Hour
	defaultSourcePenalty  = 10 * time.Minute
	defaultInvalidPerHour = 30
	// maxGuardClients bounds the table of client networks with recent
	// invalid addresses. Entries are made only by invalid addresses, which
	// the hourly budget bounds for clients outside the sources, so the table
	// stays far below this; when it is full anyway, SRS addresses from new
	// networks are refused unchecked (fail closed).
	maxGuardClients = 4096
	// outsideLogEvery spaces the log lines about valid returns from outside
	// the sources, which anyone holding one valid address could repeat.
	outsideLogEvery = time.Hour
)

// verdict is the guard's answer for one SRS recipient.
type verdict int

const (
	vValid     verdict = iota // checked and valid
	vExpired                  // checked: signed by us but too old; no guess
	vInvalid                  // checked and invalid: 550
	vLimit                    // checked, invalid, and the client's last allowed one: 421, penalty starts
	vPenalised                // not checked: the client is penalised: 421
	vBudget                   // the invalid-address budget is spent (or the table full): 451, whatever the address
)

// answer is the guard's verdict on one SRS recipient and what to log.
type answer struct {
	v   verdict
	err error // why the address is not valid (vExpired, vInvalid, vLimit)
	// source is set when the client is inside ReturnPolicy.Sources.
	source bool
	// penalty is the penalty that starts with vLimit.
	penalty time.Duration
	// spent is set on the first vBudget since the budget ran dry, the one
	// to log; lastGuess is then the network of the last invalid address the
	// budget paid for.
	spent     bool
	lastGuess netip.Prefix
	// full is set on the first vBudget because the table of client
	// networks is full, the one to log.
	full bool
	// valid is set on vBudget when the address was valid: a real return
	// from outside the sources, deferred with the same reply as any other,
	// so the client learns nothing. The guard counts it; see logOutside.
	valid bool
	// logOutside is set on a valid address from outside the sources
	// (accepted, or deferred with valid) when none was logged for an hour:
	// a sign that Sources is out of date.
	logOutside bool
}

// clientKey is the network a penalty applies to: the address for IPv4, the
// /64 for IPv6, where one host commonly owns the whole /64 and could
// otherwise step to a fresh address for every guess.
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() || !ip.IsValid() {
		return netip.PrefixFrom(ip, ip.BitLen())
	}
	p, _ := ip.Prefix(64)
	return p
}

type strikes struct {
	invalid int           // invalid addresses since since
	since   time.Time     // start of the current counting period
	until   time.Time     // penalised until (zero: not penalised)
	period  time.Duration // the counting period and penalty of this network
}

// guard counts invalid SRS addresses per client network and in all. Its
// check runs the address verification under its lock, so concurrent sessions
// of one client cannot together get more guesses than one session would.
type guard struct {
	maxInvalid    int
	penalty       time.Duration
	sourcePenalty time.Duration
	perHour       float64
	sources       []netip.Prefix // empty: every client is a source

	mu      sync.Mutex
	clients map[netip.Prefix]*strikes
	tokens  float64 // the hourly budget left
	last    time.Time
	// spentLogged is set while the budget is empty and that has been
	// logged, fullLogged while the table is full and that has been.
	spentLogged, fullLogged bool
	// lastGuess is the network of the last invalid address the budget paid for.
	lastGuess netip.Prefix
	// outsideLogged is when a valid return from outside the sources was last logged.
	outsideLogged time.Time
}

func newGuard(r *ReturnPolicy) *guard {
	g := &guard{maxInvalid: r.MaxInvalid, penalty: r.Penalty, sourcePenalty: r.SourcePenalty,
		perHour: float64(r.InvalidPerHour), sources: r.Sources, clients: make(map[netip.Prefix]*strikes)}
	if g.maxInvalid <= 0 {
		g.maxInvalid = defaultMaxInvalid
	}
	if g.penalty <= 0 {
		g.penalty = defaultPenalty
	}
	if g.sourcePenalty <= 0 {
		g.sourcePenalty = defaultSourcePenalty
	}
	if g.perHour <= 0 {
		g.perHour = defaultInvalidPerHour
	}
	g.tokens = g.perHour
	return g
}

// source reports whether ip is inside the sources of returns.
func (g *guard) source(ip netip.Addr) bool {
	if len(g.sources) == 0 {
		return true
	}
	for _, p := range g.sources {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// check decides on one SRS recipient from client ip. verify checks the
// address and reports whether an error means it was invalid (as opposed to
// expired); it runs only when the client and the budget allow a check (and,
// silently, when the budget turns a client outside the sources away), and
// must be quick: it runs under the guard's lock.
func (g *guard) check(ip netip.Addr, now time.Time, verify func() (invalid bool, err error)) answer {
	ip = ip.Unmap()
	key := clientKey(ip)
	a := answer{source: g.source(ip)}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refill(now)
	st := g.clients[key]
	if st != nil && now.Before(st.until) {
		a.v = vPenalised
		return a
	}
	spent := !a.source && g.tokens < 1
	if spent || (st == nil && !g.room(now)) {
		a.v = vBudget
		if spent {
			a.spent, a.lastGuess = !g.spentLogged, g.lastGuess
			g.spentLogged = true
		} else {
			a.full = !g.fullLogged
			g.fullLogged = true
		}
		if !a.source {
			// The reply does not depend on it; the count and the log line
			// tell the admin that a real return was deferred.
			_, err := verify()
			a.valid = err == nil
			a.logOutside = a.valid && g.noteOutside(now)
		}
		return a
	}
	invalid, err := verify()
	switch {
	case err == nil:
		a.v = vValid
		a.logOutside = !a.source && g.noteOutside(now)
		return a
	case !invalid:
		a.v, a.err = vExpired, err
		return a
	}
	a.err = err
	if !a.source {
		g.tokens--
		g.lastGuess = key
	}
	if st == nil {
		st = &strikes{period: g.penalty}
		if a.source {
			st.period = g.sourcePenalty
		}
		g.clients[key] = st
	}
	if now.Sub(st.since) >= st.period {
		st.invalid, st.since = 0, now
	}
	st.invalid++
	if st.invalid < g.maxInvalid {
		a.v = vInvalid
		return a
	}
	// The period starts again when the penalty ends, with a fresh allowance.
	st.until = now.Add(st.period)
	st.invalid, st.since = 0, st.until
	a.v, a.penalty = vLimit, st.period
	return a
}

// noteOutside reports whether a valid return from outside the sources is to
// be logged now, and notes that it is.
func (g *guard) noteOutside(now time.Time) bool {
	if !g.outsideLogged.IsZero() && now.Sub(g.outsideLogged) < outsideLogEvery {
		return false
	}
	g.outsideLogged = now
	return true
}

func (g *guard) refill(now time.Time) {
	if !g.last.IsZero() && now.After(g.last) {
		g.tokens = min(g.perHour, g.tokens+now.Sub(g.last).Hours()*g.perHour)
	}
	g.last = now
	if g.tokens >= 1 {
		g.spentLogged = false
	}
}

// room makes space for a new client entry: entries whose penalty and
// counting period are over carry nothing and go. It reports whether there
// is room.
func (g *guard) room(now time.Time) bool {
	if len(g.clients) < maxGuardClients {
		g.fullLogged = false
		return true
	}
	for k, st := range g.clients {
		if !now.Before(st.until) && now.Sub(st.since) >= st.period {
			delete(g.clients, k)
		}
	}
	if len(g.clients) < maxGuardClients {
		g.fullLogged = false
		return true
	}
	return false
}

// penalised reports whether the client's network is in its penalty period.
func (g *guard) penalised(ip netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.clients[clientKey(ip)]
	return st != nil && now.Before(st.until)
}
