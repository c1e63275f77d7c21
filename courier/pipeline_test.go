// SPDX-License-Identifier: MIT

package courier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// dropReply, as a script's answer, closes the connection instead of replying.
const dropReply = "drop"

// scriptServer is a raw SMTP server answering from a script, for what
// go-smtp's server will not do (take DATA with no recipient accepted, drop
// at an exact command) and to see how the client's commands reach the wire.
type scriptServer struct {
	ln         net.Listener
	pipelining bool
	// answer returns the reply to a command (without the final CRLF), ""
	// for the default one, or dropReply. conn counts connections from 1.
	answer func(conn int, cmd string) string
	quiet  atomic.Bool // answer no longer consulted: defaults only

	mu    sync.Mutex
	conns int
	reads [][]string // the command lines each Read brought, in order
	cmds  []string   // every command line, the final dot included
	data  []string   // the wire bytes between 354 and each final dot
}

func startScript(t *testing.T, pipelining bool, answer func(conn int, cmd string) string) *scriptServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptServer{ln: ln, pipelining: pipelining, answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			id := s.conns
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(conn, id)
			}()
		}
	}()
	return s
}

func (s *scriptServer) dialer() dialer {
	return dialer{addr: s.ln.Addr().String(), serverName: "127.0.0.1", policy: TLSNone, helo: "relay.test",
		dial: 5 * time.Second, command: 5 * time.Second, data: 5 * time.Second}
}

func (s *scriptServer) serve(conn net.Conn, id int) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, "220 script.test ESMTP\r\n"); err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	var pending, data []byte
	inData := false
	for {
		if !inData {
			// Commands written together have then all arrived, so one
			// Read shows them together.
			time.Sleep(5 * time.Millisecond)
		}
		n, rerr := conn.Read(buf)
		pending = append(pending, buf[:n]...)
		var batch []string
		var out bytes.Buffer
		closing := false
		for !closing {
			i := bytes.Index(pending, []byte("\r\n"))
			if i < 0 {
				break
			}
			line := string(pending[:i])
			pending = pending[i+2:]
			if inData && line != "." {
				data = append(data, line...)
				data = append(data, "\r\n"...)
				continue
			}
			if inData {
				inData = false
				s.mu.Lock()
				s.data = append(s.data, string(data))
				s.mu.Unlock()
				data = nil
			} else {
				batch = append(batch, line)
			}
			s.mu.Lock()
			s.cmds = append(s.cmds, line)
			s.mu.Unlock()
			r := s.reply(id, line)
			if r == dropReply {
				// The rest of what this Read brought was sent together too.
				for _, l := range strings.Split(string(pending), "\r\n") {
					if l != "" {
						batch = append(batch, l)
					}
				}
				closing = true
				break
			}
			out.WriteString(r + "\r\n")
			inData = strings.HasPrefix(r, "354")
			closing = strings.EqualFold(line, "QUIT")
		}
		if len(batch) > 0 {
			s.mu.Lock()
			s.reads = append(s.reads, batch)
			s.mu.Unlock()
		}
		if out.Len() > 0 {
			if _, err := conn.Write(out.Bytes()); err != nil {
				return
			}
		}
		if closing || rerr != nil {
			return
		}
	}
}

func (s *scriptServer) reply(id int, cmd string) string {
	if s.answer != nil && !s.quiet.Load() {
		if r := s.answer(id, cmd); r != "" {
			return r
		}
	}
	verb, _, _ := strings.Cut(strings.ToUpper(cmd), " ")
	switch {
	case verb == "EHLO":
		caps := []string{"script.test"}
		if s.pipelining {
			caps = append(caps, "PIPELINING")
		}
		caps = append(caps, "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "SIZE 10000000")
		var b strings.Builder
		for i, c := range caps {
			sep := "-"
			if i == len(caps)-1 {
				sep = " "
			}
			if i > 0 {
				b.WriteString("\r\n")
			}
			b.WriteString("250" + sep + c)
		}
		return b.String()
	case verb == "MAIL":
		return "250 2.1.0 Sender ok"
	case verb == "RCPT":
		return "250 2.1.5 Recipient ok"
	case verb == "DATA":
		return "354 Go ahead"
	case verb == ".":
		return "250 2.0.0 Queued as 42"
	case verb == "RSET" || verb == "NOOP" || verb == "HELO":
		return "250 2.0.0 OK"
	case verb == "QUIT":
		return "221 2.0.0 Bye"
	}
	return "500 5.5.2 What?"
}

func (s *scriptServer) snapshot() (reads [][]string, cmds, data []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reads), slices.Clone(s.cmds), slices.Clone(s.data)
}

