// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/copybuf"
	"github.com/dualmx/dualmx/spool"
)

// outcome is what the next hop said about one envelope recipient.
type outcome struct {
	err   *DeliveryError // nil when accepted
	reply string         // the final reply when accepted
}

// deliveryTarget is one way out of the spool: the tenant endpoint, or the
// sender's MX for a DSN. deliver runs one attempt for the given envelope
// recipients and reports per-recipient outcomes; recipients missing from the
// map share the returned error.
type deliveryTarget interface {
	deliver(ctx context.Context, it *spool.Item, prefix []byte, body io.ReadSeeker, rcpts []string) (map[string]outcome, error)
}

// errStale marks a failure on a pooled connection before anything of the
// message was sent: the server had closed it, and a fresh one may succeed.
var errStale = errors.New("pooled connection is gone")

// transact runs one mail transaction. reusable reports whether the
// connection is in a known state for another transaction.
func transact(ctx context.Context, c *client, it *spool.Item, from string, prefix []byte, body io.ReadSeeker, rcpts []string, dataTimeout time.Duration) (res map[string]outcome, reusable bool, err error) {
	stop := context.AfterFunc(ctx, c.close)
	defer stop()

	// Never downgrade: an 8-bit body or a UTF-8 envelope waits for a target
	// that can take it as it is.
	if ok, _ := c.ext("8BITMIME"); it.EightBit && !ok {
		return nil, true, tempErr("4.6.3", "message is 8-bit and %s does not advertise 8BITMIME", c.key)
	}
	if ok, _ := c.ext("SMTPUTF8"); it.SMTPUTF8 && !ok {
		return nil, true, tempErr("4.6.7", "message needs SMTPUTF8 and %s does not advertise it", c.key)
	}
	if c.tp != nil {
		return transactPipelined(c, mailCommand(c, from, it.Size+int64(len(prefix)), it.SMTPUTF8), prefix, body, rcpts, dataTimeout)
	}
	// go-smtp adds BODY=8BITMIME itself whenever the server offers it.
	opts := &smtp.MailOptions{Size: it.Size + int64(len(prefix)), UTF8: it.SMTPUTF8}
	if it.EightBit {
		opts.Body = smtp.Body8BitMIME
	}
	if err := c.c.Mail(from, opts); err != nil {
		if !isReply(err) {
			return nil, false, fmt.Errorf("%w: MAIL: %w", errStale, err)
		}
		return nil, reset(c), classify(err)
	}
	res = make(map[string]outcome, len(rcpts))
	var accepted []string
	for _, r := range rcpts {
		if err := c.c.Rcpt(r, nil); err != nil {
			if !isReply(err) {
				return nil, false, classify(err)
			}
			res[r] = outcome{err: classify(err)}
			continue
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		return res, reset(c), nil
	}
	w, err := c.c.Data()
	if err != nil {
		if !isReply(err) {
			return nil, false, classify(err)
		}
		for _, r := range accepted {
			res[r] = outcome{err: classify(err)}
		}
		return res, reset(c), nil
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, false, tempErr("4.3.0", "read spooled body: %v", err)
	}
	c.conn.SetWriteDeadline(time.Now().Add(dataTimeout))
	if _, err := w.Write(prefix); err != nil {
		return nil, false, classify(err)
	}
	if err := copyBody(w, body); err != nil {
		return nil, false, classify(err)
	}
	c.conn.SetWriteDeadline(time.Time{})
	resp, err := w.CloseWithResponse()
	text := ""
	if err == nil {
		text = resp.StatusText
	}
	return afterData(res, accepted, text, err)
}

// afterData records the reply to the end of DATA for every accepted
// recipient. Without a reply the message may or may not have arrived;
// retrying risks a duplicate, which at-least-once delivery accepts over a
// loss, and the connection is not reused.
func afterData(res map[string]outcome, accepted []string, text string, err error) (map[string]outcome, bool, error) {
	if err != nil && !isReply(err) {
		return nil, false, classify(err)
	}
	for _, r := range accepted {
		if err != nil {
			res[r] = outcome{err: classify(err)}
		} else {
			res[r] = outcome{reply: "250 " + text}
		}
	}
	return res, true, nil
}

// transactPipelined is transact's round-trip path in fewer round trips
// (RFC 2920): MAIL, every RCPT and DATA go out in one write, their replies
// are read in order, and each outcome is judged as the round-trip path judges
// it. Only the body and its final reply take a second round trip.
func transactPipelined(c *client, mail string, prefix []byte, body io.ReadSeeker, rcpts []string, dataTimeout time.Duration) (map[string]outcome, bool, error) {
	// go-smtp refuses these before writing; here they would inject commands.
	if strings.ContainsAny(mail, "\r\n") {
		return nil, false, fmt.Errorf("%w: MAIL: %w", errStale, errLineBreak)
	}
	n := len(mail) + len("\r\nDATA\r\n")
	for _, r := range rcpts {
		if strings.ContainsAny(r, "\r\n") {
			return nil, false, classify(errLineBreak)
		}
		n += len("RCPT TO:<>\r\n") + len(r)
	}
	cmds := make([]byte, 0, n)
	cmds = append(cmds, mail...)
	cmds = append(cmds, "\r\n"...)
	for _, r := range rcpts {
		cmds = append(cmds, "RCPT TO:<"...)
		cmds = append(cmds, r...)
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
	res := make(map[string]outcome, len(rcpts))
	var accepted []string
	for _, r := range rcpts {
		_, err := c.reply(25, timeout)
		switch {
		case err == nil:
			accepted = append(accepted, r)
		case isReply(err):
			res[r] = outcome{err: classify(err)}
		case mailErr != nil:
			return nil, false, classify(mailErr)
		default:
			return nil, false, classify(err)
		}
	}
	_, dataErr := c.reply(354, timeout)
	if dataErr != nil && !isReply(dataErr) {
		switch {
		case mailErr != nil:
			return nil, false, classify(mailErr)
		case len(accepted) == 0:
			return res, false, nil
		}
		return nil, false, classify(dataErr)
	}
	if mailErr != nil || len(accepted) == 0 {
		// RFC 2920 3.1: the server may take DATA even so; a lone dot ends
		// that empty message, whatever its fate, before RSET.
		ok := dataErr != nil || endEmptyData(c, timeout)
		if mailErr != nil {
			return nil, ok && reset(c), classify(mailErr)
		}
		return res, ok && reset(c), nil
	}
	if dataErr != nil {
		for _, r := range accepted {
			res[r] = outcome{err: classify(dataErr)}
		}
		return res, reset(c), nil
	}

	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, false, tempErr("4.3.0", "read spooled body: %v", err)
	}
	c.conn.SetWriteDeadline(time.Now().Add(dataTimeout))
	w := newDotWriter(c.tp.W)
	if _, err := w.Write(prefix); err != nil {
		return nil, false, classify(err)
	}
	if err := copyBody(w, body); err != nil {
		return nil, false, classify(err)
	}
	if err := w.Close(); err != nil {
		return nil, false, classify(err)
	}
	c.conn.SetWriteDeadline(time.Time{})
	msg, err := c.reply(250, dataTimeout)
	return afterData(res, accepted, msg, err)
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

// tenantTarget delivers to the one configured endpoint, reusing connections.
type tenantTarget struct {
	d           dialer
	pool        *pool
	rewriteFrom func(string) (string, error)
}

func (t *tenantTarget) deliver(ctx context.Context, it *spool.Item, prefix []byte, body io.ReadSeeker, rcpts []string) (map[string]outcome, error) {
	from := it.From
	if t.rewriteFrom != nil && from != "" {
		var err error
		if from, err = t.rewriteFrom(from); err != nil {
			return nil, tempErr("4.3.0", "rewrite sender %q: %v", it.From, err)
		}
	}
	for try := 0; ; try++ {
		c := t.pool.get(t.d.addr)
		reused := c != nil
		if c == nil {
			var err error
			if c, err = t.d.connect(ctx); err != nil {
				return nil, classify(err)
			}
		}
		res, reusable, err := transact(ctx, c, it, from, prefix, body, rcpts, t.d.data)
		if reusable && ctx.Err() == nil {
			t.pool.put(c)
		} else {
			c.close()
		}
		if errors.Is(err, errStale) && reused && try == 0 && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return res, classify(err)
		}
		return res, nil
	}
}

// mxTarget delivers DSNs to the sender's domain. It is only ever used for
// DSNs dualmx generated itself and for bounces returned to an address
// recovered from a valid SRS token of ours, so the relay stays closed by
// construction. Arbitrary senders' servers cannot be expected to present
// certificates we can verify, hence opportunistic TLS.
type mxTarget struct {
	lookup func(ctx context.Context, domain string) ([]*net.MX, error)
	port   int
	tmpl   dialer // helo and timeouts
}

func (t *mxTarget) deliver(ctx context.Context, it *spool.Item, _ []byte, body io.ReadSeeker, rcpts []string) (map[string]outcome, error) {
	byDomain := map[string][]string{}
	for _, r := range rcpts {
		at := strings.LastIndexByte(r, '@')
		byDomain[strings.ToLower(r[at+1:])] = append(byDomain[strings.ToLower(r[at+1:])], r)
	}
	res := map[string]outcome{}
	for domain, list := range byDomain {
		got, err := t.deliverDomain(ctx, it, body, domain, list)
		for _, r := range list {
			if o, ok := got[r]; ok {
				res[r] = o
			} else {
				res[r] = outcome{err: classify(err)}
			}
		}
	}
	return res, nil
}

func (t *mxTarget) deliverDomain(ctx context.Context, it *spool.Item, body io.ReadSeeker, domain string, rcpts []string) (map[string]outcome, error) {
	if domain == "" {
		return nil, permErr("5.1.3", "recipient has no domain")
	}
	mxs, err := t.lookup(ctx, domain)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, permErr("5.1.2", "domain %s does not exist", domain)
	}
	if err != nil && len(mxs) == 0 {
		return nil, tempErr("4.4.3", "MX lookup for %s: %v", domain, err)
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	hosts := make([]string, 0, len(mxs))
	for _, mx := range mxs {
		hosts = append(hosts, strings.TrimSuffix(mx.Host, "."))
	}
	if len(hosts) == 1 && hosts[0] == "" {
		return nil, permErr("5.1.10", "domain %s accepts no mail (null MX)", domain)
	}
	if len(hosts) == 0 {
		hosts = []string{domain} // RFC 5321 5.1: the implicit MX
	}
	lastErr := error(tempErr("4.4.4", "no usable MX for %s", domain))
	for _, h := range hosts {
		d := t.tmpl
		d.addr = net.JoinHostPort(h, strconv.Itoa(t.port))
		d.serverName = h
		d.policy = TLSOpportunistic
		c, err := d.connect(ctx)
		if err != nil {
			lastErr = err
			if isReply(err) && !classify(err).Temporary {
				return nil, err
			}
			continue
		}
		res, _, err := transact(ctx, c, it, it.From, nil, body, rcpts, d.data)
		c.quit()
		if err == nil || isReply(err) {
			return res, err
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}
