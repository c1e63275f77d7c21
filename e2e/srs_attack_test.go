// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// rawFrom writes script from a chosen loopback address and returns the final
// reply lines (one per command answered, the greeting dropped) until the
// server closes or says 221.
func rawFrom(t *testing.T, local, addr, script string) []string {
	t.Helper()
	return finals(rawLines(t, local, addr, script))
}

// codes keeps the code of each reply line, with its enhanced code if it has
// one: "250", "550 5.1.1".
func codes(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l[:min(len(l), 3)]
		if f := strings.Fields(l[min(len(l), 4):]); len(f) > 0 && len(f[0]) == 5 && f[0][1] == '.' && f[0][3] == '.' {
			out[i] += " " + f[0]
		}
	}
	return out
}

// TestSRSAttack plays the attack of issue 15 against the built binary: an
// attacker guesses SRS addresses for a victim to get one that makes the relay
// deliver to the victim's domain, and sends ordinary mail through it.
//
//   - Guessing is cut: the third invalid address gets 421 4.7.0 and the
//     connection ends; a reconnect gets 421 for any SRS recipient, valid
//     or not, so no guess is answered; one line in the log says so.
//   - A valid SRS address (learnt from a real round trip) with MAIL FROM:<>
//     and ordinary content gets 550 5.7.1 after DATA; a non-null sender, or
//     a forwarding recipient beside it, are refused at RCPT.
//   - A real delivery report still reaches the author.
func TestSRSAttack(t *testing.T) {
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "hold")
	e := newEnv(t, envOptions{extraConfig: extra, delivery: delivery})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("attack-1")); err != nil {
		t.Fatal(err)
	}
	valid := waitTenant(t, e.tenant, 1)[0].From
	if !strings.HasPrefix(valid, "SRS0=") {
		t.Fatalf("tenant saw MAIL FROM %q, want an SRS address", valid)
	}

	// Ordinary content through a valid address.
	spam := []byte("From: ceo@author.test\r\nTo: someone@author.test\r\nSubject: Urgent invoice\r\n\r\nPay now.\r\n")
	err := send(e.smtpAddr(), "", []string{valid}, spam)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("ordinary message from <> to a valid SRS address: %v, want 550 5.7.1 after DATA", err)
	}
	if err := send(e.smtpAddr(), "ceo@author.test", []string{valid}, spam); smtpCode(err) != 550 {
		t.Errorf("non-null sender to a valid SRS address: %v, want 550", err)
	}
	if err := send(e.smtpAddr(), "", []string{valid, "scriba@fwd.hervormdputten.nl"}, spam); smtpCode(err) != 452 {
		t.Errorf("SRS address beside a forwarding recipient: %v, want 452", err)
	}
	// A real delivery report goes through.
	dsn := []byte(realDSN(valid))
	if err := send(e.smtpAddr(), "", []string{valid}, dsn); err != nil {
		t.Fatalf("real DSN refused: %v", err)
	}
	waitFor(t, failsafe, "the DSN at the author's MX", func() bool { return len(w.mx.Messages()) == 1 })

	// Guessing, pipelined on one connection.
	var guesses strings.Builder
	for i := range 50 {
		fmt.Fprintf(&guesses, "RCPT TO:<SRS0=%04d=AA=victim.example=ceo@fwd.hervormdputten.nl>\r\n", i)
	}
	got := codes(rawFrom(t, "127.0.0.1", e.smtpAddr(), "EHLO attacker\r\nMAIL FROM:<>\r\n"+guesses.String()+"QUIT\r\n"))
	if want := []string{"250", "250 2.0.0", "550 5.1.1", "550 5.1.1", "421 4.7.0"}; !slices.Equal(got, want) {
		t.Fatalf("guessing session: %q, want %q and the connection closed", got, want)
	}
	// Reconnecting gets no answer to any guess, not even to a valid address.
	got = codes(rawFrom(t, "127.0.0.1", e.smtpAddr(), "EHLO attacker\r\nMAIL FROM:<>\r\nRCPT TO:<"+valid+">\r\nDATA\r\n"+string(dsn)+".\r\nQUIT\r\n"))
	if want := []string{"250", "250 2.0.0", "421 4.7.0"}; !slices.Equal(got, want) {
		t.Fatalf("reconnect: %q, want %q", got, want)
	}
	// The penalty is the guesser's: another client's bounce passes.
	got = codes(rawFrom(t, "127.0.0.2", e.smtpAddr(), "EHLO tenant\r\nMAIL FROM:<>\r\nRCPT TO:<"+valid+">\r\nDATA\r\n"+string(dsn)+".\r\nQUIT\r\n"))
	if want := []string{"250", "250 2.0.0", "250 2.0.0", "354", "250 2.0.0", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Fatalf("another client's DSN: %q, want %q", got, want)
	}
	waitFor(t, failsafe, "the second DSN at the author's MX", func() bool { return len(w.mx.Messages()) == 2 })
	for _, m := range w.mx.Messages() {
		if !bytes.Contains(m.Data, []byte("mailbox full")) {
			t.Errorf("the author's MX got something other than the DSN:\n%s", m.Data)
		}
	}

	m := e.scrape()
	for _, want := range []string{`dualmx_srs_refusals_total{reason="guess_limit"} 1`, `dualmx_srs_refusals_total{reason="penalised"} 1`,
		`dualmx_srs_refusals_total{reason="bad_hash"} 2`, `dualmx_srs_refusals_total{reason="not_return"} 1`,
		`dualmx_srs_refusals_total{reason="not_dsn"} 1`, `dualmx_srs_returned_total 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "client network penalised"); n != 1 {
		t.Errorf("penalty logged %d times, want once", n)
	}
	if strings.Contains(logs, "SRS0=0010=") {
		t.Error("a guess answered after the cut shows in the log")
	}
}

// TestSRSReturnReserve: the reserve for returns is not one client's to
// spend. One client repeating one SRS recipient 120 times makes one return
// (one RCPT at the author's MX) and spends one of its allowance, and the
// client's hourly allowance (srs.dsn_per_client_per_hour) leaves the rest of
// the reserve to others.
func TestSRSReturnReserve(t *testing.T) {
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "hold")
	e := newEnv(t, envOptions{extraConfig: extra + "  dsn_per_client_per_hour: 2\n", delivery: delivery})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("reserve-1")); err != nil {
		t.Fatal(err)
	}
	valid := waitTenant(t, e.tenant, 1)[0].From
	dsn := realDSN(valid)
	got := codes(rawFrom(t, "127.0.0.1", e.smtpAddr(), "EHLO tenant\r\nMAIL FROM:<>\r\n"+strings.Repeat("RCPT TO:<"+valid+">\r\n", 120)+
		"DATA\r\n"+dsn+".\r\nQUIT\r\n"))
	if n := slices.Index(got, "354"); n != 122 || got[2] != "250 2.0.0" || got[3] != "250 2.1.5" || got[121] != "250 2.1.5" {
		t.Fatalf("120 RCPTs of one address: %q", got)
	}
	waitFor(t, failsafe, "the return at the author's MX", func() bool { return len(w.mx.Messages()) == 1 })
	if to := w.mx.Messages()[0].To; len(to) != 1 {
		t.Errorf("the author's MX got RCPT %q, want one", to)
	}
	ret := func(local string) string {
		got := codes(rawFrom(t, local, e.smtpAddr(), "EHLO tenant\r\nMAIL FROM:<>\r\nRCPT TO:<"+valid+">\r\nDATA\r\n"+dsn+".\r\nQUIT\r\n"))
		return got[2]
	}
	for i, step := range []struct{ local, want string }{
		{"127.0.0.1", "250 2.0.0"}, // the client's second of 2
		{"127.0.0.1", "451 4.7.1"},
		{"127.0.0.2", "250 2.0.0"}, // the reserve is still there for others
	} {
		if got := ret(step.local); got != step.want {
			t.Errorf("return %d from %s: %s, want %s", i+2, step.local, got, step.want)
		}
	}
	if m := e.scrape(); !strings.Contains(m, `dualmx_srs_refusals_total{reason="client_rate_limited"} 1`) {
		t.Error("the client's limit is not counted")
	}
}

// realDSN is a delivery report as Microsoft 365, Postfix and Exim send one:
// a human-readable part, the message/delivery-status part and the returned
// header.
func realDSN(to string) string {
	return "From: postmaster@tenant.test\r\nTo: " + to + "\r\nSubject: Undeliverable: test\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nmailbox full\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; tenant.test\r\n\r\n" +
		"Final-Recipient: rfc822; scriba@hervormdputten.nl\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n" +
		"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: test\r\n\r\n--b--\r\n"
}

// TestSRSGuessersCannotDeferReturns: the guard's limits come from the
// config, and the attack the review found no longer defers real returns.
// Guessers on a few networks spend the global budget (srs.guesses_per_hour,
// cut per network at srs.guesses_per_client); that defers SRS recipients
// from clients outside srs.return_sources only, even a valid one (counted
// and logged: the list may be out of date), while a real bounce from a
// return source still reaches the author.
func TestSRSGuessersCannotDeferReturns(t *testing.T) {
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "hold")
	extra += "  return_sources: [127.0.0.2/32]\n  guesses_per_client: 2\n  guesses_per_hour: 3\n"
	e := newEnv(t, envOptions{extraConfig: extra, delivery: delivery})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("sources-1")); err != nil {
		t.Fatal(err)
	}
	valid := waitTenant(t, e.tenant, 1)[0].From
	guess := func(i int) string {
		return fmt.Sprintf("RCPT TO:<SRS0=%04d=AA=victim.example=ceo@fwd.hervormdputten.nl>\r\n", i)
	}

	if got, want := codes(rawFrom(t, "127.0.0.3", e.smtpAddr(), "EHLO a\r\nMAIL FROM:<>\r\n"+guess(0)+guess(1)+guess(2)+"QUIT\r\n")),
		[]string{"250", "250 2.0.0", "550 5.1.1", "421 4.7.0"}; !slices.Equal(got, want) {
		t.Fatalf("guesser cut at srs.guesses_per_client 2: %q, want %q", got, want)
	}
	codes(rawFrom(t, "127.0.0.4", e.smtpAddr(), "EHLO b\r\nMAIL FROM:<>\r\n"+guess(3)+"QUIT\r\n"))
	// The budget of 3 is spent: outside the sources, even a valid address waits.
	if got := codes(rawFrom(t, "127.0.0.5", e.smtpAddr(), "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+valid+">\r\nQUIT\r\n")); got[2] != "451 4.7.1" {
		t.Fatalf("valid return from outside the sources, budget spent: %q, want 451 4.7.1", got)
	}
	got := codes(rawFrom(t, "127.0.0.2", e.smtpAddr(), "EHLO tenant\r\nMAIL FROM:<>\r\nRCPT TO:<"+valid+">\r\nDATA\r\n"+realDSN(valid)+".\r\nQUIT\r\n"))
	if want := []string{"250", "250 2.0.0", "250 2.0.0", "354", "250 2.0.0", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Fatalf("real bounce from a return source while the budget is spent: %q, want %q", got, want)
	}
	waitFor(t, failsafe, "the return at the author's MX", func() bool { return len(w.mx.Messages()) == 1 })

	m := e.scrape()
	for _, want := range []string{`dualmx_srs_outside_sources_total{result="deferred"} 1`, `dualmx_srs_refusals_total{reason="guess_budget"} 1`,
		`dualmx_srs_refusals_total{reason="guess_limit"} 1`, `dualmx_srs_returned_total 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := e.logs.String()
	for _, want := range []string{"outside srs.return_sources; is the list out of date?", "last_invalid_from=127.0.0.4/32"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestPostfixBounceReturned: a bounce made by a real MTA takes the return
// path. Postfix, playing the old host, accepts a message whose envelope
// sender is one of dualmx's SRS addresses and then fails it permanently (its
// error transport): the bounce it sends to that address comes to dualmx and
// is returned to the author, and it is what the classifier expects of a
// delivery report: multipart/report with a top-level message/delivery-status
// part.
func TestPostfixBounceReturned(t *testing.T) {
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "hold")
	e := newEnv(t, envOptions{extraConfig: extra, delivery: delivery})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("postfix-bounce")); err != nil {
		t.Fatal(err)
	}
	valid := waitTenant(t, e.tenant, 1)[0].From
	old := startOldHost(t, e.smtpAddr(), map[string]string{"gone@hervormdputten.nl": "gone@unreachable.test"},
		"{unreachable.test=error:5.1.1 mailbox unavailable}")
	if err := send(old.addr, valid, []string{"gone@hervormdputten.nl"}, testMessage("to-the-gone")); err != nil {
		t.Fatalf("postfix refused the message: %v", err)
	}
	waitFor(t, 30*time.Second, "Postfix's bounce at the author's MX", func() bool { return len(w.mx.Messages()) == 1 })
	m := w.mx.Messages()[0]
	if m.From != "" || len(m.To) != 1 || m.To[0] != "author@author.test" {
		t.Errorf("returned from %q to %q, want <> to author@author.test", m.From, m.To)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Postfix's bounce is %s %v (%v)", mt, params, err)
	}
	var types []string
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		types = append(types, p.Header.Get("Content-Type"))
	}
	if !slices.ContainsFunc(types, func(s string) bool { return strings.HasPrefix(s, "message/delivery-status") }) {
		t.Errorf("Postfix's bounce has parts %q, no message/delivery-status", types)
	}
}
