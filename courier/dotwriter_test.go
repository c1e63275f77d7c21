// SPDX-License-Identifier: MIT

package courier

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// reference writes in the way net/textproto's DotWriter does.
func reference(in []byte, chunks []int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	w := textproto.NewWriter(bw).DotWriter()
	writeChunked(w.Write, in, chunks)
	w.Close()
	return out.Bytes()
}

func ours(in []byte, chunks []int) []byte {
	var out bytes.Buffer
	w := newDotWriter(bufio.NewWriterSize(&out, 16))
	writeChunked(w.Write, in, chunks)
	w.Close()
	return out.Bytes()
}

func writeChunked(write func([]byte) (int, error), in []byte, chunks []int) {
	for _, c := range chunks {
		if c <= 0 || len(in) == 0 {
			continue
		}
		c = min(c, len(in))
		write(in[:c])
		in = in[c:]
	}
	write(in)
}

func TestDotWriterMatchesTextproto(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"",
		"Subject: x\r\n\r\nbody\r\n",
		".leading dot\r\n..two\r\n.\r\nend",
		"bare LF\nline\n.dot after LF\n",
		"bare CR\rmiddle\r.no stuffing after bare CR\r\n",
		"\r\r\n.\r\n\r",
		"no final line end",
		"ends in CR\r",
		".",
		"\n.\n..\r\n.",
	} {
		for _, chunks := range [][]int{nil, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {3, 5, 2}, {7}} {
			want, got := reference([]byte(in), chunks), ours([]byte(in), chunks)
			if !bytes.Equal(want, got) {
				t.Errorf("%q in chunks %v:\n got %q\nwant %q", in, chunks, got, want)
			}
		}
	}
}

// FuzzDotWriter: for any content and any way of splitting it into writes,
// the bytes on the wire are textproto's.
func FuzzDotWriter(f *testing.F) {
	f.Add([]byte(".a\r\n.b\nc\r.d\r\n"), []byte{1, 2, 3})
	f.Add([]byte("x\r"), []byte{})
	f.Fuzz(func(t *testing.T, in, split []byte) {
		chunks := make([]int, len(split))
		for i, b := range split {
			chunks[i] = int(b)
		}
		if want, got := reference(in, chunks), ours(in, chunks); !bytes.Equal(want, got) {
			t.Fatalf("%q in chunks %v:\n got %q\nwant %q", in, chunks, got, want)
		}
	})
}

func BenchmarkDotWriter(b *testing.B) {
	body := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod temp\r\n"), 54)
	for _, tc := range []struct {
		name string
		w    func(*bufio.Writer) interface {
			Write([]byte) (int, error)
			Close() error
		}
	}{
		{"textproto", func(bw *bufio.Writer) interface {
			Write([]byte) (int, error)
			Close() error
		} {
			return textproto.NewWriter(bw).DotWriter()
		}},
		{"courier", func(bw *bufio.Writer) interface {
			Write([]byte) (int, error)
			Close() error
		} {
			return newDotWriter(bw)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bw := bufio.NewWriter(discard{})
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				w := tc.w(bw)
				w.Write(body)
				w.Close()
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
