// SPDX-License-Identifier: MIT

package authcheck

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"
)

// maxARExamined bounds how much of one Authentication-Results field is held
// in memory to find its authserv-id. A field whose authserv-id is not complete
// within it is kept: we remove only what we can show is a forgery of ours.
const maxARExamined = 64 << 10

// StripForged returns a reader that yields msg without the Authentication-Results
// fields that claim authServID (RFC 8601 §5: a receiver removes them, since only
// dualmx may speak for dualmx). Only the header block is touched, and only whole
// fields are removed; every other byte, ARC-Authentication-Results included,
// comes through unchanged. A field whose authserv-id cannot be parsed is kept.
// Memory use is bounded whatever the input.
func StripForged(msg io.Reader, authServID string) io.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(msg)
	return &stripper{br: br, pooled: true, id: authServID, limit: maxARExamined, atLineStart: true}
}

// readers recycles the 64 KiB read buffers that StripForged (at arrival)
// and checkDKIM (before delivery) need for every message; fresh ones are
// garbage the collector then spends its time on. A stripper gives its
// buffer back once it has returned its last byte or error.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

type fieldMode int

const (
	noField fieldMode = iota
	keepField
	dropField
	pendingField // might be one of ours; buffered until decided
)

type stripper struct {
	br     *bufio.Reader // nil once released
	pooled bool
	id     string
	limit  int

	out         []byte // header bytes decided; out[outPos:] not yet read
	outPos      int
	pend        []byte // the pending field so far
	mode        fieldMode
	atLineStart bool
	inBody      bool
	err         error
}

func newStripper(r io.Reader, id string, bufSize, limit int) *stripper {
	return &stripper{br: bufio.NewReaderSize(r, bufSize), id: id, limit: limit, atLineStart: true}
}

func (s *stripper) Read(p []byte) (int, error) {
	for s.outPos == len(s.out) {
		s.out, s.outPos = s.out[:0], 0
		if s.br == nil {
			return 0, s.err
		}
		if s.inBody {
			n, err := s.br.Read(p)
			if err != nil {
				s.err = err
				s.release()
			}
			return n, err
		}
		if s.err != nil {
			s.release()
			return 0, s.err
		}
		s.step()
	}
	n := copy(p, s.out[s.outPos:])
	s.outPos += n
	return n, nil
}

func (s *stripper) release() {
	if s.pooled {
		s.br.Reset(nil)
		readers.Put(s.br)
	}
	s.br = nil
}

// step consumes one line, or one buffer's worth of a longer line.
func (s *stripper) step() {
	chunk, err := s.br.ReadSlice('\n')
	ends := err == nil
	if len(chunk) > 0 {
		s.chunk(chunk, ends)
	}
	switch {
	case err == nil || err == bufio.ErrBufferFull:
	case err == io.EOF:
		s.finishField()
		s.err = io.EOF
	default:
		// A broken source gets no guess at the rest of a pending field.
		s.err = err
	}
}

func (s *stripper) chunk(b []byte, ends bool) {
	switch {
	case !s.atLineStart:
		s.add(b)
	case ends && (len(b) == 1 || len(b) == 2 && b[0] == '\r'): // "\n" or "\r\n"
		s.finishField()
		s.out = append(s.out, b...)
		s.inBody = true
	case (b[0] == ' ' || b[0] == '\t') && s.mode != noField:
		s.add(b)
	default:
		s.finishField()
		if mayBeAR(b, ends) {
			s.mode = pendingField
			s.add(b)
		} else {
			s.mode = keepField
			s.out = append(s.out, b...)
		}
	}
	s.atLineStart = ends
}

func (s *stripper) add(b []byte) {
	switch s.mode {
	case keepField, noField:
		s.out = append(s.out, b...)
	case pendingField:
		s.pend = append(s.pend, b...)
		if len(s.pend) >= s.limit {
			s.decide(s.pend[:s.limit], false)
		}
	}
}

func (s *stripper) finishField() {
	if s.mode == pendingField {
		s.decide(s.pend, true)
	}
	s.mode = noField
}

func (s *stripper) decide(examined []byte, complete bool) {
	if isForged(examined, complete, s.id) {
		s.mode = dropField
	} else {
		s.mode = keepField
		s.out = append(s.out, s.pend...)
	}
	s.pend = s.pend[:0]
}

const arName = "Authentication-Results"

// mayBeAR reports whether a field's first line (or the first buffer of it)
// could be an Authentication-Results field; the decision comes later, on more text.
func mayBeAR(b []byte, ends bool) bool {
	name, _, colon := bytes.Cut(b, []byte(":"))
	name = bytes.TrimRight(name, " \t")
	if colon {
		return strings.EqualFold(string(name), arName)
	}
	return !ends && len(name) <= len(arName) && strings.EqualFold(string(name), arName[:len(name)])
}

// isForged reports whether field (possibly only its first part; complete says
// whether it is all of it) is an Authentication-Results field whose
// authserv-id is id, compared case-insensitively and without a trailing dot.
func isForged(field []byte, complete bool, id string) bool {
	name, value, ok := bytes.Cut(field, []byte(":"))
	if !ok || !strings.EqualFold(string(bytes.TrimRight(name, " \t")), arName) {
		return false
	}
	got, ok := parseAuthServID(value, complete)
	return ok && got != "" && strings.EqualFold(strings.TrimSuffix(got, "."), strings.TrimSuffix(id, "."))
}

// parseAuthServID reads the authserv-id (RFC 8601 §2.2: a value, token or
// quoted-string, after optional CFWS) at the start of an A-R field value.
// It reports false when the id is missing, malformed, or may continue past
// the end of v (complete false).
func parseAuthServID(v []byte, complete bool) (string, bool) {
	i := skipCFWS(v, 0)
	if i < 0 || i >= len(v) {
		return "", false
	}
	if v[i] == '"' {
		var sb strings.Builder
		for i++; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
				if i < len(v) {
					sb.WriteByte(v[i])
				}
			case '"':
				return sb.String(), true
			default:
				sb.WriteByte(v[i])
			}
		}
		return "", false
	}
	start := i
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '(':
			return string(v[start:i]), i > start
		case c < ' ' || c == 0x7f || c == '"':
			return "", false
		}
	}
	return string(v[start:]), complete && i > start
}

// skipCFWS returns the index after folding white space and comments starting
// at i, or -1 if a comment is not closed within v.
func skipCFWS(v []byte, i int) int {
	for i < len(v) {
		switch v[i] {
		case ' ', '\t', '\r', '\n':
			i++
		case '(':
			depth := 0
		comment:
			for ; i < len(v); i++ {
				switch v[i] {
				case '\\':
					i++
				case '(':
					depth++
				case ')':
					if depth--; depth == 0 {
						break comment
					}
				}
			}
			if i >= len(v) {
				return -1
			}
			i++
		default:
			return i
		}
	}
	return i
}
