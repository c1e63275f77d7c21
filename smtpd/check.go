// SPDX-License-Identifier: MIT

package smtpd

import (
	"bytes"
	"errors"
	"io"
)

// errBareNewline marks DATA that contains a CR or LF outside a CRLF pair. Such
// input is how SMTP smuggling hides a second message behind a line ending that
// one server treats as end-of-data and the next does not, so it is refused
// whole rather than repaired.
var errBareNewline = errors.New("bare CR or LF in message data")

// errHeaderTooLarge stops reading DATA once the header block passes
// maxHeader; go-smtp discards the rest and the session answers 552.
var errHeaderTooLarge = errors.New("message header block too large")

// maxField bounds how much of one header field is kept for inspection; the
// fields looked at (Received, ARC-Seal) are far shorter in real mail, and a
// longer one is judged on its first maxField bytes.
const maxField = 8 << 10

// dataChecker passes DATA through unchanged while it watches for bare CR/LF
// and inspects the header block for loop evidence: the number of Received
// fields, a Received field dualmx itself wrote, and an ARC set sealed by our
// own domain. It keeps one header field at a time, so a message of any size
// streams through it.
type dataChecker struct {
	r      io.Reader
	prevCR bool
	bad    bool
	// nul is set when DATA holds a NUL byte, which RFC 5322 text never
	// does and which BINARYMIME (not offered) alone would allow.
	nul bool
	// maxHeader bounds the header block (0: no bound); hdrBytes counts it.
	maxHeader int64
	hdrBytes  int64
	// readErr is the last error from the client side, kept apart so a failed
	// spool write is never mistaken for a client that went away.
	readErr error

	inHdr    bool
	lineLen  int
	field    []byte // the current header field, unfolded lines joined, capped at maxField
	received int
	// ownTrace is set when a Received field carries traceMarker, or an
	// ARC-Seal carries arcMarker: the message has passed through us before.
	ownTrace    bool
	traceMarker []byte
	arcDomain   []byte
	// report is set when the top-level Content-Type is multipart/report.
	report bool
	// markerField names a header field whose first value is kept in marker
	// (the forward probe's); nil keeps nothing.
	markerField []byte
	marker      string
	hasMarker   bool
	// keep, when set, makes the checker keep the header block (blank line
	// included) in hdr, up to maxReturnHeader; hdrCut says it was longer.
	keep   bool
	hdr    []byte
	hdrCut bool
	// status, made when a kept header block is a delivery report's, looks
	// through the body for its delivery-status part.
	status *statusScan
}

func newDataChecker(r io.Reader, hostname, arcDomain, markerField string) *dataChecker {
	c := &dataChecker{r: r, inHdr: true}
	if markerField != "" {
		c.markerField = []byte(markerField)
	}
	if hostname != "" {
		c.traceMarker = []byte("by " + hostname + " (dualmx)")
	}
	if arcDomain != "" {
		c.arcDomain = bytes.ToLower([]byte(arcDomain))
	}
	return c
}

func (c *dataChecker) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i, b := range p[:n] {
		if !c.inHdr {
			// The body needs only the line-end and NUL checks, which
			// run over whole runs of bytes; this loop went byte by byte
			// through every message.
			c.scanBody(p[i:n])
			if c.status != nil {
				c.status.Write(p[i:n])
			}
			break
		}
		switch {
		case c.prevCR && b != '\n':
			c.bad = true
		case !c.prevCR && b == '\n':
			c.bad = true
		}
		c.prevCR = b == '\r'
		if b == 0 {
			c.nul = true
		}
		if c.inHdr {
			if c.keep {
				if len(c.hdr) < maxReturnHeader {
					c.hdr = append(c.hdr, b)
				} else {
					c.hdrCut = true
				}
			}
			c.header(b)
			if !c.inHdr && c.keep && c.report && !c.hdrCut {
				if b := reportBoundary(c.hdr); b != "" {
					c.status = newStatusScan(b)
				}
			}
			c.hdrBytes++
			if c.maxHeader > 0 && c.hdrBytes > c.maxHeader && c.inHdr {
				return n, errHeaderTooLarge
			}
		}
	}
	if err == io.EOF {
		if c.prevCR {
			c.bad = true
		}
		if c.inHdr {
			c.endField()
		}
	}
	if err != nil && err != io.EOF {
		c.readErr = err
	}
	return n, err
}

// scanBody is the per-byte loop's line-end and NUL checks for body bytes:
// every CR followed by LF, every LF preceded by CR, no NUL.
func (c *dataChecker) scanBody(p []byte) {
	if len(p) == 0 {
		return
	}
	if bytes.IndexByte(p, 0) >= 0 {
		c.nul = true
	}
	q := p
	if c.prevCR {
		if q[0] == '\n' {
			q = q[1:] // the CR that ended the last read ends its line here
		} else {
			c.bad = true
		}
	}
	c.prevCR = p[len(p)-1] == '\r'
	if c.prevCR {
		q = q[:len(q)-1] // judged with the next read's first byte
	}
	if c.bad {
		return
	}
	crlf := bytes.Count(q, crlfBytes)
	if bytes.Count(q, crBytes) != crlf || bytes.Count(q, lfBytes) != crlf {
		c.bad = true
	}
}

var (
	crlfBytes = []byte("\r\n")
	crBytes   = []byte("\r")
	lfBytes   = []byte("\n")
)

// header collects one field at a time: a line that starts with white space
// continues the field before it.
func (c *dataChecker) header(b byte) {
	switch b {
	case '\r':
		return
	case '\n':
		if c.lineLen == 0 {
			c.endField()
			c.inHdr = false
		}
		c.lineLen = 0
		return
	}
	if c.lineLen == 0 && b != ' ' && b != '\t' {
		c.endField()
	}
	c.lineLen++
	if len(c.field) < maxField {
		c.field = append(c.field, b)
	}
}

func (c *dataChecker) endField() {
	f := c.field
	c.field = c.field[:0]
	name, value, ok := bytes.Cut(f, []byte(":"))
	if !ok {
		return
	}
	name = bytes.TrimRight(name, " \t")
	switch {
	case bytes.EqualFold(name, []byte("Received")):
		c.received++
		if c.traceMarker != nil && bytes.Contains(value, c.traceMarker) {
			c.ownTrace = true
		}
	case bytes.EqualFold(name, []byte("Content-Type")):
		mt, _, _ := bytes.Cut(bytes.TrimSpace(value), []byte(";"))
		c.report = bytes.EqualFold(bytes.TrimSpace(mt), []byte("multipart/report"))
	case c.markerField != nil && !c.hasMarker && bytes.EqualFold(name, c.markerField):
		c.marker, c.hasMarker = string(bytes.TrimSpace(value)), true
	case bytes.EqualFold(name, []byte("ARC-Seal")) && c.arcDomain != nil:
		if d, ok := tagValue(value, "d"); ok && bytes.EqualFold(d, c.arcDomain) {
			c.ownTrace = true
		}
	}
}

// tagValue finds tag in a DKIM-style tag list ("i=1; a=rsa-sha256; d=x").
func tagValue(list []byte, tag string) ([]byte, bool) {
	for _, part := range bytes.Split(list, []byte(";")) {
		k, v, ok := bytes.Cut(part, []byte("="))
		if ok && string(bytes.TrimSpace(k)) == tag {
			return bytes.Join(bytes.Fields(v), nil), true
		}
	}
	return nil, false
}
