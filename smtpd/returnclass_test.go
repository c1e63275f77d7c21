// SPDX-License-Identifier: MIT

package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-message/textproto"
)

// TestClassifyReturn: what may take the return path, tried the way an
// attacker would dress an ordinary message up as a return.
func TestClassifyReturn(t *testing.T) {
	const report = "multipart/report; report-type=delivery-status; boundary=\"b\""
	tests := []struct {
		name, hdr string
		ok        bool
	}{
		{"Exchange NDR", "From: postmaster@tenant.example\r\nAuto-Submitted: auto-replied\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"_000_x_\"\r\nMIME-Version: 1.0\r\n\r\n", true},
		{"Postfix bounce", "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"6B0A.1\"\r\n\r\n", true},
		{"report without Auto-Submitted", "Content-Type: " + report + "\r\n\r\n", true},
		{"international report", "Content-Type: multipart/report; report-type=global-delivery-status; boundary=b\r\n\r\n", true},
		{"case of names and values", "CONTENT-TYPE: Multipart/Report; Report-Type=Delivery-Status; boundary=b\r\n\r\n", true},
		{"folded everywhere", "Content-Type:\r\n multipart/report;\r\n\treport-type=delivery-status;\r\n boundary=b\r\n\r\n", true},
		{"vacation", "Auto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\n", true},
		{"Sieve vacation, with a comment", "Auto-Submitted: auto-replied (vacation)\r\n\r\n", true},
		{"keyword in any case, folded, with parameters", "auto-submitted:\r\n AUTO-REPLIED; owner-email=\"a@b\"\r\n\r\n", true},
		{"comments around the keyword", "Auto-Submitted: (x (nested) \\) y) auto-replied (z)\r\n\r\n", true},
		{"space before the colon", "Content-Type : " + report + "\r\n\r\n", true},
		{"no header at all", "\r\n", false},
		{"ordinary message", "From: ceo@victim.example\r\nSubject: Invoice\r\nContent-Type: text/html\r\n\r\n", false},
		{"auto-generated is a message of its own", "Auto-Submitted: auto-generated\r\n\r\n", false},
		{"auto-notified", "Auto-Submitted: auto-notified\r\n\r\n", false},
		{"no", "Auto-Submitted: no\r\n\r\n", false},
		{"keyword with a suffix", "Auto-Submitted: auto-replied-x\r\n\r\n", false},
		{"two keywords", "Auto-Submitted: auto-replied auto-generated\r\n\r\n", false},
		{"unclosed comment", "Auto-Submitted: auto-replied (x\r\n\r\n", false},
		{"keyword in an encoded word", "Auto-Submitted: =?us-ascii?q?auto-replied?=\r\n\r\n", false},
		{"two Auto-Submitted fields", "Auto-Submitted: auto-replied\r\nAuto-Submitted: no\r\n\r\n", false},
		{"two Auto-Submitted, names in other case", "Auto-Submitted: auto-replied\r\nAUTO-SUBMITTED: auto-replied\r\n\r\n", false},
		{"two Content-Type fields", "Content-Type: " + report + "\r\nContent-Type: text/html\r\n\r\n", false},
		{"two Content-Type, the report second", "Content-Type: text/html\r\nContent-type: " + report + "\r\n\r\n", false},
		{"second Content-Type beside an auto-reply", "Auto-Submitted: auto-replied\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\n", false},
		{"report type only in a parameter", "Content-Type: text/html; x=\"multipart/report\"; report-type=delivery-status\r\n\r\n", false},
		{"read receipt", "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n", false},
		{"abuse report", "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n", false},
		{"no report-type", "Content-Type: multipart/report; boundary=b\r\n\r\n", false},
		{"no boundary", "Content-Type: multipart/report; report-type=delivery-status\r\n\r\n", false},
		{"repeated parameter", "Content-Type: multipart/report; report-type=delivery-status; report-type=x; boundary=b\r\n\r\n", false},
		{"comment in the media type", "Content-Type: multipart/report (x); report-type=delivery-status; boundary=b\r\n\r\n", false},
		{"stray text after the type", "Content-Type: multipart/report text/html; report-type=delivery-status; boundary=b\r\n\r\n", false},
		{"line without a colon", "Auto-Submitted: auto-replied\r\nnot a field\r\n\r\n", false},
		{"header starting with a fold", " Auto-Submitted: auto-replied\r\n\r\n", false},
		{"field name with a space", "Auto Submitted: auto-replied\r\n\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A report gets the body a real one has, so only the header decides.
			body := ""
			if b := reportBoundary([]byte(tc.hdr)); b != "" {
				body = "--" + b + "\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + b + "\r\nContent-Type: message/delivery-status\r\n\r\n" +
					"Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n--" + b + "--\r\n"
			}
			what, err := classifyData(tc.hdr + body)
			if (err == nil) != tc.ok {
				t.Fatalf("classifyReturn = %q, %v; want ok=%v", what, err, tc.ok)
			}
		})
	}
}

