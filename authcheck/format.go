// SPDX-License-Identifier: MIT

package authcheck

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// foldWidth is the line length RFC 5322 §2.1.1 asks for.
const foldWidth = 78

// formatPayload renders the results as an Authentication-Results value: the
// authserv-id, then one method per line, folded further only when a line
// would pass foldWidth. go-msgauth's authres.Format renders each method;
// dkim and arc use its GenericResult because its typed results have no
// header.s / header.b and no arc reason.
func formatPayload(authServID string, res *Result, in Input) string {
	var rs []authres.Result
	if len(res.DKIM) == 0 {
		rs = append(rs, &authres.GenericResult{Method: "dkim", Value: authres.ResultNone})
	}
	for _, s := range res.DKIM {
		rs = append(rs, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(s.Result), Params: map[string]string{
			"reason": clean(s.Reason), "header.d": clean(s.Domain), "header.s": clean(s.Selector), "header.b": clean(s.B),
		}})
	}
	spfRes := &authres.SPFResult{Value: authres.ResultValue(res.SPF), From: clean(in.MailFrom)}
	if domainOf(in.MailFrom) == "" {
		spfRes.From, spfRes.Helo = "", clean(in.Helo)
	}
	rs = append(rs, spfRes)
	rs = append(rs, &authres.DMARCResult{Value: authres.ResultValue(res.DMARC), From: clean(res.FromDomain)})
	arc := &authres.GenericResult{Method: "arc", Value: authres.ResultValue(res.ARC), Params: map[string]string{"reason": clean(res.ARCReason)}}
	if res.ARC != "none" && in.ClientIP != nil {
		arc.Params["smtp.remote-ip"] = in.ClientIP.String()
	}
	rs = append(rs, arc)

	var b strings.Builder
	b.WriteString(clean(authServID))
	for _, r := range rs {
		b.WriteString(";\r\n\t")
		// Format("", one result) is "; method=value params"; keep what follows "; ".
		text := strings.TrimSpace(strings.TrimPrefix(authres.Format("", []authres.Result{r}), "; "))
		b.WriteString(fold(text))
	}
	return b.String()
}

// clean turns control characters into spaces and drops backslashes, which
// authres.Format does not escape: a CR or LF from a reason or an envelope
// address would otherwise end the field early and let the sender write
// header fields of its own.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r < ' ' || r == 0x7f:
			return ' '
		case r == '\\':
			return -1
		}
		return r
	}, s)
}

// fold breaks s at spaces outside quoted strings so no line passes foldWidth
// (with the leading tab counted as 8); a single longer token stays whole.
func fold(s string) string {
	var lines []string
	line, col := "", 8
	for _, tok := range tokens(s) {
		if line != "" && col+1+len(tok) > foldWidth {
			lines = append(lines, line)
			line, col = "", 8
		}
		if line != "" {
			line += " "
			col++
		}
		line += tok
		col += len(tok)
	}
	return strings.Join(append(lines, line), "\r\n\t")
}

func tokens(s string) []string {
	var toks []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ' ':
			if !quoted {
				if i > start {
					toks = append(toks, s[start:i])
				}
				start = i + 1
			}
		}
	}
	if start < len(s) {
		toks = append(toks, s[start:])
	}
	return toks
}
