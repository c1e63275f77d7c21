// SPDX-License-Identifier: MIT

// Package checklist turns the migration plan of one address into a list of
// steps with the evidence for each, the next step and the command for it.
// The evidence comes from Microsoft 365 (account, shared mailbox, holder
// access), from the state database (forward probe, delivery, confirmation,
// old mailbox removed) and from the spool. It reads; it changes nothing.
package checklist

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/provisioning"
	"github.com/dualmx/dualmx/router"
)

// Status of one step.
type Status string

// Statuses.
const (
	Done    Status = "done"    // evidence on record
	Missing Status = "missing" // checked, and not there
	Unknown Status = "unknown" // could not be checked (no tenant access, no file)
)

// Step IDs, in plan order.
const (
	StepAccount    = "account"
	StepMailbox    = "shared_mailbox"
	StepAccess     = "holder_access"
	StepForward    = "forward_verified"
	StepDelivery   = "relay_delivery"
	StepConfirmed  = "holder_confirmed"
	StepOldRemoved = "old_mailbox_removed"
	StepSpool      = "spool_empty"
)

// Step is one line of the checklist.
type Step struct {
	ID       string     `json:"id"`
	Title    string     `json:"title"`
	Status   Status     `json:"status"`
	Evidence string     `json:"evidence"`     // what proves it, or why it is not proven
	At       *time.Time `json:"at,omitempty"` // when the evidence was made, when known
	Command  string     `json:"command,omitempty"`
	// Tenant marks the steps proven by asking Microsoft 365.
	Tenant bool `json:"-"`
	// noun names what the step proves, for a list of them; need is what to
	// do where no command can prove it with this config.
	noun, need string
}

// Checklist is the plan of one address with its evidence.
type Checklist struct {
	Address string       `json:"address"`
	State   router.State `json:"state"`
	Holder  string       `json:"holder,omitempty"` // the current holder's account
	Steps   []Step       `json:"steps"`
	// Next is what to do now; nil once the address is migrated.
	Next *NextStep `json:"next,omitempty"`
}

// NextStep is what to do now with an address, as data: a page shows Step,
// the CLI all of it.
type NextStep struct {
	// Step says what to do in a few words: an open step's title, or the
	// state change that comes next.
	Step string `json:"step"`
	// Reason is why an open step is open (its evidence); "" for a state
	// change.
	Reason string `json:"reason,omitempty"`
	// Command does it. "" when no command can with this config; Need then
	// says what is needed, when known.
	Command string `json:"command,omitempty"`
	Need    string `json:"need,omitempty"`
}

// Complete reports whether every step has evidence.
func (c Checklist) Complete() bool {
	for _, s := range c.Steps {
		if s.Status != Done {
			return false
		}
	}
	return true
}

// TenantMissing lists the Microsoft 365 steps without evidence, in the form
// the router's migrated guard takes them: the command that proves a step,
// or, where none can with this config, what is needed. Steps unproven for
// the same reason are one item.
func (c Checklist) TenantMissing() []router.MissingEvidence {
	var out []router.MissingEvidence
	var nouns [][]string
	at := map[[2]string]int{}
	for _, s := range c.Steps {
		if !s.Tenant || s.Status == Done {
			continue
		}
		fix := s.Command
		if fix == "" {
			fix = s.need
		}
		key := [2]string{s.Evidence, fix}
		if i, ok := at[key]; ok {
			nouns[i] = append(nouns[i], s.noun)
			continue
		}
		at[key] = len(out)
		nouns = append(nouns, []string{s.noun})
		out = append(out, router.MissingEvidence{Problem: s.Evidence, Fix: fix})
	}
	for i := range out {
		out[i].Problem = strings.Join(nouns[i], ", ") + ": " + out[i].Problem
	}
	return out
}

// Store is the state database; *router.Store is one.
type Store interface {
	Get(ctx context.Context, address string) (router.Address, error)
	Evidence(ctx context.Context, address string) ([]router.Evidence, error)
}

// Spool reports mail waiting for an address; *spool.Spool is one.
type Spool interface {
	Pending(address string) (queued, held int, err error)
}

// Tenant answers the Microsoft 365 questions; m365.Graph and m365.Exchange
// together are one (see M365).
type Tenant interface {
	GetUser(ctx context.Context, upn string) (m365.User, error)
	LastSignIn(ctx context.Context, upn string) (time.Time, error)
	GetMailbox(ctx context.Context, identity string) (m365.Mailbox, error)
	HasGrant(ctx context.Context, mailbox, user string, r m365.Right) (bool, error)
}

// M365 joins the two clients into a Tenant.
type M365 struct {
	*m365.Graph
	*m365.Exchange
}

