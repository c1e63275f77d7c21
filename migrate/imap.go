// SPDX-License-Identifier: MIT

package migrate

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TLSMode is how dualmx (or Microsoft) talks to the old host's IMAP server.
type TLSMode string

// The three ways; their names are those of the --imap-tls flag.
const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte, usually port 993
	TLSStartTLS TLSMode = "starttls" // plain, then STARTTLS, usually port 143
	TLSNone     TLSMode = "none"     // no encryption at all
)

// ParseTLSMode reads a --imap-tls value; "" picks by port: 993 is implicit,
// anything else STARTTLS.
func ParseTLSMode(s string, port int) (TLSMode, error) {
	switch TLSMode(strings.ToLower(s)) {
	case "":
		if port == 993 {
			return TLSImplicit, nil
		}
		return TLSStartTLS, nil
	case TLSImplicit, "ssl":
		return TLSImplicit, nil
	case TLSStartTLS, "tls":
		return TLSStartTLS, nil
	case TLSNone:
		return TLSNone, nil
	}
	return "", fmt.Errorf("imap tls %q: want implicit, starttls or none", s)
}

// ClearTextAllowed reports whether dualmx's own copy may log in to host
// with TLSNone: only on this machine (a test server, or a tunnel that does
// the encryption), never across a network, where the password would pass
// in the clear.
func ClearTextAllowed(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// IMAPSource is the old host's IMAP account. Password is used for one
// LOGIN and kept nowhere.
type IMAPSource struct {
	Addr     string // host:port
	User     string
	Password string
	Mode     TLSMode
	// TLS is the client TLS configuration (nil: the system's roots).
	TLS *tls.Config
}

func isLoopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// CopyIMAP moves every folder of the IMAP account into p.Mailbox through
// t, resuming where p says an earlier run stopped; see copyAll.
func CopyIMAP(ctx context.Context, s IMAPSource, t Target, p *Progress, path string, o Options) error {
	src, err := dialIMAP(ctx, s)
	if err != nil {
		return err
	}
	defer src.Close()
	return copyAll(ctx, src, t, p, path, o)
}

type imapSource struct {
	c    *imapclient.Client
	stop func() bool
}

func dialIMAP(ctx context.Context, s IMAPSource) (*imapSource, error) {
	var c *imapclient.Client
	var err error
	opts := &imapclient.Options{TLSConfig: s.TLS}
	switch s.Mode {
	case TLSNone:
		if !isLoopback(s.Addr) {
			return nil, fmt.Errorf("migrate: refusing to send the IMAP password unencrypted to %s", s.Addr)
		}
		c, err = imapclient.DialInsecure(s.Addr, opts)
	case TLSStartTLS:
		c, err = imapclient.DialStartTLS(s.Addr, opts)
	default:
		c, err = imapclient.DialTLS(s.Addr, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: connect %s: %w", s.Addr, err)
	}
	// imapclient takes no context: closing the connection ends whatever
	// command is waiting when the run is cancelled.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	if err := c.Login(s.User, s.Password).Wait(); err != nil {
		stop()
		c.Close()
		// The server's answer, never the password.
		return nil, fmt.Errorf("migrate: login to %s as %s: %w", s.Addr, s.User, err)
	}
	return &imapSource{c: c, stop: stop}, nil
}

func (s *imapSource) Close() error {
	s.stop()
	s.c.Logout().Wait()
	return s.c.Close()
}

func (s *imapSource) Folders(ctx context.Context) ([]Folder, error) {
	// RETURN (SPECIAL-USE) is LIST-EXTENDED syntax (RFC 6154, 5258); a
	// server without it may still send the attributes with a plain LIST.
	opts := &imap.ListOptions{}
	if caps := s.c.Caps(); caps.Has(imap.CapSpecialUse) && caps.Has(imap.CapListExtended) {
		opts.ReturnSpecialUse = true
	}
	list, err := s.c.List("", "*", opts).Collect()
	if err != nil {
		return nil, fmt.Errorf("migrate: list folders: %w", err)
	}
	var out []Folder
	for _, mb := range list {
		if hasAttr(mb.Attrs, imap.MailboxAttrNoSelect) || hasAttr(mb.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		f := Folder{Name: mb.Mailbox, Path: []string{mb.Mailbox}}
		if mb.Delim != 0 {
			f.Path = strings.Split(mb.Mailbox, string(mb.Delim))
		}
		for _, a := range mb.Attrs {
			if _, ok := specialUse[strings.ToLower(string(a))]; ok || skipUse[strings.ToLower(string(a))] {
				f.SpecialUse = string(a)
			}
		}
		out = append(out, f)
	}
	return out, ctx.Err()
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

// metaBatch bounds one FETCH of envelopes, so a folder of 100 000 messages
// is listed in steps rather than in one answer.
const metaBatch = 500

func (s *imapSource) Open(ctx context.Context, f Folder) (uint32, []Item, error) {
	sel, err := s.c.Select(f.Name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return 0, nil, fmt.Errorf("migrate: select %s: %w", f.Name, err)
	}
	var items []Item
	for from := uint32(1); from <= sel.NumMessages; from += metaBatch {
		to := min(from+metaBatch-1, sel.NumMessages)
		var set imap.SeqSet
		set.AddRange(from, to)
		msgs, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true}).Collect()
		if err != nil {
			return 0, nil, fmt.Errorf("migrate: fetch %s: %w", f.Name, err)
		}
		for _, m := range msgs {
			it := Item{UID: uint32(m.UID), Size: m.RFC822Size, Received: m.InternalDate.UTC()}
			for _, fl := range m.Flags {
				switch strings.ToLower(string(fl)) {
				case `\seen`:
					it.Seen = true
				case `\flagged`:
					it.Flagged = true
				case `\draft`:
					it.Draft = true
				case `\deleted`:
					it.Deleted = true
				}
			}
			if m.Envelope != nil {
				it.Subject = m.Envelope.Subject
				if id := strings.TrimSpace(m.Envelope.MessageID); id != "" {
					it.Key = contentKey(id, m.RFC822Size, nil)
				}
			}
			items = append(items, it)
		}
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
	}
	return sel.UIDValidity, items, nil
}

func (s *imapSource) Body(ctx context.Context, f Folder, it Item) ([]byte, error) {
	section := &imap.FetchItemBodySection{Peek: true}
	cmd := s.c.Fetch(imap.UIDSetNum(imap.UID(it.UID)), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}})
	defer cmd.Close()
	var body []byte
	found := false
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			bs, ok := item.(imapclient.FetchItemDataBodySection)
			if !ok || bs.Literal == nil || found {
				continue
			}
			// The literal's size is the server's word, and the size the
			// listing gave may have been another: read no more than a
			// message can be.
			if bs.Literal.Size() > maxMessageBytes {
				return nil, errTooLarge
			}
			b, err := io.ReadAll(io.LimitReader(bs.Literal, maxMessageBytes+1))
			if err != nil {
				return nil, fmt.Errorf("migrate: fetch %s UID %d: %w", f.Name, it.UID, err)
			}
			if len(b) > maxMessageBytes {
				return nil, errTooLarge
			}
			body, found = b, true
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("migrate: fetch %s UID %d: %w", f.Name, it.UID, err)
	}
	if !found {
		return nil, errGone
	}
	return body, ctx.Err()
}
