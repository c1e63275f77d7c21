// SPDX-License-Identifier: MIT

package smtpd_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/smtpd"
	"github.com/dualmx/dualmx/srs"
)

// fakeReverse stands in for the SRS package: it knows one valid address.
func fakeReverse(addr string) (string, error) {
	switch strings.ToLower(addr) {
	case "srs0=good=aa=example.org=author@fwd.example.nl":
		return "author@example.org", nil
	case "srs0=old=aa=example.org=author@fwd.example.nl":
		return "", errors.New("expired")
	}
	return "", errors.New("bad_hash")
}

func TestSRSReturns(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f := start(t, func(o *smtpd.Options) {
		o.ReturnPolicy = &smtpd.ReturnPolicy{Domain: "fwd.example.nl", Reverse: fakeReverse, Reason: func(err error) string { return err.Error() },
			PerHour: 3, Now: func() time.Time { return now }}
	})
	dsn := dsnBody
	tests := []struct {
		name, mail, rcpts, want string
	}{
		{"bounce to valid SRS address", "<>", "SRS0=good=AA=example.org=author@FWD.example.nl", "250 2.0.0"},
		{"ordinary sender to SRS address", "<someone@example.org>", "SRS0=good=aa=example.org=author@fwd.example.nl", "550 5.7.1"},
		{"forged hash", "<>", "SRS0=fake=aa=example.org=author@fwd.example.nl", "550 5.1.1 Recipient address rejected: invalid SRS address (bad_hash)"},
		{"expired", "<>", "SRS0=old=aa=example.org=author@fwd.example.nl", "550 5.1.1 Recipient address rejected: invalid SRS address (expired)"},
		{"mixed with an alias", "<>", "scriba@fwd.example.nl SRS0=good=aa=example.org=author@fwd.example.nl", "452 4.5.3"},
		{"alias after a return", "<>", "SRS0=good=aa=example.org=author@fwd.example.nl scriba@fwd.example.nl", "452 4.5.3"},
		{"second return within the hour", "<>", "SRS0=good=aa=example.org=author@fwd.example.nl", "250 2.0.0"},
		{"rate limited", "<>", "SRS0=good=aa=example.org=author@fwd.example.nl", "451 4.7.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			script := "EHLO c\r\nMAIL FROM:" + tc.mail + "\r\n"
			for _, r := range strings.Fields(tc.rcpts) {
				script += "RCPT TO:<" + r + ">\r\n"
			}
			script += "DATA\r\n" + dsn + ".\r\nQUIT\r\n"
			out := rawSession(t, f.addr, script)
			if !strings.Contains(out, "\r\n"+tc.want) {
				t.Fatalf("want %q in:\n%s", tc.want, out)
			}
		})
	}
	items, err := f.spool.List()
	if err != nil {
		t.Fatal(err)
	}
	var returned int
	for _, it := range items {
		if it.DSN {
			returned++
			if it.From != "" || len(it.Recipients) != 1 || it.Recipients[0].Target != "author@example.org" {
				t.Errorf("returned item %+v", it)
			}
		}
	}
	// Three returns went through (one with its alias refused), then the limit.
	if returned != 3 {
		t.Errorf("%d returned items in the spool, want 3 (the rate limit allows 3 an hour)", returned)
	}
	for reason, want := range map[string]float64{"not_dsn": 1, "bad_hash": 1, "expired": 1, "mixed": 2, "rate_limited": 1} {
		if got := testutil.ToFloat64(f.m.SRSRefusals.WithLabelValues(reason)); got != want {
			t.Errorf("srs refusals %s = %v, want %v", reason, got, want)
		}
	}
}

// replyCodes lists the code (and enhanced code, if any) of each final reply
// line of a session, greeting first: "220", "250 2.0.0".
func replyCodes(out string) []string {
	var codes []string
	for _, l := range strings.Split(out, "\r\n") {
		if len(l) < 3 || (len(l) > 3 && l[3] != ' ') {
			continue
		}
		code := l[:3]
		if f := strings.Fields(l[min(len(l), 4):]); len(f) > 0 && len(f[0]) == 5 && f[0][1] == '.' && f[0][3] == '.' {
			code += " " + f[0]
		}
		codes = append(codes, code)
	}
	return codes
}

