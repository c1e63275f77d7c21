// SPDX-License-Identifier: MIT

package headerblock

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name, in, block, body string
		ended                 bool
	}{
		{"crlf", "A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n\r\n", "body\r\n", true},
		{"bare lf", "A: 1\nB: 2\n\nbody\n", "A: 1\nB: 2\n\n", "body\n", true},
		{"folded", "A: 1\r\n  more\r\n\r\n", "A: 1\r\n  more\r\n\r\n", "", true},
		{"empty header", "\r\nbody", "\r\n", "body", true},
		{"all header", "A: 1\r\nB: 2\r\n", "A: 1\r\nB: 2\r\n", "", false},
		{"all header, last line open", "A: 1\r\nB: 2", "A: 1\r\nB: 2", "", false},
		{"empty message", "", "", "", false},
		{"blank-looking end of a long line", "X: " + strings.Repeat("a", 5000) + "\r\n\r\nbody", "X: " + strings.Repeat("a", 5000) + "\r\n\r\n", "body", true},
		{"cr cr lf is not empty", "A: 1\r\n\r\r\nB: 2\r\n\r\n", "A: 1\r\n\r\r\nB: 2\r\n\r\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 16) // lines longer than the buffer
			block, ended, err := Read(br, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(br)
			if string(block) != tc.block || ended != tc.ended || string(rest) != tc.body {
				t.Errorf("Read = %q, %v, body %q; want %q, %v, body %q", block, ended, rest, tc.block, tc.ended, tc.body)
			}
		})
	}
	_, _, err := Read(bufio.NewReader(strings.NewReader("X: "+strings.Repeat("a", 100)+"\r\n\r\n")), 50)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than 50 bytes") {
		t.Errorf("over the limit: %v", err)
	}
}

func TestFields(t *testing.T) {
	for _, tc := range []struct {
		name, block string
		want        []string
	}{
		{"plain", "A: 1\r\nB: 2\r\n\r\n", []string{"A: 1\r\n", "B: 2\r\n"}},
		{"folded", "A: 1\r\n  x\r\n\ty\r\nB: 2\n\n", []string{"A: 1\r\n  x\r\n\ty\r\n", "B: 2\n"}},
		{"leading continuation", " lost\r\n more\r\nA: 1\r\n\r\n", []string{" lost\r\n more\r\n", "A: 1\r\n"}},
		{"no colon", "not a field\r\nA: 1\r\n\r\n", []string{"not a field\r\n", "A: 1\r\n"}},
		{"unended", "A: 1\r\nB: 2", []string{"A: 1\r\n", "B: 2"}},
		{"empty", "\r\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for f := range Fields([]byte(tc.block)) {
				got = append(got, string(f))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Fields = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzRead: the block and the body are the message, split once; the fields
// are the block without its empty line; nothing panics.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\n  folded\n\nbody", " lead\r\nA: 1\r\n\r\n", "A: 1\r\nB: 2",
		"\r\n", "", "\r", "A: 1\r\n\r\r\n\r\n", "X:" + strings.Repeat("y", 300) + "\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(msg), 16)
		block, ended, err := Read(br, 256)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) || len(msg) <= 256 {
				t.Fatalf("Read: %v", err)
			}
			return
		}
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(append(slices.Clip(block), rest...), msg) {
			t.Fatalf("block %q + body %q is not the message", block, rest)
		}
		if !ended && len(rest) > 0 {
			t.Fatalf("not ended, but a body %q", rest)
		}
		var joined []byte
		for fl := range Fields(block) {
			if len(fl) == 0 {
				t.Fatal("empty field")
			}
			joined = append(joined, fl...)
		}
		want := block
		if ended {
			want = bytes.TrimSuffix(bytes.TrimSuffix(block, []byte("\n")), []byte("\r"))
			if !bytes.HasSuffix(block, []byte("\r\n")) {
				want = bytes.TrimSuffix(block, []byte("\n"))
			}
		}
		if !bytes.Equal(joined, want) {
			t.Fatalf("fields %q, want %q", joined, want)
		}
	})
}
