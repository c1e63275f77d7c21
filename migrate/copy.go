// SPDX-License-Identifier: MIT

package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/mailmsg"
)

// Target is the mailbox mail is imported into; *m365.Graph is one.
type Target interface {
	EnsureFolder(ctx context.Context, mailbox, root string, path []string) (string, error)
	ImportMessage(ctx context.Context, mailbox, folderID string, m *m365.MailImport) (string, error)
	VerifyImport(ctx context.Context, mailbox, id string, m *m365.MailImport) error
	FindImported(ctx context.Context, mailbox, folderID, key string) (string, error)
}

// Item is one message of a source folder, known before its content is read.
type Item struct {
	UID      uint32 // 0 for sources without UIDs
	Key      string // content key when the source can tell it without the body
	Size     int64
	Received time.Time
	Subject  string
	Seen     bool
	Flagged  bool
	Draft    bool
	Deleted  bool
	// ref is the source's own handle (a file name for a PST).
	ref string
}

// source is where old mail comes from: an IMAP account, or a PST file
// unpacked by readpst.
type source interface {
	Folders(ctx context.Context) ([]Folder, error)
	// Open lists a folder's messages; validity is its UIDVALIDITY, or 0.
	Open(ctx context.Context, f Folder) (validity uint32, items []Item, err error)
	Body(ctx context.Context, f Folder, it Item) ([]byte, error)
	Close() error
}

// Options tune a run. The zero value is fine.
type Options struct {
	// Out gets a progress line per folder every Every (10s) and when the
	// folder is done; nil prints nothing.
	Out   io.Writer
	Every time.Duration
	// SaveEvery is the number of messages between snapshots of the
	// progress file (100); the journal covers the messages in between.
	SaveEvery int
	Now       func() time.Time
}

