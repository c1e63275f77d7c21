// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/copybuf"
)

// errStale marks a failure on a pooled connection before anything of the
// message was sent: the server had closed it, and a fresh one may succeed.
var errStale = errors.New("pooled connection is gone")

// transact runs the mail transaction x on c, with from as the reverse path.
// It returns one outcome per recipient of x, or nil and the error that
// ended the transaction before the recipients had answers of their own;
// reusable reports whether the connection is in a known state for another
// transaction.
func transact(ctx context.Context, c *client, x *txn, from string, dataTimeout time.Duration) (out []Outcome, reusable bool, err error) {
	// Checked at Start and AddRcpt; a target that skipped that still
	// writes nothing it cannot.
	if from, err = path(from); err != nil {
		return nil, true, PermError("5.1.7", "sender %v", err)
	}
	stop := context.AfterFunc(ctx, c.close)
	defer stop()

	// Never downgrade: an 8-bit body or a UTF-8 envelope waits for a target
	// that can take it as it is.
	if ok, _ := c.ext("8BITMIME"); x.msg.EightBit && !ok {
		return nil, true, TempError("4.6.3", "message is 8-bit and %s does not advertise 8BITMIME", c.key)
	}
	if ok, _ := c.ext("SMTPUTF8"); x.msg.SMTPUTF8 && !ok {
		return nil, true, TempError("4.6.7", "message needs SMTPUTF8 and %s does not advertise it", c.key)
	}
	if c.tp != nil {
		return transactPipelined(c, mailCommand(c, from, x.size(), x.msg.SMTPUTF8), x, dataTimeout)
	}
	// go-smtp adds BODY=8BITMIME itself whenever the server offers it.
	opts := &smtp.MailOptions{Size: x.size(), UTF8: x.msg.SMTPUTF8}
	if x.msg.EightBit {
		opts.Body = smtp.Body8BitMIME
	}
	if err := c.c.Mail(from, opts); err != nil {
		if !isReply(err) {
			return nil, false, fmt.Errorf("%w: MAIL: %w", errStale, err)
		}
		return nil, reset(c), Classify(err)
	}
	out = x.outcomes()
	var accepted []int
	for i, r := range x.rcpts {
		p, err := path(r)
		if err != nil {
			out[i].Err = PermError("5.1.3", "recipient %v", err)
			continue
		}
		if err := c.c.Rcpt(p, nil); err != nil {
			if !isReply(err) {
				return nil, false, Classify(err)
			}
			out[i].Err = Classify(err)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		return out, reset(c), nil
	}
	w, err := c.c.Data()
	if err != nil {
		if !isReply(err) {
			return nil, false, Classify(err)
		}
		for _, i := range accepted {
			out[i].Err = Classify(err)
		}
		return out, reset(c), nil
	}
	if err := writeMessage(c, w, x, dataTimeout); err != nil {
		return nil, false, err
	}
	c.conn.SetWriteDeadline(time.Time{})
	resp, err := w.CloseWithResponse()
	text := ""
	if err == nil {
		text = resp.StatusText
	}
	return afterData(out, accepted, text, err)
}

// writeMessage writes the message into w, the DATA stream: the fields
// dualmx adds, then the spooled body from its start, within dataTimeout.
// The caller ends the stream and clears the deadline.
func writeMessage(c *client, w io.Writer, x *txn, dataTimeout time.Duration) error {
	if _, err := x.body.Seek(0, io.SeekStart); err != nil {
		return TempError("4.3.0", "read spooled body: %v", err)
	}
	c.conn.SetWriteDeadline(time.Now().Add(dataTimeout))
	if _, err := w.Write(x.header); err != nil {
		return Classify(err)
	}
	if err := copyBody(w, x.body); err != nil {
		return Classify(err)
	}
	return nil
}

// afterData records the reply to the end of DATA for every accepted
// recipient. Without a reply the message may or may not have arrived;
// retrying risks a duplicate, which at-least-once delivery accepts over a
// loss, and the connection is not reused.
func afterData(out []Outcome, accepted []int, text string, err error) ([]Outcome, bool, error) {
	if err != nil && !isReply(err) {
		return nil, false, Classify(err)
	}
	for _, i := range accepted {
		if err != nil {
			out[i].Err = Classify(err)
		} else {
			out[i].Reply = "250 " + text
		}
	}
	return out, true, nil
}

// transactPipelined is transact's round-trip path in fewer round trips
// (RFC 2920): MAIL, every RCPT and DATA go out in one write, their replies
// are read in order, and each outcome is judged as the round-trip path judges
// it. Only the body and its final reply take a second round trip.
func transactPipelined(c *client, mail string, x *txn, dataTimeout time.Duration) ([]Outcome, bool, error) {
	// A line break would inject commands; path refuses every control
	// character, this is the last guard.
	if strings.ContainsAny(mail, "\r\n") {
		return nil, false, fmt.Errorf("%w: MAIL: %w", errStale, errLineBreak)
	}
	n := len(mail) + len("\r\nDATA\r\n")
	for i, r := range x.rcpts {
		p, err := path(r)
		if err != nil || strings.ContainsAny(p, "\r\n") {
			// transact has no answer for one recipient alone here:
			// AddRcpt refuses what path cannot write.
			return nil, false, PermError("5.1.3", "recipient %d %v", i, errUnwritable)
		}
		n += len("RCPT TO:<>\r\n") + len(p)
	}
	cmds := make([]byte, 0, n)
	cmds = append(cmds, mail...)
	cmds = append(cmds, "\r\n"...)
	for _, r := range x.rcpts {
		p, _ := path(r)
		cmds = append(cmds, "RCPT TO:<"...)
		cmds = append(cmds, p...)
		cmds = append(cmds, ">\r\n"...)
	}
	cmds = append(cmds, "DATA\r\n"...)

	timeout := c.c.CommandTimeout
	c.conn.SetDeadline(time.Now().Add(timeout))
	_, err := c.tp.W.Write(cmds)
	if err == nil {
		err = c.tp.W.Flush()
	}
	c.conn.SetDeadline(time.Time{})
	if err != nil {
		return nil, false, fmt.Errorf("%w: MAIL: %w", errStale, err)
	}

	_, mailErr := c.reply(250, timeout)
	if mailErr != nil && !isReply(mailErr) {
		return nil, false, fmt.Errorf("%w: MAIL: %w", errStale, mailErr)
	}
	out := x.outcomes()
	var accepted []int
	for i := range x.rcpts {
		_, err := c.reply(25, timeout)
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case isReply(err):
			out[i].Err = Classify(err)
		case mailErr != nil:
			return nil, false, Classify(mailErr)
		default:
			return nil, false, Classify(err)
		}
	}
	_, dataErr := c.reply(354, timeout)
	if dataErr != nil && !isReply(dataErr) {
		switch {
		case mailErr != nil:
			return nil, false, Classify(mailErr)
		case len(accepted) == 0:
			return out, false, nil
		}
		return nil, false, Classify(dataErr)
	}
	if mailErr != nil || len(accepted) == 0 {
		// RFC 2920 3.1: the server may take DATA even so; a lone dot ends
		// that empty message, whatever its fate, before RSET.
		ok := dataErr != nil || endEmptyData(c, timeout)
		if mailErr != nil {
			return nil, ok && reset(c), Classify(mailErr)
		}
		return out, ok && reset(c), nil
	}
	if dataErr != nil {
		for _, i := range accepted {
			out[i].Err = Classify(dataErr)
		}
		return out, reset(c), nil
	}

	w := newDotWriter(c.tp.W)
	if err := writeMessage(c, w, x, dataTimeout); err != nil {
		return nil, false, err
	}
	if err := w.Close(); err != nil {
		return nil, false, Classify(err)
	}
	c.conn.SetWriteDeadline(time.Time{})
	msg, err := c.reply(250, dataTimeout)
	return afterData(out, accepted, msg, err)
}

