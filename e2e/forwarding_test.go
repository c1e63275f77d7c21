// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/standin"
)

// authorWorld is the outside world of these tests: a DNS server that knows
// the author's domain, and the author's mail server on loopback.
type authorWorld struct {
	dns *dnstest.Server
	mx  *standin.Server
}

func newAuthorWorld(t *testing.T) *authorWorld {
	t.Helper()
	mx, err := standin.Start(standin.Options{Domain: "mx.author.test", Keep: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mx.Close() })
	zone := "author.test. 300 IN MX 10 mx.author.test.\nmx.author.test. 300 IN A 127.0.0.1\n" +
		"author.test. 300 IN TXT \"v=spf1 -all\"\n"
	return &authorWorld{dns: dnstest.Start(t, zone), mx: mx}
}

// srsConfig returns the config lines for SRS at the forwarding domain, the
// test DNS server and the author's MX port.
func (w *authorWorld) config(t *testing.T, policy string) (extra, delivery string) {
	secret := filepath.Join(t.TempDir(), "srs.secret")
	if err := os.WriteFile(secret, []byte("a-long-random-test-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	extra = fmt.Sprintf("resolver: %q\nsrs:\n  domain: fwd.hervormdputten.nl\n  secret_file: %q\n", w.dns.Addr(), secret)
	delivery = fmt.Sprintf("delivery:\n  retry_initial: 200ms\n  retry_max: 1s\n  give_up_after: 1h\n  on_permanent_failure: %s\n  mx_port: %d\n  mx_allow_loopback: true\n", policy, w.mx.Port())
	return extra, delivery
}

// TestSRSRoundTrip: the tenant sees an SRS envelope sender at the forwarding
// domain; a bounce the tenant sends to that address reaches the author's MX
// (found through DNS) from the null sender; forged SRS addresses are refused.
func TestSRSRoundTrip(t *testing.T) {
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "hold")
	e := newEnv(t, envOptions{extraConfig: extra, delivery: delivery})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "Author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("srs-1")); err != nil {
		t.Fatal(err)
	}
	got := waitTenant(t, e.tenant, 1)[0]
	if !strings.HasPrefix(got.From, "SRS0=") || !strings.HasSuffix(got.From, "=author.test=Author@fwd.hervormdputten.nl") {
		t.Fatalf("tenant saw MAIL FROM %q, want an SRS0 address at the forwarding domain", got.From)
	}
	// Microsoft 365 bounces the message later, to the SRS address.
	dsn := []byte(realDSN(got.From))
	if err := send(e.smtpAddr(), "", []string{got.From}, dsn); err != nil {
		t.Fatalf("bounce to the SRS address: %v", err)
	}
	var msgs []standin.Message
	waitFor(t, failsafe, "the bounce at the author's MX", func() bool {
		msgs = w.mx.Messages()
		return len(msgs) == 1
	})
	if msgs[0].From != "" || len(msgs[0].To) != 1 || msgs[0].To[0] != "Author@author.test" {
		t.Fatalf("author's MX got from=%q to=%v", msgs[0].From, msgs[0].To)
	}
	if !bytes.Contains(msgs[0].Data, []byte("mailbox full")) {
		t.Errorf("bounce content lost:\n%s", msgs[0].Data)
	}
	// A forged address and an ordinary sender are refused.
	forged := strings.Replace(got.From, "SRS0=", "SRS0=x", 1)
	err := send(e.smtpAddr(), "", []string{forged}, dsn)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("forged SRS address: got %v, want 550 5.1.1", err)
	}
	err = send(e.smtpAddr(), "spammer@example.net", []string{got.From}, dsn)
	if smtpCode(err) != 550 {
		t.Errorf("non-DSN to SRS address: got %v, want 550", err)
	}
	m := e.scrape()
	for _, want := range []string{`dualmx_srs_returned_total 1`, `dualmx_srs_refusals_total{reason="not_dsn"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(m, `dualmx_srs_refusals_total{reason="bad_hash"} 1`) && !strings.Contains(m, `dualmx_srs_refusals_total{reason="malformed"} 1`) {
		t.Errorf("forged SRS refusal not counted")
	}
}

// TestBouncePolicyDSN: under on_permanent_failure: bounce, a 5xx at the tenant
// produces an RFC 3464 report that reaches the author's MX; a message from
// the null sender is never bounced.
func TestBouncePolicyDSN(t *testing.T) {
	w := newAuthorWorld(t)
	extra, delivery := w.config(t, "bounce")
	e := newEnv(t, envOptions{extraConfig: extra, delivery: delivery, tenant: func(o *standin.Options) {
		o.Hook = func(ev standin.Event) error {
			if ev.Stage == standin.StageRcpt {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 10}, Message: "RecipientNotFound"}
			}
			return nil
		}
	}})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("bounce-1")); err != nil {
		t.Fatal(err)
	}
	if err := send(e.smtpAddr(), "", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("nullsender-1")); err != nil {
		t.Fatal(err)
	}
	var msgs []standin.Message
	waitFor(t, failsafe, "the DSN at the author's MX", func() bool {
		msgs = w.mx.Messages()
		return len(msgs) >= 1
	})
	d := msgs[0]
	if d.From != "" || d.To[0] != "author@author.test" {
		t.Fatalf("DSN envelope from=%q to=%v", d.From, d.To)
	}
	ent, err := message.Read(bytes.NewReader(d.Data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, _ := ent.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN is %s %v, want multipart/report; report-type=delivery-status", mt, params)
	}
	if !bytes.Contains(d.Data, []byte("Status: 5.1.10")) || !bytes.Contains(d.Data, []byte("Message-ID: <bounce-1@example.org>")) {
		t.Errorf("DSN lacks the status or the original headers:\n%s", d.Data)
	}
	// The null-sender message is held, not bounced: no second DSN.
	waitFor(t, failsafe, "the null-sender message held", func() bool { return e.show("scriba@hervormdputten.nl").Held == 1 })
	if n := len(w.mx.Messages()); n != 1 {
		t.Errorf("author's MX got %d messages, want only the one DSN", n)
	}
}

// TestLoopStopsAtFirstRepeat: a tenant that forwards everything back to the
// relay (a mis-set forward) sees the message once; the repeat is refused with
// 554 5.4.6 and shows in the metrics.
func TestLoopStopsAtFirstRepeat(t *testing.T) {
	var relayAddr atomic.Value
	var backErr atomic.Value
	e := newEnv(t, envOptions{tenant: func(o *standin.Options) {
		o.Hook = func(ev standin.Event) error {
			if ev.Stage == standin.StageDataDone {
				go func(data []byte) {
					err := send(relayAddr.Load().(string), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, data)
					backErr.Store(fmt.Sprint(err))
				}(append([]byte(nil), ev.Data...))
			}
			return nil
		}
	}})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	relayAddr.Store(e.smtpAddr())
	if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("loop-1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, failsafe, "the forwarded-back copy to be refused", func() bool {
		v, _ := backErr.Load().(string)
		return v != ""
	})
	if v := backErr.Load().(string); !strings.Contains(v, "554") {
		t.Fatalf("the looping copy got %q, want a 554 refusal", v)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(e.tenant.Messages()); n != 1 {
		t.Fatalf("tenant received %d copies, want 1", n)
	}
	if m := e.scrape(); !strings.Contains(m, `dualmx_smtp_refusals_total{reason="loop_seen"} 1`) {
		t.Error("loop not visible in dualmx_smtp_refusals_total{reason=\"loop_seen\"}")
	}
}
