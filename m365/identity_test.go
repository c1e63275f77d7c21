// SPDX-License-Identifier: MIT

package m365

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAddressSpaceDomain(t *testing.T) {
	for in, want := range map[string]string{
		"smtp:*;1": "*", "SMTP:*": "*", "*;1": "*", "*": "*", " smtp:Contoso.COM;10 ": "contoso.com",
		"smtp:*.contoso.com;1": "*.contoso.com", "x400:o=MySite;p=MyOrg;5": "o=mysite;p=myorg",
		"contoso.com;": "contoso.com;", "": "",
	} {
		if got := addressSpaceDomain(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	// What setup compares: the form Exchange shows against what it sent.
	if normValue("SenderDomains", []any{"smtp:*;1"}) != normValue("SenderDomains", []string{"*"}) {
		t.Error("smtp:*;1 is not read as *")
	}
	if normValue("EFSkipIPs", "203.0.113.10/32, 198.51.100.0/24") != normValue("EFSkipIPs", []string{"198.51.100.0/24", "203.0.113.10"}) {
		t.Error("an address with /32 differs from the bare address")
	}
}

// FuzzAddressSpaceDomain: whatever Get-InboundConnector sends, reading it
// never panics, and the result is trimmed and lower case.
func FuzzAddressSpaceDomain(f *testing.F) {
	for _, s := range []string{"smtp:*;1", "SMTP:contoso.com;100", "x400:o=a;p=b;1", ":;", ";;;", "smtp:", "\xff:\xfe;1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := addressSpaceDomain(s)
		if got != strings.TrimSpace(got) || got != strings.ToLower(got) {
			t.Fatalf("%q read as %q", s, got)
		}
	})
}

// FuzzParseTokenClaims: a token from the sign-in endpoint is outside input;
// reading it must fail cleanly, never panic.
func FuzzParseTokenClaims(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJyb2xlcyI6WyJNYWlsLlNlbmQiXSwib2lkIjoieCJ9.c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJ9.eyJyb2xlcyI6MX0.x")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseTokenClaims(tok)
		if err == nil && !utf8.ValidString(strings.Join(c.Roles, "")) {
			t.Fatalf("invalid UTF-8 roles from %q", tok)
		}
	})
}

func TestMailboxName(t *testing.T) {
	for _, tc := range []struct{ display, alias, want string }{
		{"Financiën", "financien", "Financien"},
		{"  Scriba  ", "scriba", "Scriba"},
		{"Kerkrentmeester/Penningmeester", "kerk", "Kerkrentmeester Penningmeester"},
		{"", "koster", "koster"},
		{"Œuvre d'Église", "oeuvre", "OEuvre d'Eglise"},
	} {
		if got := MailboxName(tc.display, tc.alias); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.display, got, tc.want)
		}
	}
	if got := MailboxName(strings.Repeat("ä", 100), "a"); len(got) != 64 || got != strings.Repeat("a", 64) {
		t.Errorf("long name %q", got)
	}
}
