// SPDX-License-Identifier: MIT

package courier

import (
	"net/textproto"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestReplyClassification: Microsoft's throttling and IP refusals are
// temporary whatever their first digit; replies about the message keep
// their code's meaning. A block list naming the relay under the generic
// 5.7.1 is told by its text, whatever its case.
func TestReplyClassification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   int
		status smtp.EnhancedCode
		temp   bool
		signal Signal
		text   string // default "text"
	}{
		{451, smtp.EnhancedCode{4, 7, 500}, true, SignalThrottle, ""},    // Server busy
		{451, smtp.EnhancedCode{4, 7, 650}, true, SignalThrottle, ""},    // rate limited due to IP reputation
		{451, smtp.EnhancedCode{4, 7, 651}, true, SignalThrottle, ""},    // the same
		{550, smtp.EnhancedCode{4, 7, 500}, true, SignalThrottle, ""},    // a 5xx code cannot make 4.7.x permanent
		{450, smtp.EnhancedCode{4, 7, 870}, true, SignalThrottle, ""},    // 4.7.850-899
		{451, smtp.EnhancedCode{4, 7, 1}, true, SignalThrottle, ""},      // greylisting: any 4.7.x
		{421, smtp.EnhancedCode{4, 3, 2}, true, SignalThrottle, ""},      // too many concurrent connections
		{421, smtp.EnhancedCode{0, 0, 0}, true, SignalThrottle, ""},      // no enhanced code
		{451, smtp.EnhancedCode{5, 7, 500}, true, SignalThrottle, ""},    // the old article's 451 5.7.500
		{550, smtp.EnhancedCode{5, 7, 500}, true, SignalThrottle, ""},    // the same with a 5xx code
		{550, smtp.EnhancedCode{5, 7, 508}, true, SignalThrottle, ""},    // IPv6 range rate limit
		{550, smtp.EnhancedCode{5, 7, 651}, true, SignalThrottle, ""},    // reputation rate limit
		{550, smtp.EnhancedCode{5, 7, 606}, true, SignalBlocked, ""},     // banned sending IP
		{550, smtp.EnhancedCode{5, 7, 649}, true, SignalBlocked, ""},     // ... to the end of the range
		{554, smtp.EnhancedCode{5, 7, 511}, true, SignalBlocked, ""},     // banned sender IP
		{550, smtp.EnhancedCode{5, 7, 513}, true, SignalBlocked, ""},     // customer block list
		{550, smtp.EnhancedCode{5, 7, 708}, true, SignalBlocked, ""},     // traffic not accepted from this IP
		{550, smtp.EnhancedCode{5, 7, 506}, true, SignalBlocked, ""},     // bad HELO
		{450, smtp.EnhancedCode{4, 7, 26}, true, SignalFamilyAuth, ""},   // IPv6 must pass SPF or DKIM: the message's own
		{450, smtp.EnhancedCode{4, 7, 25}, true, SignalFamily, ""},       // IPv6 without reverse DNS
		{550, smtp.EnhancedCode{5, 7, 25}, true, SignalFamily, ""},       // the same, permanent wording
		{550, smtp.EnhancedCode{5, 7, 510}, true, SignalFamily, ""},      // no email over IPv6
		{550, smtp.EnhancedCode{5, 1, 1}, false, SignalNone, ""},         // unknown recipient
		{550, smtp.EnhancedCode{5, 7, 509}, false, SignalNone, ""},       // DMARC reject: about the message
		{550, smtp.EnhancedCode{5, 7, 1}, false, SignalNone, ""},         // delivery not authorized
		{554, smtp.EnhancedCode{5, 7, 650 - 1}, true, SignalBlocked, ""}, // 5.7.649
		{550, smtp.EnhancedCode{5, 7, 700}, false, SignalNone, ""},       // outside every row
		{452, smtp.EnhancedCode{4, 5, 3}, true, SignalNone, ""},          // too many recipients
		{550, smtp.EnhancedCode{4, 2, 2}, true, SignalNone, ""},          // inconsistent: the milder reading
		{451, smtp.EnhancedCode{0, 0, 0}, true, SignalNone, ""},
		{554, smtp.EnhancedCode{0, 0, 0}, false, SignalNone, ""},
		// Exchange Online Protection refusing the relay's address or name
		// on Spamhaus' lists (smtpfieldmanual.com), or its own network list.
		{550, smtp.EnhancedCode{5, 7, 1}, true, SignalBlocked, "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1 (AS16012611) [DB5PEPF00014B8F.eurprd02.prod.outlook.com]"},
		{550, smtp.EnhancedCode{5, 7, 1}, true, SignalBlocked, "Service unavailable, Helo domain is listed in Spamhaus. To request removal from this list see https://www.spamhaus.org/query/dbl?domain=relay.example.nl (S8001) [AM4PEPF00027A6C.eurprd04.prod.outlook.com]"},
		{550, smtp.EnhancedCode{5, 7, 1}, true, SignalBlocked, "SERVICE UNAVAILABLE, CLIENT HOST [192.0.2.1] BLOCKED USING SPAMHAUS"},
		{550, smtp.EnhancedCode{5, 7, 1}, true, SignalBlocked, "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their\nnetwork is on our block list (S3150)."},
		{550, smtp.EnhancedCode{5, 7, 1}, false, SignalNone, "Message rejected as spam by Content Filtering."},
		{550, smtp.EnhancedCode{5, 7, 1}, false, SignalNone, "Sender domain is listed in Spamhaus"},                                        // the message's domain, not the relay's name
		{550, smtp.EnhancedCode{5, 7, 1}, false, SignalNone, "Delivery not authorized, message refused: the sender is on a Spamhaus list"}, // not the relay
		{550, smtp.EnhancedCode{5, 7, 2}, false, SignalNone, "Client host [192.0.2.1] blocked using Spamhaus"},                             // only under 5.7.1
	} {
		text := tc.text
		if text == "" {
			text = "text"
		}
		for _, err := range []error{
			&smtp.SMTPError{Code: tc.code, EnhancedCode: tc.status, Message: text},
			&textproto.Error{Code: tc.code, Msg: statusText(tc.status) + text},
		} {
			e := Classify(err)
			if e.Temporary != tc.temp || e.Signal != tc.signal {
				t.Errorf("%d %v (%T): temporary %v signal %v, want %v %v", tc.code, tc.status, err, e.Temporary, e.Signal, tc.temp, tc.signal)
			}
		}
	}
}

func statusText(c smtp.EnhancedCode) string {
	if c == (smtp.EnhancedCode{}) {
		return ""
	}
	return enhanced(c) + " "
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	for in, ok := range map[string]bool{"4.7.500": true, "5.7.1": true, "": false, "4.7": false, "4..1": false, "4.7.1.2": false,
		"4.7.x": false, "1234.1.1": false, ".4.7": false, "4.7.": false} {
		if _, _, _, got := parseStatus(in); got != ok {
			t.Errorf("parseStatus(%q) ok = %v", in, got)
		}
	}
}
