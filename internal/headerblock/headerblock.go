// SPDX-License-Identifier: MIT

// Package headerblock reads the header block of a message (RFC 5322 §2.1:
// the fields up to the first empty line) and splits it into fields, keeping
// every byte as it came: DKIM and ARC hash the fields as they are, and a DSN
// quotes them. Each user decides what to make of odd line endings.
package headerblock

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
)

// ErrTooLarge is wrapped by the error of a header block over the limit.
var ErrTooLarge = errors.New("header block too large")

// Read returns the header block at the start of br, up to and including the
// empty line that ends it, and leaves br at the first byte of the body.
// ended is false when the message ends first: it is all header and its body
// is empty, and the block has no empty line (its last line may lack its line
// ending too). A block of more than max bytes is an error wrapping
// ErrTooLarge.
func Read(br *bufio.Reader, max int) (block []byte, ended bool, err error) {
	atLineStart := true
	for {
		line, err := br.ReadSlice('\n')
		if atLineStart && (len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n') {
			return append(block, line...), true, nil
		}
		block = append(block, line...)
		if len(block) > max {
			return nil, false, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
		}
		switch {
		case err == bufio.ErrBufferFull:
			atLineStart = false
		case err == io.EOF:
			return block, false, nil
		case err != nil:
			return nil, false, err
		default:
			atLineStart = true
		}
	}
}

// Fields yields each field of a block as Read returns it: its first line
// with its continuation lines, line endings as they are. It stops at the
// empty line. A continuation line with no field before it is a field of its
// own, as is a line without a colon: what it means is for the caller to say.
func Fields(block []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(block) > 0 {
			if isEmptyLine(block) {
				return
			}
			end := lineEnd(block, 0)
			for end < len(block) && (block[end] == ' ' || block[end] == '\t') {
				end = lineEnd(block, end)
			}
			if !yield(block[:end:end]) {
				return
			}
			block = block[end:]
		}
	}
}

// lineEnd returns the index just past the line starting at i.
func lineEnd(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

func isEmptyLine(b []byte) bool {
	return b[0] == '\n' || len(b) >= 2 && b[0] == '\r' && b[1] == '\n'
}
