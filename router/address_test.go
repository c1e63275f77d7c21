// SPDX-License-Identifier: MIT

package router

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		{"scriba@hervormdputten.nl", "scriba@hervormdputten.nl"},
		{"  Scriba@HervormdPutten.NL \t", "scriba@hervormdputten.nl"},
		{"Jan.de-Vries+kerk@fwd.hervormdputten.nl", "jan.de-vries+kerk@fwd.hervormdputten.nl"},
		{"a_b=c~d@x-1.example.org", "a_b=c~d@x-1.example.org"},
		{"0@1.2", "0@1.2"},
	}
	for _, tt := range tests {
		got, err := NormalizeAddress(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeAddress(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeAddressInvalid(t *testing.T) {
	tests := []struct{ in, why string }{
		{"", "empty address"},
		{"   ", "empty address"},
		{"scriba", "missing '@'"},
		{"scriba@@hervormdputten.nl", "more than one '@'"},
		{"a@b@hervormdputten.nl", "more than one '@'"},
		{"@hervormdputten.nl", "empty local part"},
		{"scriba@", "empty domain"},
		{"scriba%solcon.nl@hervormdputten.nl", "percent-hack"},
		{"solcon.nl!scriba@hervormdputten.nl", "bang-path"},
		{"scriba:x@hervormdputten.nl", "source routing"},
		{"@relay.example:scriba@hervormdputten.nl", "source routes"},
		{"@a.example,@b.example:scriba@hervormdputten.nl", "source routes"},
		{`"scriba"@hervormdputten.nl`, "quotes"},
		{"o'brien@hervormdputten.nl", "quotes"},
		{`scr\iba@hervormdputten.nl`, `'\'`},
		{"scri ba@hervormdputten.nl", "contains a space"},
		{"scriba@hervormd putten.nl", "contains a space"},
		{"scriba@hervormdputten.nl.", "must not end with '.'"},
		{"scriba.@hervormdputten.nl", "local part must not start or end with '.'"},
		{".scriba@hervormdputten.nl", "local part must not start or end with '.'"},
		{"scr..iba@hervormdputten.nl", "'..'"},
		{"scriba@hervormdputten..nl", "empty label"},
		{"scriba@.hervormdputten.nl", "empty label"},
		{"scriba@localhost", "at least two labels"},
		{"scriba@-putten.nl", "start or end with '-'"},
		{"scriba@putten_.nl", "letters, digits and '-' only"},
		{"scriba@[192.0.2.1]", "address literals"},
		{"<scriba@hervormdputten.nl>", "not allowed in the local part"},
		{"scriba@hervormdputten.nl>", "letters, digits and '-' only"},
		{"scriba\r\n@hervormdputten.nl", "control character"},
		{"scriba\x00@hervormdputten.nl", "control character"},
		{"schrijver@hervormdpütten.nl", "non-ASCII"},
		{strings.Repeat("a", 65) + "@hervormdputten.nl", "local part longer than 64"},
		{"a@" + strings.Repeat("b", 64) + ".nl", "label longer than 63"},
		{"a@" + strings.Repeat("b.", 130) + "nl", "longer than 254"},
	}
	for _, tt := range tests {
		got, err := NormalizeAddress(tt.in)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeAddress(%q) = %q, %v; want ErrInvalid", tt.in, got, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.why) {
			t.Errorf("NormalizeAddress(%q) error %q does not say %q", tt.in, err, tt.why)
		}
	}
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{
		"scriba@hervormdputten.nl", " Koster@FWD.Hervormdputten.NL ", "a%b@c.d", "@a,@b:c@d.e",
		`"x y"@z.nl`, "a@b.", "a@@b.c", "\x00@\xff.nl", "ä@ö.nl", "a.b-c+d@e-f.g",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeAddress(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NormalizeAddress(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		n2, err := NormalizeAddress(n)
		if err != nil || n2 != n {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, n, n2, err)
		}
		if strings.Count(n, "@") != 1 || strings.ToLower(n) != n || strings.TrimSpace(n) != n {
			t.Fatalf("NormalizeAddress(%q) = %q is not normal", s, n)
		}
	})
}
