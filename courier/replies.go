// SPDX-License-Identifier: MIT

package courier

import "strings"

// Signal is what a reply says about the target as a whole rather than about
// one message: the health of the target (health.go) acts on it, the queue
// only sees that the message is deferred.
type Signal uint8

const (
	// SignalNone: the reply concerns this message or recipient alone.
	SignalNone Signal = iota
	// SignalThrottle: the target asks us to slow down (a rate limit, a busy
	// server, a reputation hold). The message is deferred, never held or
	// bounced, and the target gets fewer sessions.
	SignalThrottle
	// SignalBlocked: the target refuses the relay itself (its IP address is
	// listed or banned), whatever the message. Bouncing every message for
	// that would punish their senders for a problem an admin must fix on
	// our side (a delisting), so the message is deferred, and repeated
	// refusals suspend the target like an outage.
	SignalBlocked
	// SignalFamily: the target refuses mail over this address family (IPv6
	// without a reverse DNS record, or not opted in): the family is
	// remembered as bad, the next attempt uses the other one, and the
	// refusal counts as a failure of the target (with only this family
	// allowed, repeated refusals suspend it).
	SignalFamily
	// SignalFamilyAuth: over this address family the target wants this
	// message to pass SPF or DKIM (4.7.26). The next attempt takes the
	// other family, where that is not asked; the message is the cause, so
	// the target's health is not touched.
	SignalFamilyAuth
	// SignalSuspended: nothing was sent: the target is suspended. The
	// queue parks the message without counting an attempt.
	SignalSuspended
)

func (s Signal) String() string {
	switch s {
	case SignalThrottle:
		return "throttle"
	case SignalBlocked:
		return "blocked"
	case SignalFamily:
		return "family"
	case SignalFamilyAuth:
		return "family_auth"
	case SignalSuspended:
		return "suspended"
	}
	return "none"
}

// replyRule classifies replies whose enhanced status code has the given
// class and subject and a detail in [lo, hi] and, when text is set, whose
// text contains it (compared without regard to case: text is lower case).
// Every rule names its source.
type replyRule struct {
	class, subject int
	lo, hi         int
	text           string
	signal         Signal
	source         string
}

