// SPDX-License-Identifier: MIT

package provisioning

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
	"github.com/dualmx/dualmx/router"
)

// goldenWorld is the tenant behind the golden plan: bert exists and
// still has access to scriba after his until date, someone outside the
// file has FullAccess there, koster does not exist yet, and scriba is in
// the address table as planned.
func goldenWorld(t *testing.T) (*world, *Desired) {
	w := newWorld(t)
	d := w.load("desired.yaml")
	w.tn.AddUser("bert.vanderberg@"+testDomain, "Bert van der Berg")
	w.tn.SetUserState("bert.vanderberg@"+testDomain, "NL", testSKU)
	w.tn.AddUser("piet.pietersen@"+testDomain, "Piet Pietersen")
	w.tn.AddSharedMailbox("scriba@"+testDomain, "Scriba")
	w.tn.AddGrant("scriba@"+testDomain, "bert.vanderberg@"+testDomain, m365.FullAccess)
	w.tn.AddGrant("scriba@"+testDomain, "bert.vanderberg@"+testDomain, m365.SendAs)
	w.tn.AddGrant("scriba@"+testDomain, "piet.pietersen@"+testDomain, m365.FullAccess)
	if _, err := w.store.Add(context.Background(), "scriba@"+testDomain, "scriba@fwd."+testDomain, "scriba@"+testDomain, "test"); err != nil {
		t.Fatal(err)
	}
	return w, d
}

func TestPlanGolden(t *testing.T) {
	w, d := goldenWorld(t)
	p, _ := w.plan(d)
	var txt, js bytes.Buffer
	if err := p.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.txt", txt.Bytes())
	golden(t, "plan.json", js.Bytes())
	if n := w.tn.Count("Add-") + w.tn.Count("New-") + w.tn.Count("POST /users"); n != 0 {
		t.Errorf("plan made %d changes", n)
	}
}

func TestApplyConvergesAndMarksProvisioned(t *testing.T) {
	w, d := goldenWorld(t)
	w.tn.LagAfterCreate(2)
	w.tn.MailboxDelay(2)
	w.apply(d)
	p, _ := w.plan(d)
	if !p.Empty() {
		var b bytes.Buffer
		p.WriteText(&b)
		t.Fatalf("second plan is not empty:\n%s", b.String())
	}
	if p.UnexpectedCount() != 1 {
		t.Errorf("piet's grant must still be flagged, not removed: %d", p.UnexpectedCount())
	}
	for _, upn := range []string{"anna.devries", "jurrien.thart"} {
		_, loc, skus, force, ok := w.tn.User(upn + "@" + testDomain)
		if !ok || loc != "NL" || len(skus) != 1 || skus[0] != testSKU || !force {
			t.Errorf("%s: exists=%v location=%q skus=%v forceChange=%v", upn, ok, loc, skus, force)
		}
	}
	want := map[string][]string{
		"scriba@" + testDomain: {"piet.pietersen@" + testDomain + " FullAccess", "anna.devries@" + testDomain + " FullAccess", "anna.devries@" + testDomain + " SendAs"},
		"koster@" + testDomain: {"jurrien.thart@" + testDomain + " FullAccess", "jurrien.thart@" + testDomain + " SendAs"},
	}
	for mbx, g := range want {
		if got := w.tn.Grants(mbx); strings.Join(got, ",") != strings.Join(g, ",") {
			t.Errorf("%s grants %v, want %v", mbx, got, g)
		}
	}
	if w.tn.DuplicateAdds != 0 {
		t.Error("a grant was added twice")
	}
	mails := w.tn.Mails()
	if len(mails) != 2 || mails[0].From != "ithelp@"+testDomain || mails[0].SaveToSentItems {
		t.Fatalf("mails %+v", mails)
	}
	ad, err := w.store.Get(context.Background(), "scriba@"+testDomain)
	if err != nil || ad.State != router.Provisioned {
		t.Fatalf("scriba state %v %v", ad.State, err)
	}
	audit, _ := w.store.Audit(context.Background(), "scriba@"+testDomain)
	flip := audit[len(audit)-1]
	if flip.Action != router.ActionFlip || flip.From != router.Planned || flip.To != router.Provisioned || !strings.Contains(flip.Reason, "anna.devries") {
		t.Errorf("last audit entry %+v", flip)
	}
	// A third run on a later day still changes nothing.
	w.clock.set("2026-04-01")
	if p, _ := w.plan(d); !p.Empty() {
		t.Error("plan not empty a month later")
	}
}

