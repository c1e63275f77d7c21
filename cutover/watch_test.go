// SPDX-License-Identifier: MIT

package cutover

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"

	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

// zoneServer is an authoritative server on loopback for every name the
// test needs; the records can change while it runs.
type zoneServer struct {
	mu   sync.Mutex
	rrs  []dns.RR
	addr string
}

func startZoneServer(t *testing.T, records ...string) *zoneServer {
	t.Helper()
	z := &zoneServer{}
	z.set(t, records...)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

func (z *zoneServer) set(t *testing.T, records ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("%q: %v", r, err)
		}
		rrs = append(rrs, rr)
	}
	z.mu.Lock()
	z.rrs = rrs
	z.mu.Unlock()
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	z.mu.Lock()
	exists := false
	var soa dns.RR
	for _, rr := range z.rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeSOA {
			soa = rr
		}
		if strings.EqualFold(h.Name, q.Name) {
			exists = true
			if h.Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	z.mu.Unlock()
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}

// oneServer sends every zone lookup to the test server.
type oneServer struct{ ip string }

func (o oneServer) LookupNS(context.Context, string) ([]*net.NS, error) {
	return []*net.NS{{Host: "ns.test."}}, nil
}
func (o oneServer) LookupHost(context.Context, string) ([]string, error) { return []string{o.ip}, nil }

type fakeSpool struct {
	mu    sync.Mutex
	items []spool.Item
}

func (s *fakeSpool) Walk(fn func(*spool.Item) bool) error {
	s.mu.Lock()
	items := append([]spool.Item(nil), s.items...)
	s.mu.Unlock()
	for i := range items {
		if !fn(&items[i]) {
			break
		}
	}
	return nil
}

var baseZone = []string{
	"example.nl. 3600 IN SOA ns.test. hostmaster.example.nl. 1 3600 600 86400 300",
	"example.nl. 3600 IN NS ns.test.",
	`example.nl. 3600 IN TXT "v=spf1 include:spf.solcon.nl include:spf.protection.outlook.com -all"`,
	`example.nl. 3600 IN TXT "MS=ms1"`,
	"selector1._domainkey.example.nl. 3600 IN CNAME selector1-example-nl._domainkey.example.onmicrosoft.com.",
	"selector2._domainkey.example.nl. 3600 IN CNAME selector2-example-nl._domainkey.example.onmicrosoft.com.",
	"autodiscover.example.nl. 3600 IN CNAME autodiscover.outlook.com.",
	`_dmarc.example.nl. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:d@example.nl"`,
	`spf.protection.outlook.com. 3600 IN TXT "v=spf1 ip4:40.92.0.0/15 -all"`,
	`spf.solcon.nl. 3600 IN TXT "v=spf1 ip4:212.45.32.0/19 -all"`,
	"example-nl.mail.protection.outlook.com. 3600 IN A 52.101.68.1",
	"mx1.solcon.nl. 3600 IN A 212.45.32.10",
}

type staticExpectations dnscheck.Expected

func (s staticExpectations) Expected(context.Context, string) (dnscheck.Expected, error) {
	return dnscheck.Expected(s), nil
}

