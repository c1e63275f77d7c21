// SPDX-License-Identifier: MIT

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// TestJSONLogs: with --log-json every line dualmx writes is one JSON object;
// each SMTP transaction is one "accepted" line and each delivery attempt one
// outcome line per recipient ("queue: delivered", "queue: temporary failure",
// ...) with the attempt number, all with the spool id; a secret never appears.
func TestJSONLogs(t *testing.T) {
	const secret = "srs-secret-that-must-never-be-logged-7f3a"
	secretFile := filepath.Join(t.TempDir(), "srs.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The tenant defers diaconie's first two attempts.
	var deferred atomic.Int32
	e := newEnv(t, envOptions{
		serveArgs:   []string{"--log-json", "--debug"},
		extraConfig: fmt.Sprintf("srs:\n  domain: fwd.hervormdputten.nl\n  secret_file: %q\n", secretFile),
		tenant: func(o *standin.Options) {
			o.Hook = func(ev standin.Event) error {
				if ev.Stage == standin.StageRcpt && strings.HasPrefix(ev.Rcpt, "diaconie@") && deferred.Add(1) <= 2 {
					return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
				}
				return nil
			}
		},
	})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.addForwarding("diaconie@hervormdputten.nl", "diaconie@fwd.hervormdputten.nl")
	e.start()
	for _, rcpt := range []string{"scriba@fwd.hervormdputten.nl", "diaconie@fwd.hervormdputten.nl"} {
		if err := send(e.smtpAddr(), "author@example.org", []string{rcpt}, testMessage("log-"+rcpt[:6])); err != nil {
			t.Fatal(err)
		}
	}
	// A refused transaction is logged too (it never gets a spool id).
	if err := send(e.smtpAddr(), "author@example.org", []string{"nobody@fwd.hervormdputten.nl"}, testMessage("log-refused")); smtpCode(err) != 550 {
		t.Fatalf("unknown recipient: %v", err)
	}
	waitFor(t, failsafe, "both messages delivered", func() bool { return len(e.tenant.Messages()) == 2 })
	e.stop(syscall.SIGTERM)

	type line struct {
		Time    string  `json:"time"`
		Level   string  `json:"level"`
		Msg     string  `json:"msg"`
		ID      string  `json:"id"`
		Attempt float64 `json:"attempt"`
	}
	accepted := map[string]int{}
	attempts := map[string][]int{}
	delivered := map[string]int{}
	refused, debugAttempts := 0, 0
	raw := e.logs.String()
	sc := bufio.NewScanner(strings.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("line %d is not JSON: %v\n%s", n, err, sc.Text())
			continue
		}
		if l.Time == "" || l.Level == "" || l.Msg == "" {
			t.Errorf("line %d lacks time, level or msg: %s", n, sc.Text())
		}
		switch l.Msg {
		case "accepted":
			accepted[l.ID]++
		case "queue: temporary failure", "queue: permanent failure":
			attempts[l.ID] = append(attempts[l.ID], int(l.Attempt))
		case "queue: delivered":
			attempts[l.ID] = append(attempts[l.ID], int(l.Attempt))
			delivered[l.ID]++
		case "refused recipient":
			refused++
		case "queue: attempt": // --debug only
			debugAttempts++
		}
	}
	if strings.Contains(raw, secret) {
		t.Error("the SRS secret appears in the log")
	}
	if len(accepted) != 2 {
		t.Fatalf("accepted lines by id: %v, want 2 transactions", accepted)
	}
	if refused != 1 {
		t.Errorf("%d refused-recipient lines, want 1", refused)
	}
	var counts []int
	for id, c := range accepted {
		if id == "" {
			t.Error("an accepted line has no spool id")
			continue
		}
		if c != 1 {
			t.Errorf("%s: %d accepted lines, want one per transaction", id, c)
		}
		if delivered[id] != 1 {
			t.Errorf("%s: %d delivered lines, want 1", id, delivered[id])
		}
		a := attempts[id]
		for i, v := range a {
			if v != i+1 {
				t.Errorf("%s: attempt lines numbered %v, want 1..n", id, a)
				break
			}
		}
		counts = append(counts, len(a))
	}
	if !(counts[0] == 1 && counts[1] == 3 || counts[0] == 3 && counts[1] == 1) {
		t.Errorf("outcome lines per message: %v, want 1 and 3 (one per attempt)", counts)
	}
	if debugAttempts != 4 {
		t.Errorf("%d debug 'queue: attempt' lines with --debug, want 4", debugAttempts)
	}
}
