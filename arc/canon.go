// SPDX-License-Identifier: MIT

package arc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/dualmx/dualmx/internal/headerblock"
)

// maxHeaderBytes bounds the header block held in memory. Fifty ARC sets from
// large providers stay well below 1 MiB; anything past this is hostile.
const maxHeaderBytes = 8 << 20

// field is one header field as it appears in the message, with line endings
// normalised to CRLF (SMTP guarantees CRLF on the wire; files and test
// vectors often carry bare LF, and every other DKIM implementation reads
// them as CRLF too).
type field struct {
	raw  []byte // whole field, folded, ending in CRLF
	name string // lower-cased name; "" for a line that is not a field
}

// value returns the text after the colon, without the final CRLF.
func (f field) value() []byte {
	i := bytes.IndexByte(f.raw, ':')
	if i < 0 {
		return nil
	}
	return bytes.TrimSuffix(f.raw[i+1:], []byte("\r\n"))
}

// readHeader reads the header block up to and including the empty line that
// ends it, leaving br at the first byte of the body. A message without an
// empty line is all header and has an empty body.
func readHeader(br *bufio.Reader) ([]field, error) {
	block, _, err := headerblock.Read(br, maxHeaderBytes)
	if err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	var fields []field
	for raw := range headerblock.Fields(block) {
		raw = crlfLines(raw)
		fields = append(fields, field{raw: raw, name: fieldName(raw)})
	}
	return fields, nil
}

// crlfLines returns raw with every line ending CRLF, raw itself when it
// already does (as on the wire).
func crlfLines(raw []byte) []byte {
	if isCRLF(raw) {
		return raw
	}
	out := make([]byte, 0, len(raw)+8)
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line = raw[:i+1]
		}
		raw = raw[len(line):]
		out = append(append(out, trimEOL(line)...), '\r', '\n')
	}
	return out
}

func isCRLF(raw []byte) bool {
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		return false
	}
	for i := bytes.IndexByte(raw, '\n'); i >= 0; {
		if i == 0 || raw[i-1] != '\r' {
			return false
		}
		j := bytes.IndexByte(raw[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return true
}

func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// fieldName returns the lower-cased field name, or "" if the field has no
// colon or a name that RFC 5322 would not accept. Such lines are kept (their
// bytes still belong to the message) but never match a signed name.
func fieldName(line []byte) string {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return ""
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return ""
	}
	for _, c := range name {
		if c <= 32 || c >= 127 {
			return ""
		}
	}
	return string(bytes.ToLower(name))
}

// canonHeaderRelaxed appends the relaxed form (RFC 6376 §3.4.2) of a field
// given as raw bytes, without the trailing CRLF: the caller adds it where
// the algorithm wants one.
func canonHeaderRelaxed(dst, raw []byte) []byte {
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		// Not a field; nothing signs it, but keep the function total.
		return appendRelaxedValue(dst, raw)
	}
	for _, c := range bytes.TrimRight(raw[:i], " \t\r\n") {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	return appendRelaxedValue(dst, raw[i+1:])
}

// appendRelaxedValue unfolds, reduces runs of WSP to one SP and drops
// leading and trailing WSP.
func appendRelaxedValue(dst, v []byte) []byte {
	space := false
	started := false
	for _, c := range v {
		switch c {
		case '\r', '\n':
			// Unfolding removes the line break; the WSP that follows it
			// still counts as whitespace.
		case ' ', '\t':
			space = true
		default:
			if space && started {
				dst = append(dst, ' ')
			}
			space = false
			started = true
			dst = append(dst, c)
		}
	}
	return dst
}

// canonHeaderSimple appends the field unchanged, without the trailing CRLF.
func canonHeaderSimple(dst, raw []byte) []byte {
	return append(dst, bytes.TrimSuffix(raw, []byte("\r\n"))...)
}

func canonHeader(dst, raw []byte, relaxed bool) []byte {
	if relaxed {
		return canonHeaderRelaxed(dst, raw)
	}
	return canonHeaderSimple(dst, raw)
}

// bodyCanon is a streaming body canonicaliser (RFC 6376 §3.4.3, §3.4.4).
// It sees the body in arbitrary chunks and writes canonical bytes to w
// without holding more than one output buffer, so a 100 MiB body costs no
// more memory than a small one. Trailing empty lines are only counted, and
// written out once a later non-empty line proves they were not trailing.
type bodyCanon struct {
	w       io.Writer
	relaxed bool
	limit   int64 // l= tag; -1 for the whole body
	n       int64 // canonical bytes produced, including any past limit

	cr        bool // a CR is pending: it may be half of a CRLF
	space     bool // relaxed: a WSP run is pending inside the line
	lineBytes int  // content bytes already emitted on this line
	empties   int  // empty lines not yet emitted
	buf       []byte
	err       error
}

func newBodyCanon(w io.Writer, relaxed bool, limit int64) *bodyCanon {
	return &bodyCanon{w: w, relaxed: relaxed, limit: limit, buf: make([]byte, 0, 8192)}
}

func (c *bodyCanon) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if c.cr {
			c.cr = false
			if p[0] == '\n' {
				c.endLine()
				p = p[1:]
				continue
			}
			c.lonelyCR()
		}
		// Copy the run up to the next line-ending byte (or WSP in relaxed
		// mode) in one go; the byte-by-byte path handles the rest.
		j := 0
		for j < len(p) {
			b := p[j]
			if b == '\r' || b == '\n' || (c.relaxed && (b == ' ' || b == '\t')) {
				break
			}
			j++
		}
		if j > 0 {
			c.run(p[:j])
			p = p[j:]
			continue
		}
		switch b := p[0]; b {
		case '\r':
			c.cr = true
		case '\n':
			c.endLine()
		default: // relaxed WSP
			c.space = true
		}
		p = p[1:]
	}
	if c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// run emits content bytes that contain no line break (and, when relaxed, no
