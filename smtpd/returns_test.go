package smtpd_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/smtpd"
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
		o.Returns = &smtpd.Returns{Domain: "fwd.example.nl", Reverse: fakeReverse, Reason: func(err error) string { return err.Error() },
			PerHour: 3, Now: func() time.Time { return now }}
	})
	dsn := "From: MAILER-DAEMON@tenant.example\r\nSubject: Undeliverable\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x--\r\n"
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
