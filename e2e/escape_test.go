// SPDX-License-Identifier: MIT

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// hostileReply is what a hostile or broken next hop may answer: a screen
// clear and a window title (ESC sequences), a C1 CSI, a bidi override and a
// line break that would forge a row of the queue table.
const hostileReply = "try later \x1b[2J\x1b]0;owned\x07 \u009b31m \u202etxt.exe\nID STATE forged"

// rawControls lists what must never reach the admin's terminal as is.
var rawControls = []string{"\x1b", "\u009b", "\u202e", "\x07"}

// TestHostileReplyIsShownEscaped: a deferral whose reply carries terminal
// escapes shows in "queue list" and on the status page with every control
// character escaped, in "queue list --json" exactly as received, and in the
// text log quoted.
func TestHostileReplyIsShownEscaped(t *testing.T) {
	e := newEnv(t, envOptions{
		delivery: "delivery:\n  retry_initial: 1h\n  retry_max: 2h\n  give_up_after: 120h\n",
		tenant: func(o *standin.Options) {
			o.Hook = func(ev standin.Event) error {
				if ev.Stage == standin.StageRcpt {
					return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: hostileReply}
				}
				return nil
			}
		}})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@author.test", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("hostile")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, failsafe, "message deferred", func() bool {
		items := e.queueItems()
		return len(items) == 1 && items[0].State == "deferred"
	})

	list := e.mustCLI("queue", "list")
	for _, c := range rawControls {
		if strings.Contains(list, c) {
			t.Errorf("queue list prints %q raw:\n%q", c, list)
		}
	}
	// go-smtp sends the line break as a multi-line reply; it comes back
	// joined by a newline, which must not start a row of its own.
	if !strings.Contains(list, `\x1b[2J\x1b]0;owned\x07 \u009b31m \u202etxt.exe\n`) {
		t.Errorf("queue list does not show the reply escaped:\n%s", list)
	}
	if n := strings.Count(strings.TrimSpace(list), "\n"); n != 1 {
		t.Errorf("queue list has %d rows, want 1 (a forged row?):\n%s", n, list)
	}

	// JSON stays exact: a script gets the bytes the server sent.
	var items []struct {
		LastError string `json:"last_error"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("queue", "list", "--json")), &items); err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || !strings.Contains(items[0].LastError, hostileReply[:strings.Index(hostileReply, "\n")]+"\n") {
		t.Errorf("queue list --json changed the reply: %q", items)
	}

	// The status page shows the reply escaped too (html/template does not
	// touch bidi overrides or C1 controls).
	resp, err := http.Get("http://" + e.statusAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range rawControls {
		if strings.Contains(string(page), c) {
			t.Errorf("the status page holds %q raw", c)
		}
	}
	if !strings.Contains(string(page), `\u202etxt.exe`) {
		t.Errorf("the status page does not show the reply escaped:\n%s", page)
	}

	// The text log quotes values (slog's text handler escapes them).
	logs := e.logs.String()
	if !strings.Contains(logs, "owned") {
		t.Fatalf("the deferral is not logged:\n%s", logs)
	}
	for _, c := range rawControls {
		if strings.Contains(logs, c) {
			t.Errorf("the log holds %q raw", c)
		}
	}
}

// TestErrorValuesEscapedOnce: an error that names the value it refuses
// quotes it (%q), and the CLI shows that quoting as it is: an ESC in an
// address given on the command line reads \x1b, not \\x1b, and still never
// reaches the terminal raw.
func TestErrorValuesEscapedOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.start()
	for _, args := range [][]string{
		{"address", "add", "a\x1b[2J@hervormdputten.nl", "--alias", "a@fwd.hervormdputten.nl"},
		{"address", "show", "a\x1b[2J@hervormdputten.nl"},
	} {
		_, stderr, code := e.cli(args...)
		if code == 0 {
			t.Fatalf("dualmx %q succeeded", args)
		}
		if !strings.Contains(stderr, `"a\x1b[2J@hervormdputten.nl"`) || strings.Contains(stderr, `\\x1b`) {
			t.Errorf("dualmx %q: %q, want the address shown once escaped", args[:2], stderr)
		}
		for _, c := range rawControls {
			if strings.Contains(stderr, c) {
				t.Errorf("dualmx %q: raw %q on stderr", args[:2], c)
			}
		}
	}
}