// classifyData runs a message through the DATA checker as the session does
// for a return, and classifies it.
func classifyData(msg string) (string, error) {
	chk := newDataChecker(iotest.OneByteReader(strings.NewReader(msg)), "relay.test", "", "")
	chk.keep = true
	if _, err := io.Copy(io.Discard, chk); err != nil {
		return "", err
	}
	return classifyReturn(chk.hdr, chk.status != nil && chk.status.found)
}

// TestDeliveryReportNeedsStatusPart: a delivery report takes the return path
// only with its machine-readable part, a top-level message/delivery-status
// (or message/global-delivery-status) part, as Microsoft 365, Postfix and
// Exim send it; a message that only has the report's Content-Type does not.
// An automatic reply needs none.
func TestDeliveryReportNeedsStatusPart(t *testing.T) {
	status := "Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@example.nl\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
	// The shapes of real reports (parts and their order; text shortened).
	exchange := "From: postmaster@tenant.onmicrosoft.com\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"_000_DB9P_\"\r\n" +
		"MIME-Version: 1.0\r\n\r\n--_000_DB9P_\r\nContent-Type: multipart/alternative; boundary=\"_002_DB9P_\"\r\n\r\n" +
		"--_002_DB9P_\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\nYour message couldn't be delivered.\r\n" +
		"--_002_DB9P_\r\nContent-Type: text/html; charset=\"us-ascii\"\r\n\r\n<p>Your message couldn't be delivered.</p>\r\n--_002_DB9P_--\r\n\r\n" +
		"--_000_DB9P_\r\nContent-Type: message/delivery-status\r\n\r\n" + status +
		"--_000_DB9P_\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nx\r\n--_000_DB9P_--\r\n"
	postfix := "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"6B0A.1/mx.example\"\r\n\r\n" +
		"This is a MIME-encapsulated message.\r\n\r\n--6B0A.1/mx.example\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		"I'm sorry to have to inform you...\r\n\r\n--6B0A.1/mx.example\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n" + status +
		"--6B0A.1/mx.example\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: x\r\n\r\n--6B0A.1/mx.example--\r\n"
	exim := "Auto-Submitted: auto-replied\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=1700000000-eximdsn-123\r\n" +
		"MIME-Version: 1.0\r\n\r\n--1700000000-eximdsn-123\r\nContent-type: text/plain; charset=us-ascii\r\n\r\nThis message was created automatically by mail delivery software.\r\n\r\n" +
		"--1700000000-eximdsn-123\r\nContent-type: message/delivery-status\r\n\r\n" + status +
		"--1700000000-eximdsn-123\r\nContent-type: message/rfc822\r\n\r\nSubject: x\r\n\r\nx\r\n\r\n--1700000000-eximdsn-123--\r\n"
	report := func(parts string) string {
		return "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n" + parts
	}
	for _, tc := range []struct {
		name, msg string
		ok        bool
	}{
		{"Microsoft 365 NDR", exchange, true},
		{"Postfix bounce", postfix, true},
		{"Exim bounce", exim, true},
		// Postfix's and Exim's carry Auto-Submitted; without it the status part is what counts.
		{"Postfix bounce without Auto-Submitted", strings.Replace(postfix, "Auto-Submitted: auto-replied\r\n", "", 1), true},
		{"global delivery status", "Content-Type: multipart/report; report-type=global-delivery-status; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: message/global-delivery-status\r\n\r\n" + status + "--b--\r\n", true},
		{"status part folded, parameters, padding after the delimiter", report("--b \t\r\nContent-Type:\r\n message/delivery-status; x=y\r\n\r\n" + status + "--b--\r\n"), true},
		{"no status part", report("--b\r\nContent-Type: text/html\r\n\r\n<a href=\"https://evil.example\">pay</a>\r\n--b--\r\n"), false},
		{"no parts at all", report("--b--\r\n"), false},
		{"the status type only in the text", report("--b\r\n\r\nContent-Type: message/delivery-status\r\n\r\n--b--\r\n"), false},
		{"status part only in a nested multipart", report("--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n" +
			"Content-Type: message/delivery-status\r\n\r\n" + status + "--c--\r\n--b--\r\n"), false},
		{"status part after the closing delimiter", report("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n--b\r\n" +
			"Content-Type: message/delivery-status\r\n\r\n" + status), false},
		{"a delimiter with more after it", report("--bx\r\nContent-Type: message/delivery-status\r\n\r\n" + status + "--b--\r\n"), false},
		{"another boundary", report("--c\r\nContent-Type: message/delivery-status\r\n\r\n" + status + "--c--\r\n"), false},
		{"two Content-Types in the part", report("--b\r\nContent-Type: message/delivery-status\r\nContent-Type: text/html\r\n\r\n" + status + "--b--\r\n"), false},
		{"a part without Content-Type is text/plain", report("--b\r\n\r\n" + status + "--b--\r\n"), false},
		// An automatic reply needs no status part, whatever its Content-Type.
		{"auto-replied report without status", "Auto-Submitted: auto-replied\r\n" + report("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			what, err := classifyData(tc.msg)
			if (err == nil) != tc.ok {
				t.Fatalf("classified %q, %v; want ok=%v", what, err, tc.ok)
			}
			if !tc.ok && strings.HasPrefix(tc.msg, "Content-Type: multipart/report") && !strings.Contains(err.Error(), "without a delivery-status part") {
				t.Errorf("error %q does not say what is missing", err)
			}
		})
	}
}

