// SPDX-License-Identifier: MIT

package spool

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dualmx/dualmx/metrics"
)

// Errors callers can test for with errors.Is.
var (
	ErrNotFound = errors.New("no such message in the spool")
	// ErrBusy means the daemon holds the message for a delivery attempt right now.
	ErrBusy = errors.New("message is being delivered, try again")
	// ErrDaemonRunning means another process already owns the spool as a daemon.
	ErrDaemonRunning = errors.New("spool is in use by another dualmx daemon")
	// ErrCorrupt marks an item whose record was read but makes no sense, or
	// whose body does not match it: it is quarantined, never guessed at.
	// I/O errors do not carry it.
	ErrCorrupt = errors.New("corrupt item")
)

const (
	msgExt        = ".msg"
	metaExt       = ".json"
	tmpPrefix     = ".tmp-"
	quarantineDir = "quarantine"
	daemonLock    = "daemon.lock"
	kickFile      = "kick"
)

// Spool is the on-disk queue. Several processes may open the same spool: one
// daemon (Open) and any number of admin commands (OpenAdmin); they
// coordinate through flock(2) on each item's body file, never through memory.
type Spool struct {
	dir    string
	fs     FS
	m      *metrics.Metrics
	log    *slog.Logger
	now    func() time.Time
	daemon *os.File // held for the daemon's lifetime
	// hostname names the reporting MTA in DSNs an admin asks for.
	hostname string
	// adminWait bounds how long admin commands wait for a delivery in flight.
	adminWait time.Duration
	dsync     *groupSync
	rec       recycler // files of delivered messages, for new ones
	// arrivals carries each item this daemon commits, so that delivery
	// starts at once; see Arrivals.
	arrivals chan Arrival
	health   healthCheck

	// committed holds, in the daemon, the envelope of each item committed by
	// this process that has no <id>.json yet, with its file's size, so the
	// first delivery attempt need not read back and parse what was just
	// written. An entry is only a shortcut: <id>.json, when it exists, wins.
	mu        sync.Mutex
	committed map[string]committedItem

	// dropped holds the items whose arrival was dropped, until a Rescan
	// hands them to the runner. Under mu.
	dropped []string
	// toRecover holds the items Open found, until Recover reads them;
	// recovered says it has. Under mu.
	toRecover []string
	recovered bool

	// view, viewSeq, viewFrom and listing: see view.go; under mu.
	view     map[string]viewEntry
	viewSeq  uint64
	viewFrom uint64
	listing  int
}

type committedItem struct {
	it       Item
	fileSize int64
}

// maxRemembered bounds the envelopes kept for first attempts. Delivery
// takes them as fast as they come while the tenant is up; while it is
// suspended nothing is attempted, and an outage of 100 000 messages would
// keep 100 000 envelopes in memory. Beyond the bound a first attempt reads
// its envelope back from the file, as after a restart.
const maxRemembered = 4096

// remember keeps it, which its Writer no longer changes; recall hands out
// copies.
func (s *Spool) remember(it *Item, fileSize int64) {
	c := committedItem{it: *it, fileSize: fileSize}
	c.it.end = fileSize
	s.mu.Lock()
	if s.daemon == nil {
		s.mu.Unlock()
		return
	}
	if len(s.committed) < maxRemembered {
		s.committed[it.ID] = c
	}
	s.viewSetLocked(it.ID, it.State, it.ReceivedAt)
	s.mu.Unlock()
}

func (s *Spool) recall(id string) (committedItem, bool) {
	s.mu.Lock()
	c, ok := s.committed[id]
	s.mu.Unlock()
	if ok {
		c.it.Recipients = slices.Clone(c.it.Recipients)
	}
	return c, ok
}

// pruneCommitted drops remembered envelopes of items no longer in the
// spool (removed by an admin command before their first attempt). An item
// committed since ids was read may be dropped too; it is then read back.
func (s *Spool) pruneCommitted(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.committed) == 0 {
		return
	}
	for id := range s.committed {
		if _, ok := slices.BinarySearch(ids, id); !ok {
			delete(s.committed, id)
		}
	}
}

func (s *Spool) forget(id string) {
	s.mu.Lock()
	delete(s.committed, id)
	s.mu.Unlock()
}

