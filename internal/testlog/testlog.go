// SPDX-License-Identifier: MIT

// Package testlog holds what tests need to read a component's log output.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer collects log output written from several goroutines while a test
// reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far; "" for a nil Buffer.
func (l *Buffer) String() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