// TestWatcherThroughTheCutover walks one domain from preparing to done
// against a real state database and a DNS server whose MX changes.
func TestWatcherThroughTheCutover(t *testing.T) {
	srv := startZoneServer(t, append(baseZone, "example.nl. 300 IN MX 10 mx1.solcon.nl.")...)
	host, port, _ := net.SplitHostPort(srv.addr)
	dir := t.TempDir()
	store, err := router.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	if _, err := store.Add(ctx, "scriba@example.nl", "scriba@fwd.example.nl", "", "test"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []router.State{router.Provisioned, router.Forwarding, router.Confirmed} {
		if _, err := store.Flip(ctx, router.FlipRequest{Address: "scriba@example.nl", To: s, Actor: "test"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sp := &fakeSpool{}
	newWatcher := func() *Watcher {
		return &Watcher{Domain: "example.nl",
			Checker: &dnscheck.Checker{Nameservers: []string{srv.addr}, Resolver: oneServer{host}, Port: port, QueryTimeout: time.Second, Now: clock},
			Expectations: staticExpectations{Domain: "example.nl", Source: "test", OldMX: []string{"mx1.solcon.nl"},
				TenantMX: []string{"example-nl.mail.protection.outlook.com"}, OldSPF: "include:spf.solcon.nl"},
			Addresses: store, Spool: sp, StateDir: dir, QuietPeriod: time.Hour, Now: clock}
	}
	w := newWatcher()
	step := func(want State, reason string) Status {
		t.Helper()
		st, err := w.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != want || !strings.Contains(strings.Join(st.Reasons, " | "), reason) {
			t.Fatalf("state %s %q, want %s mentioning %q; dns errors %+v", st.State, st.Reasons, want, reason, st.DNSErrors)
		}
		return st
	}

	step(Preparing, "scriba@example.nl (confirmed)")
	if _, err := store.Flip(ctx, router.FlipRequest{Address: "scriba@example.nl", To: router.Migrated, Actor: "test", Force: true, Reason: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	st := step(Ready, "cutover confirm")
	if _, err := Confirm(ctx, store, st, ConfirmRequest{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	audit, _ := store.Audit(ctx, "")
	if last := audit[len(audit)-1]; last.Action != ActionConfirm || last.Address != "example.nl" {
		t.Errorf("last audit entry %+v, want the confirmation", last)
	}

	srv.set(t, append(baseZone, "example.nl. 300 IN MX 0 example-nl.mail.protection.outlook.com.")...)
	advance(time.Minute)
	switchedAt := t0.Add(time.Minute)
	st = step(Switched, "twice the old MX TTL of 5m0s")
	if !st.SwitchedAt.Equal(switchedAt) {
		t.Errorf("switched at %v, want %v", st.SwitchedAt, switchedAt)
	}

	// A new process (the CLI after the daemon) remembers the switch.
	w = newWatcher()
	advance(11 * time.Minute)
	sp.items = []spool.Item{{ReceivedAt: now.Add(-time.Minute)}}
	st = step(Draining, "waiting for 1h0m0s without any")
	if !st.SwitchedAt.Equal(switchedAt) {
		t.Errorf("the new watcher forgot the switch: %v", st.SwitchedAt)
	}
	advance(2 * time.Hour)
	step(Draining, "1 message(s) still in the queue")
	sp.items = nil

	m := metrics.New()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	// The interval is also each round's time budget: a short one fails
	// rounds on a loaded machine, and a failed round after the one that
	// exported "done" would leave check_up at 0. The first round runs at
	// once; cancelling stops the next without recording it.
	go func() { Watch(wctx, w, 5*time.Second, m); close(done) }()
	deadline := time.Now().Add(30 * time.Second) // a failsafe: it must happen
	for gauge(t, m, "dualmx_cutover_state", "state", "done") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the watcher never exported state done")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if v := gauge(t, m, "dualmx_cutover_check", "check", "mx", "level", "ok"); v != 1 {
		t.Errorf(`dualmx_cutover_check{check="mx",level="ok"} = %v, want 1`, v)
	}
	if v := gauge(t, m, "dualmx_cutover_check_up"); v != 1 {
		t.Errorf("dualmx_cutover_check_up = %v, want 1", v)
	}
	if v := gauge(t, m, "dualmx_cutover_state", "state", "ready"); v != 0 {
		t.Errorf(`dualmx_cutover_state{state="ready"} = %v, want 0`, v)
	}
}

// gauge scrapes m and returns the value of the series with the labels
// given as name, value pairs; -1 when absent.
func gauge(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(s, labels[i], labels[i+1]) {
					continue series
				}
			}
			return s.GetGauge().GetValue()
		}
	}
	return -1
}

func hasLabel(s *dto.Metric, k, v string) bool {
	for _, l := range s.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func TestWatchReportsCheckDown(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	w := &Watcher{Domain: "example.nl",
		Checker:      &dnscheck.Checker{Nameservers: []string{dead.LocalAddr().String()}, QueryTimeout: 50 * time.Millisecond, Retries: -1},
		Expectations: staticExpectations{Domain: "example.nl"}, Addresses: nopAddresses{}, Spool: &fakeSpool{}, StateDir: t.TempDir()}
	m := metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Watch(ctx, w, 100*time.Millisecond, m); close(done) }()
	deadline := time.Now().Add(30 * time.Second) // a failsafe: it must happen
	for gauge(t, m, "dualmx_cutover_last_check_timestamp_seconds") <= 0 {
		if time.Now().After(deadline) {
			t.Fatal("no check ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if v := gauge(t, m, "dualmx_cutover_check_up"); v != 0 {
		t.Errorf("dualmx_cutover_check_up = %v with a dead server, want 0", v)
	}
	for _, s := range States {
		if v := gauge(t, m, "dualmx_cutover_state", "state", string(s)); v != 0 {
			t.Errorf("state %s = %v before any successful check", s, v)
		}
	}
}

type nopAddresses struct{}

func (nopAddresses) List(context.Context) ([]router.Address, error) { return nil, nil }