// Option adjusts a spool.
type Option func(*Spool)

// WithFS replaces the file system used for writing files (tests).
func WithFS(f FS) Option { return func(s *Spool) { s.fs = f } }

// WithClock replaces the clock used for ids and timestamps (tests).
func WithClock(now func() time.Time) Option { return func(s *Spool) { s.now = now } }

// WithHostname sets the name used as reporting MTA in admin-requested DSNs;
// default the host name. The runner uses its HelloName instead.
func WithHostname(name string) Option { return func(s *Spool) { s.hostname = name } }

// WithAdminWait sets how long admin commands wait for a delivery attempt in
// progress; default DefaultAdminWait.
func WithAdminWait(d time.Duration) Option { return func(s *Spool) { s.adminWait = d } }

// Open opens dir for the daemon: it creates the directory, takes the
// daemon lock so that two daemons never share a spool, and runs the first
// part of recovery; Recover reads the items it found. m and log may be nil.
func Open(dir string, m *metrics.Metrics, log *slog.Logger, opts ...Option) (*Spool, error) {
	s, err := open(dir, m, log, opts)
	if err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(dir, daemonLock), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool %s: %w", dir, ErrDaemonRunning)
		}
		return nil, fmt.Errorf("spool %s: lock: %w", dir, err)
	}
	s.daemon = lf
	s.arrivals = make(chan Arrival, arrivalsBuffer)
	if err := s.recover(); err != nil {
		s.Close()
		return nil, err
	}
	s.startRecycling()
	return s, nil
}

// Made reports whether dir is a spool that opening leaves as it is: one a
// daemon or an admin command has opened before. Opening any other directory
// makes the spool's own directories in it.
func Made(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, quarantineDir))
	return err == nil && fi.IsDir()
}

// OpenAdmin opens dir for the admin CLI, which may run while the daemon
// delivers: no recovery (it would delete the daemon's in-progress temp files)
// and no daemon lock.
func OpenAdmin(dir string, log *slog.Logger, opts ...Option) (*Spool, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	return open(dir, nil, log, opts)
}

func open(dir string, m *metrics.Metrics, log *slog.Logger, opts []Option) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{dir: dir, fs: OSFS{}, m: m, log: log, now: time.Now, adminWait: DefaultAdminWait, committed: map[string]committedItem{}, view: map[string]viewEntry{}}
	for _, o := range opts {
		o(s)
	}
	s.dsync = newGroupSync(dir, s.fs)
	if s.hostname == "" {
		s.hostname, _ = os.Hostname()
		if s.hostname == "" {
			s.hostname = "localhost"
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, quarantineDir), 0o750); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	return s, nil
}

// Close removes the pool of recycled files and releases the daemon lock.
func (s *Spool) Close() error {
	s.mu.Lock()
	d := s.daemon
	s.daemon = nil
	s.mu.Unlock()
	if d == nil {
		return nil
	}
	s.stopRecycling()
	return d.Close()
}

// arrivalsBuffer bounds the items waiting in Arrivals; beyond it an item is
// dropped and found by the next rescan instead.
const arrivalsBuffer = 1024

// Arrival is an item just committed: its id, and where it goes.
type Arrival struct {
	ID string
	// DSN: the item goes to the sender's server (Item.DSN: a DSN of ours
	// or a returned bounce), not to the tenant.
	DSN bool
}

// Arrivals delivers every item the daemon's spool commits (new messages,
// returned bounces and DSNs), as soon as it is durable, so delivery can
// start at once; it says where the item goes, so that the reader can
// treat a DSN as one from the start. A commit never waits for the reader:
// when the reader falls behind, arrivals are dropped (Dropped says so),
// and a Rescan finds those items. An admin spool's channel is nil.
func (s *Spool) Arrivals() <-chan Arrival { return s.arrivals }

// Dropped reports whether arrivals were dropped that no Rescan has handed
// over yet.
func (s *Spool) Dropped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dropped) > 0
}

