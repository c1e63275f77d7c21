// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/internal/testlog"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/standin"
)

type fixture struct {
	t    *testing.T
	ca   *testca.CA
	dir  string
	sp   *Spool
	m    *metrics.Metrics
	logs *testlog.Buffer
	log  *slog.Logger
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ca: ca, dir: t.TempDir(), m: metrics.New(), logs: &testlog.Buffer{}}
	f.log = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.sp, err = OpenSpool(f.dir, f.m, f.log, WithAdminWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sp.Close() })
	return f
}

// tlsFor returns a server config with a leaf from this fixture's CA.
func (f *fixture) tlsFor(names ...string) *tls.Config {
	f.t.Helper()
	cfg, err := f.ca.ServerTLS(names...)
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

// target starts a stand-in with STARTTLS by default (nil TLS in opts means our CA's leaf for 127.0.0.1).
func (f *fixture) target(opts standin.Options) *standin.Server {
	f.t.Helper()
	if opts.TLS == nil {
		opts.TLS = f.tlsFor("127.0.0.1")
	}
	s, err := standin.Start(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

func (f *fixture) opts(s *standin.Server) Options {
	return Options{
		Host: s.Host(), Port: s.Port(), TLS: TLSRequire, RootCAs: f.ca.Pool(), HelloName: "relay.test",
		RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, GiveUpAfter: time.Hour,
		Concurrency: 2, DialTimeout: 10 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 2 * time.Second,
		IdleTimeout: 5 * time.Second, StopTimeout: time.Second, PollInterval: 20 * time.Millisecond,
		Rand: func() float64 { return 0 },
	}
}

const testBody = "Received: from old.example.test\r\nFrom: Alice <alice@sender.test>\r\nTo: scriba@domain.test\r\nSubject: test\r\n\r\nHello.\r\n.leading dot\r\n"

func rcpt(alias, target string) Recipient {
	return Recipient{Rcpt: alias, Address: target, Target: target}
}

// spool commits a message and returns its id.
func (f *fixture) spool(body string, env Envelope) string {
	f.t.Helper()
	w, err := f.sp.NewWriter(env)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		f.t.Fatal(err)
	}
	id, err := w.Commit()
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func defaultEnv(rcpts ...Recipient) Envelope {
	if len(rcpts) == 0 {
		rcpts = []Recipient{rcpt("scriba@fwd.domain.test", "scriba@domain.test")}
	}
	return Envelope{From: "alice@sender.test", Recipients: rcpts, ClientIP: "192.0.2.1", Helo: "old.example.test"}
}

// run starts a runner; the returned stop cancels it and reports how long Run took to return.
func (f *fixture) run(opts Options) (*Runner, func() time.Duration) {
	f.t.Helper()
	r := NewRunner(f.sp, opts, f.m, f.log)
	ctx, cancel := context.WithCancel(context.Background())
	ret := make(chan struct{})
	go func() {
		r.Run(ctx)
		close(ret)
	}()
	stopped := false
	var took time.Duration
	stop := func() time.Duration {
		if stopped {
			return took
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case <-ret:
		case <-time.After(15 * time.Second):
			f.t.Error("Run did not return")
		}
		took = time.Since(start)
		return took
	}
	f.t.Cleanup(func() { stop() })
	return r, stop
}

// waitFor polls cond for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether the item has left the spool.
func (f *fixture) gone(id string) func() bool {
	return func() bool {
		_, err := f.sp.Get(id)
		return err != nil
	}
}

// state returns a predicate for the item reaching state st.
func (f *fixture) state(id string, st State) func() bool {
	return func() bool {
		it, err := f.sp.Get(id)
		return err == nil && it.State == st
	}
}

func waitMsgs(t *testing.T, s *standin.Server, n int) []standin.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := s.Wait(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// newFixtureAt opens the daemon spool on an existing directory (recovery tests).
func newFixtureAt(t *testing.T, dir string) *fixture {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ca: ca, dir: dir, m: metrics.New(), logs: &testlog.Buffer{}}
	f.log = slog.New(slog.NewJSONHandler(f.logs, nil))
	f.sp, err = OpenSpool(dir, f.m, f.log, WithAdminWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sp.Close() })
	return f
}

func standinOpts() standin.Options { return standin.Options{} }