func (o *Options) defaults() {
	if o.Every <= 0 {
		o.Every = 10 * time.Second
	}
	if o.SaveEvery <= 0 {
		o.SaveEvery = 100
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// maxMessageBytes is the largest message Exchange Online takes at all (the
// size limit can be raised to 150 MB, not beyond).
const maxMessageBytes = 150 << 20

// refusedInARow is how many messages in a row may be refused before the
// first import of a run succeeded, before dualmx concludes the tenant
// refuses its way of importing rather than those messages.
const refusedInARow = 5

// errTooLarge is a message over maxMessageBytes, found while reading it.
var errTooLarge = errors.New("message too large")

const tooLargeReason = "over the 150 MB Exchange Online takes at most"

// errGone is a message that disappeared from the source while it was read.
var errGone = errors.New("message gone from the source")

// ErrLocked means another dualmx is importing into the same mailbox.
var ErrLocked = errors.New("another import into this mailbox is running")

type run struct {
	src      source
	t        Target
	p        *Progress
	path     string
	o        Options
	j        *Journal
	verified bool
	refused  int
	sinceSav int
	lastLine time.Time
}

// copyAll moves every folder of src into p.Mailbox, skipping what p
// records as moved.
func copyAll(ctx context.Context, src source, t Target, p *Progress, path string, o Options) (err error) {
	o.defaults()
	unlock, err := lockProgress(path)
	if err != nil {
		return err
	}
	defer unlock()
	j, err := OpenJournal(path)
	if err != nil {
		return err
	}
	defer j.Close()
	r := &run{src: src, t: t, p: p, path: path, o: o, j: j}
	now := o.Now().UTC()
	p.Run = RunStats{Started: now}
	p.Finished = time.Time{}
	if p.Started.IsZero() {
		p.Started = now
	}
	defer func() {
		p.Updated = r.o.Now().UTC()
		if err == nil {
			p.Finished = p.Updated
		}
		if serr := p.Save(path); serr != nil && err == nil {
			err = serr
		}
		r.summary(err)
	}()
	if err := p.Save(path); err != nil {
		return err
	}
	if err := r.resolvePending(ctx); err != nil {
		return err
	}
	folders, err := src.Folders(ctx)
	if err != nil {
		return err
	}
	where := Map(folders)
	for _, f := range folders {
		w, ok := where[f.Name]
		if !ok {
			continue
		}
		if err := r.folder(ctx, f, w); err != nil {
			return err
		}
	}
	return nil
}

func lockProgress(path string) (func(), error) {
	if err := os.MkdirAll(dirOf(path), 0o750); err != nil {
		return nil, err
	}
	f, err := openProgressFile(path+".lock", os.O_WRONLY)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, os.PathSeparator); i > 0 {
		return path[:i]
	}
	return "."
}

// resolvePending looks up the creates a stopped run left uncertain.
func (r *run) resolvePending(ctx context.Context) error {
	for _, pd := range r.p.Pending {
		id, err := r.t.FindImported(ctx, r.p.Mailbox, pd.FolderID, pd.Key)
		if err != nil && !errors.Is(err, m365.ErrNotFound) {
			return fmt.Errorf("migrate: look up a message the last run may have stored: %w", err)
		}
		if id != "" {
			f := r.p.folder(pd.Folder)
			f.markDone(f.Validity, pd.UID, pd.Key)
			if err := r.j.write(journalLine{Op: "done", Folder: pd.Folder, Validity: f.Validity, UID: pd.UID, Key: pd.Key}); err != nil {
				return err
			}
		}
	}
	r.p.Pending = nil
	return r.p.Save(r.path)
}

// contentKey identifies a message for de-duplication, independent of its
// UID: its Message-ID with its size, or a hash of its bytes without one.
// Kept as a hash, so it has one length and needs no quoting anywhere.
func contentKey(messageID string, size int64, body []byte) string {
	h := sha256.New()
	if messageID != "" {
		h.Write([]byte("mid\x00" + strings.Trim(messageID, "<> ") + "\x00" + strconv.FormatInt(size, 10)))
	} else {
		h.Write([]byte("raw\x00"))
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}

func (r *run) folder(ctx context.Context, f Folder, w Where) error {
	fs := r.p.folder(f.Name)
	fs.Target = w.String()
	validity, items, err := r.src.Open(ctx, f)
	if err != nil {
		return err
	}
	fs.setValidity(validity)
	fs.Found = len(items)
	fs.Skips = nil
	folderID := ""
	ensure := func() error {
		if folderID != "" {
			return nil
		}
		id, err := r.t.EnsureFolder(ctx, r.p.Mailbox, w.Root, w.Path)
		if err != nil {
			return err
		}
		folderID = id
		return nil
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if fs.doneUID(it.UID) {
			continue
		}
		if it.Key != "" && fs.doneKey(it.Key) {
			fs.markDone(validity, it.UID, it.Key)
			continue
		}
		if it.Deleted {
			r.skip(fs, it, "", "marked deleted at the old host and not yet expunged")
			continue
		}
		if it.Size > maxMessageBytes {
			r.skip(fs, it, "", tooLargeReason)
			continue
		}
		body, err := r.src.Body(ctx, f, it)
		if errors.Is(err, errTooLarge) {
			r.skip(fs, it, "", tooLargeReason)
			continue
		}
		if errors.Is(err, errGone) {
			// Expunged at the old host since the folder was listed.
			fs.Found--
			continue
		}
		if err != nil {
			return err
		}
		key := it.Key
		if key == "" {
			key = contentKey("", 0, body)
			if fs.doneKey(key) {
				fs.markDone(validity, it.UID, key)
				continue
			}
		}
		parsed, err := mailmsg.Parse(body)
		if err != nil {
			r.skip(fs, it, key, err.Error())
			continue
		}
		m := &m365.MailImport{Message: *parsed, Received: it.Received}
		if it.Subject == "" {
			it.Subject = m.Subject
		}
		if m.Received.IsZero() {
			m.Received = mailmsg.ReceivedTime(body)
		}
		if m.Received.IsZero() {
			m.Received = m.Sent
		}
		// A message in the Drafts folder is a draft whatever its flags say.
		m.Read, m.Flagged, m.Draft, m.Key = it.Seen, it.Flagged, it.Draft || w.Root == m365.FolderDrafts, key
		if err := ensure(); err != nil {
			if refusedMessage(err) {
				// Exchange will not make this folder: say so for each of
				// its messages and go on with the other folders.
				r.skipRest(fs, items, "the folder "+w.String()+" could not be made: "+err.Error())
				return nil
			}
			return err
		}
		if err := r.j.write(journalLine{Op: "pending", Folder: f.Name, FolderID: folderID, UID: it.UID, Key: key}); err != nil {
			return err
		}
		r.p.Pending = append(r.p.Pending, Pending{Folder: f.Name, FolderID: folderID, Key: key, UID: it.UID})
		id, err := r.t.ImportMessage(ctx, r.p.Mailbox, folderID, m)
		if err != nil {
			if !refusedMessage(err) {
				return err
			}
			r.p.dropPending(f.Name, key)
			r.skip(fs, it, key, err.Error())
			if !r.verified {
				if r.refused++; r.refused >= refusedInARow {
					return fmt.Errorf("migrate: Microsoft 365 refused the first %d messages of this run (last: %w); "+
						"that is more likely dualmx's way of importing (m365/mailimport.go) than the messages", r.refused, err)
				}
			}
			continue
		}
		if !r.verified {
			// The first message of a run is read back: a tenant that stores
			// it as a draft, or with the wrong date, stops the run here
			// rather than after thousands of messages.
			if err := r.t.VerifyImport(ctx, r.p.Mailbox, id, m); err != nil {
				return err
			}
			r.verified = true
		}
		if err := r.j.write(journalLine{Op: "done", Folder: f.Name, Validity: validity, UID: it.UID, Key: key}); err != nil {
			return err
		}
		r.p.dropPending(f.Name, key)
		fs.markDone(validity, it.UID, key)
		r.p.Run.Moved++
		r.p.Run.Bytes += int64(len(body))
		if err := r.tick(fs, false); err != nil {
			return err
		}
	}
	return r.tick(fs, true)
}

// refusedMessage reports whether Microsoft refused this one message (bad
// request, too large) as opposed to the whole run failing (permissions,
// throttling, the service down), which stops the run for a rerun later.
func refusedMessage(err error) bool {
	var ge *m365.GraphError
	if !errors.As(err, &ge) {
		return false
	}
	switch ge.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

func (r *run) skip(fs *FolderState, it Item, key, reason string) {
	subject := mailmsg.CleanText(it.Subject)
	if r := []rune(subject); len(r) > 200 {
		subject = string(r[:200]) + "…"
	}
	fs.Skips = append(fs.Skips, Skip{UID: it.UID, Key: key, Subject: subject, Reason: reason, At: r.o.Now().UTC()})
	r.p.Run.Skipped++
}

func (r *run) skipRest(fs *FolderState, items []Item, reason string) {
	for _, it := range items {
		if !fs.doneUID(it.UID) && !(it.Key != "" && fs.doneKey(it.Key)) {
			r.skip(fs, it, it.Key, reason)
		}
	}
}

// tick saves a snapshot now and then and prints the folder's progress.
func (r *run) tick(fs *FolderState, folderDone bool) error {
	r.sinceSav++
	if folderDone || r.sinceSav >= r.o.SaveEvery {
		r.p.Updated = r.o.Now().UTC()
		if err := r.p.Save(r.path); err != nil {
			return err
		}
		r.sinceSav = 0
	}
	now := r.o.Now()
	if r.o.Out != nil && (folderDone || now.Sub(r.lastLine) >= r.o.Every) {
		r.lastLine = now
		fmt.Fprintf(r.o.Out, "%s -> %s: %d of %d moved, %d skipped (%.0f messages/minute)\n",
			visible.String(fs.Name), visible.String(fs.Target), len(fs.Keys), fs.Found, len(fs.Skips), r.p.Run.PerMinute(now))
	}
	return nil
}

func (r *run) summary(err error) {
	if r.o.Out == nil {
		return
	}
	skipped := 0
	for _, f := range r.p.Folders {
		skipped += len(f.Skips)
	}
	state := "done"
	if err != nil {
		state = "stopped"
	}
	fmt.Fprintf(r.o.Out, "%s: %d messages moved in this run, %d skipped in all (see dualmx import status %s)\n",
		state, r.p.Run.Moved, skipped, r.p.Mailbox)
}

// Running reports whether an import is running on the progress file at
// path (it holds the file's lock).
func Running(path string) bool {
	f, err := os.OpenFile(path+".lock", os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