// announce hands a committed item to the reader of Arrivals, if it keeps up.
func (s *Spool) announce(it *Item) {
	if s.arrivals == nil {
		return // an admin command's; the daemon rescans on its kick
	}
	select {
	case s.arrivals <- Arrival{ID: it.ID, DSN: it.DSN}:
	default:
		s.mu.Lock()
		s.dropped = append(s.dropped, it.ID)
		s.mu.Unlock()
	}
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// BodyPath returns the path of a message's body file: the message from
// offset 0, followed, for items of version 2, by the envelope trailer.
func (s *Spool) BodyPath(id string) string { return s.path(id, msgExt) }

// Body returns the message bytes of an item, without the envelope trailer
// that follows them in the body file, for an admin or a test to read. It
// holds a shared lock on the file until Close: the daemon neither delivers
// and removes the item meanwhile nor reuses its file (recycle.go); it waits
// up to the admin wait for a delivery attempt in progress.
func (s *Spool) Body(id string) (io.ReadCloser, error) {
	f, size, err := s.openLocked(id, syscall.LOCK_SH, s.adminWait)
	if err != nil {
		return nil, err
	}
	_, n, err := s.readItem(id, f, size, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, 0, n), f}, nil
}

func (s *Spool) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

// Get reads one item's metadata.
func (s *Spool) Get(id string) (Item, error) {
	it, err := s.readMeta(id)
	if err != nil {
		return Item{}, err
	}
	return *it, nil
}

func (s *Spool) readMeta(id string) (*Item, error) {
	it, _, err := s.readItem(id, nil, -1, false)
	return it, err
}

// readItem reads an item's current record: <id>.json when the item's state
// has changed since it was committed, otherwise the envelope trailer of its
// body file. f, when not nil, is the body file already open (and locked),
// and size its size when known (-1 otherwise).
// With check, the body's length is verified against the record and
// returned; a mismatch is ErrCorrupt, since sending it would deliver damaged
// mail.
func (s *Spool) readItem(id string, f *os.File, size int64, check bool) (rit *Item, rn int64, rerr error) {
	if !validID(id) {
		return nil, 0, fmt.Errorf("spool %q: %w", id, ErrNotFound)
	}
	b, err := os.ReadFile(s.path(id, metaExt))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("spool %s: %w", id, err)
	}
	if f == nil && (err != nil || check) {
		bf, oerr := s.fs.Open(s.path(id, msgExt))
		if errors.Is(oerr, fs.ErrNotExist) {
			if err == nil {
				return nil, 0, fmt.Errorf("spool %s: %w: metadata without body", id, ErrCorrupt)
			}
			return nil, 0, fmt.Errorf("spool %s: %w", id, ErrNotFound)
		}
		if oerr != nil {
			return nil, 0, fmt.Errorf("spool %s: %w", id, oerr)
		}
		defer bf.Close()
		f = bf
		// Read without the item's lock: a delivered item's file may be
		// recycled for a new message while we read it (recycle.go), and
		// what was read then belongs to neither.
		defer func() {
			if same, err := s.sameFile(id, bf); err != nil {
				rit, rn, rerr = nil, 0, fmt.Errorf("spool %s: %w", id, err)
			} else if !same {
				rit, rn, rerr = nil, 0, fmt.Errorf("spool %s: %w", id, ErrNotFound)
			}
		}()
	}
	var it *Item
	var n int64
	if err == nil {
		if it, err = parseMeta(b); err == nil {
			it.hasMeta = true
			if check {
				n, err = bodyLength(f, it)
			}
		}
	} else if c, ok := s.recall(id); ok {
		if size < 0 {
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				size = fi.Size()
			}
		}
		if size == c.fileSize {
			return &c.it, c.it.Size, nil
		}
		it, n, err = readTrailer(f)
	} else {
		it, n, err = readTrailer(f)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("spool %s: %w", id, err)
	}
	if it.ID != id {
		return nil, 0, fmt.Errorf("spool %s: %w: metadata names id %q", id, ErrCorrupt, it.ID)
	}
	return it, n, nil
}

// parseMeta decodes and checks the contents of an <id>.json file.
func parseMeta(b []byte) (*Item, error) {
	var it Item
	if err := json.Unmarshal(b, &it); err != nil {
		return nil, fmt.Errorf("%w: parse metadata: %w", ErrCorrupt, err)
	}
	if err := it.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &it, nil
}

