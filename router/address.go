// SPDX-License-Identifier: MIT

package router

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error about a malformed address, alias or target.
var ErrInvalid = errors.New("invalid address")

// Limits from RFC 5321 section 4.5.3.1; Microsoft 365 enforces the same.
const (
	maxLocal  = 64
	maxDomain = 253
	maxLabel  = 63
	maxPath   = 254
)

// NormalizeAddress trims surrounding whitespace, checks that s is a plain
// mailbox the relay may route, and returns it lower-cased.
//
// The local part is lower-cased too, although RFC 5321 calls it case-sensitive:
// every MTA that matters here (Solcon's, Exchange Online) routes it
// case-insensitively, so two spellings of one mailbox must map to one row, and
// a forwarder that changes case must not turn mail into a 550.
//
// Only a conservative ASCII dot-atom subset is accepted. Characters that some
// MTAs still interpret as routing ('%', '!', ':', source routes "@a,@b:x@y")
// and quoted local parts are refused, because an address the relay forwards
// must never be able to name a hop of its own choosing.
func NormalizeAddress(s string) (string, error) {
	a := strings.TrimSpace(s)
	if err := validate(a); err != nil {
		return "", fmt.Errorf("%w %q: %s", ErrInvalid, s, err.Error())
	}
	return asciiLower(a), nil
}

// problem is an error whose text is only the human explanation, wrapped by
// NormalizeAddress with the offending input.
type problem string

func (p problem) Error() string { return string(p) }

func validate(a string) error {
	if a == "" {
		return problem("empty address")
	}
	if len(a) > maxPath {
		return problem(fmt.Sprintf("longer than %d characters", maxPath))
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c == ' ' || c == '\t':
			return problem("contains a space")
		case c < 0x20 || c == 0x7f:
			return problem("contains a control character")
		case c >= 0x80:
			return problem("contains a non-ASCII character (internationalised addresses are not supported)")
		}
	}
	if strings.HasPrefix(a, "@") && strings.Contains(a, ":") {
		return problem("source routes (@host:user@domain) are not allowed")
	}
	switch n := strings.Count(a, "@"); {
	case n == 0:
		return problem("missing '@'")
	case n > 1:
		return problem("more than one '@'")
	}
	local, domain, _ := strings.Cut(a, "@")
	if err := validateLocal(local); err != nil {
		return err
	}
	return validateDomain(domain)
}

func validateLocal(l string) error {
	if l == "" {
		return problem("empty local part (nothing before '@')")
	}
	if len(l) > maxLocal {
		return problem(fmt.Sprintf("local part longer than %d characters", maxLocal))
	}
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case c == '%':
			return problem("'%' is not allowed (percent-hack routing)")
		case c == '!':
			return problem("'!' is not allowed (bang-path routing)")
		case c == ':':
			return problem("':' is not allowed (source routing)")
		case c == '"' || c == '\'' || c == '`':
			return problem("quotes are not allowed in the local part")
		case c == '\\':
			return problem("'\\' is not allowed in the local part")
		case c == '.':
			// Checked below as a whole.
		case !isLocalChar(c):
			return problem(fmt.Sprintf("%q is not allowed in the local part", string(c)))
		}
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return problem("local part must not start or end with '.' or contain '..'")
	}
	return nil
}

// isLocalChar reports RFC 5322 atext, minus what validateLocal refuses by name.
func isLocalChar(c byte) bool {
	if isAlnum(c) {
		return true
	}
	return strings.IndexByte("#$&*+-/=?^_{|}~", c) >= 0
}

func validateDomain(d string) error {
	if d == "" {
		return problem("empty domain (nothing after '@')")
	}
	if len(d) > maxDomain {
		return problem(fmt.Sprintf("domain longer than %d characters", maxDomain))
	}
	if strings.HasSuffix(d, ".") {
		return problem("domain must not end with '.'")
	}
	if strings.HasPrefix(d, "[") {
		return problem("address literals ([1.2.3.4]) are not allowed")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return problem("domain needs at least two labels (example.nl)")
	}
	for _, lb := range labels {
		if lb == "" {
			return problem("domain has an empty label ('..' or leading '.')")
		}
		if len(lb) > maxLabel {
			return problem(fmt.Sprintf("domain label longer than %d characters", maxLabel))
		}
		if lb[0] == '-' || lb[len(lb)-1] == '-' {
			return problem("domain label must not start or end with '-'")
		}
		for i := 0; i < len(lb); i++ {
			if c := lb[i]; !isAlnum(c) && c != '-' {
				return problem(fmt.Sprintf("%q is not allowed in a domain (letters, digits and '-' only)", string(c)))
			}
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// asciiLower is enough because validate admits ASCII only; it does not
// allocate when the input is already lower case, the common case per RCPT.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
