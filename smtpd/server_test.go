// SPDX-License-Identifier: MIT

package smtpd_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/smtpd"
	"github.com/dualmx/dualmx/spool"
)

type fixture struct {
	addr  string
	spool *spool.Spool
	dir   string
	m     *metrics.Metrics
}

// start runs an smtpd with a real routing table and spool; the alias
// scriba@fwd.example.nl is forwarding.
func start(t testing.TB, mod func(*smtpd.Options), spoolOpts ...spool.Option) *fixture {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := router.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, name := range []string{"scriba", "koster", "diaken", "organist"} {
		addr := name + "@example.nl"
		if _, err := st.Add(ctx, addr, name+"@fwd.example.nl", addr, "test"); err != nil {
			t.Fatal(err)
		}
		for _, s := range []router.State{router.Provisioned, router.Forwarding} {
			if _, err := st.Flip(ctx, router.FlipRequest{Address: addr, To: s, Actor: "test"}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := metrics.New()
	table := router.NewTable(st, m, nil)
	if err := table.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), m, nil, spoolOpts...)
	if err != nil {
		t.Fatal(err)
	}
	opts := smtpd.Options{Hostname: "relay.test", MaxMessageBytes: 64 << 10, MaxRecipients: 3,
		Router: table, Spool: sp, Metrics: m}
	if mod != nil {
		mod(&opts)
	}
	srv := smtpd.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrapListener != nil {
		ln = wrapListener(ln)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &fixture{addr: ln.Addr().String(), spool: sp, dir: filepath.Join(dir, "spool"), m: m}
}

// wrapListener, when set, wraps the listener start serves on.
var wrapListener func(net.Listener) net.Listener

// recordingListener records every write to the connections it accepts.
type recordingListener struct {
	net.Listener
	mu     sync.Mutex
	writes []string
}

type recordingConn struct {
	net.Conn
	l *recordingListener
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes = append(c.l.writes, string(p))
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// TestEHLOReplyInOneWrite: go-smtp formats the EHLO reply line by line; it
// leaves the server in one write, one segment for the client to wake up to.
func TestEHLOReplyInOneWrite(t *testing.T) {
	rec := &recordingListener{}
	wrapListener = func(l net.Listener) net.Listener { rec.Listener = l; return rec }
	defer func() { wrapListener = nil }()
	f := start(t, nil)
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var ehlo []string
	for _, w := range rec.writes {
		if strings.HasPrefix(w, "250-") {
			ehlo = append(ehlo, w)
		}
	}
	if len(ehlo) != 1 {
		t.Fatalf("EHLO reply in %d writes: %q\nsession:\n%s", len(ehlo), rec.writes, out)
	}
	lines := strings.Split(strings.TrimSuffix(ehlo[0], "\r\n"), "\r\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[len(lines)-1], "250 ") || !strings.Contains(ehlo[0], "250-PIPELINING\r\n") {
		t.Errorf("EHLO reply written as %q", ehlo[0])
	}
	if !strings.Contains(out, ehlo[0]) || !strings.Contains(out, "250 2.0.0") || !strings.Contains(out, "221 ") {
		t.Errorf("session:\n%s", out)
	}
	if len(rec.writes) != 4 { // greeting, EHLO, MAIL, QUIT
		t.Errorf("%d writes for 4 replies: %q", len(rec.writes), rec.writes)
	}
}

// rawSession speaks SMTP byte by byte, for input a well-behaved client
// library would refuse to send, and returns what the server said until it
// closed the connection (after QUIT, which every script ends in, or after
// hanging up).
func rawSession(t *testing.T, addr string, script string) string {
	t.Helper()
	return rawSessionFrom(t, "", addr, script)
}

// rawSessionFrom is rawSession from a chosen loopback source address ("" any),
// for tests of what is kept per client.
func rawSessionFrom(t *testing.T, local, addr, script string) string {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a failsafe
	if _, err := c.Write([]byte(script)); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

func spoolCount(t *testing.T, f *fixture) int {
	items, err := f.spool.List()
	if err != nil {
		t.Fatal(err)
	}
	return len(items)
}

func TestDataReplies(t *testing.T) {
	f := start(t, nil)
	big := strings.Repeat("x", 998) + "\r\n"
	tests := []struct {
		name string
		data string
		want string // reply code after the final dot
	}{
		{"ok", "Subject: hi\r\n\r\nbody\r\n", "250 2.0.0"},
		{"bare LF smuggling", "Subject: hi\r\n\r\nbody\n.\nMAIL FROM:<x@evil.example>\r\n", "554 5.5.2"},
		{"bare CR", "Subject: hi\r\n\r\nbo\rdy\r\n", "554 5.5.2"},
		{"CRLF dot LF", "Subject: hi\r\n\r\nbody\r\n.\nRCPT TO:<x@y>\r\n", "554 5.5.2"},
		{"too large", "Subject: hi\r\n\r\n" + strings.Repeat(big, 70), "552 5.3.4"},
		{"hop limit", strings.Repeat("Received: from a by b; Fri, 27 Nov 2026 10:00:00 +0000\r\n", 51) + "\r\nbody\r\n", "554 5.4.6"},
		{"passed through us before", "Received: from old.example ([192.0.2.1])\r\n\tby relay.test (dualmx) with ESMTPS id X;\r\n\tFri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n", "554 5.4.6"},
		{"at hop limit", strings.Repeat("Received: from a by b; Fri, 27 Nov 2026 10:00:00 +0000\r\n", 50) + "\r\nbody\r\n", "250 2.0.0"},
	}
	accepted := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := rawSession(t, f.addr, "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\n"+tc.data+"\r\n.\r\nQUIT\r\n")
			lines := strings.Split(out, "\r\n")
			var last string
			for i, l := range lines {
				if strings.HasPrefix(l, "221") && i > 0 {
					last = lines[i-1]
				}
			}
			if !strings.HasPrefix(last, tc.want) {
				t.Fatalf("reply %q, want %s\nsession:\n%s", last, tc.want, out)
			}
			if strings.HasPrefix(tc.want, "250") {
				accepted++
			}
			if n := spoolCount(t, f); n != accepted {
				t.Fatalf("spool holds %d items, want %d: a refused message must leave nothing behind", n, accepted)
			}
		})
	}
}

func TestTooManyRecipients(t *testing.T) {
	f := start(t, nil)
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org>\r\n"+
		"RCPT TO:<scriba@fwd.example.nl>\r\nRCPT TO:<koster@fwd.example.nl>\r\nRCPT TO:<diaken@fwd.example.nl>\r\nRCPT TO:<organist@fwd.example.nl>\r\nQUIT\r\n")
	if !strings.Contains(out, "452 4.5.3") {
		t.Fatalf("no 452 4.5.3 for the 4th recipient of 3 allowed:\n%s", out)
	}
}