// List returns every item, oldest first. Items that cannot be read are
// skipped: recovery quarantines them at the next start.
func (s *Spool) List() ([]Item, error) {
	items, _, err := s.Scan()
	return items, err
}

// Walk reads the items one at a time, oldest first, and hands each to fn
// until fn returns false. Unlike List it keeps none of them: a status page
// or a check that counts and shows a few costs the memory of those few,
// not of a backlog of 100 000 (List holds 70-100 MB for that). Items that
// cannot be read are skipped, as List skips them.
func (s *Spool) Walk(fn func(it *Item) bool) error {
	ids, err := s.ids()
	if err != nil {
		return err
	}
	for _, id := range ids {
		it, err := s.readMeta(id)
		if err != nil {
			continue
		}
		if !fn(it) {
			return nil
		}
	}
	return nil
}

// Scan is List, and also returns the ids of items that are there but could
// not be read: an attempt on one quarantines it if it is damaged, rather than
// leaving it unseen until a restart. The daemon's Scan also tidies: files
// kept for reuse that have not been used for a while are removed.
func (s *Spool) Scan() (items []Item, unreadable []string, err error) {
	s.trimFree(freeMaxIdle)
	start := s.listStart()
	defer func() {
		var entries []Entry
		if items != nil {
			entries = make([]Entry, len(items))
			for i := range items {
				entries[i] = items[i].entry()
			}
		}
		s.listEnd(start, entries, unreadable)
	}()
	ids, err := s.ids()
	if err != nil {
		return nil, nil, err
	}
	s.pruneCommitted(ids)
	out := make([]Item, 0, len(ids))
	for _, id := range ids {
		it, err := s.readMeta(id)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				s.log.Warn("spool: unreadable item", "id", id, "err", err)
				unreadable = append(unreadable, id)
			}
			continue
		}
		out = append(out, *it)
	}
	return out, unreadable, nil
}

// ids lists the ids that have a body file, sorted (ids sort by creation
// time): the body file is what makes an item exist.
func (s *Spool) ids() ([]string, error) {
	names, err := readDirNames(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.dir, err)
	}
	ids := names[:0]
	for _, name := range names {
		if id, ok := strings.CutSuffix(name, msgExt); ok && validID(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// readDirNames lists the names in dir, unsorted: a spool of 100 000 items
// is listed every minute, and os.ReadDir's entry per name and sort cost
// more than the names.
func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// Pending counts the messages that still hold undelivered mail for the public
// address: queued (pending or deferred) and held. The router refuses to flip
// an address to migrated while either is non-zero.
func (s *Spool) Pending(address string) (queued, held int, err error) {
	items, err := s.List()
	if err != nil {
		return 0, 0, err
	}
	q, h := CountPending(items)
	a := strings.ToLower(address)
	return q[a], h[a], nil
}

func encodeMeta(it *Item) ([]byte, error) {
	if it.Version == 0 {
		it.Version = FormatVersion
	}
	b, err := json.MarshalIndent(it, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("spool %s: encode metadata: %w", it.ID, err)
	}
	return append(b, '\n'), nil
}

// writeMeta replaces <id>.json atomically and durably.
func (s *Spool) writeMeta(it *Item) error {
	b, err := encodeMeta(it)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, tmpPrefix+it.ID+metaExt+"."+randHex())
	if err := s.writeFile(tmp, b); err != nil {
		return fmt.Errorf("spool %s: write metadata: %w", it.ID, err)
	}
	if err := s.fs.Rename(tmp, s.path(it.ID, metaExt)); err != nil {
		s.fs.Remove(tmp)
		return fmt.Errorf("spool %s: %w", it.ID, err)
	}
	it.hasMeta = true
	s.forget(it.ID)
	s.viewSet(it.ID, it.State, it.ReceivedAt)
	if err := s.dsync.Sync(); err != nil {
		return fmt.Errorf("spool %s: sync directory: %w", it.ID, err)
	}
	return nil
}

// appendToBody appends block, a verdict, to the body file of it, whose lock
// lk is held, where its envelope trailer ends: what a crash left of an
// earlier append goes first. Nothing is fsynced (see trailer.go). On a
// failure the file is cut back to the trailer's end, as far as it can be.
func (s *Spool) appendToBody(it *Item, lk *itemLock, block []byte) error {
	f, err := s.fs.Append(s.path(it.ID, msgExt))
	if err != nil {
		return err
	}
	if lk.size != it.end {
		err = f.Truncate(it.end)
	}
	if err == nil {
		_, err = f.Write(block)
	}
	if err != nil {
		s.noSpace(err)
		f.Truncate(it.end)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool %s: append verdict: %w", it.ID, err)
	}
	lk.size = it.end + int64(len(block))
	s.forget(it.ID) // the envelope remembered at commit has no verdict
	return nil
}

// writeFile writes and fsyncs a new file, removing it on any failure.
func (s *Spool) writeFile(name string, b []byte) error {
	f, err := s.fs.Create(name)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.fs.Remove(name)
		s.noSpace(err)
	}
	return err
}