// FuzzClassifyReturn: whatever the header, the classifier does not crash,
// its verdict does not depend on the case of field names, and no header it
// passes still passes with a second copy of a field that decided it.
func FuzzClassifyReturn(f *testing.F) {
	f.Add([]byte("Auto-Submitted: auto-replied\r\n\r\n"))
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		_, err := classifyReturn(hdr, true)
		lower := fieldNames.ReplaceAllFunc(hdr, bytes.ToLower)
		if _, err2 := classifyReturn(lower, true); (err == nil) != (err2 == nil) {
			t.Fatalf("verdict changes with the case of field names: %v, %v", err, err2)
		}
		if err != nil {
			return
		}
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
		for _, dup := range []string{"Content-Type: text/html\r\n", "Auto-Submitted: no\r\n"} {
			name := dup[:strings.IndexByte(dup, ':')]
			if !h.Has(name) {
				continue
			}
			if _, err := classifyReturn(append([]byte(dup), hdr...), true); err == nil {
				t.Fatalf("passes with a second %s field:\n%q", name, hdr)
			}
		}
	})
}

// fieldNames matches a field name at the start of a line.
var fieldNames = regexp.MustCompile(`(?m)^[!-9;-~]+:`)

// FuzzStatusScan: the body scan of a delivery report does not crash, and
// its verdict does not depend on how the body is cut into reads.
func FuzzStatusScan(f *testing.F) {
	f.Add("b", []byte("--b\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n--b--\r\n"), uint8(3))
	f.Add("b", []byte("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"), uint8(1))
	f.Add("=_x", []byte("pre\r\n--=_x \r\nContent-Type:\r\n\tmessage/global-delivery-status\r\n\r\n--=_x--"), uint8(7))
	f.Fuzz(func(t *testing.T, boundary string, body []byte, cut uint8) {
		whole := newStatusScan(boundary)
		whole.Write(body)
		parts := newStatusScan(boundary)
		for n := max(int(cut), 1); len(body) > 0; {
			k := min(n, len(body))
			parts.Write(body[:k])
			body = body[k:]
		}
		if whole.found != parts.found {
			t.Fatalf("found %v whole, %v in reads of %d", whole.found, parts.found, cut)
		}
	})
}
