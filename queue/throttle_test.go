// SPDX-License-Identifier: MIT

package queue

import (
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

// TestThrottlingNeverHoldsOrBounces: Microsoft's throttling replies and
// refusals of the relay's own address are temporary whatever their first
// digit: even under on_permanent_failure: bounce the message is deferred
// until the target takes it, never held, never returned.
func TestThrottlingNeverHoldsOrBounces(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		stage standin.Stage
		reply *smtp.SMTPError
	}{
		{"451 4.7.500 at RCPT", standin.StageRcpt, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 500}, Message: "Server busy. Please try again later from [192.0.2.1]. (S77719)"}},
		{"550 4.7.500 at RCPT", standin.StageRcpt, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{4, 7, 500}, Message: "Server busy"}},
		{"451 4.7.650 at MAIL", standin.StageMail, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 650}, Message: "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation."}},
		{"554 5.7.606 banned IP at MAIL", standin.StageMail, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 606}, Message: "Access denied, banned sending IP [192.0.2.1]."}},
		{"550 5.7.511 at DATA", standin.StageDataDone, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 511}, Message: "Access denied, banned sender"}},
		// Exchange Online Protection when the relay's address or EHLO name
		// is on Spamhaus' lists: a generic 5.7.1, told apart by its text.
		{"550 5.7.1 client host blocked using Spamhaus at RCPT", standin.StageRcpt, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1 (AS16012611)"}},
		{"550 5.7.1 HELO domain listed in Spamhaus at MAIL", standin.StageMail, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "Service unavailable, Helo domain is listed in Spamhaus. To request removal from this list see https://www.spamhaus.org/query/dbl?domain=relay.test (S8001)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var refused atomic.Int32
			s := f.target(standin.Options{Hook: func(e standin.Event) error {
				if e.Stage == tc.stage && refused.Load() < 2 {
					refused.Add(1)
					return tc.reply
				}
				return nil
			}})
			mx := f.target(standin.Options{TLS: newFixture(t).tlsFor("mx.sender.test")})
			opts := f.opts(s)
			opts.OnPermanentFailure = PolicyBounce
			opts.Sender = f.mxAt(mx, nil)
			id := f.spool(testBody, defaultEnv())
			f.run(opts)
			waitMsgs(t, s, 1)
			waitFor(t, failsafe, "delivered and removed", f.gone(id))
			if refused.Load() != 2 {
				t.Errorf("target refused %d times, want 2", refused.Load())
			}
			if mx.Count() != 0 || testutil.ToFloat64(f.m.DSNsGenerated) != 0 {
				t.Error("a DSN went out for a throttled message")
			}
			for _, res := range []string{"held", "bounced"} {
				if n := testutil.ToFloat64(f.m.Deliveries.WithLabelValues(res)); n != 0 {
					t.Errorf("%s = %v", res, n)
				}
			}
			if n := testutil.ToFloat64(f.m.Deliveries.WithLabelValues("deferred")); n != 2 {
				t.Errorf("deferred = %v, want 2", n)
			}
			items, _ := f.sp.List()
			for _, it := range items {
				if it.State == spool.StateHeld {
					t.Errorf("%s held", it.ID)
				}
			}
		})
	}
}
