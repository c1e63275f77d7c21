// SPDX-License-Identifier: MIT

package e2e

import (
	"strings"
	"testing"
)

// TestQuotedSenderReachesTenantAsOneAddress (issue 15.2): a sender whose
// quoted local part holds "> RET=HDRS ENVID=x" reaches the tenant (without
// SRS, which would rewrite it) as the very address dualmx accepted and
// judged, with none of it read as a parameter.
func TestQuotedSenderReachesTenantAsOneAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	const from = `"ceo@example.nl> RET=HDRS ENVID=x"@evil.example`
	if err := send(e.smtpAddr(), from, []string{"scriba@fwd.hervormdputten.nl"}, testMessage("quoted")); err != nil {
		t.Fatal(err)
	}
	got := waitTenant(t, e.tenant, 1)[0]
	// go-smtp, at dualmx and at the stand-in alike, hands over a quoted
	// local part unquoted.
	if want := "ceo@example.nl> RET=HDRS ENVID=x@evil.example"; got.From != want {
		t.Errorf("the tenant saw MAIL FROM %q, want %q", got.From, want)
	}
	if got.MailOpts.Return != "" || got.MailOpts.EnvelopeID != "" {
		t.Errorf("the tenant saw parameters RET=%q ENVID=%q that the sender smuggled in", got.MailOpts.Return, got.MailOpts.EnvelopeID)
	}
}

// TestReturnToLoopbackMXHeld (issue 15.5): a bounce returned to the sender
// whose domain's MX points at loopback is not delivered there (only a test
// config's delivery.mx_allow_loopback allows that): it is held, the reason
// on record, and the server on loopback sees no connection.
func TestReturnToLoopbackMXHeld(t *testing.T) {
	t.Parallel()
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "hold")
	delivery = strings.Replace(delivery, "  mx_allow_loopback: true\n", "", 1)
	e := newEnv(t, envOptions{extraConfig: extra, delivery: delivery})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "Author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("loop-mx")); err != nil {
		t.Fatal(err)
	}
	got := waitTenant(t, e.tenant, 1)[0]
	dsn := []byte(realDSN(got.From))
	if err := send(e.smtpAddr(), "", []string{got.From}, dsn); err != nil {
		t.Fatalf("bounce to the SRS address: %v", err)
	}
	var lastError string
	waitFor(t, failsafe, "the return held", func() bool {
		items := e.queueItems()
		if len(items) == 1 && items[0].State == "held" {
			lastError = items[0].LastError
			return true
		}
		return false
	})
	if !strings.Contains(lastError, "127.0.0.1 (loopback)") {
		t.Errorf("held with %q, want the loopback address named", lastError)
	}
	if n := w.mx.Connections(); n != 0 {
		t.Errorf("%d connections to the author's server on loopback", n)
	}
}

// TestQuotedSenderThroughSRS: with srs on, a sender with a quoted local part
// reaches the tenant inside one SRS address, quoted once, and a bounce to
// that address goes back to the very sender.
func TestQuotedSenderThroughSRS(t *testing.T) {
	t.Parallel()
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "hold")
	e := newEnv(t, envOptions{extraConfig: extra, delivery: delivery})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), `"john doe> NOTIFY=NEVER"@author.test`, []string{"scriba@fwd.hervormdputten.nl"}, testMessage("quoted-srs")); err != nil {
		t.Fatal(err)
	}
	got := waitTenant(t, e.tenant, 1)[0]
	if !strings.HasPrefix(got.From, "SRS0=") || !strings.HasSuffix(got.From, "=author.test=john doe> NOTIFY=NEVER@fwd.hervormdputten.nl") {
		t.Fatalf("the tenant saw MAIL FROM %q", got.From)
	}
	dsn := []byte(realDSN(got.From))
	// The tenant writes the SRS address back in its wire form.
	local, domain, _ := strings.Cut(got.From, "@fwd.")
	if err := send(e.smtpAddr(), "", []string{`"` + local + `"@fwd.` + domain}, dsn); err != nil {
		t.Fatalf("bounce to the SRS address: %v", err)
	}
	waitFor(t, failsafe, "the bounce at the author's MX", func() bool { return len(w.mx.Messages()) == 1 })
	if m := w.mx.Messages()[0]; len(m.To) != 1 || m.To[0] != "john doe> NOTIFY=NEVER@author.test" || m.From != "" {
		t.Errorf("the author's MX got from %q to %q", m.From, m.To)
	}
}
