// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/testlog"
	"github.com/dualmx/dualmx/standin"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/status.png from TestStatusPageInChromium")

// requireTool finds an external program; a missing one skips the test
// locally and fails it in CI.
func requireTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found; CI must install Debian's %s", name, debianPackage)
		}
		t.Skipf("%s not found (apt-get install %s); skipped outside CI", name, debianPackage)
	}
	return p
}

// TestStatusPageInChromium loads the status page of a running relay in
// headless Chromium (through chromedriver, Debian's chromium-driver) and
// checks what a person sees: the rendered text, held mail first, no script,
// and no sideways scrolling on a phone-sized screen.
// go test ./e2e -run TestStatusPageInChromium -update-screenshot writes docs/status.png.
func TestStatusPageInChromium(t *testing.T) {
	driver := requireTool(t, "chromedriver", "chromium-driver")
	chromium := requireTool(t, "chromium", "chromium")

	e := newEnv(t, envOptions{tenant: func(o *standin.Options) {
		o.Hook = func(ev standin.Event) error {
			if ev.Stage != standin.StageRcpt {
				return nil
			}
			switch {
			case strings.HasPrefix(ev.Rcpt, "koster@"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Recipient not found by SMTP address lookup"}
			case strings.HasPrefix(ev.Rcpt, "diaconie@"):
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 500}, Message: "Server busy, please try again later"}
			}
			return nil
		}
	}, delivery: "delivery:\n  retry_initial: 1m\n  retry_max: 1h\n  give_up_after: 120h\n"})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.mustCLI("address", "flip", "scriba@hervormdputten.nl", "confirmed")
	e.addForwarding("koster@hervormdputten.nl", "koster@fwd.hervormdputten.nl")
	e.addForwarding("diaconie@hervormdputten.nl", "diaconie@fwd.hervormdputten.nl")
	e.mustCLI("address", "add", "kerkrentmeester@hervormdputten.nl", "--alias", "kerkrentmeester@fwd.hervormdputten.nl")
	e.start()
	// Deferred mail is sent before held mail, so "held first" is not arrival order.
	for _, m := range []struct{ from, to string }{
		{"deferred.sender@example.org", "diaconie@fwd.hervormdputten.nl"},
		{"held.sender@example.org", "koster@fwd.hervormdputten.nl"},
		{"author@example.org", "scriba@fwd.hervormdputten.nl"},
	} {
		if err := send(e.smtpAddr(), m.from, []string{m.to}, testMessage("status-"+m.to[:5])); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, failsafe, "one delivered, one held, one deferred", func() bool {
		out := e.mustCLI("queue", "list", "--json")
		return len(e.tenant.Messages()) == 1 && strings.Contains(out, `"state": "held"`) && strings.Contains(out, `"state": "deferred"`)
	})

	// The page is at / and /status on its own listener, with /healthz;
	// nothing else answers there, and the metrics listener does not serve it.
	for path, want := range map[string]int{"/": 200, "/status": 200, "/metrics": 404, "/healthz": 200, "/status/x": 404, "/nope": 404} {
		resp, err := http.Get("http://" + e.statusAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	for _, path := range []string{"/", "/status"} {
		resp, err := http.Get("http://" + e.httpAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the metrics listener: %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := http.Post("http://"+e.statusAddr()+"/status", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %s, want 405", resp.Status)
	}

	wd := startWebDriver(t, driver, chromium)
	page := "http://" + e.statusAddr() + "/status"
	wd.setWindow(1100, 900)
	wd.navigate(page)
	text := wd.script(`return document.body.innerText`).(string)
	t.Logf("page text:\n%s", text)
	for _, want := range []string{
		"dualmx status",
		"relay.test.localhost",
		"1 held", "1 deferred", "0 pending",
		"Recipient not found by SMTP address lookup",
		"Server busy",
		"Not configured",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	// Held mail first, although it arrived after the deferred message.
	held, def := strings.Index(text, "held.sender@example.org"), strings.Index(text, "deferred.sender@example.org")
	if held < 0 || def < 0 || held > def {
		t.Errorf("held message at %d, deferred at %d: held mail must come first", held, def)
	}
	// One table row per address, in address order, with state, last delivery and counts.
	rows := wd.script(`return Array.from(document.querySelectorAll('#addresses tbody tr')).map(r => Array.from(r.cells).map(c => c.innerText.trim()).join(' | '))`).([]any)
	var got []string
	for _, r := range rows {
		got = append(got, r.(string))
	}
	wantRows := []string{
		"diaconie@hervormdputten.nl | diaconie@fwd.hervormdputten.nl | forwarding | 0/8 · next: holder's account exists and has signed in | never | 0 | 1 | 0",
		"kerkrentmeester@hervormdputten.nl | kerkrentmeester@fwd.hervormdputten.nl | planned | 1/8 · next: holder's account exists and has signed in | never | 0 | 0 | 0",
		"koster@hervormdputten.nl | koster@fwd.hervormdputten.nl | forwarding | 0/8 · next: holder's account exists and has signed in | never | 0 | 0 | 1",
		"scriba@hervormdputten.nl | scriba@fwd.hervormdputten.nl | confirmed | ",
	}
	if len(got) != len(wantRows) {
		t.Fatalf("address rows:\n%s", strings.Join(got, "\n"))
	}
	for i, w := range wantRows {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("address row %d = %q, want %q…", i, got[i], w)
		}
	}
	if !strings.HasSuffix(got[3], "(just now) | 1 | 0 | 0") && !strings.Contains(got[3], " ago) | 1 | 0 | 0") {
		t.Errorf("scriba's row does not show a recent delivery and a count of 1: %q", got[3])
	}
	if n := wd.script(`return document.scripts.length`).(float64); n != 0 {
		t.Errorf("the page has %v script elements", n)
	}
	if n := wd.script(`return document.forms.length`).(float64); n != 0 {
		t.Errorf("the page has %v forms; it is read-only", n)
	}

	// On a phone: no sideways scrolling, and everything still there.
	wd.setWindow(390, 844)
	wd.navigate(page)
	overflow := wd.script(`return document.documentElement.scrollWidth - window.innerWidth`).(float64)
	if overflow > 0 {
		t.Errorf("on a 390 px wide screen the page is %v px too wide", overflow)
	}
	if text := wd.script(`return document.body.innerText`).(string); !strings.Contains(text, "held.sender@example.org") || !strings.Contains(text, "kerkrentmeester@hervormdputten.nl") {
		t.Errorf("on a phone the page lost content:\n%s", text)
	}

	if *updateScreenshot {
		wd.setWindow(1100, 900)
		wd.navigate(page)
		h := wd.script(`return document.documentElement.scrollHeight`).(float64)
		wd.setWindow(1100, int(h)+140) // the window's frame, so the viewport holds the whole page
		png := wd.screenshot()
		if err := os.WriteFile(filepath.Join("..", "docs", "status.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/status.png (%d bytes)", len(png))
	}
}

// webDriver is a minimal W3C WebDriver client for chromedriver.
type webDriver struct {
	t    *testing.T
	base string
	sid  string
	c    *http.Client
}

func startWebDriver(t *testing.T, driver, chromium string) *webDriver {
	t.Helper()
	logs := &testlog.Buffer{}
	// Port 0: chromedriver binds a free port and says which.
	cmd := exec.Command(driver, "--port=0", "--allowed-ips=127.0.0.1")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	w := &webDriver{t: t, c: &http.Client{Timeout: 60 * time.Second}}
	t.Cleanup(func() {
		if w.sid != "" {
			w.call(http.MethodDelete, "/session/"+w.sid, nil)
		}
		// chromedriver and the browsers it started are in their own process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("chromedriver:\n%s", logs)
		}
	})
	started := regexp.MustCompile(`started successfully on port (\d+)`)
	waitFor(t, failsafe, "chromedriver to say its port", func() bool {
		select {
		case <-exited:
			t.Fatalf("chromedriver exited:\n%s", logs)
		default:
		}
		m := started.FindStringSubmatch(logs.String())
		if m == nil {
			return false
		}
		w.base = "http://" + net.JoinHostPort("127.0.0.1", m[1])
		return true
	})
	waitFor(t, failsafe, "chromedriver to answer", func() bool {
		resp, err := w.c.Get(w.base + "/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	profile := t.TempDir()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			"args": []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + profile},
		},
	}}}
	v := w.call(http.MethodPost, "/session", caps)
	sid, _ := v.(map[string]any)["sessionId"].(string)
	if sid == "" {
		t.Fatalf("no session: %v", v)
	}
	w.sid = sid
	return w
}

func (w *webDriver) call(method, path string, body any) any {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			w.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		w.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("webdriver %s %s: %s: %s", method, path, resp.Status, out.Value)
	}
	var v any
	if len(out.Value) > 0 {
		if err := json.Unmarshal(out.Value, &v); err != nil {
			w.t.Fatal(err)
		}
	}
	return v
}

func (w *webDriver) session(path string) string { return "/session/" + w.sid + path }

func (w *webDriver) navigate(u string) {
	w.call(http.MethodPost, w.session("/url"), map[string]any{"url": u})
}

func (w *webDriver) setWindow(width, height int) {
	w.call(http.MethodPost, w.session("/window/rect"), map[string]any{"width": width, "height": height})
}

func (w *webDriver) script(js string) any {
	v := w.call(http.MethodPost, w.session("/execute/sync"), map[string]any{"script": js, "args": []any{}})
	if v == nil {
		w.t.Fatalf("script %q returned nothing", js)
	}
	return v
}

func (w *webDriver) screenshot() []byte {
	s, ok := w.call(http.MethodGet, w.session("/screenshot"), nil).(string)
	if !ok {
		w.t.Fatal("no screenshot")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}
