// SPDX-License-Identifier: MIT

package spool

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/testlog"
	"github.com/dualmx/dualmx/internal/testwait"
	"github.com/dualmx/dualmx/metrics"
)

type fixture struct {
	t    *testing.T
	dir  string
	sp   *Spool
	m    *metrics.Metrics
	logs *testlog.Buffer
	log  *slog.Logger
}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	return newFixtureAt(t, t.TempDir(), opts...)
}

// newFixtureAt opens the daemon spool on dir, which may hold a previous
// daemon's files (recovery tests).
func newFixtureAt(t *testing.T, dir string, opts ...Option) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: dir, m: metrics.New(), logs: &testlog.Buffer{}}
	f.log = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	f.sp, err = Open(dir, f.m, f.log, append([]Option{WithAdminWait(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sp.Close() })
	return f
}

// The admin CLI opens the spool separately (OpenAdmin), as another process
// would; flock locks belong to open files, so the exclusion is the same.
func (f *fixture) admin() *Spool {
	f.t.Helper()
	adm, err := OpenAdmin(f.dir, f.log, WithAdminWait(200*time.Millisecond), WithHostname("relay.test"))
	if err != nil {
		f.t.Fatal(err)
	}
	return adm
}

const testBody = "Received: from old.example.test\r\nFrom: Alice <alice@sender.test>\r\nTo: scriba@domain.test\r\nSubject: test\r\n\r\nHello.\r\n.leading dot\r\n"

func rcpt(alias, target string) Recipient {
	return Recipient{Rcpt: alias, Address: target, Target: target}
}

// spool commits a message and returns its id.
func (f *fixture) spool(body string, env Envelope) string {
	f.t.Helper()
	return commitBody(f.t, f.sp, body, env)
}

func commitBody(tb testing.TB, sp *Spool, body string, env Envelope) string {
	tb.Helper()
	w, err := sp.NewWriter(env)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		tb.Fatal(err)
	}
	id, err := w.Commit()
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func defaultEnv(rcpts ...Recipient) Envelope {
	if len(rcpts) == 0 {
		rcpts = []Recipient{rcpt("scriba@fwd.domain.test", "scriba@domain.test")}
	}
	return Envelope{From: "alice@sender.test", Recipients: rcpts, ClientIP: "192.0.2.1", Helo: "old.example.test"}
}

// claimed claims id and returns its message as a delivery attempt reads it.
func claimed(t *testing.T, sp *Spool, id string) (*Claim, string) {
	t.Helper()
	c, err := sp.Claim(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(io.NewSectionReader(c, 0, c.Size()))
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c, string(b)
}

// deliverByHand does what the queue does once every recipient of id has
// its 250 (the file joins the pool when the claim ends), and makes the
// removal durable, as the next commit would.
func (f *fixture) deliverByHand(id string) {
	f.t.Helper()
	f.retireByHand(id)
	if err := f.sp.FlushRemovals(); err != nil {
		f.t.Fatal(err)
	}
}

// retireByHand is deliverByHand without the directory fsync.
func (f *fixture) retireByHand(id string) {
	f.t.Helper()
	c, err := f.sp.Claim(id)
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Delivered(); err != nil {
		f.t.Fatal(err)
	}
}

// failsafe and waitFor are internal/testwait's: a generous bound for a
// wait on what must happen, and the wait.
const failsafe = testwait.Failsafe

var waitFor = testwait.For

// hookFS is the real file system with a test's hands in it: a hook may act
// before or after a file was opened by name or after it was renamed, or
// fail an open, a rename, a removal or a directory fsync. Unset hooks do nothing.
type hookFS struct {
	OSFS
	open    func(name string) error // before the file is opened
	opened  func(name string)
	renamed func(from, to string)
	rename  func(from, to string) error
	remove  func(name string) error
	syncDir func(dir string) error
}

func (h *hookFS) Open(name string) (*os.File, error) {
	if h.open != nil {
		if err := h.open(name); err != nil {
			return nil, err
		}
	}
	f, err := h.OSFS.Open(name)
	if err == nil && h.opened != nil {
		h.opened(name)
	}
	return f, err
}

func (h *hookFS) Rename(from, to string) error {
	if h.rename != nil {
		if err := h.rename(from, to); err != nil {
			return err
		}
	}
	if err := h.OSFS.Rename(from, to); err != nil {
		return err
	}
	if h.renamed != nil {
		h.renamed(from, to)
	}
	return nil
}

func (h *hookFS) Remove(name string) error {
	if h.remove != nil {
		if err := h.remove(name); err != nil {
			return err
		}
	}
	return h.OSFS.Remove(name)
}

func (h *hookFS) SyncDir(d *os.File) error {
	if h.syncDir != nil {
		if err := h.syncDir(d.Name()); err != nil {
			return err
		}
	}
	return h.OSFS.SyncDir(d)
}