func returnsFixture(t *testing.T, now *time.Time, mod func(*smtpd.ReturnPolicy)) (*fixture, *bytes.Buffer) {
	t.Helper()
	var logBuf bytes.Buffer
	var mu sync.Mutex
	f := start(t, func(o *smtpd.Options) {
		o.ReturnPolicy = &smtpd.ReturnPolicy{Domain: "fwd.example.nl", Reverse: fakeReverse, Reason: func(err error) string { return err.Error() },
			PerHour: 100, Sources: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return *now }}
		if mod != nil {
			mod(o.ReturnPolicy)
		}
		o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logBuf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	return f, &logBuf
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

const (
	goodSRS = "SRS0=good=aa=example.org=author@fwd.example.nl"
	dsnBody = "From: MAILER-DAEMON@tenant.example\r\nSubject: Undeliverable\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n" +
		"--x\r\nContent-Type: text/plain\r\n\r\nmailbox full\r\n" +
		"--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; tenant.example\r\n\r\n" +
		"Final-Recipient: rfc822; scriba@example.nl\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n--x--\r\n"
)

func guesses(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "RCPT TO:<SRS0=g%03d=AA=victim.example=ceo@fwd.example.nl>\r\n", i)
	}
	return b.String()
}

// TestSRSGuessingCut: the third invalid SRS address of a client is answered
// 421 4.7.0 and the connection closes, whatever the client pipelined after
// it; reconnecting does not help: every SRS recipient from that address,
// even a valid one, gets 421 unchecked for the penalty. Another client is not
// affected, and when the penalty is over the client is back to normal. The
// penalty is logged once, not each guess.
func TestSRSGuessingCut(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f, logs := returnsFixture(t, &now, nil)

	out := rawSessionFrom(t, "127.0.0.1", f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+guesses(0, 50)+"QUIT\r\n")
	want := []string{"220", "250", "250 2.0.0", "550 5.1.1", "550 5.1.1", "421 4.7.0"}
	if got := replyCodes(out); !slices.Equal(got, want) {
		t.Fatalf("replies %q, want %q (closed after the 421):\n%s", got, want, out)
	}
	out = rawSessionFrom(t, "127.0.0.1", f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+goodSRS+">\r\nDATA\r\n"+dsnBody+".\r\nQUIT\r\n")
	if got := replyCodes(out); !slices.Equal(got, []string{"220", "250", "250 2.0.0", "421 4.7.0"}) {
		t.Fatalf("reconnect of a penalised client: %q, want 421 4.7.0 at once:\n%s", got, out)
	}
	out = rawSessionFrom(t, "127.0.0.2", f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+goodSRS+">\r\nDATA\r\n"+dsnBody+".\r\nQUIT\r\n")
	if !strings.Contains(out, "250 2.0.0 OK queued") {
		t.Fatalf("another client's bounce not accepted:\n%s", out)
	}
	now = now.Add(61 * time.Minute)
	out = rawSessionFrom(t, "127.0.0.1", f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+guesses(50, 51)+"RCPT TO:<"+goodSRS+">\r\nQUIT\r\n")
	if got := replyCodes(out); !slices.Equal(got, []string{"220", "250", "250 2.0.0", "550 5.1.1", "250 2.0.0", "221 2.0.0"}) {
		t.Fatalf("after the penalty: %q:\n%s", got, out)
	}

	for reason, want := range map[string]float64{"bad_hash": 3, "guess_limit": 1, "penalised": 1} {
		if got := testutil.ToFloat64(f.m.SRSRefusals.WithLabelValues(reason)); got != want {
			t.Errorf("dualmx_srs_refusals_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if n := strings.Count(logs.String(), "client network penalised"); n != 1 {
		t.Errorf("penalty logged %d times, want once:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "g000") || strings.Contains(logs.String(), "g001") {
		t.Errorf("each guess logged at info level:\n%s", logs)
	}
}

// TestSRSGuessBudget: invalid addresses from all clients together have an
// hourly budget; once it is spent, SRS recipients get 451 4.7.1 without being
// checked, so spreading guesses over many clients gains nothing. An expired
// address (signed by us) is no guess and costs nothing.
func TestSRSGuessBudget(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f, logs := returnsFixture(t, &now, func(r *smtpd.ReturnPolicy) { r.InvalidPerHour = 3 })
	expired := "RCPT TO:<SRS0=old=aa=example.org=author@fwd.example.nl>\r\n"
	out := rawSessionFrom(t, "127.0.0.1", f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+strings.Repeat(expired, 5)+guesses(0, 2)+"QUIT\r\n")
	if got := replyCodes(out); !slices.Equal(got, []string{"220", "250", "250 2.0.0", "550 5.1.1", "550 5.1.1", "550 5.1.1", "550 5.1.1", "550 5.1.1", "550 5.1.1", "550 5.1.1", "221 2.0.0"}) {
		t.Fatalf("replies %q:\n%s", got, out)
	}
	out = rawSessionFrom(t, "127.0.0.2", f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+goodSRS+">\r\n"+guesses(10, 11)+"QUIT\r\n")
	if got, want := replyCodes(out), []string{"220", "250", "250 2.0.0", "250 2.0.0", "550 5.1.1", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Fatalf("second client: %q, want %q:\n%s", got, want, out)
	}
	// The budget of 3 is spent: from a third client neither address is
	// even checked.
	out = rawSessionFrom(t, "127.0.0.3", f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+guesses(20, 21)+"RCPT TO:<"+goodSRS+">\r\nQUIT\r\n")
	if got, want := replyCodes(out), []string{"220", "250", "250 2.0.0", "451 4.7.1", "451 4.7.1", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Fatalf("third client: %q, want %q:\n%s", got, want, out)
	}
	now = now.Add(30 * time.Minute) // half the budget back
	out = rawSessionFrom(t, "127.0.0.4", f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+goodSRS+">\r\nQUIT\r\n")
	if !strings.Contains(out, "\r\n250 2.0.0") || strings.Contains(out, "451") {
		t.Fatalf("budget not refilled:\n%s", out)
	}
	if got := testutil.ToFloat64(f.m.SRSRefusals.WithLabelValues("guess_budget")); got != 2 {
		t.Errorf("guess_budget refusals = %v, want 2", got)
	}
	if n := strings.Count(logs.String(), "budget for invalid SRS addresses is spent"); n != 1 {
		t.Errorf("spent budget logged %d times, want once:\n%s", n, logs)
	}
}

// TestReturnContent: the return path takes only what a return is; an
// ordinary message from the null sender to a valid SRS address gets 550 5.7.1
// after DATA and leaves nothing in the spool.
func TestReturnContent(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f, _ := returnsFixture(t, &now, nil)
	tests := []struct {
		name, data, want string
	}{
		{"delivery report", dsnBody, "250 2.0.0"},
		{"vacation reply", "From: scriba@example.nl\r\nAuto-Submitted: auto-replied (vacation)\r\nSubject: Away\r\n\r\naway\r\n", "250 2.0.0"},
		{"ordinary message", "From: ceo@victim.example\r\nSubject: Invoice\r\n\r\nPay now\r\n", "550 5.7.1"},
		{"auto-generated is no reply", "Auto-Submitted: auto-generated\r\nSubject: x\r\n\r\nx\r\n", "550 5.7.1"},
		{"second Content-Type", "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n", "550 5.7.1"},
		{"report-type in a comment", "Content-Type: text/html; x=\"multipart/report\"\r\n\r\nx\r\n", "550 5.7.1"},
		{"read receipt", "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n--x--\r\n", "550 5.7.1"},
		{"report without its delivery-status part", "From: ceo@victim.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n" +
			"--x\r\nContent-Type: text/html\r\n\r\n<a href=\"https://evil.example/pay\">Invoice</a>\r\n--x--\r\n", "550 5.7.1"},
	}
	accepted := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+goodSRS+">\r\nDATA\r\n"+tc.data+".\r\nQUIT\r\n")
			if !strings.Contains(out, "\r\n"+tc.want) {
				t.Fatalf("want %q:\n%s", tc.want, out)
			}
			if strings.HasPrefix(tc.want, "250") {
				accepted++
			}
			if n := spoolCount(t, f); n != accepted {
				t.Errorf("spool holds %d items, want %d", n, accepted)
			}
		})
	}
	if got := testutil.ToFloat64(f.m.SRSRefusals.WithLabelValues("not_return")); got != 6 {
		t.Errorf("not_return refusals = %v, want 6", got)
	}
}