// WSP).
func (c *bodyCanon) run(p []byte) {
	c.flushEmpties()
	if c.space {
		c.space = false
		c.emitBytes(sp)
	}
	c.emitBytes(p)
	c.lineBytes += len(p)
}

// lonelyCR emits a CR that turned out not to start a CRLF: it is data.
func (c *bodyCanon) lonelyCR() {
	c.run(cr)
}

func (c *bodyCanon) endLine() {
	c.space = false // relaxed: trailing WSP is dropped
	if c.lineBytes == 0 {
		c.empties++
		return
	}
	c.lineBytes = 0
	c.emitBytes(crlf)
}

func (c *bodyCanon) flushEmpties() {
	for ; c.empties > 0; c.empties-- {
		c.emitBytes(crlf)
	}
}

// Shared one-byte slices: a fresh []byte{b} per space would allocate once
// per word of the body.
var (
	crlf = []byte("\r\n")
	sp   = []byte(" ")
	cr   = []byte("\r")
)

func (c *bodyCanon) emitBytes(p []byte) {
	c.n += int64(len(p))
	if c.limit >= 0 {
		room := c.limit - (c.n - int64(len(p)))
		if room <= 0 {
			return
		}
		if int64(len(p)) > room {
			p = p[:room]
		}
	}
	if len(c.buf)+len(p) > cap(c.buf) {
		c.flushBuf()
		if len(p) > cap(c.buf) {
			c.write(p)
			return
		}
	}
	c.buf = append(c.buf, p...)
}

func (c *bodyCanon) flushBuf() {
	if len(c.buf) > 0 {
		c.write(c.buf)
		c.buf = c.buf[:0]
	}
}

func (c *bodyCanon) write(p []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(p)
	}
}

// Close finishes the body: a final line without CRLF gets one, trailing
// empty lines are dropped, and an empty body is CRLF in simple mode and
// nothing in relaxed mode. It returns the canonical length, which an l=
// check compares against.
func (c *bodyCanon) Close() (int64, error) {
	if c.cr {
		c.cr = false
		c.lonelyCR()
	}
	if c.lineBytes > 0 {
		c.endLine()
	}
	if !c.relaxed && c.n == 0 {
		c.emitBytes(crlf)
	}
	c.flushBuf()
	return c.n, c.err
}

var errBodyTooShort = errors.New("body is shorter than the l= tag says")
