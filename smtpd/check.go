package smtpd

import (
	"errors"
	"io"
)

// errBareNewline marks DATA that contains a CR or LF outside a CRLF pair. Such
// input is how SMTP smuggling hides a second message behind a line ending that
// one server treats as end-of-data and the next does not, so it is refused
// whole rather than repaired.
var errBareNewline = errors.New("bare CR or LF in message data")

// dataChecker passes DATA through unchanged while it watches for bare CR/LF
// and counts Received fields in the header block. It keeps only a few bytes of
// state, so a message of any size streams through it.
type dataChecker struct {
	r      io.Reader
	prevCR bool
	bad    bool
	// readErr is the last error from the client side, kept apart so a failed
	// spool write is never mistaken for a client that went away.
	readErr error
	n       int64
	inHdr   bool
	hdrEnd  int64 // offset just after the blank line ending the header, 0 if not seen
	lineLen int   // bytes on the current header line
	// received counts header fields named Received, for the hop limit.
	received int
	// lineStart holds the first bytes of the current header line, enough to
	// recognise a field name of interest.
	lineStart [16]byte
}

func newDataChecker(r io.Reader) *dataChecker {
	return &dataChecker{r: r, inHdr: true}
}

func (c *dataChecker) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for _, b := range p[:n] {
		c.n++
		switch {
		case c.prevCR && b != '\n':
			c.bad = true
		case !c.prevCR && b == '\n':
			c.bad = true
		}
		c.prevCR = b == '\r'
		if c.inHdr {
			c.header(b)
		}
	}
	if err == io.EOF && c.prevCR {
		c.bad = true
	}
	if err != nil && err != io.EOF {
		c.readErr = err
	}
	return n, err
}

// header tracks header lines to find where the header block ends and to count
// Received fields, without buffering the header.
func (c *dataChecker) header(b byte) {
	switch b {
	case '\r':
		return
	case '\n':
		if c.lineLen == 0 {
			c.inHdr = false
			c.hdrEnd = c.n
			return
		}
		if c.lineLen >= 9 && asciiEqualFold(c.lineStart[:9], "received:") {
			c.received++
		}
		c.lineLen = 0
		return
	}
	if c.lineLen < len(c.lineStart) {
		c.lineStart[c.lineLen] = b
	}
	c.lineLen++
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x := b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != s[i] {
			return false
		}
	}
	return true
}
