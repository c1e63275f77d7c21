// SPDX-License-Identifier: MIT

package courier

import (
	"errors"
	"fmt"
	"strings"
)

// Addresses reach the courier as go-smtp's server hands them over: a quoted
// local part arrives unquoted. MAIL FROM:<"a@b> RET=HDRS"@c> gives the
// sender `a@b> RET=HDRS@c`; written back as it is, the next hop would read
// the sender a@b and a parameter of ours. So every address is written in
// its RFC 5321 form.

// errUnwritable marks an address no SMTP command can carry as it is.
var errUnwritable = errors.New("cannot be written into an SMTP command")

// path returns addr as it goes between < and > in MAIL FROM or RCPT TO: as
// it is when its local part is a dot-string, else with the local part
// quoted (RFC 5321 4.1.2), so that the next hop reads this one address and
// nothing more. The local part is everything before the last '@': go-smtp
// ends a domain only at a space, a tab or '>', so an '@' in what it read
// can only have come from a quoted local part (or the domain, whose last
// part is then a domain still). "" is the null reverse path.
//
// An address with a control character (CR and LF above all: they would end
// the command), or a domain with a space or '>' (which would end the path),
// is refused: RFC 5321 has no way to write it.
func path(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	local, domain := addr, ""
	at := strings.LastIndexByte(addr, '@')
	if at >= 0 {
		local, domain = addr[:at], addr[at+1:]
		if domain == "" || strings.ContainsFunc(domain, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '>' }) {
			return "", fmt.Errorf("address %q: its domain %w", addr, errUnwritable)
		}
	}
	if local == "" {
		return "", fmt.Errorf("address %q: an empty local part %w", addr, errUnwritable)
	}
	if isDotString(local) {
		return addr, nil
	}
	var b strings.Builder
	b.Grow(len(addr) + 4)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c < ' ' || c == 0x7f:
			return "", fmt.Errorf("address %q: a control character %w", addr, errUnwritable)
		case c == '"' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	if at >= 0 {
		b.WriteByte('@')
		b.WriteString(domain)
	}
	return b.String(), nil
}

// isDotString reports whether s is an RFC 5321 Dot-string: atoms of atext
// joined by single dots. Bytes of UTF-8 beyond ASCII count as atext (RFC
// 6531), as they do for a message that needs SMTPUTF8.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && !isAtext(c) {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case c >= 0x80, 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkSender refuses a reverse path no MAIL FROM can carry.
func checkSender(addr string) error {
	if _, err := path(addr); err != nil {
		return PermError("5.1.7", "sender %v", err)
	}
	return nil
}

// checkRcpt refuses a recipient no RCPT TO can carry.
func checkRcpt(addr string) error {
	if _, err := path(addr); err != nil {
		return PermError("5.1.3", "recipient %v", err)
	}
	return nil
}
