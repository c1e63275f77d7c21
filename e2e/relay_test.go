// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// TestRelayDeliversUnchanged: a forwarded message reaches the tenant over
// verified STARTTLS, addressed to the target, with its bytes unchanged below
// the one Received line dualmx prepends.
func TestRelayDeliversUnchanged(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl", "--target", "scriba@tenant.onmicrosoft.test")
	e.start()
	msg := testMessage("unchanged-1")
	// 8-bit-free but with a long header and odd spacing the relay must not touch.
	msg = append([]byte("X-Odd:   spaced\t value  \r\n\tfolded\r\n"), msg...)
	if err := send(e.smtpAddr(), "author@example.org", []string{"Scriba@FWD.hervormdputten.nl"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := waitTenant(t, e.tenant, 1)[0]
	if !got.TLS {
		t.Error("delivery did not use TLS")
	}
	if got.From != "author@example.org" || len(got.To) != 1 || got.To[0] != "scriba@tenant.onmicrosoft.test" {
		t.Errorf("envelope from=%q to=%q", got.From, got.To)
	}
	// On top: our Authentication-Results (no arc section, so no ARC set),
	// then our Received line, then the original bytes.
	rest, ok := bytes.CutPrefix(got.Data, []byte("Authentication-Results: relay.test.localhost;"))
	if !ok {
		t.Fatalf("no Authentication-Results on top:\n%s", got.Data)
	}
	i := bytes.Index(rest, []byte("\r\nReceived: from oldhost.test ([127.0.0.1])\r\n\tby relay.test.localhost (dualmx) with ESMTP id "))
	if i < 0 {
		t.Fatalf("no Received line after it:\n%s", got.Data)
	}
	for _, l := range bytes.Split(rest[:i], []byte("\r\n"))[1:] {
		if len(l) == 0 || (l[0] != ' ' && l[0] != '\t') {
			t.Errorf("something other than the Authentication-Results field precedes Received: %q", l)
		}
	}
	if i := bytes.Index(got.Data, msg); i < 0 || !bytes.Equal(got.Data[i:], msg) {
		t.Errorf("message bytes changed:\n%q", got.Data)
	}
	// The address records the delivery, for the flip-to-migrated guard.
	waitFor(t, failsafe, "last delivery recorded", func() bool {
		out := e.mustCLI("address", "show", "scriba@hervormdputten.nl", "--json")
		var v struct {
			LastDelivery *time.Time `json:"last_delivery"`
			Delivered    int        `json:"delivered"`
		}
		return json.Unmarshal([]byte(out), &v) == nil && v.LastDelivery != nil && v.Delivered == 1
	})
	m := e.scrape()
	for _, want := range []string{
		`dualmx_smtp_messages_accepted_total 1`,
		`dualmx_delivery_recipients_total{result="delivered"} 1`,
		`dualmx_address_delivered_total{address="scriba@hervormdputten.nl"} 1`,
		`dualmx_address_state{address="scriba@hervormdputten.nl",state="forwarding"} 1`,
		`dualmx_queue_messages{state="pending"} 0`,
		`dualmx_smtp_replies_total{code_class="2xx",command="data"} 1`,
		`dualmx_delivery_latency_seconds_count 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func waitTenant(t *testing.T, s *standin.Server, n int) []standin.Message {
	t.Helper()
	var msgs []standin.Message
	waitFor(t, failsafe, fmt.Sprintf("%d message(s) at the tenant", n), func() bool {
		msgs = s.Messages()
		return len(msgs) >= n
	})
	return msgs
}

// TestRecipientPolicy: only known aliases (or addresses) in an accepting
// state are taken; every open-relay trick gets a 5xx and nothing is delivered.
func TestRecipientPolicy(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.mustCLI("address", "add", "koster@hervormdputten.nl", "--alias", "koster@fwd.hervormdputten.nl")
	e.start()
	tests := []struct {
		rcpt string
		code int
	}{
		{"scriba@fwd.hervormdputten.nl", 250},
		{"SCRIBA@fwd.HERVORMDPUTTEN.nl", 250},
		{"scriba@hervormdputten.nl", 250},                 // the public address itself
		{"koster@fwd.hervormdputten.nl", 550},             // planned: not forwarding yet
		{"nobody@fwd.hervormdputten.nl", 550},             // unknown alias
		{"victim@example.com", 550},                       // another domain
		{"victim%example.com@fwd.hervormdputten.nl", 550}, // % hack
		{"example.com!victim@fwd.hervormdputten.nl", 550}, // bang path
		{`"victim@example.com"@fwd.hervormdputten.nl`, 550},
		{"scriba@fwd.hervormdputten.nl.", 550}, // trailing dot
		{"scriba@[127.0.0.1]", 550},            // IP literal
		{"scriba@fwd.hervormdputten.nl@example.com", 550},
		{"scriba@fwd.hervormdputten.nl%example.com", 550},
	}
	for _, tc := range tests {
		t.Run(tc.rcpt, func(t *testing.T) {
			c, err := smtp.Dial(e.smtpAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Mail("someone@example.org", nil); err != nil {
				t.Fatal(err)
			}
			err = c.Rcpt(tc.rcpt, nil)
			if got := smtpCode(err); got != tc.code {
				t.Fatalf("RCPT %s: got %d (%v), want %d", tc.rcpt, got, err, tc.code)
			}
			if se, ok := err.(*smtp.SMTPError); tc.code == 550 && (!ok || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1})) {
				t.Errorf("want enhanced code 5.1.1, got %#v", err)
			}
		})
	}
	// Nothing was sent, so nothing may have arrived.
	if n := len(e.tenant.Messages()); n != 0 {
		t.Fatalf("tenant received %d messages", n)
	}
}

// TestSwaksClient uses Debian's swaks as an independent SMTP client.
func TestSwaksClient(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed (.ci/run installs it)")
	}
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	host, port := splitAddr(e.smtpAddr())
	out, err := exec.Command(swaks, "--server", host, "--port", port, "--from", "someone@example.org",
		"--to", "scriba@fwd.hervormdputten.nl", "--header", "Subject: via swaks", "--body", "hello from swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "<-  250 2.0.0 OK queued as ") {
		t.Fatalf("swaks did not see the queued reply:\n%s", out)
	}
	got := waitTenant(t, e.tenant, 1)[0]
	if !bytes.Contains(got.Data, []byte("hello from swaks")) || got.To[0] != "scriba@hervormdputten.nl" {
		t.Fatalf("unexpected delivery: to=%v\n%s", got.To, got.Data)
	}
}

func splitAddr(a string) (string, string) {
	i := strings.LastIndexByte(a, ':')
	return a[:i], a[i+1:]
}

var _ = standin.ErrDrop
