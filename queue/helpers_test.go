// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/internal/testlog"
	"github.com/dualmx/dualmx/internal/testwait"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/standin"
)

type fixture struct {
	t    *testing.T
	ca   *testca.CA
	dir  string
	sp   *spool.Spool
	m    *metrics.Metrics
	logs *testlog.Buffer
	log  *slog.Logger
}

func newFixture(t *testing.T, opts ...spool.Option) *fixture {
	t.Helper()
	return newFixtureAt(t, t.TempDir(), opts...)
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

// tenantConfig is the courier's tenant at the stand-in s.
func (f *fixture) tenantConfig(s *standin.Server) courier.TenantConfig {
	return courier.TenantConfig{
		Client: courier.Client{HelloName: "relay.test", DialTimeout: failsafe, CommandTimeout: failsafe, DataTimeout: failsafe},
		Host:   s.Host(), Port: s.Port(), TLS: courier.TLSRequire, RootCAs: f.ca.Pool(), MaxIdle: 2, IdleTimeout: 5 * time.Second,
		Health: courier.HealthConfig{ProbeInitial: 50 * time.Millisecond, ProbeMax: 200 * time.Millisecond, Rand: func() float64 { return 0 }},
	}
}

// opts delivers to the stand-in s as the tenant.
func (f *fixture) opts(s *standin.Server) Options { return f.optsWith(f.tenantConfig(s)) }

// optsWith delivers to the tenant cfg describes. DSNs go nowhere (every
// domain is unknown) unless a test sets Sender (mxAt).
func (f *fixture) optsWith(cfg courier.TenantConfig) Options {
	tenant, err := courier.NewTenant(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(tenant.Close)
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in these tests")
	}}
	nowhere := courier.NewMX(courier.MXConfig{Client: courier.Client{Resolver: noDNS}})
	return Options{
		Tenant: tenant, Health: tenant.Health(), Sender: nowhere, HelloName: "relay.test",
		RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, GiveUpAfter: time.Hour,
		Concurrency: 2, StopTimeout: time.Second, PollInterval: 20 * time.Millisecond,
		Rand: func() float64 { return 0 },
	}
}

// mxAt is a sender's MX target that finds every domain's MX at the stand-in
// mx, and notes the domains it looked up.
func (f *fixture) mxAt(mx *standin.Server, lookups *[]string) courier.Target {
	var mu sync.Mutex
	return courier.NewMX(courier.MXConfig{
		Client:        courier.Client{HelloName: "relay.test", DialTimeout: failsafe, CommandTimeout: failsafe, DataTimeout: failsafe},
		Port:          mx.Port(),
		AllowLoopback: true,
		LookupMX: func(_ context.Context, domain string) ([]*net.MX, error) {
			if lookups != nil {
				mu.Lock()
				*lookups = append(*lookups, domain)
				mu.Unlock()
			}
			return []*net.MX{{Host: "127.0.0.1.", Pref: 10}}, nil
		},
	})
}

const testBody = "Received: from old.example.test\r\nFrom: Alice <alice@sender.test>\r\nTo: scriba@domain.test\r\nSubject: test\r\n\r\nHello.\r\n.leading dot\r\n"

func rcpt(alias, target string) spool.Recipient {
	return spool.Recipient{Rcpt: alias, Address: target, Target: target}
}

// spool commits a message and returns its id.
func (f *fixture) spool(body string, env spool.Envelope) string {
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

func defaultEnv(rcpts ...spool.Recipient) spool.Envelope {
	if len(rcpts) == 0 {
		rcpts = []spool.Recipient{rcpt("scriba@fwd.domain.test", "scriba@domain.test")}
	}
	return spool.Envelope{From: "alice@sender.test", Recipients: rcpts, ClientIP: "192.0.2.1", Helo: "old.example.test"}
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
		case <-time.After(failsafe):
			f.t.Error("Run did not return")
		}
		took = time.Since(start)
		return took
	}
	f.t.Cleanup(func() { stop() })
	return r, stop
}

// failsafe and waitFor are internal/testwait's: a generous bound for a
// wait on what must happen, and the wait.
const failsafe = testwait.Failsafe

var waitFor = testwait.For

