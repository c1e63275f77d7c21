// SPDX-License-Identifier: MIT

package arc

import (
	"bufio"
	"io"
	"sync"
)

// readers recycles the 32 KiB read buffers of Verify and Seal: both run for
// every relayed message, and a fresh buffer each time is garbage the
// collector then spends its time on. Nothing read through one outlives the
// call (readHeader copies each field).
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}
