// SPDX-License-Identifier: MIT

// Package cutover tells where the domain stands in its move to Microsoft
// 365, from the addresses' migration states, DNS checks asked of every
// authoritative server, the MX TTL, the relay's traffic and its queue:
//
//	preparing → ready → switched → draining → done
//
// preparing: addresses not all migrated, or the before-cutover DNS check
// has errors. ready: all migrated and the check is clean; the admin may
// confirm and change the MX. switched: every authoritative server answers
// the tenant's MX, and resolvers may still hold the old MX (less than
// twice its TTL since the switch was first seen). draining: that time has
// passed; waiting until no message has reached the relay for the quiet
// period and the queue is empty. done: the relay may be stopped.
//
// The state is derived, not stored; only two facts are remembered between
// runs, because DNS no longer shows them after the switch: when the switch
// was first seen and the old MX's TTL.
package cutover

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/router"
)

// State is where the domain stands.
type State string

// The states in order.
const (
	Preparing State = "preparing"
	Ready     State = "ready"
	Switched  State = "switched"
	Draining  State = "draining"
	Done      State = "done"
)

// States lists every state in order.
var States = []State{Preparing, Ready, Switched, Draining, Done}

// UnknownTTL is assumed for the old MX when it was never observed (the
// first check ran after the switch): a day covers the TTLs hosting
// providers commonly use, so the wait errs on the side of not losing mail.
const UnknownTTL = 24 * time.Hour

// Record is what must be remembered between runs.
type Record struct {
	Domain string `json:"domain"`
	// SwitchedAt is when every authoritative server was first seen
	// answering the tenant's MX; zero before that, and reset if the MX
	// goes back.
	SwitchedAt time.Time `json:"switched_at,omitzero"`
	// OldMXTTL is the MX TTL last seen while the MX was still the old one.
	OldMXTTL  time.Duration `json:"old_mx_ttl"`
	OldMXSeen time.Time     `json:"old_mx_seen_at,omitzero"`
}

// Inputs is everything the state depends on.
type Inputs struct {
	Now       time.Time
	Domain    string
	Addresses []router.Address
	// Before and After are the DNS check judged for either phase.
	Before, After *dnscheck.Report
	// MXSwitched of MXServers authoritative servers answer the tenant's MX.
	MXSwitched, MXServers int
	// MXTTL is the largest MX TTL seen now.
	MXTTL time.Duration
	// LastReceived is the latest time mail is known to have reached the relay.
	LastReceived time.Time
	// Queued counts the messages still in the spool.
	Queued      int
	QuietPeriod time.Duration
	Record      Record
}

// Status is the outcome, shaped for the CLI's JSON.
type Status struct {
	Domain string `json:"domain"`
	State  State  `json:"state"`
	// Reasons say what holds the domain in its state, or what to do next.
	Reasons     []string `json:"reasons"`
	Addresses   int      `json:"addresses"`
	Migrated    int      `json:"migrated"`
	NotMigrated []string `json:"not_migrated,omitempty"`
	// DNSErrors are the before-phase errors while preparing or ready.
	DNSErrors    []dnscheck.Finding `json:"dns_errors,omitempty"`
	MXSwitched   int                `json:"mx_switched_servers"`
	MXServers    int                `json:"mx_servers"`
	SwitchedAt   *time.Time         `json:"switched_at,omitempty"`
	OldMXTTL     float64            `json:"old_mx_ttl_seconds,omitempty"`
	TTLWaitUntil *time.Time         `json:"ttl_wait_until,omitempty"`
	LastReceived *time.Time         `json:"last_received,omitempty"`
	QuietUntil   *time.Time         `json:"quiet_until,omitempty"`
	Queued       int                `json:"queued"`
	// Report is the DNS check for the phase that matters now: before
	// until the switch, after from then on.
	Report *dnscheck.Report `json:"-"`
}

