// SPDX-License-Identifier: MIT

package dnscheck

import (
	"strconv"
	"strings"
)

// TXTLine is the zone-file line that publishes value as a TXT record at
// name: the value quoted, and cut into strings of at most 255 bytes (the
// most one string of a TXT record holds) between parentheses when it is
// longer, as the key record of a 2048-bit DKIM or ARC key is.
func TXTLine(name string, ttl int, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, zoneQuote(value[:255]))
		value = value[255:]
	}
	parts = append(parts, zoneQuote(value))
	rdata := parts[0]
	if len(parts) > 1 {
		rdata = "( " + strings.Join(parts, " ") + " )"
	}
	return name + " " + strconv.Itoa(ttl) + " IN TXT " + rdata
}

// zoneQuote writes s as a zone file's quoted string (RFC 1035 §5.1): a
// quote and a backslash escaped, a byte outside printable ASCII as \DDD.
func zoneQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteByte('\\')
			b.WriteString(strconv.Itoa(int(c) + 1000)[1:])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
