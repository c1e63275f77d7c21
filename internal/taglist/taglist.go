// SPDX-License-Identifier: MIT

// Package taglist parses the tag-lists of DKIM (RFC 6376 §3.2), which
// DKIM-Signature, ARC-Seal, ARC-Message-Signature and DKIM key records share.
package taglist

import (
	"errors"
	"fmt"
	"strings"
)

// Tag is one tag-spec of a DKIM-style tag-list (RFC 6376 §3.2).
type Tag struct {
	Name  string
	Value string // with surrounding whitespace removed; inner FWS kept
}

// List is a parsed tag-list in the order the tags appeared. Order matters to
// nobody who verifies, but keeping it lets a caller log or re-emit the list
// as it was.
type List []Tag

// Get returns the value of the tag called name. Tag names are case-sensitive
// (RFC 6376 §3.2), so "I" is not "i".
func (t List) Get(name string) (string, bool) {
	for _, tag := range t {
		if tag.Name == name {
			return tag.Value, true
		}
	}
	return "", false
}

var errEmptyTagList = errors.New("empty tag-list")

// Parse parses a tag-list as used in DKIM-Signature, ARC-Seal,
// ARC-Message-Signature and DKIM key records. It never panics: anything it
// cannot read is an error, and RFC 6376 §3.2 makes the whole list invalid
// then (an empty tag-spec between semicolons, a malformed name, a duplicate
// name, a control character). It is tolerant where real mail needs it:
// folding whitespace anywhere between tokens, bare LF instead of CRLF, a
// trailing semicolon, and 8-bit bytes inside values (EAI, RFC 8616).
func Parse(s string) (List, error) {
	var tags List
	specs := strings.Split(s, ";")
	for i, spec := range specs {
		if isAllWSP(spec) {
			// Only the last spec may be empty: the optional trailing ";".
			if i == len(specs)-1 && i > 0 {
				break
			}
			if len(specs) == 1 {
				return nil, errEmptyTagList
			}
			return nil, fmt.Errorf("empty tag-spec at position %d", i+1)
		}
		eq := strings.IndexByte(spec, '=')
		if eq < 0 {
			return nil, fmt.Errorf("tag-spec %q has no '='", truncate(spec))
		}
		name := TrimFWS(spec[:eq])
		if !validTagName(name) {
			return nil, fmt.Errorf("invalid tag name %q", truncate(name))
		}
		value := TrimFWS(spec[eq+1:])
		for j := 0; j < len(value); j++ {
			c := value[j]
			if (c < 0x20 && !isWSP(c)) || c == 0x7f {
				return nil, fmt.Errorf("tag %q: control character 0x%02x in value", name, c)
			}
		}
		if _, dup := tags.Get(name); dup {
			return nil, fmt.Errorf("duplicate tag %q", name)
		}
		tags = append(tags, Tag{Name: name, Value: value})
	}
	return tags, nil
}

// validTagName implements tag-name = ALPHA *ALNUMPUNC.
func validTagName(name string) bool {
	if name == "" || !isAlpha(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// isWSP reports folding whitespace, counting CR and LF so that a value can be
// parsed straight from a folded header field.
func isWSP(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isAllWSP(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isWSP(s[i]) {
			return false
		}
	}
	return true
}

// TrimFWS removes folding whitespace (CR and LF included) around s.
func TrimFWS(s string) string {
	i, j := 0, len(s)
	for i < j && isWSP(s[i]) {
		i++
	}
	for j > i && isWSP(s[j-1]) {
		j--
	}
	return s[i:j]
}

// StripFWS removes all folding whitespace, as base64 tag values (b=, bh=, p=)
// and colon-separated lists may be folded anywhere.
func StripFWS(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if !isWSP(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// truncate keeps error messages (which end up in logs and verdicts) short
// when the input is hostile.
func truncate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