// Evaluate derives the state and returns the record to remember.
func Evaluate(in Inputs) (Status, Record) {
	rec := in.Record
	if rec.Domain != in.Domain {
		rec = Record{Domain: in.Domain}
	}
	st := Status{Domain: in.Domain, MXSwitched: in.MXSwitched, MXServers: in.MXServers, Queued: in.Queued, Report: in.Before}
	for _, a := range in.Addresses {
		st.Addresses++
		if a.State == router.Migrated {
			st.Migrated++
		} else {
			st.NotMigrated = append(st.NotMigrated, fmt.Sprintf("%s (%s)", a.Address, a.State))
		}
	}
	if !in.LastReceived.IsZero() {
		t := in.LastReceived
		st.LastReceived = &t
	}

	everywhere := in.MXServers > 0 && in.MXSwitched == in.MXServers
	if !everywhere && in.MXSwitched == 0 && in.Before != nil && worst(in.Before, dnscheck.CheckMX) < dnscheck.Error && in.MXTTL > 0 {
		rec.OldMXTTL, rec.OldMXSeen = in.MXTTL, in.Now
	}
	if !everywhere {
		rec.SwitchedAt = time.Time{}
		st.State = Ready
		if st.Addresses == 0 {
			st.State = Preparing
			st.Reasons = append(st.Reasons, "no addresses are registered")
		}
		if len(st.NotMigrated) > 0 {
			st.State = Preparing
			st.Reasons = append(st.Reasons, fmt.Sprintf("%d of %d address(es) not migrated: %s", len(st.NotMigrated), st.Addresses, strings.Join(st.NotMigrated, ", ")))
		}
		if in.Before != nil {
			for _, f := range in.Before.Errors() {
				// While the switch is rolling out, the before check's MX
				// errors are the switch itself, not a reason to hold back.
				if in.MXSwitched > 0 && (f.Check == dnscheck.CheckMX || f.Check == dnscheck.CheckConsistency && f.Type == "MX") {
					continue
				}
				st.DNSErrors = append(st.DNSErrors, f)
			}
		}
		if len(st.DNSErrors) > 0 {
			st.State = Preparing
			st.Reasons = append(st.Reasons, fmt.Sprintf("the DNS check (phase before) has %d error(s)", len(st.DNSErrors)))
		}
		if in.MXSwitched > 0 {
			st.Reasons = append(st.Reasons, fmt.Sprintf("the MX is switched on %d of %d authoritative servers; waiting for the rest", in.MXSwitched, in.MXServers))
		} else if st.State == Ready {
			st.Reasons = append(st.Reasons, "everything is in place: run dualmx cutover confirm, then change the MX to the tenant's endpoint")
		}
		return st, rec
	}

	st.Report = in.After
	if rec.SwitchedAt.IsZero() {
		rec.SwitchedAt = in.Now
	}
	sw := rec.SwitchedAt
	st.SwitchedAt = &sw
	ttl := rec.OldMXTTL
	if ttl <= 0 {
		ttl = UnknownTTL
		st.Reasons = append(st.Reasons, fmt.Sprintf("the old MX TTL was never seen; assuming %s", UnknownTTL))
	}
	st.OldMXTTL = ttl.Seconds()
	ttlUntil := sw.Add(2 * ttl)
	st.TTLWaitUntil = &ttlUntil
	quietFrom := sw
	if in.LastReceived.After(quietFrom) {
		quietFrom = in.LastReceived
	}
	quietUntil := quietFrom.Add(in.QuietPeriod)
	st.QuietUntil = &quietUntil

	switch {
	case in.Now.Before(ttlUntil):
		st.State = Switched
		st.Reasons = append(st.Reasons, fmt.Sprintf("resolvers may still hold the old MX: waiting until %s (twice the old MX TTL of %s after the switch)", stamp(ttlUntil), ttl))
	case in.Now.Before(quietUntil):
		st.State = Draining
		st.Reasons = append(st.Reasons, fmt.Sprintf("mail reached the relay at %s: waiting for %s without any, until %s", stamp(quietFrom), in.QuietPeriod, stamp(quietUntil)))
	case in.Queued > 0:
		st.State = Draining
		st.Reasons = append(st.Reasons, fmt.Sprintf("%d message(s) still in the queue", in.Queued))
	default:
		st.State = Done
		st.Reasons = append(st.Reasons, "no mail for the quiet period and the queue is empty: the relay may be stopped")
	}
	if in.After != nil {
		for _, f := range in.After.Errors() {
			st.DNSErrors = append(st.DNSErrors, f)
		}
		if n := len(st.DNSErrors); n > 0 {
			st.Reasons = append(st.Reasons, fmt.Sprintf("the DNS check (phase after) has %d error(s)", n))
		}
	}
	return st, rec
}

func worst(r *dnscheck.Report, check string) dnscheck.Level {
	return r.Worst()[check]
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// Index is the state's position in States, for comparisons.
func (s State) Index() int { return slices.Index(States, s) }
