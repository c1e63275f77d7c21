// SPDX-License-Identifier: MIT

package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dualmx/dualmx/internal/copybuf"
)

const writeBuffer = 64 << 10

// bufPool recycles write buffers: a fresh 64 KiB buffer per message is most
// of what the accept path allocates, and the garbage collector's time shows.
var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBuffer) }}

// release returns the buffer; the writer must not be used afterwards.
func (w *Writer) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		bufPool.Put(w.bw)
		w.bw = nil
	}
}

// Writer streams one message body into the spool. Nothing is visible in the
// spool until Commit returns an id; after an error or Abort nothing remains.
type Writer struct {
	s   *Spool
	it  Item
	tmp string
	f   File
	// reused: f is a recycled file of oldSize bytes, longer perhaps than
	// this message.
	reused  bool
	oldSize int64
	bw      *bufio.Writer
	err     error
	done    bool
}

// NewWriter starts a message. The SMTP session writes DATA through the
// writer, so memory stays bounded whatever the message size.
func (s *Spool) NewWriter(env Envelope) (*Writer, error) {
	return s.newWriter(env, env.Returned)
}

func (s *Spool) newWriter(env Envelope, dsn bool) (*Writer, error) {
	if len(env.Recipients) == 0 {
		return nil, errors.New("spool: message without recipients")
	}
	if err := s.dsync.broken(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.dir, err)
	}
	now := s.now()
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = now
	}
	it := Item{
		Version: FormatVersion, ID: newID(now), From: env.From, ReceivedAt: env.ReceivedAt.UTC(),
		ClientIP: env.ClientIP, Helo: env.Helo, EightBit: env.EightBit, SMTPUTF8: env.SMTPUTF8,
		DSN: dsn, Report: env.Report, State: StatePending, NextAttempt: now.UTC(),
	}
	for _, r := range env.Recipients {
		if strings.TrimSpace(r.Target) == "" {
			return nil, fmt.Errorf("spool: recipient %q has no target", r.Rcpt)
		}
		it.Recipients = append(it.Recipients, Recipient{Rcpt: r.Rcpt, Address: r.Address, Target: r.Target, State: RcptPending})
	}
	f, tmp, oldSize := s.reuse()
	reused := f != nil
	if !reused {
		tmp = filepath.Join(s.dir, tmpPrefix+it.ID+msgExt)
		var err error
		if f, err = s.fs.Create(tmp); err != nil {
			s.noSpace(err)
			return nil, fmt.Errorf("spool %s: create body: %w", it.ID, err)
		}
	}
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(f)
	return &Writer{s: s, it: it, tmp: tmp, f: f, reused: reused, oldSize: oldSize, bw: bw}, nil
}

// SetReport records, before Commit, that the message is a delivery report,
// which the header shows only once it has been read.
func (w *Writer) SetReport(v bool) { w.it.Report = v }

// ID returns the id the message will have once committed, for logging.
func (w *Writer) ID() string { return w.it.ID }

// Write appends body bytes. The first error sticks: later writes and Commit return it.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("spool %s: write after commit or abort", w.it.ID)
	}
	if !w.it.EightBit {
		for _, c := range p {
			if c >= 0x80 {
				// Declared 7-bit or not, 8-bit bytes must never reach a
				// 7-bit-only target, so the content decides.
				w.it.EightBit = true
				break
			}
		}
	}
	n, err := w.bw.Write(p)
	w.it.Size += int64(n)
	if err != nil {
		w.s.noSpace(err)
		w.err = fmt.Errorf("spool %s: write body: %w", w.it.ID, err)
		return n, w.err
	}
	return n, nil
}

// ReadFrom copies r into the message until EOF, so io.Copy into a Writer
// (the SMTP session's DATA) costs no allocation.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) { return copybuf.Copy(w, r) }

// Commit makes the message durable: the envelope trailer is appended to the
// body's temporary file, the file is fsynced, renamed into place (its
// appearance is what makes the item exist) and the directory is fsynced.
// Only after Commit returns may the SMTP server answer 250.
func (w *Writer) Commit() (string, error) {
	if w.done {
		return "", fmt.Errorf("spool %s: commit after commit or abort", w.it.ID)
	}
	w.done = true
	id := w.it.ID
	err := w.err
	var fileSize int64
	if err == nil {
		var tr []byte
		if tr, err = appendTrailer(w.bw.AvailableBuffer(), &w.it); err == nil {
			_, err = w.bw.Write(tr)
			fileSize = w.it.Size + int64(len(tr))
		}
		if err == nil {
			err = w.bw.Flush()
		}
		if err != nil {
			err = fmt.Errorf("spool %s: write: %w", id, err)
		}
	}
	w.release()
	if err == nil && w.reused && (w.oldSize <= 0 || fileSize < w.oldSize) {
		// The rest of the delivered message the file held goes.
		if err = w.f.Truncate(fileSize); err != nil {
			err = fmt.Errorf("spool %s: truncate: %w", id, err)
		}
	}
	if err == nil {
		if err = w.f.Sync(); err != nil {
			err = fmt.Errorf("spool %s: sync: %w", id, err)
		}
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool %s: close: %w", id, cerr)
	}
	if err != nil {
		w.s.fs.Remove(w.tmp)
		w.s.noSpace(err)
		return "", err
	}
	if err := w.s.dsync.broken(); err != nil {
		// Broken since the message began: nothing may be renamed into a
		// directory whose fsyncs prove nothing.
		w.s.fs.Remove(w.tmp)
		return "", fmt.Errorf("spool %s: %w", id, err)
	}
	// Remembered before the rename: from the rename on, the runner may find
	// the item in a scan, deliver and remove it, and a later remember would
	// bring it back into the queue gauges.
	w.s.remember(&w.it, fileSize)
	msg := w.s.path(id, msgExt)
	if err := w.s.fs.Rename(w.tmp, msg); err != nil {
		w.s.fs.Remove(w.tmp)
		w.s.viewGone(id)
		return "", fmt.Errorf("spool %s: %w", id, err)
	}
	if err := w.s.dsync.Sync(); err != nil {
		// The sender will be told to retry, so the item must not survive
		// to be delivered as well.
		w.s.fs.Remove(msg)
		w.s.viewGone(id)
		w.s.dsync.Sync()
		return "", fmt.Errorf("spool %s: sync directory: %w", id, err)
	}
	w.s.announce(&w.it)
	// The SMTP session logs the accepted message with the same id; this line
	// is for debugging the spool alone, so it stays off the per-message log.
	w.s.log.Debug("spool: committed", "id", id, "from", w.it.From, "rcpts", len(w.it.Recipients),
		"size", w.it.Size, "eight_bit", w.it.EightBit)
	return id, nil
}

// Abort discards the message; safe to call after Commit (it does nothing then).
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.release()
	w.f.Close()
	w.s.fs.Remove(w.tmp)
}
