// SPDX-License-Identifier: MIT

package migrate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dualmx/dualmx/internal/durable"
)

// progressVersion is the layout of the progress file. Version 1 (no
// version field) came from a dualmx whose copies were drafts; it is refused
// rather than read, so such an import is looked at before it is rerun.
const progressVersion = 2

// Progress is an import's state, kept in a file so a run can resume and
// "import status" can show it from another process. It never holds a
// password. Between snapshots, every message moved is appended to a journal
// beside it (Journal), so a run that stops anywhere loses no record.
type Progress struct {
	Version  int       `json:"version"`
	Mailbox  string    `json:"mailbox"`
	Method   string    `json:"method"` // "microsoft", "imap-copy" or "pst"
	Reason   string    `json:"reason,omitempty"`
	Host     string    `json:"host,omitempty"`
	User     string    `json:"user,omitempty"`
	File     string    `json:"file,omitempty"` // the PST file
	Batch    string    `json:"batch,omitempty"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
	Finished time.Time `json:"finished,omitzero"`
	// Run is the current (or last) run, for the rate.
	Run     RunStats       `json:"run"`
	Folders []*FolderState `json:"folders,omitempty"`
	// Pending are creates that were under way when a run stopped: each may
	// or may not have happened, and is looked up before anything else.
	Pending []Pending `json:"pending,omitempty"`
}

// RunStats counts one run.
type RunStats struct {
	Started time.Time `json:"started"`
	Moved   int       `json:"moved"`
	Skipped int       `json:"skipped"`
	Bytes   int64     `json:"bytes"`
}

// PerMinute is the run's rate in messages a minute.
func (r RunStats) PerMinute(now time.Time) float64 {
	d := now.Sub(r.Started)
	if r.Started.IsZero() || d <= 0 {
		return 0
	}
	return float64(r.Moved) / d.Minutes()
}

// FolderState is one source folder's progress.
type FolderState struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	// Validity is the UIDVALIDITY the UIDs belong to; when the old host
	// changes it, UIDs mean nothing any more and Keys decide.
	Validity uint32 `json:"uidvalidity,omitempty"`
	UIDs     string `json:"uids,omitempty"` // moved, as "1-40,42"
	// Keys identify the moved messages by content (see contentKey).
	Keys  []string `json:"keys,omitempty"`
	Found int      `json:"found"`
	Moved int      `json:"moved"`
	Skips []Skip   `json:"skipped,omitempty"`

	uids map[uint32]bool
	keys map[string]bool
}

// Skip is a message that could not be imported, and why. Skipped messages
// are tried again on the next run.
type Skip struct {
	UID     uint32    `json:"uid,omitempty"`
	Key     string    `json:"key,omitempty"`
	Subject string    `json:"subject,omitempty"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Pending is a create that may have happened.
type Pending struct {
	Folder   string `json:"folder"`
	FolderID string `json:"folder_id"`
	Key      string `json:"key"`
	UID      uint32 `json:"uid,omitempty"`
}

// journalLine is one record in the journal.
type journalLine struct {
	Op       string `json:"op"` // "pending" or "done"
	Folder   string `json:"folder"`
	FolderID string `json:"folder_id,omitempty"`
	Validity uint32 `json:"uidvalidity,omitempty"`
	UID      uint32 `json:"uid,omitempty"`
	Key      string `json:"key"`
}

func journalPath(path string) string { return path + ".journal" }

// progressMode is the mode of the progress file, its journal and its lock:
// readable by the state's group, as the state database is, so a member of
// it may run "import status". They hold no secret (the old host's password
// is never written down): the mailbox, the old host and its user name,
// folder names, UIDs, hashes of Message-IDs, and the subject and reason of
// each skipped message, mail metadata of the kind "queue list" already
// shows that group (senders, recipients, replies). The lock must be
// readable too, or a reader would take a running import for a stopped one.
// The mode is set whatever the umask, and on files an earlier dualmx made
// 0600 (openProgressFile).
const progressMode = 0o640

// openProgressFile opens (creating) the journal or the lock of a progress
// file, with progressMode.
func openProgressFile(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|os.O_CREATE, progressMode)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(progressMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// LoadProgress reads a progress file and replays its journal; a missing
// file is a nil Progress.
func LoadProgress(path string) (*Progress, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p Progress
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("migrate: %s: %w", path, err)
	}
	if p.Version != progressVersion {
		return nil, fmt.Errorf("migrate: %s was written by an older dualmx whose copies arrived as drafts; "+
			"remove those drafts, move the file away and start again", path)
	}
	for _, f := range p.Folders {
		f.index()
	}
	if err := p.replay(journalPath(path)); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Progress) replay(jpath string) error {
	b, err := os.ReadFile(jpath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l journalLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			// Only the last line can be cut short by a crash. A torn
			// "pending" was written before its create was sent; a torn
			// "done" leaves its "pending" standing, to be looked up.
			continue
		}
		f := p.folder(l.Folder)
		switch l.Op {
		case "pending":
			p.Pending = append(p.Pending, Pending{Folder: l.Folder, FolderID: l.FolderID, Key: l.Key, UID: l.UID})
		case "done":
			f.markDone(l.Validity, l.UID, l.Key)
			p.dropPending(l.Folder, l.Key)
		}
	}
	return sc.Err()
}