// TestDuplicateRecipients: a recipient given twice in one transaction (the
// alias in other case, the public address beside its alias) is acknowledged
// with 250 2.1.5 and makes one entry, one delivery.
func TestDuplicateRecipients(t *testing.T) {
	f := start(t, nil)
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\n"+
		"RCPT TO:<SCRIBA@Fwd.Example.NL>\r\nRCPT TO:<scriba@example.nl>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nRCPT TO:<koster@fwd.example.nl>\r\n"+
		"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
	want := []string{"220", "250", "250 2.0.0", "250 2.0.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.0.0", "354", "250 2.0.0", "221 2.0.0"}
	if got := replyCodes(out); !slices.Equal(got, want) {
		t.Fatalf("replies %q, want %q:\n%s", got, want, out)
	}
	items, err := f.spool.List()
	if err != nil || len(items) != 1 {
		t.Fatalf("%d items, %v", len(items), err)
	}
	var targets []string
	for _, r := range items[0].Recipients {
		targets = append(targets, r.Target)
	}
	if !slices.Equal(targets, []string{"scriba@example.nl", "koster@example.nl"}) {
		t.Errorf("recipients %q, want one each", targets)
	}
}

// realSRS sets the fixture's returns to a real SRS rewriter and returns it.
func realSRS(now *time.Time) (*srs.Rewriter, func(*smtpd.ReturnPolicy)) {
	rw := &srs.Rewriter{Domain: "fwd.example.nl", Secret: []byte("test secret"), Now: func() time.Time { return *now }}
	return rw, func(r *smtpd.ReturnPolicy) { r.Reverse, r.Reason = rw.Reverse, srs.Reason }
}

