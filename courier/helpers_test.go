// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/internal/testwait"
	"github.com/dualmx/dualmx/standin"
)

type fixture struct {
	t  *testing.T
	ca *testca.CA
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ca: ca}
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

// target starts a stand-in with STARTTLS by default (nil TLS in opts means
// our CA's leaf for 127.0.0.1).
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

func (f *fixture) client() Client {
	return Client{HelloName: "relay.test", DialTimeout: failsafe, CommandTimeout: failsafe, DataTimeout: failsafe}
}

// config is the tenant at the stand-in s, verified against our CA.
func (f *fixture) config(s *standin.Server) TenantConfig {
	return TenantConfig{Client: f.client(), Host: s.Host(), Port: s.Port(), TLS: TLSRequire, RootCAs: f.ca.Pool(), IdleTimeout: 5 * time.Second}
}

func (f *fixture) tenant(cfg TenantConfig) *Tenant {
	t, err := NewTenant(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(t.Close)
	return t
}

const testBody = "Received: from old.example.test\r\nFrom: Alice <alice@sender.test>\r\nTo: scriba@domain.test\r\nSubject: test\r\n\r\nHello.\r\n.leading dot\r\n"

// send runs one transaction of body (header before it) through target.
func send(t *testing.T, target Target, msg Message, header, body string, rcpts ...string) Result {
	t.Helper()
	ctx := context.Background()
	d, err := target.Start(ctx, msg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	for _, r := range rcpts {
		if err := d.AddRcpt(ctx, r); err != nil {
			t.Fatalf("AddRcpt(%q): %v", r, err)
		}
	}
	var h []byte
	if header != "" {
		h = []byte(header)
	}
	if err := d.Body(ctx, h, strings.NewReader(body)); err != nil {
		t.Fatalf("Body: %v", err)
	}
	return d.Commit(ctx)
}

// accepted reports whether every recipient of res was accepted.
func accepted(res Result) bool {
	for _, o := range res.Rcpts {
		if o.Err != nil {
			return false
		}
	}
	return len(res.Rcpts) > 0
}

// failure returns the first recipient's error, or nil.
func failure(res Result) *Error {
	if len(res.Rcpts) == 0 {
		return nil
	}
	return res.Rcpts[0].Err
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

// failsafe and waitFor are internal/testwait's: a generous bound for a
// wait on what must happen, and the wait.
const failsafe = testwait.Failsafe

var waitFor = testwait.For
