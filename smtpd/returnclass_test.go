package smtpd

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
	"testing"

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
			what, err := classifyReturn([]byte(tc.hdr))
			if (err == nil) != tc.ok {
				t.Fatalf("classifyReturn = %q, %v; want ok=%v", what, err, tc.ok)
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
		_, err := classifyReturn(hdr)
		lower := fieldNames.ReplaceAllFunc(hdr, bytes.ToLower)
		if _, err2 := classifyReturn(lower); (err == nil) != (err2 == nil) {
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
			if _, err := classifyReturn(append([]byte(dup), hdr...)); err == nil {
				t.Fatalf("passes with a second %s field:\n%q", name, hdr)
			}
		}
	})
}

// fieldNames matches a field name at the start of a line.
var fieldNames = regexp.MustCompile(`(?m)^[!-9;-~]+:`)
