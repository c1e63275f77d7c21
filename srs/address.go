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
// part (to match postsrsd behind Postfix) and returns the unquoted form, as
// dualmx keeps every address; the courier quotes what needs it when it
// writes MAIL FROM and RCPT TO.

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

// address joins a local part and a domain in the unquoted form.
func address(local, domain string) string { return local + "@" + domain }

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