func TestUsageLocationBeforeLicence(t *testing.T) {
	w := newWorld(t)
	d := w.parse(base0 + people("anna", "Anna", "de Vries"))
	w.tn.AddUser("anna.devries@"+testDomain, "Anna de Vries")
	w.tn.SetUserState("anna.devries@"+testDomain, "")
	p, _ := w.plan(d)
	steps := p.People[0].Steps
	if len(steps) != 2 || steps[0].Kind != SetUsageLocation || steps[1].Kind != AssignLicence || steps[1].After[0] != steps[0].ID {
		t.Fatalf("steps %+v", steps)
	}
	w.apply(d)
	if _, loc, skus, _, _ := w.tn.User("anna.devries@" + testDomain); loc != "NL" || len(skus) != 1 {
		t.Errorf("location %q skus %v", loc, skus)
	}
	if len(w.tn.Mails()) != 0 {
		t.Error("an account dualmx did not create got a welcome mail")
	}
}

const base0 = `domain: hervormdputten.nl
licence: O365_BUSINESS_PREMIUM
welcome:
  from: ithelp@hervormdputten.nl
  help: ithelp@hervormdputten.nl
`

func people(kv ...string) string {
	s := "people:\n"
	for i := 0; i+2 < len(kv); i += 3 {
		s += "  " + kv[i] + ":\n    given_name: " + kv[i+1] + "\n    surname: " + kv[i+2] + "\n    private_email: " + kv[i] + "@private.example\n"
	}
	return s
}

func TestHandoverScenario(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if _, err := w.store.Add(ctx, "scriba@"+testDomain, "scriba@fwd."+testDomain, "scriba@"+testDomain, "test"); err != nil {
		t.Fatal(err)
	}
	ppl := people("anna", "Anna", "de Vries", "bert", "Bert", "Bos")
	before := base0 + ppl + "functions:\n  - address: scriba@hervormdputten.nl\n    name: Scriba\n    holders:\n      - person: anna\n        from: 2026-01-01\n"
	// B is added from X = 2026-04-01; A keeps access until Y = 2026-04-30.
	handover := base0 + ppl + "functions:\n  - address: scriba@hervormdputten.nl\n    name: Scriba\n    holders:\n" +
		"      - person: anna\n        from: 2026-01-01\n        until: 2026-04-30\n      - person: bert\n        from: 2026-04-01\n"
	const A, B = "anna.devries@" + testDomain, "bert.bos@" + testDomain

	type want struct {
		user, rights, until, status string
	}
	check := func(step string, d *Desired, rows []want) {
		t.Helper()
		got := w.report(d)
		if len(got) != len(rows) {
			t.Fatalf("%s: report %+v, want %d rows", step, got, len(rows))
		}
		for i, r := range rows {
			g := got[i]
			if g.User != r.user || strings.Join(g.Rights, "+") != r.rights || g.Until != r.until || g.Status != r.status || g.Mailbox != "scriba@"+testDomain {
				t.Errorf("%s: row %d = %+v, want %+v", step, i, g, r)
			}
		}
	}
	kinds := func(p *Plan) []string {
		var out []string
		for _, s := range p.Functions[0].Steps {
			out = append(out, string(s.Kind)+" "+string(s.Right)+" "+s.UPN)
		}
		return out
	}

	// Before: A holds scriba (B's account exists but holds nothing).
	w.clock.set("2026-03-15")
	d := w.parse(before)
	w.apply(d)
	check("before", d, []want{{A, "FullAccess+SendAs", "", StatusOK}})

	// At X: the plan grants B and keeps A.
	w.clock.set("2026-04-01")
	d = w.parse(handover)
	p, _ := w.plan(d)
	if got := kinds(p); strings.Join(got, ";") != "grant FullAccess "+B+";grant SendAs "+B {
		t.Errorf("plan at X: %q", got)
	}
	if n := p.Functions[0].Notes; len(n) != 1 || n[0] != A+" keeps access until 2026-04-30" {
		t.Errorf("notes at X: %q", n)
	}
	check("at X before apply", d, []want{{A, "FullAccess+SendAs", "2026-04-30", StatusOK}, {B, "", "", StatusMissing}})
	w.apply(d)
	check("at X", d, []want{{A, "FullAccess+SendAs", "2026-04-30", StatusOK}, {B, "FullAccess+SendAs", "", StatusOK}})

	// On Y itself A still has access: the until date is inclusive.
	w.clock.set("2026-04-30")
	if p, _ := w.plan(d); !p.Empty() {
		t.Errorf("plan on Y: %q", kinds(p))
	}

	// The first run after Y revokes A.
	w.clock.set("2026-05-01")
	p, _ = w.plan(d)
	if got := kinds(p); strings.Join(got, ";") != "revoke FullAccess "+A+";revoke SendAs "+A {
		t.Errorf("plan after Y: %q", got)
	}
	check("after Y before apply", d, []want{{A, "FullAccess+SendAs", "2026-04-30", StatusExpired}, {B, "FullAccess+SendAs", "", StatusOK}})
	w.apply(d)
	check("after Y", d, []want{{B, "FullAccess+SendAs", "", StatusOK}})
	if got := w.tn.Grants("scriba@" + testDomain); strings.Join(got, ",") != B+" FullAccess,"+B+" SendAs" {
		t.Errorf("tenant grants %v", got)
	}
	audit, _ := w.store.Audit(ctx, "scriba@"+testDomain)
	var acts []string
	for _, e := range audit {
		if e.Action == ActionGrant || e.Action == ActionRevoke {
			acts = append(acts, e.Action+" "+e.Detail)
		} else {
			acts = append(acts, e.Action+" ")
		}
	}
	wantActs := []string{"add ", "sign-in-blocked ", "grant FullAccess " + A, "grant SendAs " + A, "flip ", "grant FullAccess " + B, "grant SendAs " + B,
		"revoke FullAccess " + A, "revoke SendAs " + A}
	if strings.Join(acts, ";") != strings.Join(wantActs, ";") {
		t.Errorf("audit %q\nwant  %q", acts, wantActs)
	}
	if rows := w.report(d); rows[0].Granted == "" || rows[0].Since != "2026-04-01" {
		t.Errorf("report has no grant time from the audit log: %+v", rows[0])
	}
}

