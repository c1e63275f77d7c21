// SPDX-License-Identifier: MIT

// Package provisioning makes Microsoft 365 match a desired-state file:
// a personal account per person, a shared mailbox per function, and
// FullAccess and SendAs for whoever holds the function on the day, with
// handovers (the predecessor keeps access until a date, then loses it).
//
// Parse reads the file, Observe reads the tenant and dualmx's audit log,
// Compute diffs them into a Plan (pure: same inputs, same plan), Apply
// carries a plan out and Report says who has access to what.
package provisioning

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/router"
)

// Directory is what provisioning needs from Microsoft Graph; *m365.Graph.
type Directory interface {
	GetUser(ctx context.Context, upnOrID string) (m365.User, error)
	WaitUser(ctx context.Context, id string) (m365.User, error)
	CreateUser(ctx context.Context, n m365.NewUser) (m365.User, error)
	SetUsageLocation(ctx context.Context, id, country string) error
	AssignLicense(ctx context.Context, id, skuID string) error
	ResetPassword(ctx context.Context, id, password string) error
	BlockSignIn(ctx context.Context, id string) error
	SendMail(ctx context.Context, from string, m m365.Mail) error
	SubscribedSKUs(ctx context.Context) ([]m365.SKU, error)
}

// Mailboxes is what provisioning needs from Exchange Online; *m365.Exchange.
type Mailboxes interface {
	GetMailbox(ctx context.Context, identity string) (m365.Mailbox, error)
	SharedMailboxes(ctx context.Context) ([]m365.Mailbox, error)
	NewSharedMailbox(ctx context.Context, address, displayName string) (m365.Mailbox, error)
	WaitMailbox(ctx context.Context, identity string) (m365.Mailbox, error)
	Grants(ctx context.Context, mailbox string) ([]m365.Grant, error)
	Grant(ctx context.Context, mailbox, user string, r m365.Right) (bool, error)
	Revoke(ctx context.Context, mailbox, user string, r m365.Right) (bool, error)
}

// Ledger is dualmx's state database (*router.Store): the audit log records
// what provisioning did, which the next plan and the access report read,
// and the address table moves to provisioned.
type Ledger interface {
	AppendAudit(ctx context.Context, e router.AuditEntry) error
	Audit(ctx context.Context, address string) ([]router.AuditEntry, error)
	Get(ctx context.Context, addressOrAlias string) (router.Address, error)
	Flip(ctx context.Context, req router.FlipRequest, pending router.PendingChecker) (router.AuditEntry, error)
}

// Env is what Observe, Apply and Report work against.
type Env struct {
	Dir    Directory
	MB     Mailboxes
	Ledger Ledger
	Log    *slog.Logger     // nil discards
	Now    func() time.Time // nil is time.Now
	Actor  string           // who is recorded in the audit log
	// Progress, when set, gets a line as each step of Apply ends ("  [3/7]
	// done    create shared mailbox …"), for a person watching the run.
	Progress io.Writer
}

func (e Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e Env) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Audit actions provisioning writes. The password is never part of one.
const (
	ActionAccountCreated = "account-created"
	ActionPasswordReset  = "password-reset"
	ActionWelcomeSent    = "welcome-sent"
	ActionGrant          = "grant"
	ActionRevoke         = "revoke"
	ActionSignInBlocked  = "sign-in-blocked"
)

// Actual is what the tenant and the audit log say now, limited to what the
// desired state is about.
type Actual struct {
	SKUs      []m365.SKU
	Users     map[string]m365.User    // by lower-case UPN
	Mailboxes map[string]m365.Mailbox // by function address
	// SignIn is true for a function's shared mailbox whose account can
	// still sign in (or is not readable yet).
	SignIn    map[string]bool
	Grants    map[string][]m365.Grant // by function address
	Created   map[string]bool         // UPN: dualmx created the account
	Welcomed  map[string]bool         // UPN: its welcome mail went out
	Addresses map[string]router.State // function address: state in the address table
	GrantedAt map[string]time.Time    // grantKey: last grant in the audit log
	Others    map[string][]m365.Grant // shared mailboxes the file does not name (report only)
	OtherMbx  map[string]m365.Mailbox // ditto
}

