// SPDX-License-Identifier: MIT

package migrate

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Target is the mailbox mail is copied into; *m365.Graph is one.
type Target interface {
	// EnsureFolder returns the ID of the folder at path (INBOX is the
	// mailbox's Inbox), creating what is missing.
	EnsureFolder(ctx context.Context, mailbox string, path []string) (string, error)
	// CreateMessage stores one RFC 5322 message in a folder.
	CreateMessage(ctx context.Context, mailbox, folderID string, mime []byte) error
}

// Source is the old host's IMAP account. Password is used for one LOGIN.
type Source struct {
	Addr     string // host:port
	User     string
	Password string
	// Plain connects without TLS; only allowed to a loopback address.
	Plain bool
	TLS   *tls.Config
}

// FolderProgress is one folder's count.
type FolderProgress struct {
	Name  string `json:"name"`
	Found int    `json:"found"`
	Moved int    `json:"moved"`
}

// Progress is an import's state, kept in a file so a run can resume. It
// never holds a password.
type Progress struct {
	Mailbox string           `json:"mailbox"`
	Method  string           `json:"method"` // "microsoft" or "imap-copy"
	Host    string           `json:"host"`
	User    string           `json:"user"`
	Batch   string           `json:"batch,omitempty"`
	Started time.Time        `json:"started"`
	Updated time.Time        `json:"updated"`
	Folders []FolderProgress `json:"folders,omitempty"`
	// Done holds the keys (Message-ID, or a content hash without one) of
	// the messages moved, per folder.
	Done map[string][]string `json:"done,omitempty"`
}

// LoadProgress reads a progress file; a missing file is a nil Progress.
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
	return &p, nil
}

// Save writes the file atomically (temp, fsync, rename).
func (p *Progress) Save(path string) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (p *Progress) folder(name string) *FolderProgress {
	for i := range p.Folders {
		if p.Folders[i].Name == name {
			return &p.Folders[i]
		}
	}
	p.Folders = append(p.Folders, FolderProgress{Name: name})
	return &p.Folders[len(p.Folders)-1]
}

func isLoopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// Copy moves every folder of src into mailbox through t, skipping what p
// already records as moved, and saves p to path after every message.
func Copy(ctx context.Context, src Source, t Target, mailbox string, p *Progress, path string) error {
	var c *imapclient.Client
	var err error
	switch {
	case src.Plain && !isLoopback(src.Addr):
		return fmt.Errorf("migrate: refusing to send the IMAP password unencrypted to %s", src.Addr)
	case src.Plain:
		c, err = imapclient.DialInsecure(src.Addr, nil)
	default:
		c, err = imapclient.DialTLS(src.Addr, &imapclient.Options{TLSConfig: src.TLS})
	}
	if err != nil {
		return fmt.Errorf("migrate: connect %s: %w", src.Addr, err)
	}
	defer c.Close()
	if err := c.Login(src.User, src.Password).Wait(); err != nil {
		// The server's answer, never the password.
		return fmt.Errorf("migrate: login to %s as %s: %w", src.Addr, src.User, err)
	}
	defer c.Logout()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return fmt.Errorf("migrate: list folders: %w", err)
	}
	if p.Done == nil {
		p.Done = map[string][]string{}
	}
	for _, mb := range list {
		if hasAttr(mb.Attrs, imap.MailboxAttrNoSelect) || hasAttr(mb.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		if err := copyFolder(ctx, c, t, mailbox, mb, p, path); err != nil {
			return err
		}
	}
	return nil
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

func copyFolder(ctx context.Context, c *imapclient.Client, t Target, mailbox string, mb *imap.ListData, p *Progress, path string) error {
	name := mb.Mailbox
	parts := []string{name}
	if mb.Delim != 0 {
		parts = strings.Split(name, string(mb.Delim))
	}
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("migrate: select %s: %w", name, err)
	}
	fp := p.folder(name)
	fp.Found = int(sel.NumMessages)
	if sel.NumMessages == 0 {
		return p.Save(path)
	}
	done := map[string]bool{}
	for _, k := range p.Done[name] {
		done[k] = true
	}
	folderID, err := t.EnsureFolder(ctx, mailbox, parts)
	if err != nil {
		return fmt.Errorf("migrate: folder %s: %w", name, err)
	}
	// Envelopes first (small), then each body that is not yet moved.
	all := imap.SeqSet{}
	all.AddRange(1, sel.NumMessages)
	envs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		return fmt.Errorf("migrate: fetch %s: %w", name, err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	for _, m := range envs {
		key := ""
		if m.Envelope != nil && m.Envelope.MessageID != "" {
			key = "<" + strings.Trim(m.Envelope.MessageID, "<>") + ">"
			if done[key] {
				continue
			}
		}
		bufs, err := c.Fetch(imap.UIDSetNum(m.UID), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil || len(bufs) != 1 {
			return fmt.Errorf("migrate: fetch %s UID %d: %v", name, m.UID, err)
		}
		body := bufs[0].FindBodySection(section)
		if key == "" {
			h := sha256.Sum256(body)
			key = "sha256:" + hex.EncodeToString(h[:])
			if done[key] {
				continue
			}
		}
		if err := t.CreateMessage(ctx, mailbox, folderID, body); err != nil {
			return fmt.Errorf("migrate: store %s UID %d: %w", name, m.UID, err)
		}
		done[key] = true
		p.Done[name] = append(p.Done[name], key)
		fp.Moved = len(p.Done[name])
		p.Updated = time.Now().UTC()
		if err := p.Save(path); err != nil {
			return err
		}
	}
	fp.Moved = len(p.Done[name])
	return p.Save(path)
}