func srsFor(t *testing.T, rw *srs.Rewriter, sender string) string {
	t.Helper()
	a, err := rw.Forward(sender)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestReturnDuplicates: one client repeating one SRS recipient (in any case:
// the hash is compared without case) makes one return and spends one token
// of the hourly reserve, not one per RCPT.
func TestReturnDuplicates(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rw, mod := realSRS(&now)
	f, _ := returnsFixture(t, &now, func(r *smtpd.ReturnPolicy) { mod(r); r.PerHour = 2 })
	addr := srsFor(t, rw, "author@example.org")
	rcpts := strings.Repeat("RCPT TO:<"+addr+">\r\n", 120) + "RCPT TO:<" + strings.ToLower(addr) + ">\r\nRCPT TO:<" + strings.ToUpper(addr) + ">\r\n"
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+rcpts+"DATA\r\n"+dsnBody+".\r\nQUIT\r\n")
	if n := strings.Count(out, "250 2.1.5"); n != 121 || !strings.Contains(out, "250 2.0.0 OK queued") {
		t.Fatalf("%d duplicates acknowledged, want 121:\n%s", n, out)
	}
	items, _ := f.spool.List()
	if len(items) != 1 || len(items[0].Recipients) != 1 || items[0].Recipients[0].Target != "author@example.org" {
		t.Fatalf("spool: %+v", items)
	}
	// One token of two spent: one more return this hour, then the limit.
	for i, want := range []string{"250 2.0.0 OK queued", "451 4.7.1"} {
		out = rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+addr+">\r\nDATA\r\n"+dsnBody+".\r\nQUIT\r\n")
		if !strings.Contains(out, "\r\n"+want) {
			t.Fatalf("return %d after the duplicates: want %q:\n%s", i+2, want, out)
		}
	}
}