func grantKey(mailbox, upn string, r m365.Right) string {
	return strings.ToLower(mailbox) + "|" + strings.ToLower(upn) + "|" + string(r)
}

// Observe reads the tenant and the audit log for d.
func Observe(ctx context.Context, env Env, d *Desired) (*Actual, error) {
	a := &Actual{Users: map[string]m365.User{}, Mailboxes: map[string]m365.Mailbox{}, SignIn: map[string]bool{}, Grants: map[string][]m365.Grant{},
		Created: map[string]bool{}, Welcomed: map[string]bool{}, Addresses: map[string]router.State{}, GrantedAt: map[string]time.Time{}}
	var err error
	if a.SKUs, err = env.Dir.SubscribedSKUs(ctx); err != nil {
		return nil, err
	}
	for _, p := range d.People {
		u, err := env.Dir.GetUser(ctx, p.UPN)
		switch {
		case errors.Is(err, m365.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			a.Users[p.UPN] = u
		}
		entries, err := env.Ledger.Audit(ctx, p.UPN)
		if err != nil {
			return nil, err
		}
		// The welcome mail is owed after every create or reset that was
		// not followed by a sent welcome.
		for _, e := range entries {
			switch e.Action {
			case ActionAccountCreated, ActionPasswordReset:
				a.Created[p.UPN], a.Welcomed[p.UPN] = true, false
			case ActionWelcomeSent:
				a.Welcomed[p.UPN] = true
			}
		}
	}
	for _, f := range d.Functions {
		mb, err := env.MB.GetMailbox(ctx, f.Address)
		switch {
		case errors.Is(err, m365.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			a.Mailboxes[f.Address] = mb
			if a.Grants[f.Address], err = env.MB.Grants(ctx, f.Address); err != nil {
				return nil, err
			}
			u, err := env.Dir.GetUser(ctx, mailboxUser(mb))
			switch {
			case errors.Is(err, m365.ErrNotFound):
				// Not in Graph yet: blocking again is harmless.
				a.SignIn[f.Address] = true
			case err != nil:
				return nil, err
			default:
				a.SignIn[f.Address] = u.AccountEnabled
			}
		}
		if ad, err := env.Ledger.Get(ctx, f.Address); err == nil {
			a.Addresses[f.Address] = ad.State
		} else if !errors.Is(err, router.ErrNotFound) {
			return nil, err
		}
		entries, err := env.Ledger.Audit(ctx, f.Address)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Action == ActionGrant {
				if r, upn, ok := strings.Cut(e.Detail, " "); ok {
					a.GrantedAt[grantKey(f.Address, upn, m365.Right(r))] = e.At
				}
			}
		}
	}
	return a, nil
}

// Kind is what a step does.
type Kind string

// The step kinds, in the order they run within a group.
const (
	CreateAccount    Kind = "create-account"
	SetUsageLocation Kind = "set-usage-location"
	AssignLicence    Kind = "assign-licence"
	SendWelcome      Kind = "send-welcome"
	ResendWelcome    Kind = "reset-password-and-send-welcome"
	CreateMailbox    Kind = "create-shared-mailbox"
	BlockSignIn      Kind = "block-sign-in"
	GrantAccess      Kind = "grant"
	RevokeAccess     Kind = "revoke"
	MarkProvisioned  Kind = "mark-provisioned"
)

// Step is one change.
type Step struct {
	ID      string     `json:"id"`
	Kind    Kind       `json:"kind"`
	Person  string     `json:"person,omitempty"` // person key
	UPN     string     `json:"account,omitempty"`
	Mailbox string     `json:"mailbox,omitempty"`
	Right   m365.Right `json:"right,omitempty"`
	Why     string     `json:"why,omitempty"`
	Text    string     `json:"text"`
	After   []string   `json:"after,omitempty"` // steps that must succeed first
}

// Unexpected is access on a managed shared mailbox that the file does not
// explain. It is reported, not removed: it may be an admin's deliberate
// grant, and taking access away is for a person to decide.
type Unexpected struct {
	Mailbox string     `json:"mailbox"`
	User    string     `json:"user"`
	Right   m365.Right `json:"right"`
}

// PersonPlan is the steps of one person.
type PersonPlan struct {
	Key         string `json:"person"`
	DisplayName string `json:"display_name"`
	UPN         string `json:"account"`
	Steps       []Step `json:"steps"`
}

// FunctionPlan is the steps and findings of one function.
type FunctionPlan struct {
	Address    string       `json:"address"`
	Name       string       `json:"name"`
	Steps      []Step       `json:"steps"`
	Unexpected []Unexpected `json:"unexpected"`
	Notes      []string     `json:"notes"`
}

// Plan is the difference between the file and the tenant on one day.
type Plan struct {
	Domain    string         `json:"domain"`
	Date      string         `json:"date"`
	File      string         `json:"file"`
	Licence   string         `json:"licence"`
	SKUID     string         `json:"licence_sku_id"`
	People    []PersonPlan   `json:"people"`
	Functions []FunctionPlan `json:"functions"`
	Warnings  []string       `json:"warnings"`
}

// Steps returns every step in run order.
func (p *Plan) Steps() []Step {
	var out []Step
	for _, pp := range p.People {
		out = append(out, pp.Steps...)
	}
	for _, fp := range p.Functions {
		out = append(out, fp.Steps...)
	}
	return out
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Steps()) == 0 }

