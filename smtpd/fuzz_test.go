// SPDX-License-Identifier: MIT

package smtpd_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/smtpd"
)

// FuzzSession feeds arbitrary bytes to a live session as a client would send
// them. Whatever the input, the server must not crash, must keep answering,
// and every message it spools must be addressed to a routed alias only: no
// byte sequence turns the relay into an open one.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<victim%example.com@fwd.example.nl>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<@fwd.example.nl:victim@example.com>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\nx\n.\nMAIL FROM:<e@evil>\r\nRCPT TO:<v@example.com>\r\nDATA\r\ny\r\n.\r\n",
		"HELO \x00\r\nMAIL FROM:<\xff@\xfe>\r\nRCPT TO:<\"a@b\"@fwd.example.nl>\r\nRSET\r\nVRFY x\r\nBDAT 5 LAST\r\nhello",
		"EHLO c\r\nMAIL FROM:<a@example.org> SMTPUTF8 BODY=8BITMIME SIZE=10\r\nRCPT TO:<scriba@fwd.example.nl> NOTIFY=NEVER\r\nDATA\r\n\xc3\xa9\r\n.\r\n",
		"STARTTLS\r\nAUTH PLAIN AGFAYg==\r\nEXPN list\r\nHELP\r\n" + strings.Repeat("A", 2100) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	fx := start(f, func(o *smtpd.Options) {
		o.ReadTimeout = 200 * time.Millisecond
		o.MaxHeaderBytes = 8 << 10
	})
	routed := map[string]bool{}
	for _, n := range []string{"scriba", "koster", "diaken", "organist"} {
		routed[n+"@example.nl"] = true
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.DialTimeout("tcp", fx.addr, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write(in)
		c.Write([]byte("\r\n.\r\nQUIT\r\n"))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
		// The server still answers.
		probe, err := net.DialTimeout("tcp", fx.addr, 30*time.Second)
		if err != nil {
			t.Fatalf("server gone after %q: %v", in, err)
		}
		probe.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, _ := probe.Read(buf)
		probe.Close()
		if !strings.HasPrefix(string(buf[:n]), "220 ") {
			t.Fatalf("no greeting after %q: %q", in, buf[:n])
		}
		items, err := fx.spool.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			for _, r := range it.Recipients {
				if !routed[strings.ToLower(r.Target)] {
					t.Fatalf("input %q spooled mail for %q (rcpt %q)", in, r.Target, r.Rcpt)
				}
			}
		}
	})
}
