// SPDX-License-Identifier: MIT

package spool

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/dualmx/dualmx/internal/headerblock"
)

// maxHeaderBytes bounds how much of the original header is returned in a DSN.
const maxHeaderBytes = 64 << 10

// bounceLocked turns the failed recipients of it into an RFC 3464 DSN to the
// envelope sender, spools the DSN, and only then removes it: at every moment
// either the message or its DSN is durable. The caller holds the item's lock.
func (s *Spool) bounceLocked(it *Item, lk *itemLock, reportingMTA string, now time.Time) (string, error) {
	if !it.Bounceable() {
		return "", fmt.Errorf("spool %s: no DSN for a null-sender message or a DSN", it.ID)
	}
	// Only the message: a version 2 body file continues with its trailer.
	hdr, err := readHeader(io.NewSectionReader(lk.f, 0, it.Size))
	if err != nil {
		return "", fmt.Errorf("spool %s: read header for DSN: %w", it.ID, err)
	}
	var buf bytes.Buffer
	if err := buildDSN(&buf, it, hdr, reportingMTA, now); err != nil {
		return "", fmt.Errorf("spool %s: build DSN: %w", it.ID, err)
	}
	env := Envelope{
		From:       "",
		Recipients: []Recipient{{Rcpt: it.From, Target: it.From}},
		ReceivedAt: now,
		Helo:       reportingMTA,
		SMTPUTF8:   !isASCII(it.From),
	}
	w, err := s.newWriter(env, true)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		w.Abort()
		return "", err
	}
	dsnID, err := w.Commit()
	if err != nil {
		return "", err
	}
	if err := s.remove(it); err != nil {
		// Both exist now; the original is retried or held, the sender may get
		// a DSN and the message later: a duplicate, not a loss.
		return dsnID, err
	}
	s.log.Info("spool: bounced", "id", it.ID, "dsn_id", dsnID, "to", it.From)
	return dsnID, nil
}

// readHeader returns the header block without the blank line that ends it,
// cut at maxHeaderBytes: a DSN quotes the original header so the sender can
// tell which message it was, and that much is enough.
func readHeader(r io.Reader) ([]byte, error) {
	h, ended, err := headerblock.Read(bufio.NewReader(io.LimitReader(r, maxHeaderBytes)), maxHeaderBytes)
	if ended {
		h = bytes.TrimSuffix(bytes.TrimSuffix(h, []byte("\n")), []byte("\r"))
	}
	return h, err
}

// buildDSN writes a multipart/report message (RFC 3462/3464): a readable
// explanation, the machine-readable status per failed recipient, and the
// original header so the sender can tell which message it was.
func buildDSN(w io.Writer, it *Item, origHeader []byte, mta string, now time.Time) error {
	var h message.Header
	h.Set("From", "Mail Delivery System <MAILER-DAEMON@"+mta+">")
	h.Set("To", "<"+it.From+">")
	h.Set("Subject", "Undelivered Mail Returned to Sender")
	h.Set("Date", now.Format(time.RFC1123Z))
	h.Set("Message-ID", "<"+it.ID+".dsn@"+mta+">")
	h.Set("Auto-Submitted", "auto-replied")
	h.Set("MIME-Version", "1.0")
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})
	mw, err := message.CreateWriter(w, h)
	if err != nil {
		return err
	}

	var failed []Recipient
	for _, r := range it.Recipients {
		if r.State != RcptDelivered {
			failed = append(failed, r)
		}
	}

	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "8bit")
	pw, err := mw.CreatePart(th)
	if err != nil {
		return err
	}
	fmt.Fprintf(pw, "This is the mail system at %s.\r\n\r\n", mta)
	fmt.Fprintf(pw, "Your message could not be delivered to the recipients below.\r\n")
	fmt.Fprintf(pw, "Reference: %s\r\n\r\n", it.ID)
	for _, r := range failed {
		fmt.Fprintf(pw, "<%s>: %s\r\n", shownRecipient(r), r.LastReply)
	}
	pw.Close()

	var sh message.Header
	sh.SetContentType("message/delivery-status", nil)
	pw, err = mw.CreatePart(sh)
	if err != nil {
		return err
	}
	var st textproto.Header
	st.Set("Reporting-MTA", "dns; "+mta)
	st.Set("X-Dualmx-Queue-ID", it.ID)
	st.Set("Arrival-Date", it.ReceivedAt.Format(time.RFC1123Z))
	if err := textproto.WriteHeader(pw, st); err != nil {
		return err
	}
	for _, r := range failed {
		var rh textproto.Header
		rh.Set("Original-Recipient", "rfc822; "+r.Rcpt)
		rh.Set("Final-Recipient", "rfc822; "+shownRecipient(r))
		rh.Set("Action", "failed")
		rh.Set("Status", dsnStatus(r))
		if r.LastCode != 0 {
			rh.Set("Diagnostic-Code", "smtp; "+oneLine(r.LastReply))
		}
		if !it.LastAttempt.IsZero() {
			rh.Set("Last-Attempt-Date", it.LastAttempt.Format(time.RFC1123Z))
		}
		if err := textproto.WriteHeader(pw, rh); err != nil {
			return err
		}
	}
	pw.Close()

	var oh message.Header
	oh.SetContentType("text/rfc822-headers", nil)
	pw, err = mw.CreatePart(oh)
	if err != nil {
		return err
	}
	pw.Write(origHeader)
	pw.Close()
	return mw.Close()
}

// shownRecipient is the address the sender knows: the public address, not
// the tenant-internal target.
func shownRecipient(r Recipient) string {
	if r.Address != "" {
		return r.Address
	}
	return r.Rcpt
}

func dsnStatus(r Recipient) string {
	if r.LastStatus != "" {
		return r.LastStatus
	}
	if r.LastCode/100 == 4 {
		return "4.0.0"
	}
	return "5.0.0"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