func TestSizeDeclaredInMail(t *testing.T) {
	f := start(t, nil)
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org> SIZE=70000\r\nQUIT\r\n")
	if !strings.Contains(out, "552 5.3.4") {
		t.Fatalf("declared oversize not refused at MAIL:\n%s", out)
	}
	if !strings.Contains(out, "250-SIZE 65536") {
		t.Fatalf("SIZE not advertised:\n%s", out)
	}
}

// fullFS fails every write after limit bytes with ENOSPC, as a full disk would.
type fullFS struct {
	spool.OSFS
	limit int
}

type fullFile struct {
	*os.File
	left int
}

func (f fullFS) Create(name string) (spool.File, error) {
	fh, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	return &fullFile{File: fh, left: f.limit}, nil
}

// Reuse refuses, so every message goes to a new file, as in a fresh daemon.
func (f fullFS) Reuse(name string) (spool.File, error) {
	return nil, &os.PathError{Op: "reuse", Path: name, Err: syscall.ENOENT}
}

func (f *fullFile) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n, _ := f.File.Write(p[:f.left])
		f.left = 0
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.left -= len(p)
	return f.File.Write(p)
}

func TestDiskFullGives452AndLeavesNothing(t *testing.T) {
	f := start(t, nil, spool.WithFS(fullFS{limit: 20 << 10}))
	body := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 500)+"\r\n", 100)
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\n"+body+".\r\nQUIT\r\n")
	if !strings.Contains(out, "452 4.3.1") {
		t.Fatalf("no 452 4.3.1 on a full spool:\n%s", out)
	}
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") && e.Name() != "daemon.lock" {
			t.Errorf("left behind in the spool: %s", e.Name())
		}
	}
}

