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
//
// One thing may be appended after the footer, once: the arrival verdict (the
// header fields every attempt puts first) of a message judged while the
// tenant was suspended, which the queue does for each message moments after
// it arrives. An outage of 100 000 messages would otherwise cost 100 000
// <id>.json files, each written, fsynced and renamed, while the CPU is
// wanted for accepting mail:
//
// verdict: <JSON {"id", "prepend"} on one line> "\nDUALMX-VERDICT <json length, 10 digits>\n"
//
// It is appended without an fsync. A verdict is not mail: a crash may lose
// it, leave it cut short, or leave zeros where it was to be, and a reader
// then finds the envelope's footer before whatever is there and takes the
// item as it was committed; the message is judged again at its next
// attempt. Appending never changes a byte before the footer's end, so no
// way of its going wrong can damage the envelope or the message, and a
// verdict block is never a reason to call an item corrupt.
const (
	footerMagic = "\nDUALMX-ENVELOPE "
	footerLen   = len(footerMagic) + 10 + 1 + 20 + 1
	// maxTrailerJSON bounds what a reader allocates for a trailer; an
	// envelope with the maximum recipients is a few tens of KiB.
	maxTrailerJSON = 16 << 20

	verdictMagic     = "\nDUALMX-VERDICT "
	verdictFooterLen = len(verdictMagic) + 10 + 1
	// maxVerdictJSON bounds a verdict block; a verdict that does not fit
	// (an ARC set is a few KiB) goes to <id>.json instead.
	maxVerdictJSON = 64 << 10
	// maxTail is how far before the end of a file a reader looks for the
	// envelope's footer behind a verdict block that is cut short.
	maxTail = maxVerdictJSON + verdictFooterLen + footerLen
)

// verdict is the JSON of a verdict block.
type verdict struct {
	ID      string `json:"id"`
	Prepend string `json:"prepend"`
}

// appendVerdict appends the verdict block for item id to b.
func appendVerdict(b []byte, id, prepend string) ([]byte, error) {
	js, err := json.Marshal(verdict{ID: id, Prepend: prepend})
	if err != nil {
		return nil, fmt.Errorf("spool %s: encode verdict: %w", id, err)
	}
	if len(js) > maxVerdictJSON {
		return nil, fmt.Errorf("spool %s: verdict of %d bytes is too long to append", id, len(js))
	}
	b = append(b, js...)
	b = append(b, verdictMagic...)
	b = appendPadded(b, int64(len(js)), 10)
	return append(b, '\n'), nil
}

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

// readTrailerAt is readTrailer for size bytes readable from r. The item's
// end is where its envelope's footer ends; a verdict block after it sets
// its Prepend.
func readTrailerAt(r io.ReaderAt, size int64) (*Item, int64, error) {
	if size < int64(footerLen) {
		return nil, 0, fmt.Errorf("%w: body file of %d bytes has no envelope trailer", ErrCorrupt, size)
	}
	var foot [footerLen]byte
	if _, err := r.ReadAt(foot[:], size-int64(footerLen)); err != nil {
		return nil, 0, err
	}
	end := size
	jsLen, bodyLen, ok := parseFooter(foot[:])
	var vjs []byte // a verdict block's JSON
	if !ok {
		var err error
		if end, vjs, err = findFooter(r, size); err != nil {
			return nil, 0, err
		}
		if _, err := r.ReadAt(foot[:], end-int64(footerLen)); err != nil {
			return nil, 0, err
		}
		jsLen, bodyLen, _ = parseFooter(foot[:])
	}
	if jsLen > maxTrailerJSON || bodyLen > end || bodyLen+jsLen+int64(footerLen) != end {
		return nil, 0, fmt.Errorf("%w: body file is %d bytes, its trailer says %d+%d", ErrCorrupt, end, bodyLen, jsLen)
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
	it.end = end
	if vjs != nil {
		var v verdict
		if json.Unmarshal(vjs, &v) == nil && v.ID == it.ID && v.Prepend != "" {
			it.Prepend = v.Prepend
		}
	}
	return it, bodyLen, nil
}

// findFooter finds the envelope's footer of a body file that does not end
// with one: behind a verdict block (whose JSON it returns too), or behind
// what a crash left of one. It returns where the footer ends; a file with
// no footer that adds up in its last maxTail bytes has no trailer.
func findFooter(r io.ReaderAt, size int64) (int64, []byte, error) {
	// A whole verdict block: its footer, then its JSON and the envelope's
	// footer before it in one read.
	if size >= int64(verdictFooterLen+footerLen) {
		var vf [verdictFooterLen]byte
		if _, err := r.ReadAt(vf[:], size-int64(verdictFooterLen)); err != nil {
			return 0, nil, err
		}
		if n, ok := parseVerdictFooter(vf[:]); ok {
			if end := size - int64(verdictFooterLen) - n; end >= int64(footerLen) {
				b := make([]byte, int64(footerLen)+n)
				if _, err := r.ReadAt(b, end-int64(footerLen)); err != nil {
					return 0, nil, err
				}
				jsLen, bodyLen, ok := parseFooter(b[:footerLen])
				if ok && jsLen <= maxTrailerJSON && bodyLen+jsLen+int64(footerLen) == end {
					return end, b[footerLen:], nil
				}
			}
		}
	}
	// What a crash left of a verdict: the last footer that adds up.
	tail := make([]byte, min(size, int64(maxTail)))
	off := size - int64(len(tail))
	if _, err := r.ReadAt(tail, off); err != nil && err != io.EOF {
		return 0, nil, err
	}
	// consistent: a footer ends at tail[end], and says so.
	consistent := func(end int) bool {
		if end < footerLen {
			return false
		}
		jsLen, bodyLen, ok := parseFooter(tail[end-footerLen : end])
		return ok && jsLen <= maxTrailerJSON && bodyLen+jsLen+int64(footerLen) == off+int64(end)
	}
	for end := len(tail); end >= footerLen; end-- {
		if tail[end-1] == '\n' && consistent(end) {
			return off + int64(end), nil, nil
		}
	}
	return 0, nil, fmt.Errorf("%w: body file of %d bytes has no envelope trailer", ErrCorrupt, size)
}

func parseFooter(b []byte) (jsLen, bodyLen int64, ok bool) {
	if len(b) != footerLen || string(b[:len(footerMagic)]) != footerMagic || b[footerLen-1] != '\n' || b[len(footerMagic)+10] != ' ' {
		return 0, 0, false
	}
	j, ok1 := parseDigits(b[len(footerMagic) : len(footerMagic)+10])
	l, ok2 := parseDigits(b[len(footerMagic)+11 : footerLen-1])
	return j, l, ok1 && ok2
}

// parseVerdictFooter returns the length of the verdict JSON before b.
func parseVerdictFooter(b []byte) (int64, bool) {
	if len(b) != verdictFooterLen || string(b[:len(verdictMagic)]) != verdictMagic || b[verdictFooterLen-1] != '\n' {
		return 0, false
	}
	n, ok := parseDigits(b[len(verdictMagic) : verdictFooterLen-1])
	return n, ok && n <= maxVerdictJSON
}

// parseDigits reads a footer's zero-padded decimal number.
func parseDigits(p []byte) (int64, bool) {
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
