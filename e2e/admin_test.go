// SPDX-License-Identifier: MIT

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// TestFlipTakesEffectWithinOneSecond: the CLI changes the state database and
// the running daemon routes accordingly within a second, with no signal.
func TestFlipTakesEffectWithinOneSecond(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.mustCLI("address", "add", "scriba@hervormdputten.nl", "--alias", "scriba@fwd.hervormdputten.nl")
	e.mustCLI("address", "flip", "scriba@hervormdputten.nl", "provisioned")
	e.start()
	rcpt := func() int {
		c, err := smtp.Dial(e.smtpAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("a@example.org", nil); err != nil {
			t.Fatal(err)
		}
		return smtpCode(c.Rcpt("scriba@fwd.hervormdputten.nl", nil))
	}
	if got := rcpt(); got != 550 {
		t.Fatalf("provisioned address: RCPT got %d, want 550", got)
	}
	e.mustCLI("address", "flip", "scriba@hervormdputten.nl", "forwarding")
	flipped := time.Now()
	for rcpt() != 250 {
		if time.Since(flipped) > time.Second {
			t.Fatal("flip to forwarding not seen by the daemon within one second")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type auditView struct {
	Action, Actor, Reason, Detail string
	From, To                      string
}

func (e *env) show(addr string) (v struct {
	State        string      `json:"state"`
	LastDelivery *time.Time  `json:"last_delivery"`
	Queued       int         `json:"queued"`
	Held         int         `json:"held"`
	Audit        []auditView `json:"audit"`
}) {
	e.t.Helper()
	if err := json.Unmarshal([]byte(e.mustCLI("address", "show", addr, "--json")), &v); err != nil {
		e.t.Fatal(err)
	}
	return v
}

// TestHoldReleaseDropAndMigratedGuard walks the admin's path: a 5xx at the
// tenant holds the message; migrated is refused while it is held and before
// any delivery; release delivers it; then migrated is allowed; drop is audited.
func TestHoldReleaseDropAndMigratedGuard(t *testing.T) {
	var reject atomic.Bool
	reject.Store(true)
	e := newEnv(t, envOptions{tenant: func(o *standin.Options) {
		o.Hook = func(ev standin.Event) error {
			if ev.Stage == standin.StageRcpt && reject.Load() {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Recipient not found by SMTP address lookup"}
			}
			return nil
		}
	}})
	const addr = "scriba@hervormdputten.nl"
	e.addForwarding(addr, "scriba@fwd.hervormdputten.nl")
	e.mustCLI("address", "flip", addr, "confirmed")
	e.start()
	if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("held-1")); err != nil {
		t.Fatal(err)
	}
	var id string
	waitFor(t, failsafe, "message held", func() bool {
		var items []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if err := json.Unmarshal([]byte(e.mustCLI("queue", "list", "--json")), &items); err != nil {
			t.Fatal(err)
		}
		if len(items) == 1 && items[0].State == "held" {
			id = items[0].ID
			return true
		}
		return false
	})
	if v := e.show(addr); v.Held != 1 {
		t.Fatalf("address show: held=%d, want 1", v.Held)
	}
	_, errOut, code := e.cli("address", "flip", addr, "migrated")
	if code == 0 || !strings.Contains(errOut, "held") {
		t.Fatalf("flip to migrated with held mail: exit %d, %q", code, errOut)
	}
	reject.Store(false)
	e.mustCLI("queue", "release", id)
	waitTenant(t, e.tenant, 1)
	waitFor(t, failsafe, "spool empty and delivery recorded", func() bool {
		v := e.show(addr)
		return v.Held == 0 && v.Queued == 0 && v.LastDelivery != nil
	})
	// Issue 9: the spool and delivery are clear now, but the checklist's
	// steps have no evidence in this env (no probe, no confirmation, no
	// Microsoft 365), so migrated is still refused, naming them, until forced.
	_, errOut, code = e.cli("address", "flip", addr, "migrated")
	if code != 1 || !strings.Contains(errOut, "no verified forward") || !strings.Contains(errOut, "no m365: section") {
		t.Fatalf("flip to migrated without checklist evidence: exit %d, %q", code, errOut)
	}
	e.mustCLI("address", "flip", addr, "migrated", "--force", "--reason", "test env has no tenant")

	// Drop: the only way out without delivery or DSN, and it is audited.
	reject.Store(true)
	if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("drop-1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, failsafe, "second message held", func() bool { return e.show(addr).Held == 1 })
	var items []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("queue", "list", "--json")), &items); err != nil || len(items) != 1 {
		t.Fatalf("queue list: %v %v", items, err)
	}
	if _, _, code := e.cli("queue", "drop", items[0].ID); code == 0 {
		t.Fatal("drop without --reason succeeded")
	}
	e.mustCLI("queue", "drop", items[0].ID, "--reason", "test drop")
	v := e.show(addr)
	if v.Held != 0 || v.State != "migrated" {
		t.Fatalf("after drop: %+v", v)
	}
	var actions []string
	for _, a := range v.Audit {
		actions = append(actions, a.Action+":"+a.To+":"+a.Reason)
	}
	joined := strings.Join(actions, " ")
	for _, want := range []string{"flip:migrated:test env has no tenant", "release::", "drop::test drop"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit trail %q lacks %q", joined, want)
		}
	}
}

// TestCheckConfigListsEveryProblem: a broken config exits non-zero and names
// file, line and key for each problem.
func TestCheckConfigListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	bad := "hostname: relay.example.nl\nstate_dir: " + dir + "\ntarget:\n  host: t.example\n  tls: maybe\ndelivery:\n  retry_initial: soon\n  bogus: 1\n"
	if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBinary(t, nil, "check-config", "--config", p)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{p + ":5: target.tls", p + ":7: delivery.retry_initial", p + ":8: delivery.bogus"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// DUALMX_CONFIG replaces --config.
	good := filepath.Join("..", "deploy", "dualmx.example.yaml")
	out, errOut, code = runBinary(t, []string{"DUALMX_CONFIG=" + good}, "check-config")
	switch {
	case os.Geteuid() != 0 && code == 1 && strings.Count(out, ": state_dir: ") == 1 && strings.Count(out, "\n") == 1:
		// Its state_dir, /var/lib/dualmx, is for the service user to create.
	case code != 0:
		t.Fatalf("example config: exit %d\n%s%s", code, out, errOut)
	}
}

func runBinary(t *testing.T, extraEnv []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := execCommand(binary, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	return run(t, cmd)
}
