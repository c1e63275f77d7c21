// SPDX-License-Identifier: MIT

package arc

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/internal/headerblock"
)

func canonBody(t *testing.T, relaxed bool, limit int64, in string, chunk int) (string, int64) {
	t.Helper()
	var out bytes.Buffer
	c := newBodyCanon(&out, relaxed, limit)
	for p := []byte(in); len(p) > 0; {
		n := min(chunk, len(p))
		if _, err := c.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	total, err := c.Close()
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), total
}

func TestBodyCanon(t *testing.T) {
	for _, tc := range []struct {
		name            string
		in              string
		simple, relaxed string
	}{
		{"empty", "", "\r\n", ""},
		{"only empty lines", "\r\n\r\n\r\n", "\r\n", ""},
		{"no final CRLF", "a", "a\r\n", "a\r\n"},
		{"trailing empty lines", "a\r\n\r\n\r\n", "a\r\n", "a\r\n"},
		{"inner empty lines kept", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
		{"whitespace", " a \t b  \r\n", " a \t b  \r\n", " a b\r\n"},
		{"whitespace-only lines are empty when relaxed", "a\r\n \t \r\n", "a\r\n \t \r\n", "a\r\n"},
		{"bare LF", "a\nb\n\n", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"lone CR is data", "a\rb\r\n", "a\rb\r\n", "a\rb\r\n"},
		{"CR at end", "a\r", "a\r\r\n", "a\r\r\n"},
		// RFC 6376 §3.4.5's example.
		{"rfc example", " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n", " C\r\nD E\r\n"},
	} {
		for _, chunk := range []int{1, 2, 3, 7, 1 << 20} {
			if got, _ := canonBody(t, false, -1, tc.in, chunk); got != tc.simple {
				t.Errorf("%s: simple (chunk %d) = %q, want %q", tc.name, chunk, got, tc.simple)
			}
			if got, _ := canonBody(t, true, -1, tc.in, chunk); got != tc.relaxed {
				t.Errorf("%s: relaxed (chunk %d) = %q, want %q", tc.name, chunk, got, tc.relaxed)
			}
		}
	}
}

func TestBodyCanonLimit(t *testing.T) {
	got, total := canonBody(t, true, 5, "abc  def\r\nghi\r\n", 3)
	if got != "abc d" || total != 14 {
		t.Errorf("l=5: %q (total %d), want %q (total 14)", got, total, "abc d")
	}
}

func TestBodyCanonLargeBody(t *testing.T) {
	// Larger than every internal buffer, with runs crossing chunk edges.
	line := strings.Repeat("x  y\t", 4000) + "\r\n"
	body := strings.Repeat(line, 20)
	want := strings.Repeat(strings.Repeat("x y ", 3999)+"x y\r\n", 20)
	for _, chunk := range []int{4093, 1 << 20} {
		if got, _ := canonBody(t, true, -1, body, chunk); got != want {
			t.Errorf("chunk %d: relaxed output differs (len %d, want %d)", chunk, len(got), len(want))
		}
	}
}

func TestCanonHeaderRelaxed(t *testing.T) {
	for in, want := range map[string]string{
		"Subject: Hello\r\n":                        "subject:Hello",
		"SUBJECT \t:  a  \t b \r\n\t c \r\n":        "subject:a b c",
		"X-Empty:\r\n":                              "x-empty:",
		"To: a,\r\n b\r\n":                          "to:a, b",
		"DKIM-Signature: v=1;\r\n\tb=ab\r\n cd\r\n": "dkim-signature:v=1; b=ab cd",
	} {
		if got := string(canonHeaderRelaxed(nil, []byte(in))); got != want {
			t.Errorf("relaxed(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadHeader(t *testing.T) {
	msg := "A: 1\nB: 2\r\n  cont\r\nnot a field\r\n continuation\r\n\r\nbody\r\n"
	fields, err := readHeader(newBufReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fields {
		got = append(got, f.name+"="+string(f.raw))
	}
	want := []string{"a=A: 1\r\n", "b=B: 2\r\n  cont\r\n", "=not a field\r\n continuation\r\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fields = %q, want %q", got, want)
	}
}

func TestReadHeaderTooLarge(t *testing.T) {
	msg := "X: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n"
	if _, err := readHeader(newBufReader(msg)); !errors.Is(err, headerblock.ErrTooLarge) {
		t.Errorf("err = %v, want headerblock.ErrTooLarge", err)
	}
}

func TestStripB(t *testing.T) {
	for in, want := range map[string]string{
		"ARC-Seal: i=1; b=abc\r\n def; cv=none\r\n": "ARC-Seal: i=1; b=; cv=none\r\n",
		"ARC-Seal: i=1; bh=x; b = abc \r\n":         "ARC-Seal: i=1; bh=x; b =\r\n",
		"ARC-Seal: i=1; bh=x\r\n":                   "ARC-Seal: i=1; bh=x\r\n",
	} {
		if got := string(stripB([]byte(in))); got != want {
			t.Errorf("stripB(%q) = %q, want %q", in, got, want)
		}
	}
}

func newBufReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