// replyRules is the one place that says which replies of Microsoft 365
// (Exchange Online Protection) mean something for the target as a whole.
// Every row turns the reply into a temporary failure, whatever its first
// digit: none of them says anything about the message itself. The first
// matching row wins; replies no row matches are judged by their code alone
// (classify below).
//
// "NDR reference" is Microsoft's "Email non-delivery reports and SMTP errors
// in Exchange Online" (learn.microsoft.com/exchange/mail-flow-best-practices/
// non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online).
var replyRules = []replyRule{
	// IPv6: rows before the generic 4.7.x throttle row below.
	{4, 7, 25, 25, "", SignalFamily, "Microsoft's 'Support for anonymous inbound email over IPv6': 450 4.7.25, the sending IPv6 address has no reverse DNS record (a property of our address, not of the message); Microsoft says a sender should retry over IPv4"},
	{4, 7, 26, 26, "", SignalFamilyAuth, "NDR reference 4.7.26 and 'Support for anonymous inbound email over IPv6': 450 4.7.26, mail over IPv6 must pass SPF or DKIM (a property of the message); retry over IPv4"},
	{5, 7, 25, 25, "", SignalFamily, "NDR reference 5.7.25: the sending IPv6 address must have a reverse DNS record (a property of our address, not of the message)"},
	{5, 7, 510, 510, "", SignalFamily, "NDR reference 5.7.510: the domain does not accept email over IPv6"},

	// Block lists that name the relay's address (or its EHLO name) under
	// the generic 5.7.1, told apart from the 5.7.1 about a message only by
	// their text. Exchange Online Protection's wording, as collected by
	// smtpfieldmanual.com/spamfilter/exchangeonline and named in
	// Microsoft's admin help article "Error sending email: Client host
	// blocked using Spamhaus" (the IP address that sent the message is on
	// Spamhaus' block list; the address owner must have it removed).
	{5, 7, 1, 1, "blocked using spamhaus", SignalBlocked, "EOP: 550 5.7.1 Service unavailable, Client host [ip] blocked using Spamhaus ... (AS16012611): smtpfieldmanual.com/spamfilter/exchangeonline; Microsoft's 'Error sending email: Client host blocked using Spamhaus'"},
	{5, 7, 1, 1, "helo domain is listed in spamhaus", SignalBlocked, "EOP: 550 5.7.1 Service unavailable, Helo domain is listed in Spamhaus ... (S8001): our EHLO name (hostname: in the config) is on Spamhaus' domain list; smtpfieldmanual.com/spamfilter/exchangeonline"},
	{5, 7, 1, 1, "network is on our block list", SignalBlocked, "EOP: 550 5.7.1 Unfortunately, messages from [ip] weren't sent ... part of their network is on our block list (S3140/S3150): Microsoft's own list of the sending network (the reply links Outlook.com's postmaster troubleshooting page)"},

	// Throttling and reputation holds.
	{4, 7, 500, 699, "", SignalThrottle, "NDR reference 4.7.500-699: suspicious activity, sending temporarily restricted; 'Fix error code 451 4.7.500-699 (ASxxx)': IP throttling of a sender whose pattern changed; e.g. 451 4.7.500 Server busy, 451 4.7.650/4.7.651 rate limited due to IP reputation"},
	{4, 7, 850, 899, "", SignalThrottle, "NDR reference 4.7.850-899: the IP is temporarily restricted while it is evaluated"},
	{5, 7, 500, 500, "", SignalThrottle, "the older version of Microsoft's 'Fix error code 451 5.7.500-699 (ASxxx)' article: the same IP throttling, sent with a 5.7.x status"},
	{5, 7, 508, 508, "", SignalThrottle, "NDR reference 5.7.508: the sender's IPv6 range sent too many messages in too short a time (a rate limit)"},
	{5, 7, 650, 699, "", SignalThrottle, "the older version of 'Fix error code 451 5.7.500-699 (ASxxx)' (IP throttling); 5.7.650/651 rate limiting due to IP reputation; below 650 in that range the NDR reference has bans (next rows)"},

	// Refusals of the relay's IP address: bans and block lists.
	{5, 7, 506, 506, "", SignalBlocked, "NDR reference 5.7.506: Bad HELO (our EHLO name, hostname: in the config)"},
	{5, 7, 511, 511, "", SignalBlocked, "NDR reference 5.7.511: the IP you send from is banned (delist@microsoft.com)"},
	{5, 7, 513, 513, "", SignalBlocked, "NDR reference 5.7.513: the recipient domain blocks the sending IP with its own block list"},
	{5, 7, 606, 649, "", SignalBlocked, "NDR reference 5.7.606-649: Access denied, banned sending IP (delist portal, sender.office.com)"},
	{5, 7, 708, 708, "", SignalBlocked, "NDR reference 5.7.708: traffic not accepted from this IP"},
}

// replySignal classifies a reply (code, enhanced status "c.s.d" or "",
// text) and reports whether the reply is temporary.
func replySignal(code int, status, text string) (Signal, bool) {
	class, subject, detail, ok := parseStatus(status)
	if ok {
		lower := ""
		for _, r := range replyRules {
			if r.class != class || r.subject != subject || detail < r.lo || detail > r.hi {
				continue
			}
			if r.text != "" {
				if lower == "" {
					lower = strings.ToLower(text)
				}
				if !strings.Contains(lower, r.text) {
					continue
				}
			}
			return r.signal, true
		}
	}
	switch {
	case code == 421:
		// RFC 5321 4.2.3: the service is closing the channel (Microsoft:
		// "421 4.3.2 The maximum number of concurrent connections ...
		// exceeded a limit"). Too many sessions, or an overloaded server.
		return SignalThrottle, true
	case ok && class == 4 && subject == 7:
		// 4.7.x: a temporary security or policy refusal (RFC 3463):
		// greylisting, rate limits. Slow down and come back.
		return SignalThrottle, true
	case ok && class == 4:
		// A temporary enhanced status with a 5xx code contradicts itself
		// (RFC 3463 2: the class must match the code); the milder reading
		// keeps the mail.
		return SignalNone, true
	}
	return SignalNone, code/100 != 5
}

// parseStatus splits an enhanced status code "c.s.d".
func parseStatus(s string) (class, subject, detail int, ok bool) {
	var n [3]int
	i := 0
	digits := 0
	for j := 0; j < len(s); j++ {
		switch c := s[j]; {
		case c >= '0' && c <= '9':
			if digits == 3 {
				return 0, 0, 0, false
			}
			n[i] = n[i]*10 + int(c-'0')
			digits++
		case c == '.' && digits > 0 && i < 2:
			i++
			digits = 0
		default:
			return 0, 0, 0, false
		}
	}
	if i != 2 || digits == 0 {
		return 0, 0, 0, false
	}
	return n[0], n[1], n[2], true
}
