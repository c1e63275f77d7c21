// SPDX-License-Identifier: MIT

package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// maxReturnHeader bounds the header block kept to classify a message for the
// return path; a longer one is not a return. Real delivery reports and
// auto-replies have a few kilobytes of header (the returned original's
// header travels in the body).
const maxReturnHeader = 256 << 10

// classifyReturn decides whether a message may take the return path, the one
// way dualmx delivers anywhere but the tenant. Only what a return is passes:
//
//   - a delivery report: Content-Type multipart/report with report-type
//     delivery-status (RFC 3464, RFC 6522) or global-delivery-status (RFC
//     6533), and a boundary;
//   - an automatic reply: Auto-Submitted: auto-replied (RFC 3834 section
//     5: a response to a message, such as a vacation notice). auto-generated
//     and auto-notified are messages of their own, not returns.
//
// A delivery report must also hold its machine-readable part, a top-level
// message/delivery-status or message/global-delivery-status part (RFC 6522
// section 3, RFC 3464, RFC 6533): Microsoft 365, Postfix and Exim all send
// one, and a message dressed up as a report with only the header usually
// has none. statusPart says whether the body had one (see statusScan).
//
// A field given twice passes nothing: a mail program may read either copy, and
// the message must be a return whichever it reads. hdr is the header block as
// received, blank line included; what returns names the kind, or err says why
// the message is not a return.
func classifyReturn(hdr []byte, statusPart bool) (what string, err error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return "", fmt.Errorf("header unreadable: %w", err)
	}
	ct, as := h.Values("Content-Type"), h.Values("Auto-Submitted")
	switch {
	case len(ct) > 1:
		return "", errors.New("more than one Content-Type field")
	case len(as) > 1:
		return "", errors.New("more than one Auto-Submitted field")
	case len(ct) == 1 && isDeliveryReport(ct[0]) && statusPart:
		return "delivery report", nil
	case len(as) == 1 && autoSubmitted(as[0]) == "auto-replied":
		return "automatic reply", nil
	case len(ct) == 1 && isDeliveryReport(ct[0]):
		return "", errors.New("a delivery report without a delivery-status part")
	}
	return "", errors.New("neither a delivery report nor an automatic reply")
}

// reportBoundary returns the boundary of a header block whose one
// Content-Type is a delivery report, or "".
func reportBoundary(hdr []byte) string {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return ""
	}
	ct := h.Values("Content-Type")
	if len(ct) != 1 || !isDeliveryReport(ct[0]) {
		return ""
	}
	_, params, _ := mime.ParseMediaType(ct[0])
	return params["boundary"]
}

// maxScanLine bounds how much of a body line statusScan keeps; delimiter
// lines are at most 74 characters and the Content-Type of a part far less.
const maxScanLine = 1000

// statusScan looks through a multipart/report body as it streams by for a
// top-level part whose Content-Type is message/delivery-status or
// message/global-delivery-status. It keeps one line at a time and stops at
// the first such part or at the closing delimiter.
type statusScan struct {
	delim     []byte // "--" + boundary
	line      []byte // the current line, capped at maxScanLine
	inPartHdr bool
	field     []byte // the current field of a part's header, unfolded, capped
	ct        []byte // the part's Content-Type value; nil when it has none
	cts       int    // how many Content-Type fields the part has
	found     bool
	done      bool
}

func newStatusScan(boundary string) *statusScan {
	return &statusScan{delim: []byte("--" + boundary)}
}

func (s *statusScan) Write(p []byte) {
	for len(p) > 0 && !s.done {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.add(p)
			return
		}
		s.add(p[:i])
		s.endLine()
		p = p[i+1:]
	}
}

func (s *statusScan) add(b []byte) {
	if room := maxScanLine - len(s.line); room > 0 {
		s.line = append(s.line, b[:min(len(b), room)]...)
	}
}

func (s *statusScan) endLine() {
	l := bytes.TrimSuffix(s.line, []byte("\r"))
	defer func() { s.line = s.line[:0] }()
	if s.inPartHdr {
		switch {
		case len(l) == 0:
			s.endField()
			s.inPartHdr = false
			if s.cts == 1 && isStatusType(s.ct) {
				s.found, s.done = true, true
			}
		case l[0] == ' ' || l[0] == '\t':
			if len(s.field) < maxScanLine {
				s.field = append(s.field, l...)
			}
		default:
			s.endField()
			s.field = append(s.field[:0], l...)
		}
		return
	}
	rest, ok := bytes.CutPrefix(l, s.delim)
	if !ok {
		return
	}
	if bytes.HasPrefix(rest, []byte("--")) {
		s.done = true // the closing delimiter
		return
	}
	if len(bytes.TrimRight(rest, " \t")) == 0 {
		s.inPartHdr, s.ct, s.cts, s.field = true, nil, 0, s.field[:0]
	}
}

func (s *statusScan) endField() {
	name, value, ok := bytes.Cut(s.field, []byte(":"))
	s.field = s.field[:0]
	if ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("Content-Type")) {
		s.ct = append([]byte(nil), value...)
		s.cts++
	}
}

// isStatusType reports whether a part's Content-Type value is a delivery
// status (RFC 3464) or a global delivery status (RFC 6533).
func isStatusType(v []byte) bool {
	mt, _, err := mime.ParseMediaType(string(v))
	return err == nil && (mt == "message/delivery-status" || mt == "message/global-delivery-status")
}

// isDeliveryReport parses a Content-Type value strictly: anything the
// standard library's media type parser refuses (comments, repeated
// parameters, stray text) is not a report.
func isDeliveryReport(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt != "multipart/report" || params["boundary"] == "" {
		return false
	}
	switch strings.ToLower(params["report-type"]) {
	case "delivery-status", "global-delivery-status":
		return true
	}
	return false
}

// autoSubmitted returns the keyword of an Auto-Submitted value, lower-cased
// (RFC 3834 section 5: [CFWS] keyword [CFWS] *(";" parameter)), or "" when
// the value does not have that shape. Comments are allowed where the grammar
// allows them, because real auto-responders write them: Sieve vacation sends
// "auto-replied (vacation)".
func autoSubmitted(v string) string {
	i, ok := skipCFWS(v, 0)
	if !ok {
		return ""
	}
	j := i
	for j < len(v) && isTokenChar(v[j]) {
		j++
	}
	k, ok := skipCFWS(v, j)
	if !ok || j == i || (k < len(v) && v[k] != ';') {
		return ""
	}
	return strings.ToLower(v[i:j])
}

// skipCFWS skips white space and comments (nested, with quoted pairs) from
// i; ok is false for an unclosed comment.
func skipCFWS(v string, i int) (int, bool) {
	depth := 0
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++ // the quoted character, whatever it is
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return i, true
		}
	}
	return i, depth == 0
}

// isTokenChar is RFC 2045's token: printable ASCII but no tspecials.
func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}
