// SPDX-License-Identifier: MIT

package mailmsg

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// TestParse takes the messages an old mailbox holds apart into Graph's
// message fields.
func TestParse(t *testing.T) {
	cases := []struct {
		name  string
		raw   string
		check func(t *testing.T, m *Message)
	}{
		{"latin-1 text", `From: =?iso-8859-1?Q?Jurri=EBn?= <jurrien@example.org>
To: scriba@hervormdputten.nl, "Bert" <bert@example.org>
Cc: broken address, anna@example.org
Subject: =?iso-8859-1?Q?Financi=EBn_2019?=
Date: Mon, 4 Mar 2019 10:00:00 +0100
Message-ID: <fin@example.org>
X-Priority: 1 (Highest)
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

caf=E9
`, func(t *testing.T, m *Message) {
			if m.Subject != "Financiën 2019" || m.From.Name != "Jurriën" || m.From.Addr != "jurrien@example.org" ||
				len(m.To) != 2 || len(m.Cc) != 1 || m.Cc[0].Addr != "anna@example.org" || m.HTML || strings.TrimSpace(m.Body) != "café" ||
				m.InternetMessageID != "<fin@example.org>" || m.Importance != "high" ||
				!m.Sent.Equal(time.Date(2019, 3, 4, 9, 0, 0, 0, time.UTC)) {
				t.Errorf("%+v", m)
			}
		}},
		{"alternative prefers html", `Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/plain

plain
--b
Content-Type: text/html; charset=utf-8

<p>html</p>
--b--
`, func(t *testing.T, m *Message) {
			if !m.HTML || !strings.Contains(m.Body, "<p>html</p>") || len(m.Attachments) != 0 {
				t.Errorf("%+v", m)
			}
		}},
		{"related inline image and named attachment", `Subject: rel
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=m

--m
Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html

<img src="cid:logo@x">
--r
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--r--
--m
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''Notulen%20ju%CC%88li.pdf
Content-Transfer-Encoding: base64

JVBERi0=
--m
Content-Type: message/rfc822

Subject: inner

inner body
--m--
`, func(t *testing.T, m *Message) {
			if !m.HTML || len(m.Attachments) != 3 {
				t.Fatalf("%+v", m)
			}
			img, pdf, eml := m.Attachments[0], m.Attachments[1], m.Attachments[2]
			if !img.Inline || img.ContentID != "logo@x" || string(img.Data) != "\x89PNG\r\n\x1a\n" || img.ContentType != "image/png" {
				t.Errorf("inline image %+v", img)
			}
			if pdf.Name != "Notulen ju\u0308li.pdf" || string(pdf.Data) != "%PDF-" {
				t.Errorf("pdf %q %q", pdf.Name, pdf.Data)
			}
			if eml.ContentType != "message/rfc822" || !strings.HasSuffix(eml.Name, ".eml") || !strings.Contains(string(eml.Data), "inner body") {
				t.Errorf("embedded message %+v", eml)
			}
		}},
		{"broken part keeps the original", `Subject: kapot
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=k

--k
Content-Type: text/plain
this line is no header field
Another: one

body
--k--
`, func(t *testing.T, m *Message) {
			if m.Subject != "kapot" || m.Body != brokenNote || len(m.Attachments) != 1 || m.Attachments[0].Name != "original.eml" {
				t.Errorf("%+v", m)
			}
		}},
		{"hostile header values", "Subject: a\x1b[31mred\x07\nMessage-ID: <a b@x>\nFrom: x\n\nbody\n", func(t *testing.T, m *Message) {
			if strings.ContainsAny(m.Subject, "\x1b\x07") || m.InternetMessageID != "" || m.From != nil {
				t.Errorf("%+v", m)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(crlf(c.raw))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, m)
		})
	}
	if _, err := Parse([]byte("no header at all")); err == nil {
		t.Error("a message without a header block converted")
	}
}

func TestReceivedTime(t *testing.T) {
	raw := crlf("Received: from a by b; Tue, 5 Mar 2019 08:00:00 +0000\nReceived: from c by a; Mon, 4 Mar 2019 08:00:00 +0000\nSubject: x\n\nbody\n")
	if got := ReceivedTime(raw); !got.Equal(time.Date(2019, 3, 5, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("ReceivedTime = %v", got)
	}
	if got := ReceivedTime([]byte("Subject: none\n\nbody\n")); !got.IsZero() {
		t.Errorf("ReceivedTime without Received = %v", got)
	}
	folded := crlf("Subject: x\nReceived: from a by b;\n\tTue, 5 Mar 2019\n 08:00:00 +0000\n\nbody\n")
	if got := ReceivedTime(folded); !got.Equal(time.Date(2019, 3, 5, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("ReceivedTime of a folded field = %v", got)
	}
	if got := ReceivedTime(crlf("Subject: x\n\nReceived: from a by b; Tue, 5 Mar 2019 08:00:00 +0000\n")); !got.IsZero() {
		t.Errorf("a Received line in the body counted: %v", got)
	}
}

// FuzzParse: whatever the old host holds, Convert neither panics nor
// hands Graph invalid UTF-8 or a path as an attachment name.
func FuzzParse(f *testing.F) {
	f.Add(crlf("Subject: a\n\nb\n"))
	f.Add(crlf("Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/html\n\n<b>\n--x\nContent-Disposition: attachment; filename=\"../../etc/passwd\"\n\nroot\n--x--\n"))
	f.Add(crlf("Subject: =?utf-8?B?w6k=?=\nContent-Type: text/plain; charset=x-unknown\n\n\xff\xfe\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(raw)
		if err != nil {
			return
		}
		for _, s := range []string{m.Subject, m.Body} {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 %q", s)
			}
		}
		for _, a := range m.Attachments {
			if a.Name == "" || strings.ContainsAny(a.Name, `/\`) || !utf8.ValidString(a.Name) {
				t.Fatalf("attachment name %q", a.Name)
			}
		}
	})
}