// errLineBreak is go-smtp's refusal of an address that would split a command.
var errLineBreak = errors.New("smtp: a line must not contain CR or LF")

// mailCommand words MAIL FROM as go-smtp's Client.Mail does for the options
// transact uses, so both paths send the same command.
func mailCommand(c *client, from string, size int64, utf8 bool) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(from)
	b.WriteString(">")
	if ok, _ := c.ext("8BITMIME"); ok {
		b.WriteString(" BODY=8BITMIME")
	}
	if ok, _ := c.ext("SIZE"); ok && size != 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(size, 10))
	}
	if utf8 { // transact has checked that SMTPUTF8 is offered
		b.WriteString(" SMTPUTF8")
	}
	return b.String()
}

// endEmptyData ends a message the server accepted DATA for when there was
// nothing to send. It reports whether the server answered, i.e. whether the
// connection is still in step.
func endEmptyData(c *client, timeout time.Duration) bool {
	c.conn.SetDeadline(time.Now().Add(timeout))
	err := c.tp.PrintfLine(".")
	c.conn.SetDeadline(time.Time{})
	if err != nil {
		return false
	}
	_, err = c.reply(0, timeout)
	return err == nil
}

// reset clears a failed transaction so the connection can be pooled.
func reset(c *client) bool {
	if c.tp == nil {
		return c.c.Reset() == nil
	}
	c.conn.SetDeadline(time.Now().Add(c.c.CommandTimeout))
	err := c.tp.PrintfLine("RSET")
	c.conn.SetDeadline(time.Time{})
	if err != nil {
		return false
	}
	_, err = c.reply(250, c.c.CommandTimeout)
	return err == nil
}

// copyBody sends a spooled body through the DATA writer w.
func copyBody(w io.Writer, r io.Reader) error {
	_, err := copybuf.Copy(w, r)
	return err
}