// TestReturnLimits: besides the hourly total, returns are limited per client
// network and per destination domain: one client cannot take the whole
// reserve, and one victim domain gets only so many returns whoever sends
// them. Each limit is logged once when it runs dry, and refills.
func TestReturnLimits(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rw, mod := realSRS(&now)
	f, logs := returnsFixture(t, &now, func(r *smtpd.ReturnPolicy) {
		mod(r)
		r.PerHour, r.PerClientPerHour, r.PerDestinationPerHour = 100, 3, 2
	})
	ret := func(local, sender string) string {
		t.Helper()
		out := rawSessionFrom(t, local, f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<"+srsFor(t, rw, sender)+">\r\nDATA\r\n"+dsnBody+".\r\nQUIT\r\n")
		codes := replyCodes(out)
		return codes[3] // the RCPT reply
	}
	steps := []struct {
		client, sender, want string
	}{
		{"127.0.0.1", "a@one.example", "250 2.0.0"},
		{"127.0.0.1", "b@one.example", "250 2.0.0"},
		{"127.0.0.2", "c@one.example", "451 4.7.1"}, // one.example has had its 2
		{"127.0.0.1", "a@two.example", "250 2.0.0"},
		{"127.0.0.1", "a@three.example", "451 4.7.1"}, // 127.0.0.1 has had its 3
		{"127.0.0.2", "a@three.example", "250 2.0.0"}, // another client, another domain
	}
	for i, s := range steps {
		if got := ret(s.client, s.sender); got != s.want {
			t.Fatalf("step %d (%s → %s): %s, want %s", i, s.client, s.sender, got, s.want)
		}
	}
	now = now.Add(30 * time.Minute) // 1.5 of 3 and 1 of 2 back
	if got := ret("127.0.0.1", "d@one.example"); got != "250 2.0.0" {
		t.Errorf("after half an hour: %s, want the limits refilled", got)
	}
	for reason, want := range map[string]float64{"client_rate_limited": 1, "destination_rate_limited": 1, "rate_limited": 0} {
		if got := testutil.ToFloat64(f.m.SRSRefusals.WithLabelValues(reason)); got != want {
			t.Errorf("%s refusals = %v, want %v", reason, got, want)
		}
	}
	if n := strings.Count(logs.String(), "rate limit reached"); n != 2 {
		t.Errorf("%d rate-limit log lines, want 2 (one per limit run dry):\n%s", n, logs)
	}
}

// TestReturnTokensTakenAtData: a return's rate-limit tokens are spent when
// its message is committed, not at RCPT. Before, twelve MAIL FROM:<> / RCPT
// TO:<valid SRS address> / RSET in one session spent the client's and the
// destination's allowance (the tenth RCPT got 451), and a real bounce to
// that domain from another client was then deferred too; so was a DATA
// refused as no return. A transaction's returns together must fit the
// limits, and a return whose tokens another session took since its RCPT is
// deferred at DATA, nothing spooled.
func TestReturnTokensTakenAtData(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rw, mod := realSRS(&now)
	f, _ := returnsFixture(t, &now, func(r *smtpd.ReturnPolicy) {
		mod(r)
		r.PerHour, r.PerClientPerHour, r.PerDestinationPerHour = 100, 3, 2
	})
	rcpt := func(sender string) string { return "RCPT TO:<" + srsFor(t, rw, sender) + ">\r\n" }
	ret := func(local, sender string) []string {
		t.Helper()
		return replyCodes(rawSessionFrom(t, local, f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+rcpt(sender)+"DATA\r\n"+dsnBody+".\r\nQUIT\r\n"))
	}
	queued := []string{"220", "250", "250 2.0.0", "250 2.0.0", "354", "250 2.0.0", "221 2.0.0"}

	// RCPT then RSET, twelve times: nothing spent.
	out := rawSessionFrom(t, "127.0.0.1", f.addr, "EHLO c\r\n"+strings.Repeat("MAIL FROM:<>\r\n"+rcpt("a@one.example")+"RSET\r\n", 12)+"QUIT\r\n")
	if n := strings.Count(out, "I'll make sure"); n != 12 || strings.Contains(out, "451") {
		t.Fatalf("%d of 12 RCPTs before RSET accepted:\n%s", n, out)
	}
	// Content that is no return, three times: refused, nothing spent.
	out = rawSessionFrom(t, "127.0.0.1", f.addr, "EHLO c\r\n"+strings.Repeat("MAIL FROM:<>\r\n"+rcpt("a@one.example")+
		"DATA\r\nFrom: ceo@one.example\r\nSubject: Invoice\r\n\r\nPay now\r\n.\r\n", 3)+"QUIT\r\n")
	if n := strings.Count(out, "550 5.7.1"); n != 3 || strings.Contains(out, "451") {
		t.Fatalf("%d of 3 ordinary messages refused as no return:\n%s", n, out)
	}
	// Real bounces: the destination's two, from another client, and the
	// first client's three, to other domains.
	for i, s := range []struct{ client, sender string }{
		{"127.0.0.2", "b@one.example"}, {"127.0.0.2", "c@one.example"},
		{"127.0.0.1", "a@two.example"}, {"127.0.0.1", "b@two.example"}, {"127.0.0.1", "a@three.example"},
	} {
		if got := ret(s.client, s.sender); !slices.Equal(got, queued) {
			t.Fatalf("bounce %d (%s → %s): %q, want it queued", i, s.client, s.sender, got)
		}
	}
	if got := ret("127.0.0.2", "d@one.example"); got[3] != "451 4.7.1" {
		t.Fatalf("third bounce to one.example: %q, want 451 4.7.1 at RCPT", got)
	}
	if got := ret("127.0.0.1", "c@four.example"); got[3] != "451 4.7.1" {
		t.Fatalf("fourth bounce from 127.0.0.1: %q, want 451 4.7.1 at RCPT", got)
	}

	// One transaction's returns fit together: the third to five.example is
	// over its two.
	out = rawSessionFrom(t, "127.0.0.3", f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+rcpt("a@five.example")+rcpt("b@five.example")+rcpt("c@five.example")+
		"DATA\r\n"+dsnBody+".\r\nQUIT\r\n")
	if got, want := replyCodes(out), []string{"220", "250", "250 2.0.0", "250 2.0.0", "250 2.0.0", "451 4.7.1", "354", "250 2.0.0", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Fatalf("three returns to one domain in a transaction: %q, want %q:\n%s", got, want, out)
	}

	// Accepted at RCPT with one token left, the last token taken by another
	// session before DATA: deferred at DATA.
	if got := ret("127.0.0.4", "a@six.example"); !slices.Equal(got, queued) {
		t.Fatalf("first bounce to six.example: %q", got)
	}
	c := dialFrom(t, "127.0.0.5", f.addr)
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(srsFor(t, rw, "b@six.example"), nil); err != nil {
		t.Fatalf("RCPT with one token left: %v", err)
	}
	if got := ret("127.0.0.6", "c@six.example"); !slices.Equal(got, queued) {
		t.Fatalf("the last token for six.example: %q", got)
	}
	before := spoolCount(t, f)
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, dsnBody)
	var se *smtp.SMTPError
	if err := w.Close(); !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("DATA after the tokens went elsewhere: %v, want 451 4.7.1", err)
	}
	if n := spoolCount(t, f); n != before {
		t.Errorf("spool went from %d to %d items", before, n)
	}

	var returned int
	items, _ := f.spool.List()
	for _, it := range items {
		if it.DSN {
			returned += len(it.Recipients)
		}
	}
	if returned != 9 {
		t.Errorf("%d returns spooled, want 9", returned)
	}
}

