// SPDX-License-Identifier: MIT

package spool

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
)

// A version 2 item is committed as one file: the message bytes, then the
// envelope as one line of JSON, then a fixed-size footer that says where the
// JSON starts. One file instead of two halves what a commit costs (one
// create, one fsync, one rename; one unlink when it leaves), and most
// messages are delivered at the first attempt, so most never get an
// <id>.json at all. The body stays at offset 0, so `head` shows the message,
// and the file is never rewritten: later state goes to <id>.json, which wins
// over the trailer whenever it exists.
//
// footer: "\nDUALMX-ENVELOPE <json length, 10 digits> <body length, 20 digits>\n"
const (
	footerMagic = "\nDUALMX-ENVELOPE "
	footerLen   = len(footerMagic) + 10 + 1 + 20 + 1
	// maxTrailerJSON bounds what a reader allocates for a trailer; an
	// envelope with the maximum recipients is a few tens of KiB.
	maxTrailerJSON = 16 << 20
)

// appendTrailer appends the envelope trailer for it (whose Size is the body
// length already written) to b.
func appendTrailer(b []byte, it *Item) ([]byte, error) {
	js, err := json.Marshal(it)
	if err != nil {
		return nil, fmt.Errorf("spool %s: encode envelope: %w", it.ID, err)
	}
	b = append(b, js...)
	b = append(b, footerMagic...)
	b = appendPadded(b, int64(len(js)), 10)
	b = append(b, ' ')
	b = appendPadded(b, it.Size, 20)
	return append(b, '\n'), nil
}

func appendPadded(b []byte, v int64, width int) []byte {
	s := strconv.FormatInt(v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// readTrailer returns the envelope committed with a version 2 body file and
// the body's length. Anything that does not add up is ErrCorrupt: a file cut
// short, a file that never had a trailer, or one that was written over.
func readTrailer(f *os.File) (*Item, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	return readTrailerAt(f, fi.Size())
}

// readTrailerAt is readTrailer for size bytes readable from r.
func readTrailerAt(r io.ReaderAt, size int64) (*Item, int64, error) {
	if size < int64(footerLen) {
		return nil, 0, fmt.Errorf("%w: body file of %d bytes has no envelope trailer", ErrCorrupt, size)
	}
	var foot [footerLen]byte
	if _, err := r.ReadAt(foot[:], size-int64(footerLen)); err != nil {
		return nil, 0, err
	}
	jsLen, bodyLen, ok := parseFooter(foot[:])
	if !ok {
		return nil, 0, fmt.Errorf("%w: body file of %d bytes has no envelope trailer", ErrCorrupt, size)
	}
	if jsLen > maxTrailerJSON || bodyLen > size || bodyLen+jsLen+int64(footerLen) != size {
		return nil, 0, fmt.Errorf("%w: body file is %d bytes, its trailer says %d+%d", ErrCorrupt, size, bodyLen, jsLen)
	}
	js := make([]byte, jsLen)
	if _, err := r.ReadAt(js, bodyLen); err != nil && err != io.EOF {
		return nil, 0, err
	}
	it, err := parseMeta(js)
	if err != nil {
		return nil, 0, err
	}
	if it.Version < 2 || it.Size != bodyLen {
		return nil, 0, fmt.Errorf("%w: trailer of version %d says %d bytes, footer %d", ErrCorrupt, it.Version, it.Size, bodyLen)
	}
	return it, bodyLen, nil
}

func parseFooter(b []byte) (jsLen, bodyLen int64, ok bool) {
	if len(b) != footerLen || string(b[:len(footerMagic)]) != footerMagic || b[footerLen-1] != '\n' || b[len(footerMagic)+10] != ' ' {
		return 0, 0, false
	}
	num := func(p []byte) (int64, bool) {
		var v int64
		for _, c := range p {
			// 20 digits can exceed int64; no real length comes near.
			if c < '0' || c > '9' || v > (math.MaxInt64-9)/10 {
				return 0, false
			}
			v = v*10 + int64(c-'0')
		}
		return v, true
	}
	j, ok1 := num(b[len(footerMagic) : len(footerMagic)+10])
	l, ok2 := num(b[len(footerMagic)+11 : footerLen-1])
	return j, l, ok1 && ok2
}

// bodyLength returns how many bytes of f are the message, checked against
// the item's record: a version 1 body is the whole file, a version 2 body
// ends where its trailer begins.
func bodyLength(f *os.File, it *Item) (int64, error) {
	if it.Version == 1 {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if fi.Size() != it.Size {
			return 0, fmt.Errorf("%w: body is %d bytes, metadata says %d", ErrCorrupt, fi.Size(), it.Size)
		}
		return it.Size, nil
	}
	tr, n, err := readTrailer(f)
	if err == nil && tr.ID != it.ID {
		// The file is another message's: after a crash an old name could
		// lead to a file since reused (recycle.go).
		return 0, fmt.Errorf("%w: body file's trailer names id %q", ErrCorrupt, tr.ID)
	}
	if err != nil {
		fi, serr := f.Stat()
		if serr != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: body is %d bytes, metadata says %d and a trailer (%v)", ErrCorrupt, fi.Size(), it.Size, err)
	}
	if n != it.Size {
		return 0, fmt.Errorf("%w: body is %d bytes, metadata says %d", ErrCorrupt, n, it.Size)
	}
	return n, nil
}
