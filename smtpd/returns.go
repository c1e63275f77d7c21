// SPDX-License-Identifier: MIT

package smtpd

import (
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// ReturnPolicy configures the one exception to "deliver only to the tenant":
// bounces addressed to our SRS domain go back to the original sender. It is
// narrow by construction: only from the null sender, only delivery reports
// and automatic replies (see classifyReturn), only to an address recovered
// from a valid SRS token, which cannot be had by guessing (see guard), and at
// a bounded rate.
type ReturnPolicy struct {
	Domain string
	// Reverse recovers the original sender from an SRS address. It runs
	// under the guard's lock, so it must be quick (srs.Rewriter's is an HMAC).
	Reverse func(addr string) (string, error)
	// Reason maps a Reverse error to a bounded metric label and reply text;
	// "expired" marks an address signed by us but too old, which is no guess.
	Reason func(err error) string
	// PerHour bounds accepted returns in all, PerClientPerHour those from
	// one client network (an address, or an IPv6 /64), PerDestinationPerHour
	// those to one domain (the original sender's). 0 means unlimited.
	PerHour               int
	PerClientPerHour      int
	PerDestinationPerHour int
	// MaxInvalid is how many invalid SRS addresses a client network (its
	// address, or its /64 for IPv6) may send per Penalty; the last one is
	// answered 421 4.7.0 and for the rest of Penalty every SRS recipient
	// from that network is, unchecked. 0 means 3; Penalty 0 means an hour.
	MaxInvalid int
	Penalty    time.Duration
	// InvalidPerHour bounds the invalid SRS addresses checked per hour from
	// all clients outside Sources together; past it, their SRS recipients
	// get 451 4.7.1 unchecked until the budget refills. 0 means 30.
	InvalidPerHour int
	// Sources are the networks real returns come from (Microsoft 365's
	// outbound servers). Their clients do not draw on InvalidPerHour, so
	// guessers elsewhere cannot defer real returns by keeping it spent; they
	// keep the per-network allowance, with SourcePenalty (0 means 10
	// minutes) as their penalty. Empty means every client.
	Sources       []netip.Prefix
	SourcePenalty time.Duration
	Now           func() time.Time
}

// reasonExpired is the Reason of an address that carries our valid
// signature but is too old: not a guess, so not counted against the client.
const reasonExpired = "expired"

var (
	errSRSNotDSN = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "This address accepts only delivery status notifications"}
	errSRSNotReturn = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Message refused: this address accepts only delivery status notifications and automatic replies"}
	// The connection is closed after errSRSGuesses (see conn.hangUp).
	errSRSGuesses = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many invalid recipients, closing connection"}
	errSRSBudget = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Returned mail temporarily not accepted, try again later"}
	errSRSMixed = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
		Message: "Too many recipients: send returned mail in a separate transaction"}
	errSRSRate = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Rate limit for returned mail reached, try again later"}
)

func errSRSInvalid(reason string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "Recipient address rejected: invalid SRS address (" + reason + ")"}
}

// isReturn reports whether rcpt is an SRS address at our SRS domain. The
// domain may also carry forwarding aliases, so the local part decides.
func (r *ReturnPolicy) isReturn(rcpt string) bool {
	if r == nil || r.Domain == "" {
		return false
	}
	at := strings.LastIndexByte(rcpt, '@')
	if at < 5 || !strings.EqualFold(strings.TrimSuffix(rcpt[at+1:], "."), r.Domain) {
		return false
	}
	p := strings.ToUpper(rcpt[:5])
	return p == "SRS0=" || p == "SRS1=" || p == "SRS0+" || p == "SRS0-" || p == "SRS1+" || p == "SRS1-"
}

func (r *ReturnPolicy) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *ReturnPolicy) reason(err error) string {
	if r.Reason == nil {
		return "invalid"
	}
	return r.Reason(err)
}
