// SPDX-License-Identifier: MIT

package authcheck

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func TestStripForged(t *testing.T) {
	const (
		rest = "From: a@example.org\r\nSubject: x\r\n"
		bdy  = "\r\nbody line\r\nAuthentication-Results: relay.dualmx.test; dkim=pass\r\n"
	)
	long := "Authentication-Results: relay.dualmx.test; dkim=pass reason=\"" + strings.Repeat("x", 200<<10) + "\"\r\n"
	longOther := "Authentication-Results: mx.example.com; dkim=pass reason=\"" + strings.Repeat("x", 200<<10) + "\"\r\n"
	tests := []struct{ name, in, want string }{
		{"forged removed",
			"Authentication-Results: relay.dualmx.test; dkim=pass header.d=example.org\r\n" + rest + bdy, rest + bdy},
		{"others kept",
			"Authentication-Results: mx.google.com; dkim=pass\r\n" + rest + bdy, ""},
		{"folded forged removed whole",
			rest + "Authentication-Results: relay.dualmx.test;\r\n\tdkim=pass header.d=example.org;\r\n  spf=pass\r\nTo: b@example.net\r\n" + bdy,
			rest + "To: b@example.net\r\n" + bdy},
		{"id on a continuation line",
			"Authentication-Results:\r\n relay.dualmx.test; spf=pass\r\n" + rest + bdy, rest + bdy},
		{"case-insensitive name and id",
			"authentication-RESULTS: Relay.DualMX.Test; none\r\n" + rest + bdy, rest + bdy},
		{"comment before id",
			"Authentication-Results: (checked (twice)) relay.dualmx.test; none\r\n" + rest + bdy, rest + bdy},
		{"version after id",
			"Authentication-Results: relay.dualmx.test 1; none\r\n" + rest + bdy, rest + bdy},
		{"quoted id",
			"Authentication-Results: \"relay.dualmx.test\"; none\r\n" + rest + bdy, rest + bdy},
		{"trailing dot",
			"Authentication-Results: relay.dualmx.test.; none\r\n" + rest + bdy, rest + bdy},
		{"white space before colon",
			"Authentication-Results \t: relay.dualmx.test; none\r\n" + rest + bdy, rest + bdy},
		{"id followed by comment",
			"Authentication-Results: relay.dualmx.test(forged);none\r\n" + rest + bdy, rest + bdy},
		{"several, interleaved",
			"Authentication-Results: relay.dualmx.test; none\r\nAuthentication-Results: mx.example.com; none\r\n" + rest +
				"Authentication-Results: relay.dualmx.test; spf=pass\r\n" + bdy,
			"Authentication-Results: mx.example.com; none\r\n" + rest + bdy},
		{"longer id kept", "Authentication-Results: relay.dualmx.test.evil; none\r\n" + rest + bdy, ""},
		{"id with a suffix kept", "Authentication-Results: relay.dualmx.test@evil; none\r\n" + rest + bdy, ""},
		{"other names kept",
			"ARC-Authentication-Results: i=1; relay.dualmx.test; none\r\nX-Authentication-Results: relay.dualmx.test; none\r\n" +
				"Authentication-Results-Original: relay.dualmx.test; none\r\n" + rest + bdy, ""},
		{"unparseable ids kept",
			"Authentication-Results: ; dkim=pass\r\nAuthentication-Results:\r\nAuthentication-Results: (open relay.dualmx.test; none\r\n" +
				"Authentication-Results: \"relay.dualmx.test; none\r\n" + rest + bdy, ""},
		{"body untouched", rest + bdy, ""},
		{"bare LF", "Authentication-Results: relay.dualmx.test; none\nSubject: x\n\nAuthentication-Results: relay.dualmx.test; none\n",
			"Subject: x\n\nAuthentication-Results: relay.dualmx.test; none\n"},
		{"header only, last field unterminated", rest + "Authentication-Results: relay.dualmx.test; none", rest},
		{"continuation at the very start kept", " stray\r\n" + rest + bdy, ""},
		{"forged field longer than the examined limit", long + rest + bdy, rest + bdy},
		{"other field longer than the examined limit", longOther + rest + bdy, ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				want = tc.in
			}
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in))} {
				got, err := io.ReadAll(StripForged(r, authServID))
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Errorf("got  %.300q\nwant %.300q", got, want)
				}
			}
		})
	}
}

func TestStripForgedReadError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("Authentication-Results: relay.dualmx"), iotest.ErrReader(io.ErrUnexpectedEOF))
	got, err := io.ReadAll(StripForged(r, authServID))
	if err != io.ErrUnexpectedEOF || len(got) != 0 {
		t.Fatalf("got %q, %v; want nothing of the undecided field and the error", got, err)
	}
}