// remove deletes an item and waits until the removal is durable. The body
// goes first: it is what makes an item exist, and it carries the envelope as
// committed, so removing <id>.json first could bring a delivered or dropped
// message back in its first state after a crash. A crash in between leaves
// metadata without a body, which recovery quarantines: a record to look at,
// never a message sent twice.
//
// The caller holds the item's lock and read it under that lock, so it knows
// whether <id>.json exists.
func (s *Spool) remove(it *Item) error {
	if err := s.unlink(it, nil); err != nil {
		return err
	}
	if err := s.dsync.Sync(); err != nil {
		return fmt.Errorf("spool %s: sync directory: %w", it.ID, err)
	}
	return nil
}

// removeDelivered deletes an item every recipient of which was delivered,
// without waiting for the removal to be durable: the next commit's directory
// fsync, or the runner's Flush within its poll interval, covers it. A crash
// before that brings the message back and it is delivered again, a
// duplicate as after a crash mid-delivery, never a loss. Waiting here would
// cost a directory fsync per message (a journal commit on a journaled file
// system) for that sliver of time.
//
// lk, the item's lock, may be nil; with it the body file is recycled for a
// new message (recycle.go) rather than removed.
func (s *Spool) removeDelivered(it *Item, lk *itemLock) error {
	if err := s.unlink(it, lk); err != nil {
		return err
	}
	n := s.dsync.Note()
	if lk != nil && lk.retired != nil {
		lk.retired.sync = n // reusable once this change is durable
	}
	return nil
}

func (s *Spool) unlink(it *Item, lk *itemLock) error {
	id := it.ID
	if !s.retire(id, it.Version, lk) {
		if err := s.fs.Remove(s.path(id, msgExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool %s: %w", id, err)
		}
	}
	s.viewGone(id) // the body is what makes an item exist
	if it.hasMeta {
		if err := s.fs.Remove(s.path(id, metaExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool %s: %w", id, err)
		}
	}
	return nil
}

// exists reports whether id's body file is there (an error other than "not
// there" counts as there: nothing is concluded from a failed look).
func (s *Spool) exists(id string) bool {
	_, err := os.Stat(s.path(id, msgExt))
	return !errors.Is(err, fs.ErrNotExist)
}

// Broken returns, once a directory fsync of the spool has failed, why the
// spool takes nothing more until a restart; nil while it is sound.
func (s *Spool) Broken() error { return s.dsync.broken() }

// FlushRemovals makes removals of delivered items durable now.
func (s *Spool) FlushRemovals() error {
	if err := s.dsync.Flush(); err != nil {
		return fmt.Errorf("spool %s: sync directory: %w", s.dir, err)
	}
	return nil
}

// ChangeMark returns what the last admin command that changed the spool
// left in its kick file. A daemon polls it: when it changes, another process
// changed the spool, and a Scan shows how.
func (s *Spool) ChangeMark() []byte {
	b, _ := os.ReadFile(filepath.Join(s.dir, kickFile))
	return b
}

// kick tells a running daemon to rescan the spool; it polls this file.
func (s *Spool) kick() {
	p := filepath.Join(s.dir, kickFile)
	if err := os.WriteFile(p, []byte(s.now().UTC().Format(time.RFC3339Nano)+" "+randHex()+"\n"), 0o640); err != nil {
		s.log.Warn("spool: cannot notify the daemon", "err", err)
	}
}

func randHex() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
