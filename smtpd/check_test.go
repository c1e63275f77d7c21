package smtpd

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDataChecker(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		bad      bool
		received int
	}{
		{"plain", "Subject: x\r\n\r\nbody\r\n", false, 0},
		{"bare LF in body", "Subject: x\r\n\r\nline\nmore\r\n", true, 0},
		{"bare CR in body", "Subject: x\r\n\r\nline\rmore\r\n", true, 0},
		{"LF dot LF smuggling", "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<a@b>\r\n", true, 0},
		{"CR dot CR smuggling", "Subject: x\r\n\r\nbody\r.\rMAIL FROM:<a@b>\r\n", true, 0},
		{"trailing CR", "Subject: x\r\n\r\nbody\r", true, 0},
		{"8-bit body passes", "Subject: x\r\n\r\ncaf\xc3\xa9\r\n", false, 0},
		{"received counted in header only", "Received: a\r\nreceived: b\r\nRECEIVED : c\r\nX: y\r\n\r\nReceived: in body\r\n", false, 2},
		{"folded received", "Received: from a\r\n\tby b\r\nReceived: c\r\n\r\n", false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One byte at a time exercises state kept across reads.
			c := newDataChecker(iotest.OneByteReader(strings.NewReader(tc.in)))
			out, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, []byte(tc.in)) {
				t.Errorf("checker changed the data: %q", out)
			}
			if c.bad != tc.bad || c.received != tc.received {
				t.Errorf("bad=%v received=%d, want %v %d", c.bad, c.received, tc.bad, tc.received)
			}
		})
	}
}

func TestReceivedFieldSanitizesClientText(t *testing.T) {
	f := receivedField("evil)\r\nX-Injected: 1", mustAddr("192.0.2.1"), "relay.example.nl", "ID1", "a@b.example", true, false, fixedTime)
	if strings.Count(f, "\r\n") != 4 || strings.Contains(f, "X-Injected: 1\r\n") {
		t.Fatalf("client text broke the field: %q", f)
	}
	if !strings.HasPrefix(f, "Received: from evil___X-Injected:_1 ([192.0.2.1])\r\n\tby relay.example.nl (dualmx) with ESMTPS id ID1\r\n\tfor <a@b.example>;") {
		t.Fatalf("unexpected field: %q", f)
	}
}

func FuzzDataChecker(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("a\n.\nb"))
	f.Add([]byte("Received: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newDataChecker(bytes.NewReader(in))
		out, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("checker must pass data through unchanged")
		}
		hasBare := false
		for i, b := range in {
			if b == '\n' && (i == 0 || in[i-1] != '\r') {
				hasBare = true
			}
			if b == '\r' && (i == len(in)-1 || in[i+1] != '\n') {
				hasBare = true
			}
		}
		if hasBare != c.bad {
			t.Fatalf("bad=%v, want %v for %q", c.bad, hasBare, in)
		}
	})
}

var fixedTime = mustTime("2026-11-27T10:00:00Z")
