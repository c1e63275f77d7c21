// SPDX-License-Identifier: MIT

package spool

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// healthEvery is how often Health tries a write; in between, its last
// answer stands, so a monitor polling /healthz costs at most one fsync a
// second.
const healthEvery = time.Second

type healthCheck struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// Health reports whether the spool can take mail now: nil while no
// directory fsync of it has failed (after one it takes nothing until a
// restart, see Broken) and its directory takes a new file, written and
// fsynced. A full disk or a file system remounted read-only shows here
// before a sender sees a 451.
func (s *Spool) Health() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if !s.health.at.IsZero() && time.Since(s.health.at) < healthEvery {
		return s.health.err
	}
	err := s.Broken()
	if err == nil {
		err = s.tryWrite()
	}
	s.health.at, s.health.err = time.Now(), err
	return err
}

// tryWrite writes and fsyncs a small file in the spool directory and
// removes it. Its name is a temp name, so a crash in between leaves nothing
// that recovery does not remove.
func (s *Spool) tryWrite() error {
	name := filepath.Join(s.dir, tmpPrefix+"health-"+randHex())
	if err := s.writeFile(name, []byte("ok\n")); err != nil {
		return fmt.Errorf("spool %s: not writable: %w", s.dir, err)
	}
	if err := s.fs.Remove(name); err != nil {
		return fmt.Errorf("spool %s: %w", s.dir, err)
	}
	return nil
}