func TestNullSenderAndBadSender(t *testing.T) {
	f := start(t, nil)
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<>\r\nRSET\r\nMAIL FROM:<a@b.example.>\r\nQUIT\r\n")
	if !strings.Contains(out, "250 2.0.0 Roger") && !strings.Contains(out, "250 2.0.0") {
		t.Fatalf("null sender refused:\n%s", out)
	}
	if !strings.Contains(out, "553 5.1.7") {
		t.Fatalf("trailing-dot sender domain accepted:\n%s", out)
	}
}

func TestAllowedNetworks(t *testing.T) {
	f := start(t, func(o *smtpd.Options) {
		o.AllowedNetworks = mustPrefixes("192.0.2.0/24")
	})
	out := rawSession(t, f.addr, "QUIT\r\n")
	if !strings.HasPrefix(out, "554 5.7.1") {
		t.Fatalf("client outside allowed_networks not refused: %q", out)
	}
}

func TestMaxConnections(t *testing.T) {
	f := start(t, func(o *smtpd.Options) { o.MaxConnections = 2 })
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 256)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	out := rawSession(t, f.addr, "QUIT\r\n")
	if !strings.HasPrefix(out, "421 4.7.0") {
		t.Fatalf("third connection not refused with 421: %q", out)
	}
}

func TestLoopsCountedInMetrics(t *testing.T) {
	f := start(t, nil)
	own := "Received: from a ([192.0.2.1])\r\n\tby relay.test (dualmx) with ESMTP id X;\r\n\tFri, 27 Nov 2026 10:00:00 +0000\r\n\r\nx\r\n"
	hops := strings.Repeat("Received: from a by b; Fri, 27 Nov 2026 10:00:00 +0000\r\n", 51) + "\r\nx\r\n"
	for _, data := range []string{own, hops} {
		rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\n"+data+".\r\nQUIT\r\n")
	}
	if got := testutil.ToFloat64(f.m.SMTPRefusals.WithLabelValues("loop_seen")); got != 1 {
		t.Errorf("loop_seen refusals = %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.m.SMTPRefusals.WithLabelValues("loop_hops")); got != 1 {
		t.Errorf("loop_hops refusals = %v, want 1", got)
	}
}

// TestForgedAuthResultsRemoved: the only change to the original header block
// is the removal of Authentication-Results fields that claim our authserv-id.
func TestForgedAuthResultsRemoved(t *testing.T) {
	f := start(t, nil)
	orig := "Authentication-Results: relay.test; dkim=pass header.d=bank.example\r\n" +
		"Authentication-Results: mx.oldhost.example; spf=pass\r\n" +
		"From: a@example.org\r\nSubject: x\r\n\r\nAuthentication-Results: relay.test; body line stays\r\n"
	out := rawSession(t, f.addr, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<scriba@fwd.example.nl>\r\nDATA\r\n"+orig+".\r\nQUIT\r\n")
	if !strings.Contains(out, "250 2.0.0 OK queued as ") {
		t.Fatalf("not accepted:\n%s", out)
	}
	items, _ := f.spool.List()
	rc, err := f.spool.Body(items[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := orig[strings.Index(orig, "Authentication-Results: mx.oldhost"):]
	if !strings.HasSuffix(string(body), "\r\n"+want) || strings.Contains(string(body), "relay.test; dkim=pass") {
		t.Fatalf("spooled message:\n%s\nwant the Received line followed by:\n%s", body, want)
	}
}
