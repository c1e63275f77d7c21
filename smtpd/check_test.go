// SPDX-License-Identifier: MIT

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
		own      bool
	}{
		{"plain", "Subject: x\r\n\r\nbody\r\n", false, 0, false},
		{"bare LF in body", "Subject: x\r\n\r\nline\nmore\r\n", true, 0, false},
		{"bare CR in body", "Subject: x\r\n\r\nline\rmore\r\n", true, 0, false},
		{"LF dot LF smuggling", "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<a@b>\r\n", true, 0, false},
		{"CR dot CR smuggling", "Subject: x\r\n\r\nbody\r.\rMAIL FROM:<a@b>\r\n", true, 0, false},
		{"trailing CR", "Subject: x\r\n\r\nbody\r", true, 0, false},
		{"8-bit body passes", "Subject: x\r\n\r\ncaf\xc3\xa9\r\n", false, 0, false},
		{"received counted in header only", "Received: a\r\nreceived: b\r\nRECEIVED : c\r\nX: y\r\n\r\nReceived: in body\r\n", false, 3, false},
		{"folded received", "Received: from a\r\n\tby b\r\nReceived: c\r\n\r\n", false, 2, false},
		{"own trace folded", "Received: from x ([192.0.2.1])\r\n\tby relay.example.nl (dualmx) with ESMTPS id 1;\r\n\tFri, 27 Nov 2026 10:00:00 +0000\r\nSubject: x\r\n\r\n", false, 1, true},
		{"other relay's trace", "Received: from x\r\n\tby relay.example.com (dualmx) with ESMTP id 1\r\n\r\n", false, 1, false},
		{"own trace only in body", "Subject: x\r\n\r\nReceived: by relay.example.nl (dualmx)\r\n", false, 0, false},
		{"own ARC seal", "ARC-Seal: i=1; a=rsa-sha256; t=1; cv=none;\r\n d=Seal.Example.NL; s=arc; b=abc\r\n\r\n", false, 0, true},
		{"other ARC seal", "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=microsoft.com; s=arc; b=abc\r\n\r\n", false, 0, false},
		{"header only, no body", "Received: a\r\nReceived: b", false, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One byte at a time exercises state kept across reads.
			c := newDataChecker(iotest.OneByteReader(strings.NewReader(tc.in)), "relay.example.nl", "seal.example.nl", "")
			out, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, []byte(tc.in)) {
				t.Errorf("checker changed the data: %q", out)
			}
			if c.bad != tc.bad || c.received != tc.received || c.ownTrace != tc.own {
				t.Errorf("bad=%v received=%d own=%v, want %v %d %v", c.bad, c.received, c.ownTrace, tc.bad, tc.received, tc.own)
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
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), uint16(0))
	f.Add([]byte("a\n.\nb"), uint16(2))
	f.Add([]byte("Received: x\r\n\r\n"), uint16(13))
	f.Add([]byte("Subject: x\r\n\r\nbody\r"), uint16(18))
	f.Add([]byte("S: x\r\n\r\n\x00a\rb\r\n"), uint16(7))
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		hasBare, hasNUL := false, bytes.IndexByte(in, 0) >= 0
		for i, b := range in {
			if b == '\n' && (i == 0 || in[i-1] != '\r') {
				hasBare = true
			}
			if b == '\r' && (i == len(in)-1 || in[i+1] != '\n') {
				hasBare = true
			}
		}
		at := 0
		if len(in) > 0 {
			at = int(split) % (len(in) + 1)
		}
		// However the client's bytes arrive, the verdict is the same.
		for _, r := range []io.Reader{
			bytes.NewReader(in),
			io.MultiReader(bytes.NewReader(in[:at]), bytes.NewReader(in[at:])),
			iotest.OneByteReader(bytes.NewReader(in)),
		} {
			c := newDataChecker(r, "relay.example.nl", "seal.example.nl", "")
			out, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("checker must pass data through unchanged")
			}
			if hasBare != c.bad || hasNUL != c.nul {
				t.Fatalf("bad=%v nul=%v, want %v %v for %q split at %d", c.bad, c.nul, hasBare, hasNUL, in, at)
			}
		}
	})
}

var fixedTime = mustTime("2026-11-27T10:00:00Z")

func TestDataCheckerSeesReports(t *testing.T) {
	for in, want := range map[string]bool{
		"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nx\r\n":    true,
		"Content-Type:\r\n Multipart/Report;\r\n report-type=delivery-status\r\n\r\n": true,
		"Content-Type: text/plain\r\n\r\nContent-Type: multipart/report\r\n":          false,
	} {
		c := newDataChecker(strings.NewReader(in), "relay.example.nl", "", "")
		io.ReadAll(c)
		if c.report != want {
			t.Errorf("%q: report=%v, want %v", in, c.report, want)
		}
	}
}