// dialFrom opens an SMTP client session from a chosen loopback address.
func dialFrom(t *testing.T, local, addr string) *smtp.Client {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(nc)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("c"); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSRSReturnSources: the guess budget cannot be used to defer real
// returns. Before, ten addresses at three guesses an hour kept the global
// budget spent and every SRS recipient, valid ones from Microsoft 365's
// servers included, got 451 4.7.1 unchecked for as long as they kept it up.
// Now clients inside the return sources do not draw on the budget: a guesser
// elsewhere spends it and defers only clients outside the sources. A valid
// return from outside is deferred like any (the reply tells nothing), but
// counted and logged, since the source list may be out of date; the spent
// budget is logged once and without the name of the client that happened to
// find it spent. Source networks keep the per-network cut, with a shorter
// penalty.
func TestSRSReturnSources(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f, logs := returnsFixture(t, &now, func(r *smtpd.ReturnPolicy) {
		r.InvalidPerHour = 3
		r.Sources = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("192.0.2.0/24")}
	})
	ret := "MAIL FROM:<>\r\nRCPT TO:<" + goodSRS + ">\r\nDATA\r\n" + dsnBody + ".\r\n"
	// The attack: guessers outside the sources spend the budget.
	rawSessionFrom(t, "127.0.0.3", f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+guesses(0, 2)+"QUIT\r\n")
	rawSessionFrom(t, "127.0.0.4", f.addr, "EHLO c\r\nMAIL FROM:<>\r\n"+guesses(2, 3)+"QUIT\r\n")

	rcptOnly := "MAIL FROM:<>\r\nRCPT TO:<" + goodSRS + ">\r\n"
	out := rawSessionFrom(t, "127.0.0.5", f.addr, "EHLO outside\r\n"+rcptOnly+"QUIT\r\n")
	if got, want := replyCodes(out), []string{"220", "250", "250 2.0.0", "451 4.7.1", "221 2.0.0"}; !slices.Equal(got, want) {
		t.Fatalf("valid return from outside the sources, budget spent: %q, want %q:\n%s", got, want, out)
	}
	out = rawSessionFrom(t, "127.0.0.2", f.addr, "EHLO source\r\n"+ret+"QUIT\r\n")
	if !strings.Contains(out, "250 2.0.0 OK queued") {
		t.Fatalf("valid return from a source while the budget is spent:\n%s", out)
	}
	// A source network's guesses are cut after three, as anyone's, and do
	// not spend the budget; its penalty is 10 minutes.
	out = rawSessionFrom(t, "127.0.0.2", f.addr, "EHLO source\r\nMAIL FROM:<>\r\n"+guesses(10, 20)+"QUIT\r\n")
	if got, want := replyCodes(out), []string{"220", "250", "250 2.0.0", "550 5.1.1", "550 5.1.1", "421 4.7.0"}; !slices.Equal(got, want) {
		t.Fatalf("guesses from a source: %q, want %q:\n%s", got, want, out)
	}
	if out := rawSessionFrom(t, "127.0.0.2", f.addr, "EHLO source\r\n"+rcptOnly+"QUIT\r\n"); !strings.Contains(out, "\r\n421 4.7.0") {
		t.Fatalf("a penalised source network:\n%s", out)
	}
	now = now.Add(11 * time.Minute) // the source's penalty is over; the budget has 0.55 of 3 back
	if out := rawSessionFrom(t, "127.0.0.2", f.addr, "EHLO source\r\n"+ret+"QUIT\r\n"); !strings.Contains(out, "250 2.0.0 OK queued") {
		t.Fatalf("a source network after its 10 minutes:\n%s", out)
	}
	if out := rawSessionFrom(t, "127.0.0.6", f.addr, "EHLO outside\r\n"+rcptOnly+"QUIT\r\n"); !strings.Contains(out, "\r\n451 4.7.1") {
		t.Fatalf("outside, budget still spent:\n%s", out)
	}
	now = now.Add(time.Hour) // the budget is back: a valid return from outside goes through, and is counted
	if out := rawSessionFrom(t, "127.0.0.5", f.addr, "EHLO outside\r\n"+ret+"QUIT\r\n"); !strings.Contains(out, "250 2.0.0 OK queued") {
		t.Fatalf("outside, budget back:\n%s", out)
	}

	for _, c := range []struct {
		result string
		want   float64
	}{{"deferred", 2}, {"accepted", 1}} {
		if got := testutil.ToFloat64(f.m.SRSOutsideSources.WithLabelValues(c.result)); got != c.want {
			t.Errorf("dualmx_srs_outside_sources_total{result=%q} = %v, want %v", c.result, got, c.want)
		}
	}
	if got := testutil.ToFloat64(f.m.SRSRefusals.WithLabelValues("guess_budget")); got != 2 {
		t.Errorf("guess_budget refusals = %v, want 2", got)
	}
	l := logs.String()
	if n := strings.Count(l, "outside srs.return_sources; is the list out of date?"); n != 2 {
		t.Errorf("valid returns from outside logged %d times, want twice (once an hour):\n%s", n, l)
	}
	var spent string
	for _, line := range strings.Split(l, "\n") {
		if strings.Contains(line, "budget for invalid SRS addresses is spent") {
			if spent != "" {
				t.Errorf("spent budget logged twice:\n%s", l)
			}
			spent = line
		}
	}
	if !strings.Contains(spent, "last_invalid_from=127.0.0.4/32") || strings.Contains(spent, "127.0.0.5") || strings.Contains(spent, "helo=") {
		t.Errorf("spent budget logged with the client that found it spent, or without the last guesser: %q", spent)
	}
	if !strings.Contains(l, `for=10m0s return_source=true`) {
		t.Errorf("the source's penalty not logged as 10 minutes:\n%s", l)
	}
}
