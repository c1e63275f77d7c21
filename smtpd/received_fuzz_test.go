// SPDX-License-Identifier: MIT

package smtpd

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// FuzzReceivedField: whatever HELO name and recipient a client sends, the
// Received field dualmx writes is one well-formed field: CRLF only before a
// folding tab, printable ASCII only, no way to start another field.
func FuzzReceivedField(f *testing.F) {
	f.Add("oldhost.test", "scriba@fwd.example.nl", false)
	f.Add("evil\r\nX-Injected: 1", "a@b.example\r\nBcc: x@y", true)
	f.Add("", "\"quoted@at\"@fwd.example.nl", true)
	f.Add("h\xc3\xa9lo", "r\x00@\xff", false)
	ip := netip.MustParseAddr("192.0.2.1")
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, helo, rcpt string, utf8 bool) {
		fld := receivedField(helo, ip, "relay.example.nl", "ID1", rcpt, true, utf8, at)
		if !strings.HasPrefix(fld, "Received: from ") || !strings.HasSuffix(fld, "\r\n") {
			t.Fatalf("malformed field %q", fld)
		}
		lines := strings.Split(strings.TrimSuffix(fld, "\r\n"), "\r\n")
		for i, l := range lines {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("bare CR or LF in %q", fld)
			}
			if i > 0 && !strings.HasPrefix(l, "\t") {
				t.Fatalf("line %d starts a new field: %q", i, fld)
			}
			for _, r := range l {
				if r != '\t' && (r < ' ' || r > '~') {
					t.Fatalf("non-printable %q in %q", r, fld)
				}
			}
			if len(l) > 998 {
				t.Fatalf("line over 998 octets in %q", fld)
			}
		}
	})
}

// FuzzValidMailbox: a reverse-path accepted as a mailbox always has a local
// part and a domain a DSN could be addressed to.
func FuzzValidMailbox(f *testing.F) {
	for _, s := range []string{"a@example.org", "a@b.", "@b", "a@", "a@[192.0.2.1]", "a@[IPv6:2001:db8::1]", "a@[x", "a@[ ]", "\"a@b\"@c.d", "a@b c", "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !validMailbox(s) {
			return
		}
		i := strings.LastIndexByte(s, '@')
		dom := s[i+1:]
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("validMailbox(%q) = true despite a control character", s)
		}
		if i <= 0 || dom == "" || strings.HasSuffix(dom, ".") || strings.ContainsAny(dom, " \t\r\n<>") {
			t.Fatalf("validMailbox(%q) = true", s)
		}
		if lit, ok := strings.CutPrefix(dom, "["); ok {
			lit = strings.TrimSuffix(lit, "]")
			if len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:") {
				lit = lit[5:]
			}
			if _, err := netip.ParseAddr(lit); err != nil {
				t.Fatalf("validMailbox(%q) = true for a literal that is no address", s)
			}
		}
	})
}
