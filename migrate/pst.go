// SPDX-License-Identifier: MIT

package migrate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/emersion/go-message/mail"

	"github.com/dualmx/dualmx/mailmsg"
)

// PSTOptions are what ImportPST needs besides the file.
type PSTOptions struct {
	Options
	// Readpst is the readpst program ("" finds it on PATH: Debian's
	// pst-utils).
	Readpst string
	// WorkDir holds the unpacked messages while the import runs; it needs
	// about as much room as the PST. "" is the system's temporary directory.
	WorkDir string
}

// ImportPST unpacks an Outlook PST file with readpst into a private
// directory and imports its folders through the same path as an IMAP copy:
// not drafts, the original received time and read state, the folders kept,
// nothing twice on a rerun. readpst's output is treated as untrusted: it is
// read below the directory only, never through a link, and no name from it
// reaches a shell (there is none).
func ImportPST(ctx context.Context, file string, t Target, p *Progress, progressPath string, o PSTOptions) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("migrate: %s is not a file", file)
	}
	prog := o.Readpst
	if prog == "" {
		if prog, err = exec.LookPath("readpst"); err != nil {
			return errors.New("migrate: readpst not found; install Debian's pst-utils (apt-get install pst-utils)")
		}
	}
	if o.WorkDir != "" {
		if err := os.MkdirAll(o.WorkDir, 0o750); err != nil {
			return fmt.Errorf("migrate: work directory: %w", err)
		}
	}
	work, err := os.MkdirTemp(o.WorkDir, "dualmx-pst-")
	if err != nil {
		return fmt.Errorf("migrate: work directory: %w", err)
	}
	defer os.RemoveAll(work)
	if err := unpackPST(ctx, prog, abs, work); err != nil {
		return err
	}
	src, err := openUnpacked(work)
	if err != nil {
		return err
	}
	defer src.Close()
	return copyAll(ctx, src, t, p, progressPath, o.Options)
}

// unpackPST runs readpst: -e one .eml per message (with its attachments in
// it), -D the Deleted Items folder too (as it was), -b no RTF copies of the
// body, -8 bodies in UTF-8 where the PST has them, -t e e-mail only, -q
// quiet. The file is passed as an absolute path after "--", so no name can
// be taken for an option.
func unpackPST(ctx context.Context, prog, file, out string) error {
	cmd := exec.CommandContext(ctx, prog, "-e", "-D", "-b", "-8", "-q", "-t", "e", "-o", out, "--", file)
	cmd.Dir = out
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &limitWriter{w: &stderr, n: 4 << 10}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("migrate: readpst %s: %v: %s", filepath.Base(file), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// unpacked is readpst's output as a source: one directory per folder, one
// .eml file per message.
type unpacked struct {
	root    *os.Root
	folders []Folder
	files   map[string][]string // folder name → file paths below root, in order
}

// openUnpacked reads the tree below dir through an os.Root, so that no
// name in it, and no link, leads outside.
func openUnpacked(dir string) (*unpacked, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	u := &unpacked{root: root, files: map[string][]string{}}
	strip := ""
	// readpst writes everything below one directory named after the PST's
	// store ("Personal Folders", "Outlook Data File"): that is the top of
	// the mailbox, not a folder in it.
	if ents, err := fs.ReadDir(root.FS(), "."); err == nil && len(ents) == 1 && ents[0].IsDir() {
		strip = ents[0].Name()
	}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 || (!d.IsDir() && !d.Type().IsRegular()) {
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".eml") {
			return nil
		}
		dir := path.Dir(p)
		rel := dir
		if strip != "" {
			rel = strings.TrimPrefix(strings.TrimPrefix(dir, strip), "/")
		}
		if rel == "" || rel == "." {
			// Messages at the top of the store have no folder; Outlook
			// shows none there. They go to the Inbox.
			rel = "Inbox"
		}
		u.files[rel] = append(u.files[rel], p)
		return nil
	})
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("migrate: read readpst's output: %w", err)
	}
	for name, files := range u.files {
		sort.Slice(files, func(i, j int) bool { return numericLess(path.Base(files[i]), path.Base(files[j])) })
		u.folders = append(u.folders, Folder{Name: name, Path: strings.Split(name, "/")})
	}
	sort.Slice(u.folders, func(i, j int) bool { return u.folders[i].Name < u.folders[j].Name })
	return u, nil
}

// numericLess orders readpst's 1.eml, 2.eml, ... 10.eml by number.
func numericLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func (u *unpacked) Close() error { return u.root.Close() }

func (u *unpacked) Folders(context.Context) ([]Folder, error) { return u.folders, nil }

func (u *unpacked) Open(ctx context.Context, f Folder) (uint32, []Item, error) {
	var items []Item
	for _, p := range u.files[f.Name] {
		it, err := u.item(p)
		if err != nil {
			return 0, nil, err
		}
		items = append(items, it)
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
	}
	return 0, items, nil
}

// readpstBoundary is the MIME boundary readpst makes up for every message.
// Debian's readpst (0.6.76) takes its number from rand(), seeded by the
// clock, so the same PST unpacks to different bytes in a later second;
// fixing the number makes a message's bytes, and so its content key, the
// same on every run.
var readpstBoundary = regexp.MustCompile(`iamunique-[0-9]+_-_-`)

func normalize(b []byte) []byte {
	return readpstBoundary.ReplaceAll(b, []byte("iamunique-0_-_-"))
}

// item reads a message: its key from its (normalized) bytes, what its
// header says about it (readpst writes "Status: RO" for a read message and
// keeps the original Received fields).
func (u *unpacked) item(p string) (Item, error) {
	b, err := u.read(p)
	if err != nil {
		return Item{}, err
	}
	it := Item{Size: int64(len(b)), ref: p, Key: contentKey("", 0, b)}
	head, err := readHead(bytes.NewReader(b))
	if err != nil {
		return Item{}, fmt.Errorf("migrate: %s: %w", p, err)
	}
	mr, err := mail.CreateReader(bytes.NewReader(append(head, "\r\n"...)))
	if err == nil {
		h := mr.Header
		it.Subject, _ = h.Subject()
		it.Seen = strings.Contains(strings.ToUpper(h.Get("Status")), "R")
		if t := mailmsg.ReceivedTime(head); !t.IsZero() {
			it.Received = t
		} else if d, err := h.Date(); err == nil {
			it.Received = d.UTC()
		}
	}
	return it, nil
}

func (u *unpacked) read(p string) ([]byte, error) {
	f, err := u.root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMessageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("migrate: %s: %w", p, err)
	}
	return normalize(b), nil
}

// readHead reads a message's header block, at most 1 MB of it.
func readHead(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, 1<<20))
	var head []byte
	for {
		line, err := br.ReadBytes('\n')
		head = append(head, line...)
		if len(bytes.TrimRight(line, "\r\n")) == 0 || err != nil {
			if err != nil && err != io.EOF {
				return nil, err
			}
			return head, nil
		}
	}
}

func (u *unpacked) Body(_ context.Context, _ Folder, it Item) ([]byte, error) {
	b, err := u.read(it.ref)
	if err != nil {
		return nil, err
	}
	if len(b) > maxMessageBytes {
		return nil, errTooLarge
	}
	return b, nil
}