func TestPasswordAppearsOnlyInTheWelcomeMail(t *testing.T) {
	w := newWorld(t)
	d := w.parse(base0 + people("anna", "Anna", "de Vries"))
	var out bytes.Buffer
	p, a := w.plan(d)
	p.WriteText(&out)
	p.WriteJSON(&out)
	sum, err := Apply(context.Background(), w.env, d, a, p)
	if err != nil {
		t.Fatal(err)
	}
	sum.WriteText(&out)
	// The second secret: a failed welcome mail makes the next run reset it.
	w.tn.SetUserState("anna.devries@"+testDomain, "NL", testSKU)
	if err := w.store.AppendAudit(context.Background(), router.AuditEntry{Address: "anna.devries@" + testDomain, Action: ActionPasswordReset, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	p, a = w.plan(d)
	p.WriteText(&out)
	sum, err = Apply(context.Background(), w.env, d, a, p)
	if err != nil {
		t.Fatal(err)
	}
	sum.WriteText(&out)
	mails := w.tn.Mails()
	if len(mails) != 2 {
		t.Fatalf("%d mails", len(mails))
	}
	var secrets []string
	for i, m := range mails {
		pw := between(m.Body, "Tijdelijk wachtwoord:  ", "\n")
		if len(pw) != 20 {
			t.Fatalf("mail %d has no password: %q", i, m.Body)
		}
		secrets = append(secrets, pw)
	}
	if secrets[0] == secrets[1] {
		t.Error("the reset reused the password")
	}
	if w.tn.Password("anna.devries@"+testDomain) != secrets[1] {
		t.Error("the mailed password is not the account's")
	}
	for _, pw := range secrets {
		if strings.Contains(w.logs.String(), pw) {
			t.Error("password in the log")
		}
		if strings.Contains(out.String(), pw) {
			t.Error("password in the output")
		}
		filepath.WalkDir(w.dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, _ := os.ReadFile(path)
			if bytes.Contains(b, []byte(pw)) {
				t.Errorf("password stored in %s", path)
			}
			return nil
		})
	}
	if !strings.Contains(w.logs.String(), "provision step") {
		t.Error("the log is empty, so the check above proves nothing")
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

func TestWelcomeMailFailureIsRetriedWithNewPassword(t *testing.T) {
	w := newWorld(t)
	d := w.parse(base0 + people("anna", "Anna", "de Vries"))
	w.tn.Inject(m365test.Fault{Match: "POST /users/ithelp@" + testDomain + "/sendMail", Status: 500})
	p, a := w.plan(d)
	sum, err := Apply(context.Background(), w.env, d, a, p)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err %v", err)
	}
	var out bytes.Buffer
	sum.WriteText(&out)
	if !strings.Contains(out.String(), "failed  send welcome mail") || !strings.Contains(out.String(), "HTTP 500") ||
		!strings.Contains(out.String(), "run `dualmx provision apply --file desired.yaml` again") {
		t.Errorf("summary:\n%s", out.String())
	}
	first := w.tn.Password("anna.devries@" + testDomain)
	w.tn.ClearFaults()
	p, _ = w.plan(d)
	if s := p.Steps(); len(s) != 1 || s[0].Kind != ResendWelcome {
		t.Fatalf("plan after a failed welcome: %+v", s)
	}
	w.apply(d)
	mails := w.tn.Mails()
	second := w.tn.Password("anna.devries@" + testDomain)
	if len(mails) != 1 || second == first || !strings.Contains(mails[0].Body, second) {
		t.Errorf("resend: %d mails; password changed=%v", len(mails), second != first)
	}
	if p, _ := w.plan(d); !p.Empty() {
		t.Error("not converged after the resend")
	}
}

func TestFailedStepDoesNotStopIndependentSteps(t *testing.T) {
	w := newWorld(t)
	d := w.parse(base0 + people("anna", "Anna", "de Vries", "bert", "Bert", "Bos") +
		"functions:\n  - address: scriba@hervormdputten.nl\n    name: Scriba\n    holders:\n      - person: anna\n        from: 2026-01-01\n" +
		"  - address: koster@hervormdputten.nl\n    name: Koster\n    holders:\n      - person: bert\n        from: 2026-01-01\n")
	w.tn.AddUser("bert.bos@"+testDomain, "Bert Bos")
	w.tn.SetUserState("bert.bos@"+testDomain, "NL", testSKU)
	w.tn.Inject(m365test.Fault{Match: "POST /users", Status: 400, Code: "Request_BadRequest", Message: "Password does not comply with policy", Times: 1})
	p, a := w.plan(d)
	sum, err := Apply(context.Background(), w.env, d, a, p)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err %v", err)
	}
	got := map[string]Status{}
	for _, r := range sum.Results {
		got[r.Step.ID] = r.Status
	}
	for id, want := range map[string]Status{
		"person/anna/create-account":                              Failed,
		"person/anna/assign-licence":                              Skipped,
		"person/anna/send-welcome":                                Skipped,
		"function/scriba@hervormdputten.nl/create-shared-mailbox": Done,
		"function/scriba@hervormdputten.nl/grant/FullAccess/anna": Skipped,
		"function/koster@hervormdputten.nl/create-shared-mailbox": Done,
		"function/koster@hervormdputten.nl/grant/FullAccess/bert": Done,
		"function/koster@hervormdputten.nl/grant/SendAs/bert":     Done,
	} {
		if got[id] != want {
			t.Errorf("%s: %s, want %s", id, got[id], want)
		}
	}
	var out bytes.Buffer
	sum.WriteText(&out)
	for _, s := range []string{"Password does not comply with policy", "To finish", "  - create account anna.devries@", "  - grant FullAccess to anna.devries@"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
	// The re-run does the rest.
	w.apply(d)
	if p, _ := w.plan(d); !p.Empty() {
		t.Error("not converged after the re-run")
	}
}

func TestPlanRefusesUnknownLicence(t *testing.T) {
	w := newWorld(t)
	d := w.parse(strings.Replace(base0, "O365_BUSINESS_PREMIUM", "SPE_E5", 1))
	if _, _, err := MakePlan(context.Background(), w.env, d); err == nil || !strings.Contains(err.Error(), "SPE_E5 is not among the tenant's subscribed SKUs (O365_BUSINESS_PREMIUM)") {
		t.Errorf("err %v", err)
	}
}

func TestAccessReportFormats(t *testing.T) {
	w, d := goldenWorld(t)
	w.tn.AddSharedMailbox("oud@"+testDomain, "Oud")
	w.tn.AddGrant("oud@"+testDomain, "piet.pietersen@"+testDomain, m365.SendAs)
	w.tn.PageSize(1)
	rows := w.report(d)
	var txt, js, cs bytes.Buffer
	WriteAccessText(&txt, rows)
	WriteAccessJSON(&js, rows)
	WriteAccessCSV(&cs, rows)
	golden(t, "access.txt", txt.Bytes())
	golden(t, "access.json", js.Bytes())
	golden(t, "access.csv", cs.Bytes())
}

// Review finding 5: the account behind a shared mailbox must not sign in
// (create-a-shared-mailbox: block sign-in). A new mailbox is blocked after
// it is created, an existing one that can sign in gets a step of its own,
// and a blocked one is left alone.
func TestSharedMailboxSignInBlocked(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	d := w.parse(base0 + people("anna", "Anna", "de Vries") + "functions:\n" +
		"  - address: scriba@hervormdputten.nl\n    name: Scriba\n    holders:\n      - person: anna\n        from: 2026-01-01\n" +
		"  - address: koster@hervormdputten.nl\n    name: Koster\n    holders:\n      - person: anna\n        from: 2026-01-01\n")
	w.tn.AddSharedMailbox("koster@"+testDomain, "Koster") // made in the admin center, sign-in left on
	w.tn.LagAfterCreate(2)                                // the new mailbox's user reaches Graph late
	p, _ := w.plan(d)
	var blocks []string
	for _, s := range p.Steps() {
		if s.Kind == BlockSignIn {
			blocks = append(blocks, s.Mailbox+" after "+strings.Join(s.After, ","))
		}
	}
	if strings.Join(blocks, ";") != "scriba@"+testDomain+" after function/scriba@"+testDomain+"/create-shared-mailbox;koster@"+testDomain+" after " {
		t.Errorf("block steps %q", blocks)
	}
	w.apply(d)
	for _, a := range []string{"scriba@" + testDomain, "koster@" + testDomain} {
		if w.tn.SignInEnabled(a) {
			t.Errorf("%s can still sign in", a)
		}
		audit, _ := w.store.Audit(ctx, a)
		found := false
		for _, e := range audit {
			found = found || e.Action == ActionSignInBlocked
		}
		if !found {
			t.Errorf("%s: no %s in the audit log", a, ActionSignInBlocked)
		}
	}
	if p, _ := w.plan(d); !p.Empty() {
		t.Errorf("plan after apply: %+v", p.Steps())
	}
}

// writes keeps each Write apart and calls seen with it as it comes.
type writes struct {
	got  []string
	seen func(string)
}

func (w *writes) Write(p []byte) (int, error) {
	w.got = append(w.got, string(p))
	w.seen(string(p))
	return len(p), nil
}

// TestApplyProgress: with Env.Progress set, Apply writes each step's
// outcome, whole lines at once, as the step ends (before the next one
// starts), with a failure's reason under its text; WriteTotals then gives
// the totals and what to re-run without listing every step again.
func TestApplyProgress(t *testing.T) {
	w := newWorld(t)
	d := w.parse(base0 + people("anna", "Anna", "de Vries"))
	w.tn.Inject(m365test.Fault{Match: "POST /users/ithelp@" + testDomain + "/sendMail", Status: 500})
	licensed := func() bool { _, _, skus, _, _ := w.tn.User("anna.devries@" + testDomain); return len(skus) > 0 }
	var licensedAtFirst bool
	progress := &writes{}
	progress.seen = func(string) {
		if len(progress.got) == 1 {
			licensedAtFirst = licensed()
		}
	}
	w.env.Progress = progress
	p, a := w.plan(d)
	sum, err := Apply(context.Background(), w.env, d, a, p)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err %v", err)
	}
	if len(progress.got) != 3 {
		t.Fatalf("%d writes, want one per step: %q", len(progress.got), progress.got)
	}
	if licensedAtFirst || !licensed() {
		t.Errorf("the first step's line came after the second step ran (licensed then: %v), or the licence never was", licensedAtFirst)
	}
	want := []string{
		"\n  [1/3] done    create account anna.devries@hervormdputten.nl (Anna de Vries), usage location NL, password change at first sign-in\n",
		"  [2/3] done    assign licence O365_BUSINESS_PREMIUM\n",
		"  [3/3] failed  send welcome mail (nl) to anna@private.example\n" + strings.Repeat(" ", 16),
	}
	for i, got := range progress.got {
		if !strings.HasPrefix(got, want[i]) || !strings.HasSuffix(got, "\n") {
			t.Errorf("line %d = %q, want %q…", i+1, got, want[i])
		}
	}
	if !strings.Contains(progress.got[2], "HTTP 500") {
		t.Errorf("the failure's line does not say why: %q", progress.got[2])
	}
	var totals bytes.Buffer
	if err := sum.WriteTotals(&totals); err != nil {
		t.Fatal(err)
	}
	if got := totals.String(); !strings.HasPrefix(got, "\nApplied 2 of 3 steps (1 failed, 0 skipped).\n\nTo finish:") ||
		!strings.HasSuffix(got, "\n  - send welcome mail (nl) to anna@private.example\n") || strings.Contains(got, "done ") {
		t.Errorf("totals:\n%s", got)
	}
}
