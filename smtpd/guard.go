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
// Defaults, each overridable in Returns.
const (
	defaultMaxInvalid     = 3
	defaultPenalty        = time.Hour
	defaultInvalidPerHour = 30
	// maxGuardClients bounds the table of client networks with recent
	// invalid addresses. Entries are made only by invalid addresses, which
	// the hourly budget bounds, so the table stays far below this; when it is
	// full anyway, SRS addresses are refused unchecked (fail closed).
	maxGuardClients = 4096
)

// verdict is the guard's answer for one SRS recipient.
type verdict int

const (
	vValid     verdict = iota // checked and valid
	vExpired                  // checked: signed by us but too old; no guess
	vInvalid                  // checked and invalid: 550
	vLimit                    // checked, invalid, and the client's last allowed one: 421, penalty starts
	vPenalised                // not checked: the client is penalised: 421
	vBudget                   // not checked: the invalid-address budget is spent: 451
)

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
	invalid int       // invalid addresses since since
	since   time.Time // start of the current counting period
	until   time.Time // penalised until (zero: not penalised)
}

// guard counts invalid SRS addresses per client network and in all. Its
// check runs the address verification under its lock, so concurrent sessions
// of one client cannot together get more guesses than one session would.
type guard struct {
	maxInvalid int
	penalty    time.Duration
	perHour    float64

	mu      sync.Mutex
	clients map[netip.Prefix]*strikes
	tokens  float64 // the hourly budget left
	last    time.Time
	// spentLogged is set while the budget is empty and that has been logged.
	spentLogged bool
}

func newGuard(r *Returns) *guard {
	g := &guard{maxInvalid: r.MaxInvalid, penalty: r.Penalty, perHour: float64(r.InvalidPerHour),
		clients: make(map[netip.Prefix]*strikes)}
	if g.maxInvalid <= 0 {
		g.maxInvalid = defaultMaxInvalid
	}
	if g.penalty <= 0 {
		g.penalty = defaultPenalty
	}
	if g.perHour <= 0 {
		g.perHour = defaultInvalidPerHour
	}
	g.tokens = g.perHour
	return g
}

// check decides on one SRS recipient from client ip. verify checks the
// address and reports whether an error means it was invalid (as opposed to
// expired); it runs only when the client and the budget allow a check, and
// must be quick: it runs under the guard's lock. first is set on vLimit and
// vBudget when this is the first such answer of the period, the one to log.
func (g *guard) check(ip netip.Addr, now time.Time, verify func() (invalid bool, err error)) (v verdict, first bool, err error) {
	key := clientKey(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refill(now)
	st := g.clients[key]
	if st != nil && now.Before(st.until) {
		return vPenalised, false, nil
	}
	if g.tokens < 1 || (st == nil && !g.room(now)) {
		first = !g.spentLogged
		g.spentLogged = true
		return vBudget, first, nil
	}
	invalid, err := verify()
	switch {
	case err == nil:
		return vValid, false, nil
	case !invalid:
		return vExpired, false, err
	}
	g.tokens--
	if st == nil {
		st = &strikes{}
		g.clients[key] = st
	}
	if now.Sub(st.since) >= g.penalty {
		st.invalid, st.since = 0, now
	}
	st.invalid++
	if st.invalid < g.maxInvalid {
		return vInvalid, false, err
	}
	// The period starts again when the penalty ends, with a fresh allowance.
	st.until = now.Add(g.penalty)
	st.invalid, st.since = 0, st.until
	return vLimit, true, err
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
		return true
	}
	for k, st := range g.clients {
		if !now.Before(st.until) && now.Sub(st.since) >= g.penalty {
			delete(g.clients, k)
		}
	}
	return len(g.clients) < maxGuardClients
}

// penalised reports whether the client's network is in its penalty period.
func (g *guard) penalised(ip netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.clients[clientKey(ip)]
	return st != nil && now.Before(st.until)
}
