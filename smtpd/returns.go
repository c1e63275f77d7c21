package smtpd

import (
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Returns configures the one exception to "deliver only to the tenant":
// bounces addressed to our SRS domain go back to the original sender. It is
// narrow by construction: only DSNs (null sender), only to an address
// recovered from a valid SRS token, and at a bounded rate.
type Returns struct {
	Domain  string
	Reverse func(addr string) (string, error)
	// Reason maps a Reverse error to a bounded metric label and reply text.
	Reason func(err error) string
	// PerHour bounds accepted returns; 0 means unlimited.
	PerHour int
	Now     func() time.Time
}

var (
	errSRSNotDSN = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "This address accepts only delivery status notifications"}
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
func (r *Returns) isReturn(rcpt string) bool {
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

// bucket is a token bucket refilled continuously at perHour tokens an hour.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (r *Returns) allow(b *bucket) bool {
	if r.PerHour <= 0 {
		return true
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = float64(r.PerHour)
	} else {
		b.tokens += now.Sub(b.last).Hours() * float64(r.PerHour)
		b.tokens = min(b.tokens, float64(r.PerHour))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
