// SPDX-License-Identifier: MIT

package visible

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain ASCII unchanged", "550 5.1.1 <scriba@example.nl>: unknown", "550 5.1.1 <scriba@example.nl>: unknown"},
		{"letters of other scripts unchanged", "Jan Müller, Ελένη, 東京", "Jan Müller, Ελένη, 東京"},
		{"quotes unchanged", `"a b"@example.nl`, `"a b"@example.nl`},
		{"ESC sequence", "450 \x1b[2J\x1b]0;pwned\x07busy", `450 \x1b[2J\x1b]0;pwned\x07busy`},
		{"line breaks that forge rows", "x\r\nID  STATE\tforged", `x\r\nID  STATE\tforged`},
		{"NUL and DEL", "a\x00b\x7fc", `a\x00b\x7fc`},
		{"C1 CSI as UTF-8", "a\u009b31mred", `a\u009b31mred`},
		{"C1 CSI as a raw byte", "a\x9b31mred", `a\x9b31mred`},
		{"broken UTF-8", "caf\xc3", `caf\xc3`},
		{"bidi override", "invoice\u202efdp.exe", `invoice\u202efdp.exe`},
		{"bidi isolates and marks", "\u2066a\u2069\u200f\u061c", `\u2066a\u2069\u200f\u061c`},
		{"zero width and line separator", "a\u200bb\u2028c\ufeff", `a\u200bb\u2028c\ufeff`},
		{"tag characters", "x\U000e0041\U000e007f", `x\U000e0041\U000e007f`},
		{"backslash", `C:\x1b`, `C:\\x1b`},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := String(tc.in); got != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"x.yaml:3: listen.smtp: bad\nx.yaml:4: reply \x1b[2J\r", `x.yaml:3: listen.smtp: bad` + "\n" + `x.yaml:4: reply \x1b[2J\r`},
		// A value the error quoted with %q is shown as quoted, its
		// backslashes not escaped a second time.
		{fmt.Sprintf("invalid address %q: contains a control character", "a\x1b@x.nl"), `invalid address "a\x1b@x.nl": contains a control character`},
		{fmt.Sprintf("reply %q and raw \u202e", "\u202e\\"), `reply "\u202e\\" and raw \u202e`},
	} {
		if got := Lines(tc.in); got != tc.want {
			t.Errorf("Lines(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzString checks the two promises for any input: nothing but graphic
// characters comes out, and the output reads back to the input; and Lines
// lets nothing else through but line breaks.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[31m", "\u202e", "\xff\xfe", `\`, "a\"b\\c\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if !utf8.ValidString(out) {
			t.Fatalf("String(%q) = %q is not UTF-8", s, out)
		}
		for _, r := range out {
			if !unicode.IsGraphic(r) {
				t.Fatalf("String(%q) = %q keeps %U", s, out, r)
			}
		}
		for _, r := range Lines(s) {
			if r != '\n' && !unicode.IsGraphic(r) {
				t.Fatalf("Lines(%q) keeps %U", s, r)
			}
		}
		back, err := strconv.Unquote(`"` + strings.ReplaceAll(out, `"`, `\"`) + `"`)
		if err != nil || back != s {
			t.Fatalf("String(%q) = %q reads back as %q (%v)", s, out, back, err)
		}
	})
}
