// SPDX-License-Identifier: MIT

package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// recover brings the spool to a state the runner can trust. It only runs in
// the daemon, under the daemon lock, so every temp file is a leftover of a
// crash. Anything that cannot be read is moved aside, never deleted: it may
// be somebody's mail, and an admin decides.
func (s *Spool) recover() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool %s: recovery: %w", s.dir, err)
	}
	bodies := map[string]bool{}
	metas := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		switch {
		case e.IsDir() || name == daemonLock || name == kickFile:
		case strings.HasPrefix(name, tmpPrefix):
			if err := s.fs.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("spool %s: recovery: %w", s.dir, err)
			}
			s.log.Info("spool: removed stale temp file", "file", name)
		case strings.HasSuffix(name, msgExt) && validID(strings.TrimSuffix(name, msgExt)):
			bodies[strings.TrimSuffix(name, msgExt)] = true
		case strings.HasSuffix(name, metaExt) && validID(strings.TrimSuffix(name, metaExt)):
			metas[strings.TrimSuffix(name, metaExt)] = true
		default:
			s.log.Warn("spool: unexpected file left alone", "file", name)
		}
	}
	loaded, quarantined := 0, 0
	for id := range bodies {
		reason := ""
		if _, _, err := s.readItem(id, nil, -1, true); errors.Is(err, ErrNotFound) {
			// Removed by an admin command since the directory was read.
			delete(metas, id)
			continue
		} else if err != nil {
			reason = err.Error()
			if !metas[id] {
				// A body file without a trailer and without metadata was
				// never acknowledged (a version 1 commit writes the
				// metadata last) or was damaged; keep it for inspection.
				reason = "body without metadata: " + reason
			}
		}
		delete(metas, id)
		if reason == "" {
			loaded++
			continue
		}
		if err := s.quarantine(id, reason); err != nil {
			return err
		}
		quarantined++
	}
	// Metadata without a body: a removal cut short by a crash (the body goes
	// first), or a body lost behind our back. Either way a record for an admin.
	for id := range metas {
		if err := s.quarantine(id, "metadata without body"); err != nil {
			return err
		}
		quarantined++
	}
	if err := syncDir(s.fs, s.dir); err != nil {
		return fmt.Errorf("spool %s: recovery: sync directory: %w", s.dir, err)
	}
	s.log.Info("spool: recovered", "dir", s.dir, "items", loaded, "quarantined", quarantined)
	return nil
}

func (s *Spool) quarantine(id, reason string) error {
	s.forget(id)
	qdir := filepath.Join(s.dir, quarantineDir)
	for _, ext := range []string{msgExt, metaExt} {
		src := s.path(id, ext)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dst := filepath.Join(qdir, id+ext)
		if _, err := os.Stat(dst); err == nil {
			dst += "." + randHex()
		}
		if err := s.fs.Rename(src, dst); err != nil {
			return fmt.Errorf("spool %s: quarantine: %w", id, err)
		}
		if ext == msgExt {
			s.viewGone(id) // the body is what makes an item exist
		}
	}
	if err := syncDir(s.fs, qdir); err != nil {
		return fmt.Errorf("spool %s: quarantine: sync: %w", id, err)
	}
	s.log.Error("spool: quarantined unreadable item", "id", id, "reason", reason, "dir", qdir)
	if s.m != nil {
		s.m.Quarantined.Inc()
	}
	return nil
}
