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
// A field given twice passes nothing: a mail program may read either copy, and
// the message must be a return whichever it reads. hdr is the header block as
// received, blank line included; what returns names the kind, or err says why
// the message is not a return.
func classifyReturn(hdr []byte) (what string, err error) {
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
	case len(ct) == 1 && isDeliveryReport(ct[0]):
		return "delivery report", nil
	case len(as) == 1 && autoSubmitted(as[0]) == "auto-replied":
		return "automatic reply", nil
	}
	return "", errors.New("neither a delivery report nor an automatic reply")
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