// stripRef is the specification StripForged streams: split the header into
// fields in memory, drop the Authentication-Results fields that are ours,
// judging each by at most its first limit bytes.
func stripRef(in []byte, id string, limit int) []byte {
	var out, field []byte
	flush := func() {
		if field == nil {
			return
		}
		examined, complete := field, true
		if len(field) >= limit {
			examined, complete = field[:limit], false
		}
		if !isForged(examined, complete, id) {
			out = append(out, field...)
		}
		field = nil
	}
	for len(in) > 0 {
		line := in
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line = in[:i+1]
		}
		in = in[len(line):]
		switch {
		case string(line) == "\n" || string(line) == "\r\n":
			flush()
			return append(append(out, line...), in...)
		case (line[0] == ' ' || line[0] == '\t') && field != nil:
			field = append(field, line...)
		default:
			flush()
			field = append([]byte{}, line...)
		}
	}
	flush()
	return out
}

func FuzzStripForged(f *testing.F) {
	for _, s := range []string{
		"Authentication-Results: relay.dualmx.test; none\r\nSubject: x\r\n\r\nbody\r\n",
		"Authentication-Results:\r\n (c) \"relay.dualmx.test\" 1;\r\n\tspf=pass\r\nFrom: a\r\n\r\n",
		"authentication-results : RELAY.dualmx.test.;x\nAuthentication-Results: other; y\n\nAuthentication-Results: relay.dualmx.test; none\n",
		"ARC-Authentication-Results: i=1; relay.dualmx.test; none\r\n\r\n",
		" lead\r\nAuthentication-Results: (unclosed relay.dualmx.test\r\n\r",
		"Authentication-Results                  : relay.dualmx.test; none\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := io.ReadAll(StripForged(bytes.NewReader(in), authServID))
		if err != nil {
			t.Fatal(err)
		}
		if want := stripRef(in, authServID, maxARExamined); !bytes.Equal(got, want) {
			t.Fatalf("StripForged(%q)\n got %q\nwant %q", in, got, want)
		}
		// The same with a 16-byte buffer and a 40-byte limit, fed a byte at
		// a time, so fields, names and ids straddle buffer refills.
		got, err = io.ReadAll(newStripper(iotest.OneByteReader(bytes.NewReader(in)), authServID, 16, 40))
		if err != nil {
			t.Fatal(err)
		}
		if want := stripRef(in, authServID, 40); !bytes.Equal(got, want) {
			t.Fatalf("small buffers (%q)\n got %q\nwant %q", in, got, want)
		}
	})
}

// TestStripForgedBoundedMemory streams 16 MiB of header fields (one forged
// A-R, one other) and 16 MiB of body without holding any of it.
func TestStripForgedBoundedMemory(t *testing.T) {
	const n = 8 << 20
	in := io.MultiReader(
		strings.NewReader("Authentication-Results: relay.dualmx.test; dkim=pass reason="), &fill{n: n, b: 'x'},
		strings.NewReader("\r\nX-Long: "), &fill{n: n, b: 'y'},
		strings.NewReader("\r\n\r\n"), &fill{n: 2 * n, b: 'z'},
	)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	written, err := io.Copy(io.Discard, StripForged(in, authServID))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len("X-Long: ") + n + 4 + 2*n); written != want {
		t.Errorf("wrote %d bytes, want %d", written, want)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("allocated %d KiB to strip a 32 MiB message", alloc>>10)
	}
}

// fill yields n copies of b: one line as long as a test needs.
type fill struct {
	n int
	b byte
}

func (f *fill) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), f.n)
	p[0] = f.b
	for i := 1; i < k; i *= 2 {
		copy(p[i:k], p[:i])
	}
	f.n -= k
	return k, nil
}

// TestStripForgedAfterEOF: a stripper hands its pooled buffer back at EOF;
// reading on still answers EOF, and the next stripper's output is its own.
func TestStripForgedAfterEOF(t *testing.T) {
	for i, msg := range []string{
		"Authentication-Results: relay.test; spf=pass\r\nSubject: a\r\n\r\nbody a\r\n",
		"Subject: b\r\n", // ends inside the header
	} {
		r := StripForged(strings.NewReader(msg), "relay.test")
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimPrefix(msg, "Authentication-Results: relay.test; spf=pass\r\n"); string(got) != want {
			t.Errorf("%d: got %q, want %q", i, got, want)
		}
		for range 2 {
			if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Errorf("%d: read after EOF = %d, %v", i, n, err)
			}
		}
	}
}