// Sources are where the evidence comes from. Store is required; a nil
// Spool, Tenant or Desired makes its steps unknown.
type Sources struct {
	Store   Store
	Spool   Spool
	Tenant  Tenant
	Desired *provisioning.Desired
	Now     func() time.Time
}

// For builds the checklist of one address (public address or alias).
func For(ctx context.Context, src Sources, address string) (Checklist, error) {
	a, err := src.Store.Get(ctx, address)
	if err != nil {
		return Checklist{}, err
	}
	ev, err := src.Store.Evidence(ctx, a.Address)
	if err != nil {
		return Checklist{}, err
	}
	now := time.Now
	if src.Now != nil {
		now = src.Now
	}
	c := Checklist{Address: a.Address, State: a.State}
	c.Steps = append(c.Steps, tenantSteps(ctx, src, a.Address, now(), &c)...)
	have := router.Latest(ev)
	c.Steps = append(c.Steps,
		evidenceStep(have, router.ForwardVerified, StepForward, "forward verified (probe)",
			"dualmx address probe "+a.Address+" --wait 5m"),
		deliveryStep(a),
		evidenceStep(have, router.HolderConfirmed, StepConfirmed, "holder confirmed both accounts work",
			"dualmx address confirm "+a.Address+" --by NAME"),
		evidenceStep(have, router.OldMailboxRemoved, StepOldRemoved, "old mailbox removed (admin's statement)",
			"dualmx address old-removed "+a.Address+" --by NAME"),
		spoolStep(src.Spool, a.Address),
	)
	c.Next = next(c)
	return c, nil
}

func evidenceStep(have map[router.EvidenceKind]router.Evidence, k router.EvidenceKind, id, title, cmd string) Step {
	s := Step{ID: id, Title: title, Status: Missing, Evidence: "no record", Command: cmd}
	if e, ok := have[k]; ok {
		at := e.At
		s.Status, s.At, s.Command = Done, &at, ""
		s.Evidence = fmt.Sprintf("%s by %s", at.Local().Format("2006-01-02 15:04"), e.Actor)
		if e.Detail != "" {
			s.Evidence += ": " + e.Detail
		}
	}
	return s
}

func deliveryStep(a router.Address) Step {
	s := Step{ID: StepDelivery, Title: "last relay delivery", Status: Missing,
		Evidence: "nothing delivered through the relay yet", Command: "dualmx address probe " + a.Address + " --wait 5m"}
	if !a.LastDelivery.IsZero() {
		at := a.LastDelivery
		s.Status, s.At, s.Command = Done, &at, ""
		s.Evidence = fmt.Sprintf("%s to %s (%d delivered in all)", at.Local().Format("2006-01-02 15:04"), a.Target, a.Delivered)
	}
	return s
}

func spoolStep(sp Spool, addr string) Step {
	s := Step{ID: StepSpool, Title: "no mail queued or held", Status: Unknown, Evidence: "spool not available"}
	if sp == nil {
		return s
	}
	q, h, err := sp.Pending(addr)
	switch {
	case err != nil:
		s.Evidence = "spool could not be read: " + err.Error()
	case q == 0 && h == 0:
		s.Status, s.Evidence = Done, "nothing queued or held"
	default:
		s.Status, s.Evidence, s.Command = Missing, fmt.Sprintf("%d queued, %d held", q, h), "dualmx queue list"
	}
	return s
}