// UnexpectedCount counts the findings of unexpected access.
func (p *Plan) UnexpectedCount() int {
	n := 0
	for _, f := range p.Functions {
		n += len(f.Unexpected)
	}
	return n
}

func hasGrant(gs []m365.Grant, upn string, r m365.Right) bool {
	for _, g := range gs {
		if g.Right == r && m365.SamePrincipal(g.User, upn) {
			return true
		}
	}
	return false
}

func hasSKU(u m365.User, id string) bool {
	for _, s := range u.SKUs {
		if strings.EqualFold(s, id) {
			return true
		}
	}
	return false
}

// Compute diffs the desired state against the actual one on day today.
func Compute(d *Desired, a *Actual, today Date) (*Plan, error) {
	p := &Plan{Domain: d.Domain, Date: today.String(), File: d.File, Licence: d.Licence,
		People: []PersonPlan{}, Functions: []FunctionPlan{}, Warnings: []string{}}
	var sku *m365.SKU
	var names []string
	for i, s := range a.SKUs {
		names = append(names, s.PartNumber)
		if strings.EqualFold(s.PartNumber, d.Licence) && (s.AppliesTo == "" || strings.EqualFold(s.AppliesTo, "User")) {
			sku = &a.SKUs[i]
		}
	}
	if sku == nil {
		sort.Strings(names)
		return nil, fmt.Errorf("provisioning: licence %s is not among the tenant's subscribed SKUs (%s)", d.Licence, strings.Join(names, ", "))
	}
	p.SKUID = sku.ID
	if err := checkTemplates(d); err != nil {
		return nil, err
	}
	if !strings.EqualFold(sku.Status, "Enabled") && sku.Status != "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf("licence %s has status %s", sku.PartNumber, sku.Status))
	}

	licences := 0
	personSteps := map[string][]string{} // person key → IDs a grant must wait for
	for _, per := range d.People {
		pp := PersonPlan{Key: per.Key, DisplayName: per.DisplayName(), UPN: per.UPN, Steps: []Step{}}
		id := func(k Kind) string { return "person/" + per.Key + "/" + string(k) }
		lang := per.Language
		if lang == "" {
			lang = d.Welcome.Language
		}
		u, exists := a.Users[per.UPN]
		if !exists {
			c := Step{ID: id(CreateAccount), Kind: CreateAccount, Person: per.Key, UPN: per.UPN,
				Text: fmt.Sprintf("create account %s (%s), usage location %s, password change at first sign-in", per.UPN, per.DisplayName(), d.UsageLocation)}
			l := Step{ID: id(AssignLicence), Kind: AssignLicence, Person: per.Key, UPN: per.UPN, After: []string{c.ID},
				Text: "assign licence " + d.Licence}
			w := Step{ID: id(SendWelcome), Kind: SendWelcome, Person: per.Key, UPN: per.UPN, After: []string{c.ID},
				Text: fmt.Sprintf("send welcome mail (%s) to %s", lang, per.PrivateEmail)}
			pp.Steps = append(pp.Steps, c, l, w)
			personSteps[per.Key] = []string{c.ID, l.ID}
			licences++
		} else {
			var deps []string
			var loc string
			if u.UsageLocation == "" {
				s := Step{ID: id(SetUsageLocation), Kind: SetUsageLocation, Person: per.Key, UPN: per.UPN,
					Why: "a licence needs a usage location", Text: "set usage location " + d.UsageLocation}
				pp.Steps = append(pp.Steps, s)
				loc = s.ID
			}
			if !hasSKU(u, sku.ID) {
				s := Step{ID: id(AssignLicence), Kind: AssignLicence, Person: per.Key, UPN: per.UPN, Text: "assign licence " + d.Licence}
				if loc != "" {
					s.After = []string{loc}
				}
				pp.Steps = append(pp.Steps, s)
				deps = append(deps, s.ID)
				licences++
			}
			if a.Created[per.UPN] && !a.Welcomed[per.UPN] {
				pp.Steps = append(pp.Steps, Step{ID: id(ResendWelcome), Kind: ResendWelcome, Person: per.Key, UPN: per.UPN,
					Why:  "the welcome mail after the last password was not sent",
					Text: fmt.Sprintf("reset the temporary password and send the welcome mail (%s) to %s again", lang, per.PrivateEmail)})
			}
			personSteps[per.Key] = deps
		}
		p.People = append(p.People, pp)
	}
	if free := sku.Free(); licences > free {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%d licence(s) to assign but %s has %d free", licences, sku.PartNumber, free))
	}

	for _, f := range d.Functions {
		fp := FunctionPlan{Address: f.Address, Name: f.Name, Steps: []Step{}, Unexpected: []Unexpected{}, Notes: []string{}}
		id := func(parts ...string) string { return "function/" + f.Address + "/" + strings.Join(parts, "/") }
		var mbxDeps []string
		block := Step{ID: id(string(BlockSignIn)), Kind: BlockSignIn, Mailbox: f.Address,
			Why:  "nobody signs in to a shared mailbox; its holders open it with their own accounts",
			Text: "block sign-in for the account of shared mailbox " + f.Address}
		if _, ok := a.Mailboxes[f.Address]; !ok {
			s := Step{ID: id(string(CreateMailbox)), Kind: CreateMailbox, Mailbox: f.Address,
				Text: fmt.Sprintf("create shared mailbox %s (%s)", f.Address, f.Name)}
			block.After = []string{s.ID}
			fp.Steps = append(fp.Steps, s, block)
			mbxDeps = []string{s.ID}
		} else if a.SignIn[f.Address] {
			fp.Steps = append(fp.Steps, block)
		}
		grants := a.Grants[f.Address]
		current := map[string]bool{}
		var currentOrder []string
		expired := map[string]Holder{}
		for _, h := range f.Holders {
			per := d.person(h.Person)
			switch {
			case h.Current(today):
				if !current[per.Key] {
					currentOrder = append(currentOrder, per.Key)
				}
				current[per.Key] = true
				if h.Until != nil {
					fp.Notes = append(fp.Notes, fmt.Sprintf("%s keeps access until %s", per.UPN, h.Until))
				}
			case h.Expired(today):
				expired[per.Key] = h
			default:
				fp.Notes = append(fp.Notes, fmt.Sprintf("%s gets access from %s", per.UPN, h.From))
			}
		}
		var fullAccessSteps []string
		for _, key := range currentOrder {
			per := d.person(key)
			since := ""
			for _, h := range f.Holders {
				if h.Person == key && h.Current(today) {
					since = h.From.String()
				}
			}
			for _, r := range []m365.Right{m365.FullAccess, m365.SendAs} {
				if hasGrant(grants, per.UPN, r) {
					if r == m365.FullAccess {
						fullAccessSteps = append(fullAccessSteps, "")
					}
					continue
				}
				s := Step{ID: id(string(GrantAccess), string(r), per.Key), Kind: GrantAccess, Person: key, UPN: per.UPN, Mailbox: f.Address,
					Right: r, Why: "holder since " + since, After: append(append([]string{}, mbxDeps...), personSteps[key]...),
					Text: fmt.Sprintf("grant %s to %s (holder since %s)", r, per.UPN, since)}
				fp.Steps = append(fp.Steps, s)
				if r == m365.FullAccess {
					fullAccessSteps = append(fullAccessSteps, s.ID)
				}
			}
		}
		for _, g := range grants {
			per := d.personByUPN(g.User)
			if per != nil && current[per.Key] {
				continue
			}
			if per != nil {
				if h, ok := expired[per.Key]; ok {
					fp.Steps = append(fp.Steps, Step{ID: id(string(RevokeAccess), string(g.Right), per.Key), Kind: RevokeAccess, Person: per.Key,
						UPN: per.UPN, Mailbox: f.Address, Right: g.Right, Why: "holder until " + h.Until.String(),
						Text: fmt.Sprintf("revoke %s from %s (holder until %s, passed)", g.Right, per.UPN, h.Until)})
					continue
				}
			}
			fp.Unexpected = append(fp.Unexpected, Unexpected{Mailbox: f.Address, User: g.User, Right: g.Right})
		}
		if a.Addresses[f.Address] == router.Planned && len(fullAccessSteps) > 0 {
			var after []string
			after = append(after, mbxDeps...)
			for _, s := range fullAccessSteps {
				if s != "" {
					after = append(after, s)
				}
			}
			fp.Steps = append(fp.Steps, Step{ID: id(string(MarkProvisioned)), Kind: MarkProvisioned, Mailbox: f.Address, After: after,
				Text: "move address " + f.Address + " from planned to provisioned"})
		}
		p.Functions = append(p.Functions, fp)
	}
	return p, nil
}

// mailboxUser names the user behind a mailbox for Graph: its Entra object
// ID when Exchange gave one, else its UPN.
func mailboxUser(mb m365.Mailbox) string {
	if mb.ExternalDirectoryObjectID != "" {
		return mb.ExternalDirectoryObjectID
	}
	if mb.UserPrincipalName != "" {
		return mb.UserPrincipalName
	}
	return mb.PrimarySmtpAddress
}

func (d *Desired) personByUPN(trustee string) *Person {
	for _, p := range d.People {
		if m365.SamePrincipal(trustee, p.UPN) {
			return p
		}
	}
	return nil
}

// MakePlan observes the tenant and computes the plan for today in the
// file's time zone.
func MakePlan(ctx context.Context, env Env, d *Desired) (*Plan, *Actual, error) {
	a, err := Observe(ctx, env, d)
	if err != nil {
		return nil, nil, err
	}
	p, err := Compute(d, a, DateOf(env.now(), d.TimeZone))
	return p, a, err
}
