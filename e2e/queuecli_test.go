// SPDX-License-Identifier: MIT

package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

func (e *env) queueItems() []struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	LastError string `json:"last_error"`
} {
	e.t.Helper()
	var items []struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		LastError string `json:"last_error"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("queue", "list", "--json")), &items); err != nil {
		e.t.Fatal(err)
	}
	return items
}

// TestQueueRetryAndBounceCLI: "queue retry" sends a deferred message now
// instead of after its backoff; "queue bounce" returns a held message to its
// sender as a DSN through the sender's MX, and both show in the audit trail.
func TestQueueRetryAndBounceCLI(t *testing.T) {
	w := newAuthorWorld(t)
	extra, _ := w.config(t, "hold")
	var mode atomic.Int32 // 0: 451, 1: accept, 2: 550
	e := newEnv(t, envOptions{extraConfig: extra,
		delivery: "delivery:\n  retry_initial: 1h\n  retry_max: 2h\n  give_up_after: 120h\n  mx_port: " + itoa(w.mx.Port()) + "\n  mx_allow_loopback: true\n",
		tenant: func(o *standin.Options) {
			o.Hook = func(ev standin.Event) error {
				if ev.Stage != standin.StageRcpt {
					return nil
				}
				switch mode.Load() {
				case 0:
					return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
				case 2:
					return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
				}
				return nil
			}
		}})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("retry-1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, failsafe, "message deferred", func() bool {
		items := e.queueItems()
		return len(items) == 1 && items[0].State == "deferred"
	})
	if id := e.queueItems()[0].ID; !strings.Contains(e.mustCLI("queue", "show", id), `"last_error": "451 4.3.0 try later"`) {
		t.Errorf("queue show lacks the last reply:\n%s", e.mustCLI("queue", "show", id))
	}
	mode.Store(1)
	e.mustCLI("queue", "retry", "--all")
	waitTenant(t, e.tenant, 1) // an hour early: the retry took effect

	mode.Store(2)
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("bounce-cli")); err != nil {
		t.Fatal(err)
	}
	var id string
	waitFor(t, failsafe, "message held", func() bool {
		items := e.queueItems()
		if len(items) == 1 && items[0].State == "held" {
			id = items[0].ID
			return true
		}
		return false
	})
	e.mustCLI("queue", "bounce", id, "--reason", "mailbox not created yet")
	waitFor(t, failsafe, "the DSN at the author's MX", func() bool { return len(w.mx.Messages()) == 1 })
	dsn := w.mx.Messages()[0]
	if dsn.From != "" || dsn.To[0] != "author@author.test" || !strings.Contains(string(dsn.Data), "multipart/report") {
		t.Errorf("DSN from=%q to=%v", dsn.From, dsn.To)
	}
	// The report names the relay by its configured hostname, not the machine's.
	if !strings.Contains(strings.ToLower(string(dsn.Data)), "reporting-mta: dns; relay.test.localhost") {
		t.Errorf("DSN does not name the relay's hostname:\n%s", dsn.Data)
	}
	waitFor(t, failsafe, "spool empty", func() bool { return len(e.queueItems()) == 0 })
	var trail []string
	for _, a := range e.show("scriba@hervormdputten.nl").Audit {
		trail = append(trail, a.Action+":"+a.Reason)
	}
	if !strings.Contains(strings.Join(trail, " "), "bounce:mailbox not created yet") {
		t.Errorf("bounce not audited: %v", trail)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
