// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/emersion/go-smtp"
)

// cmdBigMsg sends one message of -size bytes to the relay and waits until the
// sink has counted it, sampling the relay's memory the whole time. The growth
// it reports is the peak resident set during the relay (VmHWM after it was
// reset just before sending, cross-checked with polled VmRSS) minus VmRSS just
// before sending.
func cmdBigMsg(args []string) error {
	fs := flag.NewFlagSet("bigmsg", flag.ExitOnError)
	addr := fs.String("addr", "", "relay SMTP address host:port")
	pid := fs.Int("pid", 0, "relay process id (for /proc/PID/status)")
	size := fs.Int64("size", 100<<20, "message size in bytes, header included")
	from := fs.String("from", "sender@example.org", "envelope sender")
	to := fs.String("to", "", "envelope recipient")
	counter := fs.String("sink-counter", "", "file with smtp-sink -c output; wait until it counts one more message")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the sink after the relay accepted the message")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the SMTP transaction")
	fs.Parse(args)
	if *addr == "" || *pid <= 0 || *to == "" || *counter == "" {
		return errors.New("bigmsg: -addr, -pid, -to and -sink-counter are required")
	}
	if *size < 1024 {
		return errors.New("bigmsg: -size must be at least 1024")
	}
	base, err := sinkCount(*counter)
	if err != nil {
		return err
	}

	before, err := readMem(*pid)
	if err != nil {
		return err
	}
	hwmReset := resetHWM(*pid) == nil
	if hwmReset {
		if before, err = readMem(*pid); err != nil {
			return err
		}
	}
	s := startSampler(*pid, 10*time.Millisecond)
	sampling := true
	defer func() {
		if sampling {
			s.Stop()
		}
	}()

	start := time.Now()
	if err := sendBig(*addr, *from, *to, *size, *timeout); err != nil {
		return err
	}
	accepted := time.Since(start)

	deadline := time.Now().Add(*wait)
	for {
		n, err := sinkCount(*counter)
		if err != nil {
			return err
		}
		if n > base {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bigmsg: the sink did not receive the message within %v after the relay accepted it", *wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	relayed := time.Since(start)
	// Keep sampling briefly: the relay may still be releasing the message.
	time.Sleep(500 * time.Millisecond)
	maxRSS, nSamples, serr := s.Stop()
	sampling = false
	if serr != nil {
		return serr
	}
	after, err := readMem(*pid)
	if err != nil {
		return err
	}
	peak := maxRSS
	if hwmReset {
		peak = max(peak, after.HWM)
	}
	fmt.Printf("size_bytes=%d\naccepted_seconds=%.3f\nrelayed_seconds=%.3f\n", *size, accepted.Seconds(), relayed.Seconds())
	fmt.Printf("rss_before_kib=%d\npeak_rss_sampled_kib=%d\nsamples=%d\nhwm_reset=%t\nhwm_kib=%d\nrss_after_kib=%d\n",
		before.RSS, maxRSS, nSamples, hwmReset, after.HWM, after.RSS)
	fmt.Printf("growth_kib=%d\n", peak-before.RSS)
	return nil
}

func sendBig(addr, from, to string, size int64, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("bigmsg.bench.localhost"); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if max, ok := c.MaxMessageSize(); ok && max > 0 && int64(max) < size {
		return fmt.Errorf("the relay advertises SIZE %d, below the %d-byte test message", max, size)
	}
	if err := c.Mail(from, &smtp.MailOptions{Size: size}); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.Copy(w, newBigMessage(from, to, size)); err != nil {
		return fmt.Errorf("DATA body: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return c.Quit()
}

// bigMessage generates a 7-bit message of exactly size bytes: a header, then
// 78-character lines, each ending in CRLF, none starting with a dot.
type bigMessage struct {
	header []byte
	left   int64 // bytes still to produce, header included
	line   []byte
	pos    int // position in line
}

func newBigMessage(from, to string, size int64) *bigMessage {
	var h bytes.Buffer
	fmt.Fprintf(&h, "From: <%s>\r\nTo: <%s>\r\nSubject: dualmx benchmark, one %d-byte message\r\n", from, to, size)
	fmt.Fprintf(&h, "Date: %s\r\nMessage-ID: <bigmsg.%d.%d@bench.localhost>\r\n", time.Now().Format(time.RFC1123Z), os.Getpid(), time.Now().UnixNano())
	h.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := make([]byte, 0, 80)
	for i := 0; len(line) < 78; i++ {
		line = append(line, "abcdefghijklmnopqrstuvwxyz0123456789"[i%36])
	}
	line = append(line, '\r', '\n')
	return &bigMessage{header: h.Bytes(), left: size, line: line}
}

func (m *bigMessage) Read(p []byte) (int, error) {
	if m.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n := 0
	if len(m.header) > 0 {
		k := copy(p, m.header)
		m.header = m.header[k:]
		n += k
	}
	for n < len(p) {
		k := copy(p[n:], m.line[m.pos:])
		n += k
		m.pos = (m.pos + k) % len(m.line)
	}
	m.left -= int64(n)
	if m.left == 0 && m.pos != 0 {
		// The size cut a line short; end it so the message ends in CRLF.
		// (The last two bytes are overwritten; the size stays exact.)
		if n >= 2 {
			p[n-2], p[n-1] = '\r', '\n'
		}
	}
	return n, nil
}