func (p *Progress) dropPending(folder, key string) {
	out := p.Pending[:0]
	for _, x := range p.Pending {
		if x.Folder != folder || x.Key != key {
			out = append(out, x)
		}
	}
	p.Pending = out
}

func (f *FolderState) index() {
	f.uids = parseUIDs(f.UIDs)
	f.keys = map[string]bool{}
	for _, k := range f.Keys {
		f.keys[k] = true
	}
}

// folder returns the state of a source folder, adding it when new.
func (p *Progress) folder(name string) *FolderState {
	for _, f := range p.Folders {
		if f.Name == name {
			return f
		}
	}
	f := &FolderState{Name: name}
	f.index()
	p.Folders = append(p.Folders, f)
	return f
}

// setValidity starts the folder over on UIDs when UIDVALIDITY changed; the
// content keys stay and keep a moved message from being moved again.
func (f *FolderState) setValidity(v uint32) {
	if f.Validity != v {
		f.Validity = v
		f.uids = map[uint32]bool{}
	}
}

func (f *FolderState) doneUID(uid uint32) bool { return uid != 0 && f.uids[uid] }
func (f *FolderState) doneKey(key string) bool { return f.keys[key] }

func (f *FolderState) markDone(validity, uid uint32, key string) {
	if f.uids == nil {
		f.index()
	}
	if uid != 0 && validity == f.Validity {
		f.uids[uid] = true
	}
	if key != "" && !f.keys[key] {
		f.keys[key] = true
		f.Keys = append(f.Keys, key)
	}
	f.Moved = len(f.Keys)
}

// Save writes the snapshot atomically (temporary file, fsync, rename,
// directory fsync) and then empties the journal, which it now contains.
func (p *Progress) Save(path string) error {
	p.Version = progressVersion
	for _, f := range p.Folders {
		f.UIDs = formatUIDs(f.uids)
		f.Moved = len(f.Keys)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := durable.WriteFile(path, append(b, '\n'), progressMode); err != nil {
		return fmt.Errorf("migrate: save %s: %w", path, err)
	}
	if err := os.Truncate(journalPath(path), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("migrate: empty journal of %s: %w", path, err)
	}
	return nil
}

// Journal appends one line per create to the progress file's journal and
// syncs it, so that a run stopped between snapshots still knows what it did.
type Journal struct {
	f *os.File
}

// OpenJournal opens (creating) the journal of the progress file at path.
func OpenJournal(path string) (*Journal, error) {
	f, err := openProgressFile(journalPath(path), os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return nil, fmt.Errorf("migrate: journal: %w", err)
	}
	return &Journal{f: f}, nil
}

func (j *Journal) write(l journalLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("migrate: journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("migrate: journal: %w", err)
	}
	return nil
}

// Close closes the journal file.
func (j *Journal) Close() error { return j.f.Close() }

func formatUIDs(set map[uint32]bool) string {
	uids := make([]uint32, 0, len(set))
	for u := range set {
		uids = append(uids, u)
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	var sb strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(uint64(uids[i]), 10))
		if j > i {
			sb.WriteByte('-')
			sb.WriteString(strconv.FormatUint(uint64(uids[j]), 10))
		}
		i = j + 1
	}
	return sb.String()
}

// parseUIDs reads formatUIDs' form; what does not parse is left out, which
// at worst makes a message be looked at again (and found by its key).
func parseUIDs(s string) map[uint32]bool {
	out := map[uint32]bool{}
	for _, r := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a || b-a > 10_000_000 {
				continue
			}
		}
		for u := a; u <= b; u++ {
			out[uint32(u)] = true
		}
	}
	return out
}