// unstuff undoes the transparency dots of RFC 5321 4.5.2.
func unstuff(wire string) string {
	lines := strings.SplitAfter(wire, "\r\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, ".")
	}
	return strings.Join(lines, "")
}

// pipelineBody has leading dots, a line that is only a dot and more than
// one copy buffer's worth of bytes, so every transparency rule is crossed.
func pipelineBody() string {
	var b strings.Builder
	b.WriteString("From: Alice <alice@sender.test>\r\nSubject: pipelined\r\n\r\n.\r\n..two\r\n")
	for i := 0; b.Len() < 100<<10; i++ {
		fmt.Fprintf(&b, ".line %d %s\r\n", i, strings.Repeat("x", i%90))
	}
	return b.String()
}

// summarize renders a transaction's result so the two paths can be compared:
// replies in full, local failures by class (their text names sockets).
func summarize(res []Outcome, reusable bool, err error) string {
	describe := func(err error) string {
		de := Classify(err)
		if isReply(err) {
			return fmt.Sprintf("%q temp=%v", de.Reply(), de.Temporary)
		}
		return fmt.Sprintf("local %s temp=%v stale=%v", de.Status, de.Temporary, errors.Is(err, errStale))
	}
	parts := []string{fmt.Sprintf("reusable=%v", reusable)}
	if err != nil {
		parts = append(parts, "err: "+describe(err))
	}
	res = slices.Clone(res)
	slices.SortFunc(res, func(a, b Outcome) int { return strings.Compare(a.Rcpt, b.Rcpt) })
	for _, o := range res {
		if o.Err != nil {
			parts = append(parts, o.Rcpt+": "+describe(o.Err))
		} else {
			parts = append(parts, fmt.Sprintf("%s: %q", o.Rcpt, o.Reply))
		}
	}
	return strings.Join(parts, "; ")
}

