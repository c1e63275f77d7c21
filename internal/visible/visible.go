// SPDX-License-Identifier: MIT

// Package visible makes text that came from outside fit to show a person.
// An SMTP reply, an envelope address, a header or a display name read from
// the tenant may carry terminal control sequences (ESC, the C1 controls,
// DEL), line breaks that forge table rows, or Unicode format characters
// that reorder what follows them (bidi overrides and isolates). String
// writes every such character as a Go escape, so a hostile value shows as
// what it is and changes nothing around it.
package visible

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// String returns s with every character that is not graphic (letters, marks,
// numbers, punctuation, symbols and spaces) written as \n, \t, \r, \xHH,
// \uHHHH or \UHHHHHHHH, a byte that is not UTF-8 as \xHH, and the backslash
// as \\, so the result reads back unambiguously (it is what strconv.Quote
// would write between the quotes, except that quotes and graphic non-ASCII
// characters stay as they are). Text without such characters is returned
// unchanged.
func String(s string) string {
	return escape(s, true)
}

// escape is String; with backslash false a backslash stays as it is.
func escape(s string, backslash bool) string {
	if plain(s, backslash) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case r == '\\' && backslash:
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case unicode.IsGraphic(r):
			b.WriteString(s[i : i+n])
		case r < utf8.RuneSelf:
			b.WriteString(`\x`)
			b.WriteString(hex2(byte(r)))
		case r <= 0xffff:
			b.WriteString(`\u`)
			b.WriteString(pad(strconv.FormatUint(uint64(r), 16), 4))
		default:
			b.WriteString(`\U`)
			b.WriteString(pad(strconv.FormatUint(uint64(r), 16), 8))
		}
		i += n
	}
	return b.String()
}

// plain reports whether s is printable ASCII (without a backslash, if
// backslash), the common case, which escape returns as it is.
func plain(s string, backslash bool) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || (c == '\\' && backslash) {
			return false
		}
	}
	return true
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}

func pad(h string, n int) string {
	return strings.Repeat("0", n-len(h)) + h
}

// Lines is String for an error message, which may be several lines (a list
// of problems one a line): each line is escaped, the line breaks stay, and
// so do backslashes. An error names the outside values it carries with %q,
// already escaped: "\x1b" there is the four characters the quoting wrote,
// and escaping their backslash again would show "\\x1b". What %q did not
// quote (a value put in with %s, an error from elsewhere) is still escaped
// here; only the read-back of a literal backslash is given up.
func Lines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = escape(l, false)
	}
	return strings.Join(lines, "\n")
}
