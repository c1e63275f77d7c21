// SPDX-License-Identifier: MIT

// Package copybuf copies message bodies through pooled buffers: io.Copy
// would allocate 32 KiB for every message, into the spool and out to the
// next hop alike.
package copybuf

import (
	"io"
	"sync"
)

// copier is a pooled copy buffer. It stands in for both ends, so that
// neither the source's WriterTo (os.File's bypasses the buffer) nor the
// destination's ReaderFrom (the spool writer's is this copy) is used, and it
// is already a pointer, so passing it as io.Reader and io.Writer allocates
// nothing.
type copier struct {
	r   io.Reader
	w   io.Writer
	buf [32 << 10]byte
}

func (c *copier) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *copier) Write(p []byte) (int, error) { return c.w.Write(p) }

var copiers = sync.Pool{New: func() any { return new(copier) }}

// Copy copies src to dst until EOF, as io.Copy does, through a pooled
// buffer.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	c := copiers.Get().(*copier)
	c.r, c.w = src, dst
	n, err := io.CopyBuffer(c, c, c.buf[:])
	c.r, c.w = nil, nil
	copiers.Put(c)
	return n, err
}
