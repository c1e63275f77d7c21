// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	_ "modernc.org/sqlite" // the test plays an admin holding the state database

	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/standin"
)

// faultDelivery keeps retries quick and lets a stalled DATA time out in a second.
const faultDelivery = "delivery:\n  retry_initial: 200ms\n  retry_max: 600ms\n  give_up_after: 1h\n  command_timeout: 3s\n  data_timeout: 1s\n"

// tenantSwap replaces the stand-in tenant by a new one on the same address,
// to play a tenant that goes down and comes back, or changes its certificate.
// The port stays held in between: while down, connections are refused and no
// other test can take it.
func (e *env) tenantSwap(opts *standin.Options) {
	e.t.Helper()
	e.tenant.Close()
	if opts == nil {
		return
	}
	o := *opts
	ln, err := e.tenantPort.Listen()
	if err != nil {
		e.t.Fatalf("tenant cannot listen on its port %s again: %v", e.tenantPort.Addr(), err)
	}
	o.Listener = ln
	s, err := standin.Start(o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.tenant = s
	e.t.Cleanup(func() { s.Close() })
}

func (e *env) goodTenantOptions() *standin.Options {
	e.t.Helper()
	leaf, err := e.ca.Leaf("127.0.0.1", "localhost")
	if err != nil {
		e.t.Fatal(err)
	}
	return &standin.Options{TLS: &tls.Config{Certificates: []tls.Certificate{leaf}}, MaxSize: 36 << 20, Keep: 100000}
}

// arrivals counts the messages at the tenant per Message-ID.
func arrivals(s *standin.Server) map[string]int {
	seen := map[string]int{}
	for _, m := range s.Messages() {
		if sm := msgIDRe.FindSubmatch(m.Data); sm != nil {
			seen[string(bytes.TrimSuffix(sm[1], []byte("@example.org")))]++
		}
	}
	return seen
}

// metricValue returns the value of one sample line of the scrape, or -1.
func metricValue(scrape, series string) float64 {
	for _, l := range strings.Split(scrape, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestTenantFaults runs the real binary against a tenant that misbehaves in
// each way the issue lists. Every message gets its 250 while the fault lasts;
// when it clears, each arrives exactly once and the spool is empty. Under a
// bad certificate nothing is sent until a valid one is presented.
func TestTenantFaults(t *testing.T) {
	const perFault = 5
	smtpErr := func(code int, enh smtp.EnhancedCode, msg string) error {
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
	}
	at := func(stage standin.Stage, err error) func(standin.Event) error {
		return func(ev standin.Event) error {
			if ev.Stage == stage {
				return err
			}
			return nil
		}
	}
	other, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Leaf("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// fault is the tenant's behaviour while the fault lasts (nil: see swap).
		fault func(standin.Event) error
		// down: the tenant is not listening at all while the fault lasts.
		down bool
		// tls replaces the tenant's certificate while the fault lasts.
		tls *tls.Config
		// deferred: the fault makes attempts fail (slow answers do not).
		deferred bool
		logWant  string
	}{
		{name: "tenant down", down: true, deferred: true, logWant: "connection refused"},
		{name: "421 at MAIL", fault: at(standin.StageMail, smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "Service not available")), deferred: true, logWant: "421 4.3.2"},
		{name: "451 at RCPT", fault: at(standin.StageRcpt, smtpErr(451, smtp.EnhancedCode{4, 4, 3}, "Temporary server error")), deferred: true, logWant: "451 4.4.3"},
		{name: "452 at RCPT", fault: at(standin.StageRcpt, smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage")), deferred: true, logWant: "452 4.3.1"},
		{name: "451 after the body", fault: at(standin.StageDataDone, smtpErr(451, smtp.EnhancedCode{4, 7, 500}, "Server busy")), deferred: true, logWant: "451 4.7.500"},
		{name: "connection dropped mid-DATA", fault: at(standin.StageData, standin.ErrDrop), deferred: true, logWant: "queue: temporary failure"},
		{name: "connection dropped before the final reply", fault: at(standin.StageDataDone, standin.ErrDrop), deferred: true, logWant: "queue: temporary failure"},
		{name: "DATA accepted, no answer", fault: func(ev standin.Event) error {
			if ev.Stage == standin.StageDataDone {
				// Far past delivery.data_timeout (1s): only the timeout can
				// end the attempt before the deferrals are waited for.
				time.Sleep(15 * time.Second)
				return standin.ErrDrop
			}
			return nil
		}, deferred: true, logWant: "i/o timeout"},
		{name: "slow answers", fault: func(ev standin.Event) error {
			time.Sleep(300 * time.Millisecond) // each reply slow, but within the timeouts
			return nil
		}},
		{name: "certificate from an unknown CA", tls: &tls.Config{Certificates: []tls.Certificate{foreign}}, deferred: true, logWant: "certificate verification"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var faulty atomic.Bool
			faulty.Store(true)
			var hits atomic.Int64
			hook := func(ev standin.Event) error {
				if tc.fault == nil || !faulty.Load() {
					return nil
				}
				hits.Add(1)
				return tc.fault(ev)
			}
			e := newEnv(t, envOptions{delivery: faultDelivery, tenant: func(o *standin.Options) {
				o.Hook = hook
				if tc.tls != nil {
					o.TLS = tc.tls
				}
			}})
			e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
			if tc.down {
				e.tenantSwap(nil)
			}
			e.start()
			ids := make([]string, perFault)
			for i := range ids {
				ids[i] = fmt.Sprintf("%s-%d", strings.ReplaceAll(tc.name, " ", "_"), i)
				if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage(ids[i])); err != nil {
					t.Fatalf("message %d not accepted while the tenant is faulty: %v", i, err)
				}
			}
			if tc.deferred {
				waitFor(t, failsafe, "deferrals", func() bool {
					return metricValue(e.scrape(), `dualmx_delivery_recipients_total{result="deferred"}`) >= perFault
				})
				if tc.tls != nil || tc.down {
					// Nothing may have reached a tenant we could not verify.
					if n := e.tenant.Count(); n != 0 {
						t.Fatalf("%d messages delivered during the fault", n)
					}
				}
				if !strings.Contains(e.logs.String(), tc.logWant) {
					t.Errorf("log does not name the fault (%q)", tc.logWant)
				}
				if tc.tls != nil {
					// Bad certificate: kept, deferred, reason on record; still there a while later.
					out := e.mustCLI("queue", "list")
					if !strings.Contains(out, "deferred") {
						t.Errorf("queue list under a bad certificate:\n%s", out)
					}
				}
			}
			// The fault clears.
			switch {
			case tc.down || tc.tls != nil:
				e.tenantSwap(e.goodTenantOptions())
			default:
				faulty.Store(false)
			}
			waitFor(t, 30*time.Second, "every message at the tenant", func() bool {
				got := arrivals(e.tenant)
				for _, id := range ids {
					if got[id] == 0 {
						return false
					}
				}
				return true
			})
			waitFor(t, failsafe, "an empty queue", func() bool {
				m := e.scrape()
				return metricValue(m, `dualmx_queue_messages{state="deferred"}`) <= 0 && metricValue(m, `dualmx_queue_messages{state="pending"}`) <= 0
			})
			time.Sleep(1500 * time.Millisecond) // a late duplicate would show up by now
			got := arrivals(e.tenant)
			for _, id := range ids {
				if got[id] != 1 {
					t.Errorf("%s arrived %d times, want exactly once", id, got[id])
				}
			}
			if tc.fault != nil && hits.Load() == 0 {
				t.Error("the fault was never exercised")
			}
			t.Logf("fault %q: %d accepted, %d delivered once, 0 lost, 0 duplicates, %v deferrals", tc.name, perFault, len(got),
				metricValue(e.scrape(), `dualmx_delivery_recipients_total{result="deferred"}`))
		})
	}
}

// TestStateDBLockedOrUnreadable: an admin holding a long write transaction on
// the state database does not stop the relay from answering, and it answers
// from what was committed. When the database cannot be read for longer than
// inbound.routing_max_stale, every RCPT gets 451 4.3.0 (it cannot decide),
// never 250 or 550; once readable again, answers are right again.
func TestStateDBLockedOrUnreadable(t *testing.T) {
	e := newEnv(t, envOptions{inbound: "  routing_max_stale: 1s\n"})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.mustCLI("address", "add", "koster@hervormdputten.nl", "--alias", "koster@fwd.hervormdputten.nl")
	e.start()

	db, err := sql.Open("sqlite", filepath.Join(e.dir, "state", "state.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()

	rcpt := func(addr string) int {
		c, err := smtp.Dial(e.smtpAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("someone@example.org", nil); err != nil {
			t.Fatal(err)
		}
		return smtpCode(c.Rcpt(addr, nil))
	}
	check := func(phase string, want map[string]int) {
		t.Helper()
		for addr, code := range want {
			if got := rcpt(addr); got != code {
				t.Errorf("%s: RCPT %s got %d, want %d", phase, addr, got, code)
			}
		}
	}
	normal := map[string]int{"scriba@fwd.hervormdputten.nl": 250, "koster@fwd.hervormdputten.nl": 550, "nobody@fwd.hervormdputten.nl": 550}

	// 1. A long transaction holds the write lock, with an uncommitted change
	// that would open koster. For 3 seconds (three times the staleness bound)
	// the relay keeps answering from what is committed, and takes mail.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "UPDATE addresses SET state = 'forwarding' WHERE address = 'koster@hervormdputten.nl'"); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(3 * time.Second)
	n := 0
	for time.Now().Before(end) {
		check("during a long write transaction", normal)
		if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage(fmt.Sprintf("locked-%d", n))); err != nil {
			t.Fatalf("mail refused while an admin holds the database: %v", err)
		}
		n++
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	check("after the rollback", normal)
	waitTenant(t, e.tenant, n)

	// 2. The database becomes unreadable for the relay (its tables are not
	// where it expects them, as after a botched manual edit or restore).
	if _, err := db.ExecContext(ctx, "ALTER TABLE generation RENAME TO generation_away"); err != nil {
		t.Fatal(err)
	}
	// Within the bound the table in memory still decides; beyond it, nothing does.
	waitFor(t, failsafe, "451 once the table is stale", func() bool { return rcpt("scriba@fwd.hervormdputten.nl") == 451 })
	unsure := map[string]int{"scriba@fwd.hervormdputten.nl": 451, "koster@fwd.hervormdputten.nl": 451, "nobody@fwd.hervormdputten.nl": 451}
	for i := 0; i < 3; i++ {
		check("database unreadable", unsure)
		time.Sleep(300 * time.Millisecond)
	}
	c, err := smtp.Dial(e.smtpAddr())
	if err != nil {
		t.Fatal(err)
	}
	c.Mail("someone@example.org", nil)
	if err := c.Rcpt("scriba@fwd.hervormdputten.nl", nil); err == nil || err.(*smtp.SMTPError).EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Errorf("want 451 4.3.0, got %v", err)
	}
	c.Close()
	if !strings.Contains(e.logs.String(), "cannot read state database") {
		t.Error("the unreadable database is not logged")
	}
	// 3. Readable again: right answers within a second or so.
	if _, err := db.ExecContext(ctx, "ALTER TABLE generation_away RENAME TO generation"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, failsafe, "250 again", func() bool { return rcpt("scriba@fwd.hervormdputten.nl") == 250 })
	check("readable again", normal)
	if !strings.Contains(e.logs.String(), "state database readable again") {
		t.Error("recovery is not logged")
	}
}

// TestSpoolDamagedWhileRunning truncates one queued body and garbles one
// queued envelope record while the daemon runs: both are quarantined with a
// log line and dualmx_queue_quarantined_total, nothing damaged reaches the
// tenant, and the rest of the queue is delivered.
func TestSpoolDamagedWhileRunning(t *testing.T) {
	var faulty atomic.Bool
	faulty.Store(true)
	e := newEnv(t, envOptions{delivery: faultDelivery, tenant: func(o *standin.Options) {
		o.Hook = func(ev standin.Event) error {
			if faulty.Load() && ev.Stage == standin.StageMail {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
			}
			return nil
		}
	}})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	const n = 6
	for i := 0; i < n; i++ {
		if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage(fmt.Sprintf("damage-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(e.dir, "state", "spool")
	var metas []string
	waitFor(t, failsafe, "every message deferred in the spool", func() bool {
		metas, _ = filepath.Glob(filepath.Join(spool, "*.json"))
		if len(metas) != n {
			return false
		}
		for _, m := range metas {
			if b, err := os.ReadFile(m); err != nil || !bytes.Contains(b, []byte(`"state": "deferred"`)) {
				return false
			}
		}
		return true
	})
	// One body loses its tail, one envelope record is cut in half.
	truncated, garbled := strings.TrimSuffix(metas[1], ".json"), strings.TrimSuffix(metas[4], ".json")
	if err := os.Truncate(truncated+".msg", 100); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(garbled + ".json")
	if err := os.WriteFile(garbled+".json", b[:len(b)/2], 0o640); err != nil {
		t.Fatal(err)
	}
	faulty.Store(false)
	waitTenant(t, e.tenant, n-2)
	waitFor(t, failsafe, "two items quarantined", func() bool {
		return metricValue(e.scrape(), "dualmx_queue_quarantined_total") == 2
	})
	time.Sleep(time.Second)
	if c := e.tenant.Count(); c != n-2 {
		t.Errorf("tenant got %d messages, want %d (the damaged ones must not be sent)", c, n-2)
	}
	for _, m := range e.tenant.Messages() {
		if !bytes.Contains(m.Data, []byte("Hello damage-")) {
			t.Errorf("a damaged message was delivered:\n%s", m.Data)
		}
	}
	for _, base := range []string{truncated, garbled} {
		if _, err := os.Stat(filepath.Join(spool, "quarantine", filepath.Base(base)+".json")); err != nil {
			t.Errorf("%s not in quarantine: %v", filepath.Base(base), err)
		}
	}
	logs := e.logs.String()
	if strings.Count(logs, "spool: quarantined unreadable item") != 2 || !strings.Contains(logs, "metadata says") || !strings.Contains(logs, "parse metadata") {
		t.Errorf("quarantine log lines missing:\n%s", logs)
	}
	if left, _ := filepath.Glob(filepath.Join(spool, "*.json")); len(left) != 0 {
		t.Errorf("spool still holds %v", left)
	}
}