// tenantSteps checks the holder's account, the shared mailbox and the
// holder's access against Microsoft 365.
func tenantSteps(ctx context.Context, src Sources, addr string, now time.Time, c *Checklist) []Step {
	// Only a command that can work with this config is offered: apply needs
	// both Microsoft 365 access and the desired-state file.
	apply := ""
	if src.Tenant != nil && src.Desired != nil {
		apply = "dualmx provision apply"
	}
	acc := Step{ID: StepAccount, Title: "holder's account exists and has signed in", Status: Unknown, Tenant: true, Command: apply,
		noun: "the holder's account"}
	mb := Step{ID: StepMailbox, Title: "shared mailbox exists", Status: Unknown, Tenant: true, Command: apply,
		noun: "the shared mailbox"}
	ac := Step{ID: StepAccess, Title: "current holder has access (FullAccess and SendAs)", Status: Unknown, Tenant: true, Command: apply,
		noun: "the holder's access"}
	steps := func() []Step { return []Step{acc, mb, ac} }

	var holder *provisioning.Person
	if src.Desired == nil {
		acc.Evidence, ac.Evidence = "no desired-state file names the holder", "no desired-state file names the holder"
		acc.need = "write the desired-state file (dualmx provision plan --help says where and how)"
		ac.need, mb.need = acc.need, acc.need
	} else if f := findFunction(src.Desired, addr); f == nil {
		acc.Status, ac.Status = Missing, Missing
		acc.Evidence = addr + " is not a function in " + src.Desired.File
		ac.Evidence = acc.Evidence
		acc.Command, ac.Command = "", "" // the file needs editing first
		acc.need = "add it to the functions of " + src.Desired.File
		ac.need = acc.need
	} else {
		today := provisioning.DateOf(now, src.Desired.TimeZone)
		for _, h := range f.Holders {
			if h.Current(today) {
				holder = src.Desired.Person(h.Person)
			}
		}
		if holder == nil {
			acc.Status, ac.Status = Missing, Missing
			acc.Evidence = "nobody holds " + f.Name + " today in " + src.Desired.File
			ac.Evidence = acc.Evidence
			acc.Command, ac.Command = "", ""
			acc.need = "name a holder from today in " + src.Desired.File
			ac.need = acc.need
		} else {
			c.Holder = holder.UPN
		}
	}
	if src.Tenant == nil {
		for _, st := range []*Step{&acc, &mb, &ac} {
			if st.Status == Unknown {
				st.Evidence = "not checked (the config has no m365: section)"
				st.need = "add one to check them (docs/microsoft-365.md)"
			}
		}
		return steps()
	}
	if m, err := src.Tenant.GetMailbox(ctx, addr); err == nil && m.RecipientTypeDetails == "SharedMailbox" {
		mb.Status, mb.Evidence, mb.Command = Done, "shared mailbox "+m.PrimarySmtpAddress, ""
	} else if err == nil {
		mb.Status, mb.Evidence = Missing, addr+" is a "+m.RecipientTypeDetails+", not a shared mailbox"
	} else if m365.IsNotFound(err) {
		mb.Status, mb.Evidence = Missing, "no mailbox "+addr
	} else {
		mb.Evidence = "could not ask Exchange: " + err.Error()
	}
	if holder == nil {
		return steps()
	}
	if _, err := src.Tenant.GetUser(ctx, holder.UPN); m365.IsNotFound(err) {
		acc.Status, acc.Evidence = Missing, "no account "+holder.UPN
	} else if err != nil {
		acc.Evidence = "could not ask Graph: " + err.Error()
	} else {
		acc.Status, acc.Command = Done, ""
		at, err := src.Tenant.LastSignIn(ctx, holder.UPN)
		switch {
		case errors.Is(err, m365.ErrSignInUnknown):
			acc.Evidence = holder.UPN + " exists; sign-in not known (the tenant's licence does not report it)"
		case err != nil:
			acc.Evidence = holder.UPN + " exists; sign-in not known (" + err.Error() + ")"
		case at.IsZero():
			acc.Status, acc.Evidence = Missing, holder.UPN+" exists but has never signed in"
			acc.Command = "ask " + holder.DisplayName() + " to sign in at https://www.office.com"
		default:
			acc.Evidence = fmt.Sprintf("%s last signed in %s", holder.UPN, at.Local().Format("2006-01-02 15:04"))
			acc.At = &at
		}
	}
	var lacking []string
	for _, r := range []m365.Right{m365.FullAccess, m365.SendAs} {
		ok, err := src.Tenant.HasGrant(ctx, addr, holder.UPN, r)
		if err != nil {
			ac.Evidence = "could not ask Exchange: " + err.Error()
			return steps()
		}
		if !ok {
			lacking = append(lacking, string(r))
		}
	}
	if len(lacking) > 0 {
		ac.Status, ac.Evidence = Missing, holder.UPN+" lacks "+strings.Join(lacking, " and ")
	} else {
		ac.Status, ac.Evidence, ac.Command = Done, holder.UPN+" has FullAccess and SendAs", ""
	}
	return steps()
}

func findFunction(d *provisioning.Desired, addr string) *provisioning.Function {
	for _, f := range d.Functions {
		if strings.EqualFold(f.Address, addr) {
			return f
		}
	}
	return nil
}

// next picks the first step without evidence, moving the address along its
// states on the way: the relay only accepts mail once it is forwarding.
func next(c Checklist) *NextStep {
	if c.State == router.Migrated {
		return nil
	}
	flip := func(to router.State) *NextStep {
		return &NextStep{Step: "move " + c.Address + " to " + string(to), Command: "dualmx address flip " + c.Address + " " + string(to)}
	}
	for _, s := range c.Steps {
		if s.ID == StepForward {
			switch c.State {
			case router.Planned:
				return flip(router.Provisioned)
			case router.Provisioned:
				return flip(router.Forwarding)
			}
		}
		if s.ID == StepOldRemoved && c.State == router.Forwarding {
			return flip(router.Confirmed)
		}
		if s.Status != Done {
			return &NextStep{Step: s.Title, Reason: s.Evidence, Command: s.Command, Need: s.need}
		}
	}
	return flip(router.Migrated)
}
