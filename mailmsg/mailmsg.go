// SPDX-License-Identifier: MIT

// Package mailmsg takes an RFC 5322 message apart into what Microsoft
// Graph's message create takes: the header fields that have a place there,
// one body, and every other part as an attachment. It reads mail that old
// hosts kept for years, so it accepts what it can and says what it cannot.
package mailmsg

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode the old host's ISO-8859-x and Windows code pages
	"github.com/emersion/go-message/mail"

	"github.com/dualmx/dualmx/internal/headerblock"
)

// brokenNote replaces the text of a message whose MIME structure cannot be
// read; the message itself goes along whole as an attachment.
const brokenNote = "dualmx could not read the structure of this message; the original is attached as original.eml."

// maxPartBytes bounds one decoded part: Exchange Online takes messages up to
// 150 MB at most.
const maxPartBytes = 150 << 20

// Address is one mailbox in a header field.
type Address struct {
	Name, Addr string
}

// Attachment is one attached part.
type Attachment struct {
	Name, ContentType string
	// ContentID and Inline mark a part the HTML body shows (cid: URLs).
	ContentID string
	Inline    bool
	Data      []byte
}

// Message is a message taken apart.
type Message struct {
	Subject           string
	From              *Address
	To, Cc, Bcc       []Address
	ReplyTo           []Address
	InternetMessageID string // with angle brackets; "" when absent or unusable
	Body              string
	HTML              bool
	Importance        string    // low, high; "" for normal
	Sent              time.Time // the Date field; zero when absent
	Attachments       []Attachment
}

// Parse takes raw apart: header fields, one body (HTML when there is one),
// and every other part as an attachment. A message whose header cannot be
// read is an error; one whose body structure is broken still comes out,
// with the original attached.
func Parse(raw []byte) (*Message, error) {
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		return nil, fmt.Errorf("not a readable message: %w", err)
	}
	h := mr.Header
	m := &Message{}
	if s, err := h.Subject(); err == nil {
		m.Subject = CleanText(s)
	} else {
		m.Subject = CleanText(h.Get("Subject"))
	}
	if from := addresses(h, "From"); len(from) > 0 {
		m.From = &from[0]
	}
	m.To, m.Cc, m.Bcc, m.ReplyTo = addresses(h, "To"), addresses(h, "Cc"), addresses(h, "Bcc"), addresses(h, "Reply-To")
	m.InternetMessageID = messageID(h)
	if d, err := h.Date(); err == nil && !d.IsZero() {
		m.Sent = d.UTC()
	}
	m.Importance = importance(h.Header)

	var text, html string
	haveText, haveHTML := false, false
	n := 0
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil && !message.IsUnknownCharset(err) {
			return brokenStructure(m, raw), nil
		}
		n++
		data, rerr := io.ReadAll(io.LimitReader(p.Body, maxPartBytes+1))
		if rerr != nil || len(data) > maxPartBytes {
			return brokenStructure(m, raw), nil
		}
		switch ph := p.Header.(type) {
		case *mail.InlineHeader:
			ct, params, _ := ph.ContentType()
			switch {
			case ct == "text/html" && !haveHTML:
				html, haveHTML = toUTF8(data), true
				continue
			case (ct == "text/plain" || ct == "") && !haveText:
				text, haveText = toUTF8(data), true
				continue
			}
			cid := strings.Trim(ph.Get("Content-Id"), "<> ")
			m.Attachments = append(m.Attachments, Attachment{Name: partName(params["name"], ct, n),
				ContentType: ct, ContentID: cid, Inline: cid != "", Data: data})
		case *mail.AttachmentHeader:
			ct, params, _ := ph.ContentType()
			name, _ := ph.Filename()
			if name == "" {
				name = params["name"]
			}
			if name == "" && ct == "message/rfc822" {
				name = fmt.Sprintf("message-%d.eml", n)
			}
			// An image in a multipart/related, say, has a Content-ID and no
			// disposition: the HTML shows it.
			cid := strings.Trim(ph.Get("Content-Id"), "<> ")
			disp, _, _ := ph.ContentDisposition()
			m.Attachments = append(m.Attachments, Attachment{Name: partName(name, ct, n), ContentType: ct,
				ContentID: cid, Inline: cid != "" && disp != "attachment", Data: data})
		}
	}
	switch {
	case haveHTML:
		// The text alternative says the same; Outlook shows the HTML.
		m.Body, m.HTML = html, true
	case haveText:
		m.Body = text
	}
	return m, nil
}

func brokenStructure(m *Message, raw []byte) *Message {
	m.Body, m.HTML = brokenNote, false
	m.Attachments = []Attachment{{Name: "original.eml", ContentType: "message/rfc822", Data: raw}}
	return m
}

// addresses reads an address list; a field that does not parse as a whole
// keeps the addresses that do.
func addresses(h mail.Header, key string) []Address {
	list, err := h.AddressList(key)
	if err != nil {
		list = nil
		for _, part := range strings.Split(h.Get(key), ",") {
			if a, err := mail.ParseAddress(part); err == nil {
				list = append(list, a)
			}
		}
	}
	var out []Address
	for _, a := range list {
		if strings.Count(a.Address, "@") == 1 && !strings.ContainsAny(a.Address, " \t\r\n\"<>") {
			out = append(out, Address{Name: CleanText(a.Name), Addr: a.Address})
		}
	}
	return out
}

// messageID returns the Message-ID in angle brackets when it has the
// id-left@id-right shape; anything else is left out rather than risk the
// whole create being refused.
func messageID(h mail.Header) string {
	id, err := h.MessageID()
	if err != nil || id == "" || len(id) > 500 || strings.Count(id, "@") != 1 || strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r > '~' || r == '<' || r == '>' || r == '"' || r == '\\'
	}) {
		return ""
	}
	return "<" + id + ">"
}

func importance(h message.Header) string {
	switch strings.ToLower(strings.TrimSpace(h.Get("Importance"))) {
	case "high":
		return "high"
	case "low":
		return "low"
	}
	p := strings.TrimSpace(h.Get("X-Priority"))
	if p != "" {
		switch p[0] {
		case '1', '2':
			return "high"
		case '4', '5':
			return "low"
		}
	}
	return ""
}

// ReceivedTime is when the top Received field says the message arrived at
// the last hop, for sources without a delivery time of their own (a PST
// unpacked by readpst); zero when none says.
func ReceivedTime(raw []byte) time.Time {
	block, _, _ := headerblock.Read(bufio.NewReader(bytes.NewReader(raw)), len(raw))
	for f := range headerblock.Fields(block) {
		name, v, ok := bytes.Cut(f, []byte(":"))
		if !ok || !strings.EqualFold(string(bytes.TrimSpace(name)), "Received") {
			continue
		}
		i := bytes.LastIndexByte(v, ';')
		if i < 0 {
			continue
		}
		date := strings.Join(strings.Fields(string(v[i+1:])), " ") // unfolded
		if t, err := netmail.ParseDate(date); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func partName(name, ct string, n int) string {
	name = CleanText(name)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	if utf8.RuneCountInString(name) > 200 {
		name = string([]rune(name)[:200])
	}
	if name != "" && name != "." && name != ".." {
		return name
	}
	ext := ".bin"
	if exts, _ := mime.ExtensionsByType(ct); len(exts) > 0 {
		ext = exts[0]
	}
	if ct == "message/rfc822" {
		ext = ".eml"
	}
	return "part-" + strconv.Itoa(n) + ext
}

// CleanText drops control characters a header field may smuggle in.
func CleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\t' {
			return ' '
		}
		return r
	}, s))
}

func toUTF8(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }
