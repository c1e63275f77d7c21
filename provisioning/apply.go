// SPDX-License-Identifier: MIT

package provisioning

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/router"
)

// Status is how a step ended.
type Status string

// Step outcomes.
const (
	Done    Status = "done"
	Failed  Status = "failed"
	Skipped Status = "skipped" // a step it depends on did not succeed
)

// Result is one step's outcome.
type Result struct {
	Step   Step   `json:"step"`
	Status Status `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Summary is what Apply did.
type Summary struct {
	File    string   `json:"file"`
	Results []Result `json:"results"`
}

// ErrIncomplete is returned by Apply when a step failed or was skipped.
var ErrIncomplete = errors.New("provisioning: not every step succeeded")

// Counts returns how many steps ended in each way.
func (s *Summary) Counts() (done, failed, skipped int) {
	for _, r := range s.Results {
		switch r.Status {
		case Done:
			done++
		case Failed:
			failed++
		case Skipped:
			skipped++
		}
	}
	return
}

// WriteText prints the summary: the totals, every step's outcome, and
// what to re-run.
func (s *Summary) WriteText(w io.Writer) error { return s.write(w, true) }

// WriteTotals is WriteText without the list of steps, for a run whose
// Env.Progress already showed each one as it ended.
func (s *Summary) WriteTotals(w io.Writer) error { return s.write(w, false) }

func (s *Summary) write(w io.Writer, steps bool) error {
	b := &strings.Builder{}
	done, failed, skipped := s.Counts()
	fmt.Fprintf(b, "\nApplied %d of %d steps", done, len(s.Results))
	if failed+skipped > 0 {
		fmt.Fprintf(b, " (%d failed, %d skipped)", failed, skipped)
	}
	b.WriteString(".\n")
	if steps {
		for _, r := range s.Results {
			writeResult(b, "  ", r)
		}
	}
	if failed+skipped > 0 {
		fmt.Fprintf(b, "\nTo finish: fix the failures above and run `dualmx provision apply --file %s` again.\n", s.File)
		b.WriteString("It plans only what is still missing:\n")
		for _, r := range s.Results {
			if r.Status != Done {
				fmt.Fprintf(b, "  - %s\n", visible.String(r.Step.Text))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeResult writes one step's outcome after prefix, and its error, if
// any, on the next line under the step's text. Both come from the tenant
// or the desired-state file, so they are escaped for the terminal.
func writeResult(b *strings.Builder, prefix string, r Result) {
	fmt.Fprintf(b, "%s%-7s %s\n", prefix, r.Status, visible.String(r.Step.Text))
	if r.Error != "" {
		fmt.Fprintf(b, "%s%s\n", strings.Repeat(" ", len(prefix)+8), visible.String(r.Error))
	}
}

// applier carries state between the steps of one run: the IDs of the
// accounts and the temporary passwords of accounts created in this run,
// which live only here, in memory, until their welcome mail is sent.
type applier struct {
	env       Env
	d         *Desired
	plan      *Plan
	a         *Actual
	ids       map[string]string       // UPN → object ID
	passwords map[string]string       // UPN → temporary password, until mailed
	mailboxes map[string]m365.Mailbox // function address → its mailbox, once read
}

// Apply carries out plan. A failed step does not stop the others; only the
// steps that depend on it are skipped. It returns ErrIncomplete when
// anything was left undone, with the summary saying what.
func Apply(ctx context.Context, env Env, d *Desired, a *Actual, plan *Plan) (*Summary, error) {
	ap := &applier{env: env, d: d, plan: plan, a: a, ids: map[string]string{}, passwords: map[string]string{}, mailboxes: map[string]m365.Mailbox{}}
	for addr, mb := range a.Mailboxes {
		ap.mailboxes[addr] = mb
	}
	for upn, u := range a.Users {
		ap.ids[upn] = u.ID
	}
	sum := &Summary{File: d.File}
	status := map[string]Status{}
	for _, s := range plan.Steps() {
		r := Result{Step: s, Status: Done}
		for _, dep := range s.After {
			if status[dep] != Done {
				r.Status = Skipped
				r.Error = "not attempted: " + describe(plan, dep) + " did not succeed"
			}
		}
		if r.Status == Done {
			if err := ap.run(ctx, s); err != nil {
				r.Status, r.Error = Failed, err.Error()
			}
		}
		status[s.ID] = r.Status
		ap.env.log().Info("provision step", "step", s.ID, "result", string(r.Status), "error", r.Error)
		sum.Results = append(sum.Results, r)
		if env.Progress != nil {
			// Only what a person watches; the log and the summary are the record.
			b := &strings.Builder{}
			if len(sum.Results) == 1 {
				b.WriteString("\n")
			}
			writeResult(b, fmt.Sprintf("  [%d/%d] ", len(sum.Results), len(plan.Steps())), r)
			_, _ = io.WriteString(env.Progress, b.String())
		}
		if ctx.Err() != nil {
			break
		}
	}
	// Whatever did not get its welcome mail loses its password here; the
	// next run resets it and mails a new one.
	clear(ap.passwords)
	_, failed, skipped := sum.Counts()
	if failed+skipped > 0 || len(sum.Results) < len(plan.Steps()) {
		return sum, ErrIncomplete
	}
	return sum, nil
}

func describe(p *Plan, id string) string {
	for _, s := range p.Steps() {
		if s.ID == id {
			return "“" + s.Text + "”"
		}
	}
	return id
}

func (ap *applier) audit(ctx context.Context, address, action, detail string) error {
	return ap.env.Ledger.AppendAudit(ctx, router.AuditEntry{At: ap.env.now(), Actor: ap.env.Actor, Address: address,
		Action: action, Reason: "dualmx provision apply", Detail: detail})
}

func (ap *applier) run(ctx context.Context, s Step) error {
	dir, mb := ap.env.Dir, ap.env.MB
	switch s.Kind {
	case CreateAccount:
		per := ap.d.person(s.Person)
		pw, err := newPassword()
		if err != nil {
			return err
		}
		u, err := dir.CreateUser(ctx, m365.NewUser{UPN: per.UPN, MailNickname: strings.SplitN(per.UPN, "@", 2)[0],
			DisplayName: per.DisplayName(), GivenName: per.GivenName, Surname: per.Surname, UsageLocation: ap.d.UsageLocation, Password: pw})
		if err != nil {
			return err
		}
		ap.passwords[per.UPN] = pw
		ap.ids[per.UPN] = u.ID
		if err := ap.audit(ctx, per.UPN, ActionAccountCreated, per.DisplayName()); err != nil {
			return err
		}
		// Graph may not find the new user for a while; the next steps
		// use its ID, so wait here until the ID reads back.
		_, err = dir.WaitUser(ctx, u.ID)
		return err
	case SetUsageLocation:
		return dir.SetUsageLocation(ctx, ap.ids[s.UPN], ap.d.UsageLocation)
	case AssignLicence:
		return dir.AssignLicense(ctx, ap.ids[s.UPN], ap.plan.SKUID)
	case SendWelcome:
		pw, ok := ap.passwords[s.UPN]
		if !ok {
			return errors.New("no temporary password in this run; the next apply resets it and sends the mail")
		}
		delete(ap.passwords, s.UPN)
		return ap.sendWelcome(ctx, ap.d.person(s.Person), pw)
	case ResendWelcome:
		per := ap.d.person(s.Person)
		pw, err := newPassword()
		if err != nil {
			return err
		}
		if err := dir.ResetPassword(ctx, ap.ids[s.UPN], pw); err != nil {
			return err
		}
		if err := ap.audit(ctx, per.UPN, ActionPasswordReset, "for a new welcome mail"); err != nil {
			return err
		}
		return ap.sendWelcome(ctx, per, pw)
	case CreateMailbox:
		f := ap.function(s.Mailbox)
		if _, err := mb.NewSharedMailbox(ctx, f.Address, f.Name); err != nil {
			return err
		}
		made, err := mb.WaitMailbox(ctx, f.Address)
		ap.mailboxes[f.Address] = made
		return err
	case BlockSignIn:
		mbx, ok := ap.mailboxes[s.Mailbox]
		if !ok {
			return fmt.Errorf("shared mailbox %s was not read", s.Mailbox)
		}
		if err := dir.BlockSignIn(ctx, mailboxUser(mbx)); err != nil {
			return err
		}
		return ap.audit(ctx, s.Mailbox, ActionSignInBlocked, "accountEnabled false")
	case GrantAccess:
		changed, err := mb.Grant(ctx, s.Mailbox, s.UPN, s.Right)
		if err != nil || !changed {
			return err
		}
		return ap.audit(ctx, s.Mailbox, ActionGrant, string(s.Right)+" "+s.UPN)
	case RevokeAccess:
		changed, err := mb.Revoke(ctx, s.Mailbox, s.UPN, s.Right)
		if err != nil || !changed {
			return err
		}
		return ap.audit(ctx, s.Mailbox, ActionRevoke, string(s.Right)+" "+s.UPN)
	case MarkProvisioned:
		return ap.markProvisioned(ctx, s.Mailbox)
	}
	return fmt.Errorf("unknown step kind %q", s.Kind)
}

func (ap *applier) function(addr string) *Function {
	for _, f := range ap.d.Functions {
		if f.Address == addr {
			return f
		}
	}
	return nil
}

func (ap *applier) sendWelcome(ctx context.Context, per *Person, pw string) error {
	lang := per.Language
	if lang == "" {
		lang = ap.d.Welcome.Language
	}
	org := ap.d.Organisation
	if org == "" {
		org = ap.d.Domain
	}
	m, err := renderWelcome(ap.d, lang, WelcomeData{GivenName: per.GivenName, DisplayName: per.DisplayName(), SignIn: per.UPN,
		Password: pw, HelpAddress: ap.d.Welcome.Help, Organisation: org, Domain: ap.d.Domain})
	if err != nil {
		return err
	}
	if err := ap.env.Dir.SendMail(ctx, ap.d.Welcome.From, m365.Mail{To: per.PrivateEmail, Subject: m.Subject, Body: m.Body, HTML: m.HTML}); err != nil {
		return err
	}
	return ap.audit(ctx, per.UPN, ActionWelcomeSent, "to "+per.PrivateEmail)
}

// markProvisioned moves the address only on what it reads back now: the
// mailbox exists and a current holder has FullAccess.
func (ap *applier) markProvisioned(ctx context.Context, addr string) error {
	if _, err := ap.env.MB.GetMailbox(ctx, addr); err != nil {
		return err
	}
	gs, err := ap.env.MB.Grants(ctx, addr)
	if err != nil {
		return err
	}
	today := DateOf(ap.env.now(), ap.d.TimeZone)
	for _, h := range ap.function(addr).Holders {
		per := ap.d.person(h.Person)
		if h.Current(today) && hasGrant(gs, per.UPN, m365.FullAccess) {
			_, err := ap.env.Ledger.Flip(ctx, router.FlipRequest{Address: addr, To: router.Provisioned, Actor: ap.env.Actor,
				Reason: fmt.Sprintf("shared mailbox exists and %s has FullAccess (dualmx provision)", per.UPN)}, nil)
			return err
		}
	}
	return fmt.Errorf("no current holder of %s has FullAccess yet", addr)
}