// gone reports whether the item has left the spool.
func (f *fixture) gone(id string) func() bool {
	return func() bool {
		_, err := f.sp.Get(id)
		return err != nil
	}
}

// state returns a predicate for the item reaching state st.
func (f *fixture) state(id string, st spool.State) func() bool {
	return func() bool {
		it, err := f.sp.Get(id)
		return err == nil && it.State == st
	}
}

func waitMsgs(t *testing.T, s *standin.Server, n int) []standin.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	msgs, err := s.Wait(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// newFixtureAt opens the daemon spool on dir, which may hold a previous
// daemon's files (a restart).
func newFixtureAt(t *testing.T, dir string, opts ...spool.Option) *fixture {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ca: ca, dir: dir, m: metrics.New(), logs: &testlog.Buffer{}}
	f.log = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.sp, err = spool.Open(dir, f.m, f.log, append([]spool.Option{spool.WithAdminWait(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sp.Close() })
	return f
}

// The admin CLI opens the spool separately (OpenAdmin), as another process
// would; flock locks belong to open files, so the exclusion is the same.
func (f *fixture) admin() *spool.Spool {
	f.t.Helper()
	adm, err := spool.OpenAdmin(f.dir, f.log, spool.WithAdminWait(200*time.Millisecond), spool.WithHostname("relay.test"))
	if err != nil {
		f.t.Fatal(err)
	}
	return adm
}

// metaPath is where an item's record lives once its state has changed.
func (f *fixture) metaPath(id string) string { return filepath.Join(f.dir, id+".json") }

// quarantined is where quarantine puts an item's file.
func (f *fixture) quarantined(name string) string { return filepath.Join(f.dir, "quarantine", name) }

// pooled lists the files the spool keeps for reuse.
func (f *fixture) pooled() []string {
	f.t.Helper()
	m, err := filepath.Glob(filepath.Join(f.dir, ".tmp-free-*"))
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// setState writes id's record with state st, as an earlier attempt would
// have; the item then has its <id>.json.
func (f *fixture) setState(id string, st spool.State) {
	f.t.Helper()
	c, err := f.sp.Claim(id)
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	c.Item().State = st
	if err := c.Save(); err != nil {
		f.t.Fatal(err)
	}
}

// hookFS is the real file system with a test's hands in it: a hook may act
// after a file was opened by name, or fail a rename, a removal or a
// directory fsync. Hooks are set before the runner starts, or are atomic.
type hookFS struct {
	spool.OSFS
	opened  atomic.Pointer[func(name string)]
	rename  func(from, to string) error
	remove  func(name string) error
	syncDir atomic.Pointer[func(dir string) error]
}

func (h *hookFS) Open(name string) (*os.File, error) {
	f, err := h.OSFS.Open(name)
	if fn := h.opened.Load(); err == nil && fn != nil {
		(*fn)(name)
	}
	return f, err
}

func (h *hookFS) Rename(from, to string) error {
	if h.rename != nil {
		if err := h.rename(from, to); err != nil {
			return err
		}
	}
	return h.OSFS.Rename(from, to)
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
	if fn := h.syncDir.Load(); fn != nil {
		if err := (*fn)(d.Name()); err != nil {
			return err
		}
	}
	return h.OSFS.SyncDir(d)
}

func standinOpts() standin.Options { return standin.Options{} }

// tarpitMX is a sender's MX target whose server accepts connections and
// never greets (a backscatter sink), with time-outs of a minute: a delivery
// to it holds its worker for the whole test.
func tarpitMX(t *testing.T) courier.Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return courier.NewMX(courier.MXConfig{
		Client:        courier.Client{HelloName: "relay.test", DialTimeout: time.Minute, CommandTimeout: time.Minute},
		Port:          ln.Addr().(*net.TCPAddr).Port,
		AllowLoopback: true,
		LookupMX: func(context.Context, string) ([]*net.MX, error) {
			return []*net.MX{{Host: "127.0.0.1.", Pref: 10}}, nil
		},
	})
}

// returned is the envelope of a bounce that came back for an SRS address:
// it goes to the sender's MX, not to the tenant.
func returned() spool.Envelope {
	return spool.Envelope{Returned: true, Recipients: []spool.Recipient{{Rcpt: "srs@fwd.domain.test", Target: "alice@sender.test"}}}
}