// TestPipelinedTransactMatchesRoundTrips runs each script against a server
// with and without PIPELINING: the results must be the same, and only the
// way the commands travel may differ.
func TestPipelinedTransactMatchesRoundTrips(t *testing.T) {
	t.Parallel()
	rcpts := []string{"a@domain.test", "b@domain.test", "c@domain.test"}
	const ok = `"250 2.0.0 Queued as 42"`
	on := func(verb, reply string) func(int, string) string {
		return func(_ int, cmd string) string {
			if strings.HasPrefix(cmd, verb) {
				return reply
			}
			return ""
		}
	}
	rejectRcpts := func(data string) func(int, string) string {
		return func(_ int, cmd string) string {
			switch {
			case strings.HasPrefix(cmd, "RCPT"):
				return "550 5.1.1 No such user"
			case cmd == "DATA":
				return data
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name   string
		answer func(int, string) string
		want   string
		body   bool // the message reached the server
	}{
		{"all accepted", nil,
			"reusable=true; a@domain.test: " + ok + "; b@domain.test: " + ok + "; c@domain.test: " + ok, true},
		{"mixed recipients", func(_ int, cmd string) string {
			switch cmd {
			case "RCPT TO:<b@domain.test>":
				return "550-5.1.1 No such user\r\n550 5.1.1 Try elsewhere"
			case "RCPT TO:<c@domain.test>":
				return "452 4.2.2 Mailbox full"
			}
			return ""
		}, "reusable=true; a@domain.test: " + ok +
			`; b@domain.test: "550 5.1.1 No such user\nTry elsewhere" temp=false; c@domain.test: "452 4.2.2 Mailbox full" temp=true`, true},
		{"recipient reply without enhanced code", on("RCPT TO:<a@", "550 no"),
			`reusable=true; a@domain.test: "550 no" temp=false; b@domain.test: ` + ok + "; c@domain.test: " + ok, true},
		{"MAIL rejected", func(_ int, cmd string) string {
			switch {
			case strings.HasPrefix(cmd, "MAIL"):
				return "550 5.7.1 Sender refused"
			case strings.HasPrefix(cmd, "RCPT"), cmd == "DATA":
				return "503 5.5.1 MAIL first"
			}
			return ""
		}, `reusable=true; err: "550 5.7.1 Sender refused" temp=false`, false},
		{"MAIL rejected, DATA taken anyway", func(_ int, cmd string) string {
			switch {
			case strings.HasPrefix(cmd, "MAIL"):
				return "451 4.3.0 Try later"
			case cmd == ".":
				return "554 5.5.1 No valid recipients"
			}
			return ""
		}, `reusable=true; err: "451 4.3.0 Try later" temp=true`, false},
		{"no recipient accepted", rejectRcpts("554 5.5.1 No valid recipients"),
			`reusable=true; a@domain.test: "550 5.1.1 No such user" temp=false; b@domain.test: "550 5.1.1 No such user" temp=false; c@domain.test: "550 5.1.1 No such user" temp=false`, false},
		{"no recipient accepted, DATA taken anyway", rejectRcpts(""),
			`reusable=true; a@domain.test: "550 5.1.1 No such user" temp=false; b@domain.test: "550 5.1.1 No such user" temp=false; c@domain.test: "550 5.1.1 No such user" temp=false`, false},
		{"DATA rejected", on("DATA", "451 4.3.0 Not now"),
			`reusable=true; a@domain.test: "451 4.3.0 Not now" temp=true; b@domain.test: "451 4.3.0 Not now" temp=true; c@domain.test: "451 4.3.0 Not now" temp=true`, false},
		{"message rejected after the body", on(".", "552 5.3.4 Message too big"),
			`reusable=true; a@domain.test: "552 5.3.4 Message too big" temp=false; b@domain.test: "552 5.3.4 Message too big" temp=false; c@domain.test: "552 5.3.4 Message too big" temp=false`, true},
		{"dropped at MAIL", on("MAIL", dropReply), "reusable=false; err: local 4.4.2 temp=true stale=true", false},
		{"dropped at RCPT", on("RCPT TO:<b@", dropReply), "reusable=false; err: local 4.4.2 temp=true stale=false", false},
		{"dropped at DATA", on("DATA", dropReply), "reusable=false; err: local 4.4.2 temp=true stale=false", false},
		{"dropped after the body", on(".", dropReply), "reusable=false; err: local 4.4.2 temp=true stale=false", true},
		{"overlong reply", on("MAIL", "250 "+strings.Repeat("x", 3000)), "reusable=false; err: local 4.4.2 temp=true stale=true", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := pipelineBody()
			prefix := "X-Relayed: pipelined\r\n"
			msg := Message{From: "jos\u00e9@sender.test", EightBit: true, SMTPUTF8: true}
			x := func(rcpts []string) *txn {
				return &txn{msg: msg, rcpts: rcpts, header: []byte(prefix), body: strings.NewReader(body)}
			}
			var mails, bodies []string
			for _, pipelining := range []bool{true, false} {
				s := startScript(t, pipelining, tc.answer)
				d := s.dialer()
				ctx := context.Background()
				c, err := d.connect(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer c.close()
				if (c.tp != nil) != pipelining {
					t.Fatalf("pipelining = %v, want %v", c.tp != nil, pipelining)
				}
				res, reusable, err := transact(ctx, c, x(rcpts), msg.From, d.data)
				if got := summarize(res, reusable, err); got != tc.want {
					t.Errorf("pipelining=%v:\n got %s\nwant %s", pipelining, got, tc.want)
				}
				reads, cmds, data := s.snapshot()
				grouped := false
				for _, r := range reads {
					if strings.HasPrefix(r[0], "MAIL") && len(r) == len(rcpts)+2 && r[len(r)-1] == "DATA" {
						grouped = true
					} else if len(r) > 1 {
						t.Errorf("pipelining=%v: commands %q arrived together", pipelining, r)
					}
					if !pipelining && len(r) > 1 {
						t.Errorf("commands %q arrived together without PIPELINING", r)
					}
				}
				if grouped != pipelining {
					t.Errorf("pipelining=%v: MAIL, RCPTs and DATA in one read: %v; reads %q", pipelining, grouped, reads)
				}
				for _, cmd := range cmds {
					if strings.HasPrefix(cmd, "MAIL") {
						mails = append(mails, cmd)
					}
				}
				delivered := slices.ContainsFunc(data, func(d string) bool { return d != "" })
				if delivered != tc.body {
					t.Errorf("pipelining=%v: body reached the server: %v", pipelining, delivered)
				}
				for _, d := range data {
					if d == "" {
						continue
					}
					if unstuff(d) != prefix+body {
						t.Errorf("pipelining=%v: message bytes changed", pipelining)
					}
					bodies = append(bodies, d)
				}
				if pipelining && len(data) > 0 && data[0] == "" {
					// A 354 with nothing accepted was ended with a lone dot, then RSET.
					if i := slices.Index(cmds, "."); i < 0 || i+1 >= len(cmds) || cmds[i+1] != "RSET" {
						t.Errorf("after an unwanted 354: %q", cmds)
					}
				}
				if !reusable {
					continue
				}
				// A reusable connection is in step for the next message.
				s.quiet.Store(true)
				res, reusable, err = transact(ctx, c, x(rcpts[:1]), msg.From, d.data)
				if got, want := summarize(res, reusable, err), "reusable=true; a@domain.test: "+ok; got != want {
					t.Errorf("pipelining=%v: next transaction: %s", pipelining, got)
				}
			}
			if len(mails) > 0 && mails[0] != fmt.Sprintf("MAIL FROM:<%s> BODY=8BITMIME SIZE=%d SMTPUTF8", msg.From, len(prefix)+len(body)) {
				t.Errorf("MAIL = %q", mails[0])
			}
			for _, m := range mails[1:] {
				if m != mails[0] {
					t.Errorf("MAIL differs between the paths: %q", mails)
				}
			}
			for _, b := range bodies[min(1, len(bodies)):] {
				if b != bodies[0] {
					t.Error("wire bytes differ between the paths")
				}
			}
		})
	}
}

// TestPipelinedDeliveryToGoSMTP delivers over STARTTLS to a go-smtp server
// (which offers PIPELINING), one case after another on one connection, with
// the body as the spool hands it over: a file or a section of one.
func TestPipelinedDeliveryToGoSMTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.target(standin.Options{MaxSize: 10 << 20, Hook: func(e standin.Event) error {
		switch {
		case e.Stage == standin.StageMail && e.From == "refused@sender.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}
		case e.Stage == standin.StageRcpt && strings.HasPrefix(e.Rcpt, "bad@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case e.Stage == standin.StageRcpt && strings.HasPrefix(e.Rcpt, "busy@"):
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	}})
	d := f.tenant(f.config(s)).d
	ctx := context.Background()
	c, err := d.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.quit()
	if c.tp == nil || !c.tls {
		t.Fatalf("pipelining %v, TLS %v", c.tp != nil, c.tls)
	}
	body := pipelineBody()
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	prefix := "X-Relayed: yes\r\n"
	section := func() Body { return io.NewSectionReader(file, 0, int64(len(body))) }
	whole := func() Body { return fileBody{file, int64(len(body))} }
	for _, tc := range []struct {
		name  string
		from  string
		rcpts []string
		body  func() Body
		want  string
		to    []string // recipients of the message the server took; nil for none
	}{
		{"file body", "alice@sender.test", []string{"good@domain.test", "other@domain.test"}, whole,
			`reusable=true; good@domain.test: "250 2.0.0 OK: queued"; other@domain.test: "250 2.0.0 OK: queued"`,
			[]string{"good@domain.test", "other@domain.test"}},
		{"mixed recipients", "alice@sender.test", []string{"bad@domain.test", "good@domain.test", "busy@domain.test"}, section,
			`reusable=true; bad@domain.test: "550 5.1.1 no such user" temp=false; busy@domain.test: "452 4.2.2 mailbox full" temp=true; good@domain.test: "250 2.0.0 OK: queued"`,
			[]string{"good@domain.test"}},
		{"MAIL rejected", "refused@sender.test", []string{"good@domain.test"}, section,
			`reusable=true; err: "550 5.7.1 sender refused" temp=false`, nil},
		{"no recipient accepted", "alice@sender.test", []string{"bad@domain.test", "busy@domain.test"}, section,
			`reusable=true; bad@domain.test: "550 5.1.1 no such user" temp=false; busy@domain.test: "452 4.2.2 mailbox full" temp=true`, nil},
		{"after all that", "alice@sender.test", []string{"good@domain.test"}, section,
			`reusable=true; good@domain.test: "250 2.0.0 OK: queued"`, []string{"good@domain.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Count()
			x := &txn{msg: Message{From: tc.from}, rcpts: tc.rcpts, header: []byte(prefix), body: tc.body()}
			res, reusable, err := transact(ctx, c, x, tc.from, d.data)
			if got := summarize(res, reusable, err); got != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
			if tc.to == nil {
				if s.Count() != before {
					t.Error("the server took a message")
				}
				return
			}
			m := waitMsgs(t, s, before+1)[before]
			if string(m.Data) != prefix+body {
				t.Error("message bytes changed")
			}
			if !slices.Equal(m.To, tc.to) || m.From != tc.from || m.MailOpts.Size != int64(len(prefix)+len(body)) || m.MailOpts.Body != smtp.Body8BitMIME {
				t.Errorf("envelope: from %q to %v %+v", m.From, m.To, m.MailOpts)
			}
		})
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections", n)
	}
}

// TestPipelinedStalePooledConnection: a pooled connection the server has
// dropped fails before anything was accepted, and the message goes out on a
// fresh one.
func TestPipelinedStalePooledConnection(t *testing.T) {
	t.Parallel()
	var mails atomic.Int32
	s := startScript(t, true, func(conn int, cmd string) string {
		if strings.HasPrefix(cmd, "MAIL") && mails.Add(1) == 2 {
			return dropReply // the first connection, second message
		}
		return ""
	})
	p := newPool(2, time.Minute, time.Now)
	defer p.closeAll()
	ap := s.ln.Addr().(*net.TCPAddr)
	tt := &Tenant{d: s.dialer(), port: ap.Port, pool: p, health: NewHealth(HealthConfig{}),
		book: &addrBook{host: ap.IP.String(), resolver: net.DefaultResolver, now: time.Now}}
	body := "Subject: stale\r\n\r\nHello.\r\n"
	for i := range 2 {
		res := send(t, tt, Message{From: "alice@sender.test"}, "", body, "a@domain.test")
		if got := summarize(res.Rcpts, true, nil); got != `reusable=true; a@domain.test: "250 2.0.0 Queued as 42"` {
			t.Errorf("message %d: %s", i+1, got)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns != 2 || len(s.data) != 2 {
		t.Errorf("%d connections, %d messages", s.conns, len(s.data))
	}
}

// fileBody is a whole file as a Body.
type fileBody struct {
	*os.File
	size int64
}

func (b fileBody) Size() int64 { return b.size }

// plainWriter has no ReadFrom, like the DATA writers.
type plainWriter struct{ n int }

func (w *plainWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// TestCopyBodyReusesBuffer: copying a body costs no allocation per message,
// where io.Copy would take 32 KiB each time.
func TestCopyBodyReusesBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "body")
	body := []byte(pipelineBody())
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	section := io.NewSectionReader(file, 0, int64(len(body)))
	for _, tc := range []struct {
		name string
		r    io.ReadSeeker
	}{{"file", file}, {"section", section}} {
		t.Run(tc.name, func(t *testing.T) {
			var w plainWriter
			allocs := testing.AllocsPerRun(50, func() {
				tc.r.Seek(0, io.SeekStart)
				if err := copyBody(&w, tc.r); err != nil {
					t.Fatal(err)
				}
			})
			// Under the race detector sync.Pool drops a quarter of what is
			// put back; AllocsPerRun's whole-number average absorbs that.
			if allocs > 0 {
				t.Errorf("%v allocations per copy", allocs)
			}
			if w.n != 51*len(body) {
				t.Errorf("copied %d bytes, want %d", w.n, 51*len(body))
			}
		})
	}
}

// writeRecorder keeps every write on its way to the connection.
type writeRecorder struct {
	w      io.Writer
	writes []string
}

func (r *writeRecorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return r.w.Write(p)
}

// TestPipelinedMessageLeavesInOneWrite: with PIPELINING the commands go in
// one write and a message of a typical size, final dot included, in one more:
// each extra write is a system call here and a wake-up at the server.
func TestPipelinedMessageLeavesInOneWrite(t *testing.T) {
	t.Parallel()
	s := startScript(t, true, nil)
	d := s.dialer()
	c, err := d.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.quit()
	if c.tp == nil {
		t.Fatal("no pipelining")
	}
	rec := &writeRecorder{w: c.conn}
	c.tp.W.Reset(rec)
	body := "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("b", 70)+"\r\n", 200) // 14.4 KiB
	x := &txn{msg: Message{From: "a@sender.test"}, rcpts: []string{"r@domain.test"}, header: []byte("X-Relayed: yes\r\n"), body: strings.NewReader(body)}
	res, reusable, err := transactPipelined(c, "MAIL FROM:<a@sender.test>", x, 5*time.Second)
	if err != nil || !reusable || res[0].Err != nil {
		t.Fatalf("transact: %v, %v, %v", res, reusable, err)
	}
	if len(rec.writes) != 2 {
		t.Fatalf("%d writes, want 2 (commands, message): sizes %v", len(rec.writes), lens(rec.writes))
	}
	if w := rec.writes[1]; !strings.HasPrefix(w, "X-Relayed: yes\r\nSubject: x\r\n") || !strings.HasSuffix(w, body+".\r\n") {
		t.Errorf("message write: %d bytes", len(w))
	}
}

func lens(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}
