// SPDX-License-Identifier: MIT

package smtpd_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/dualmx/dualmx/smtpd"
)

// TestMarkerReported: a durable message carrying the marker field is reported
// once with the field's first value (unfolded) and its recipients; a refused
// message and one without the field are not.
func TestMarkerReported(t *testing.T) {
	var mu sync.Mutex
	var got []smtpd.Marked
	f := start(t, func(o *smtpd.Options) {
		o.MarkerField = "X-Test-Marker"
		o.Marked = func(m smtpd.Marked) { mu.Lock(); got = append(got, m); mu.Unlock() }
	})
	script := "EHLO old.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\n" +
		"Subject: one\r\nx-test-marker: v=1;\r\n a=b\r\nX-Test-Marker: second\r\n\r\nbody\r\n.\r\n" +
		"MAIL FROM:<a@example.org>\r\nRCPT TO:<koster@fwd.example.nl>\r\nDATA\r\nSubject: none\r\n\r\nX-Test-Marker: in the body\r\n.\r\n" +
		"MAIL FROM:<a@example.org>\r\nRCPT TO:<koster@fwd.example.nl>\r\nDATA\r\nX-Test-Marker: bare\r\n\r\nbo\rdy\r\n.\r\nQUIT\r\n"
	out := rawSession(t, f.addr, script)
	if strings.Count(out, "250 2.0.0 OK queued") != 2 || !strings.Contains(out, "554 5.5.2") {
		t.Fatalf("session:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("reported %d messages, want 1: %+v", len(got), got)
	}
	m := got[0]
	if m.Value != "v=1; a=b" || m.ID == "" || m.ClientIP != "127.0.0.1" || len(m.Recipients) != 1 ||
		m.Recipients[0].Rcpt != "scriba@fwd.example.nl" || m.Recipients[0].Address != "scriba@example.nl" {
		t.Errorf("reported %+v", m)
	}
}
