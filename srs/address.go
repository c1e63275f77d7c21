// SPDX-License-Identifier: MIT

package srs

import (
	"errors"
	"strings"
)

// Addresses come in two spellings: the wire form (`"john doe"@example.com`,
// what an SMTP client must send) and the unquoted form go-smtp's server hands
// over (`john doe@example.com`, which is also Postfix's internal form and so
// what postsrsd signs). The package accepts both, signs the unquoted local
// part (to match postsrsd behind Postfix) and always returns the wire form,
// because go-smtp's client writes MAIL FROM and RCPT TO verbatim.

// split cuts an address at its last '@': a quoted or unquoted local part may
// itself contain '@', a domain never does.
func split(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

// unquote returns the local part without RFC 5321 quoting. A local part that
// is not wrapped in quotes is taken as already unquoted.
func unquote(local string) (string, error) {
	if len(local) < 2 || local[0] != '"' || local[len(local)-1] != '"' {
		return local, nil
	}
	var b strings.Builder
	in := local[1 : len(local)-1]
	for i := 0; i < len(in); i++ {
		switch c := in[i]; c {
		case '\\':
			i++
			if i == len(in) {
				return "", errors.New("quoted local part ends in a backslash")
			}
			b.WriteByte(in[i])
		case '"':
			return "", errors.New("unescaped quote inside quoted local part")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// checkLocal refuses what no spelling of a mailbox can carry.
func checkLocal(local string) error {
	if local == "" {
		return errors.New("empty local part")
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x20 || c == 0x7f {
			return errors.New("control character in local part")
		}
	}
	return nil
}

// join builds the wire form: the local part quoted only when it is not an
// RFC 5321 Dot-string, as Postfix does when it writes an envelope. Dots are
// judged strictly ("a..b", "a." get quoted) because the next hop may be.
func join(local, domain string) string {
	if isDotString(local) {
		return local + "@" + domain
	}
	var b strings.Builder
	b.Grow(len(local) + len(domain) + 4)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteString(`"@`)
	b.WriteString(domain)
	return b.String()
}

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

// isAtext is RFC 5322 atext, plus the octets of UTF-8 sequences (RFC 6531),
// so an internationalised local part is not quoted for no reason.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// asciiLower lower-cases ASCII letters only: libsrs2 uses the C locale's
// tolower, and a Unicode-aware fold would sign different bytes.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
