// SPDX-License-Identifier: MIT

// Package e2e runs the built dualmx binary as a black box: real SMTP sessions
// in, a stand-in Microsoft 365 endpoint with STARTTLS and a test CA out, the
// CLI against the same state, signals and SIGKILL. Everything is on loopback.
package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/internal/testlog"
	"github.com/dualmx/dualmx/internal/testnet"
	"github.com/dualmx/dualmx/internal/testwait"
	"github.com/dualmx/dualmx/standin"
)

// binary is the dualmx under test; distKind is how scripts/dist.sh built it.
var binary, distKind string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dualmx-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The binary under test is the one an admin installs: built by
	// scripts/dist.sh (TestDist checks its version and checksum), with cgo
	// where the machine has it, so ARC sealing goes through OpenSSL.
	kind := "--static"
	if out, err := exec.Command("go", "env", "CGO_ENABLED").Output(); err == nil && strings.TrimSpace(string(out)) == "1" {
		kind = "--cgo"
	}
	build := exec.Command("../scripts/dist.sh", kind, "--out", dir)
	build.Stderr = os.Stderr
	out, err := build.Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building dualmx with scripts/dist.sh:", err)
		os.Exit(1)
	}
	binary = strings.TrimSpace(string(out))
	distKind = strings.TrimPrefix(kind, "--")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one relay under test with its own state directory, config and
// stand-in tenant.
type env struct {
	t       *testing.T
	dir     string
	cfgPath string
	ca      *testca.CA
	tenant  *standin.Server
	// tenantPort keeps the stand-in's port while it is down (tenantSwap), so
	// it comes back where the config points.
	tenantPort *testnet.Hold

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *testlog.Buffer
	exit chan error
	// listening holds the addresses the running daemon bound, by listener
	// ("smtp", "metrics", "status"), from its "dualmx ready" line: the config asks
	// for port 0, and each start gets new ports.
	listening map[string]string

	serveArgs []string // extra flags for dualmx serve
}

type envOptions struct {
	extraConfig string                 // appended YAML
	listen      string                 // extra lines for the listen section, each indented two spaces
	inbound     string                 // extra lines for the inbound section, each indented two spaces
	delivery    string                 // replaces the delivery section
	tenant      func(*standin.Options) // adjust the stand-in
	stateDir    string                 // default: inside the test dir
	serveArgs   []string               // extra flags for dualmx serve, e.g. --log-json
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteCAFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	sopts := standin.Options{TLS: &tls.Config{Certificates: []tls.Certificate{leaf}}, MaxSize: 36 << 20, Keep: 100000}
	if o.tenant != nil {
		o.tenant(&sopts)
	}
	hold := testnet.HoldTCP(t, "127.0.0.1")
	if sopts.Listener, err = hold.Listen(); err != nil {
		t.Fatal(err)
	}
	tenant, err := standin.Start(sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tenant.Close() })
	e := &env{t: t, dir: dir, ca: ca, tenant: tenant, tenantPort: hold, serveArgs: o.serveArgs}
	state := o.stateDir
	if state == "" {
		state = filepath.Join(dir, "state")
	}
	// Every env asks its own DNS server, so the arrival checks never wait on
	// the machine's resolver; tests that need records pass their own.
	if !strings.Contains(o.extraConfig, "resolver:") {
		o.extraConfig += fmt.Sprintf("resolver: %q\n", dnstest.Start(t, "").Addr())
	}
	delivery := o.delivery
	if delivery == "" {
		delivery = "delivery:\n  retry_initial: 200ms\n  retry_max: 1s\n  give_up_after: 1h\n"
	}
	e.cfgPath = filepath.Join(dir, "dualmx.yaml")
	cfg := fmt.Sprintf("hostname: relay.test.localhost\nstate_dir: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: 127.0.0.1:0\n  status: 127.0.0.1:0\n%sinbound:\n  max_message_bytes: 10485760\n  max_recipients: 5\n%starget:\n  host: 127.0.0.1\n  port: %d\n  tls: require\n  ca_file: %q\n%s%s",
		state, o.listen, o.inbound, tenant.Port(), caFile, delivery, o.extraConfig)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.stop(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("dualmx log:\n%s", e.logs)
		}
	})
	return e
}

// start runs "dualmx serve" and waits until it is ready: its listeners are
// open on the ports its "dualmx ready" line names.
func (e *env) start() {
	e.t.Helper()
	e.mu.Lock()
	if e.logs == nil {
		e.logs = &testlog.Buffer{}
	}
	from := len(e.logs.String()) // the ready line of this start comes after
	cmd := exec.Command(binary, append([]string{"serve", "--config", e.cfgPath}, e.serveArgs...)...)
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		e.mu.Unlock()
		e.t.Fatal(err)
	}
	e.cmd = cmd
	exit := make(chan error, 1)
	e.exit = exit
	e.listening = nil
	e.mu.Unlock()
	go func() { exit <- cmd.Wait() }()
	deadline := time.After(failsafe)
	for {
		if addrs := readyLine(e.logs.String()[from:]); addrs != nil {
			if addrs["smtp"] == "" {
				e.t.Fatalf("the ready line names no smtp address\n%s", e.logs)
			}
			e.mu.Lock()
			e.listening = addrs
			e.mu.Unlock()
			return
		}
		select {
		case err := <-exit:
			e.mu.Lock()
			e.cmd = nil // gone, and its exit taken: nothing for stop to wait for
			e.mu.Unlock()
			e.t.Fatalf("dualmx exited at start: %v\n%s", err, e.logs)
		case <-deadline:
			e.t.Fatalf("dualmx was not ready in time\n%s", e.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readyLine finds the daemon's "dualmx ready" line in logs, text or JSON,
// and returns its attributes (smtp, metrics, target, ...); nil if none.
func readyLine(logs string) map[string]string {
	for _, line := range strings.Split(logs, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "{") {
			var m map[string]any
			dec := json.NewDecoder(strings.NewReader(line))
			dec.UseNumber()
			if dec.Decode(&m) != nil || m["msg"] != "dualmx ready" {
				continue
			}
			out := map[string]string{}
			for k, v := range m {
				out[k] = fmt.Sprint(v)
			}
			return out
		}
		if attrs := logfmt(line); attrs["msg"] == "dualmx ready" {
			return attrs
		}
	}
	return nil
}

// logfmt splits a line of log/slog's text handler into its key=value pairs;
// a value with spaces or quotes is Go-quoted.
func logfmt(line string) map[string]string {
	out := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		key, rest, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(key, " \"") {
			return out
		}
		var val string
		if strings.HasPrefix(rest, "\"") {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return out
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		out[key] = val
		line = rest
	}
	return out
}

// smtpAddr is the SMTP address of the running daemon ("" before start).
func (e *env) smtpAddr() string { return e.listenAddr("smtp") }

// httpAddr is the address of the metrics listener.
func (e *env) httpAddr() string { return e.listenAddr("metrics") }

// statusAddr is the address of the status page's listener.
func (e *env) statusAddr() string { return e.listenAddr("status") }

func (e *env) listenAddr(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listening[name]
}

// stop sends sig and waits (bounded) for the process to exit.
func (e *env) stop(sig syscall.Signal) (exited bool, took time.Duration) {
	e.mu.Lock()
	cmd, exit := e.cmd, e.exit
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return true, 0
	}
	start := time.Now()
	_ = cmd.Process.Signal(sig)
	select {
	case <-exit:
		return true, time.Since(start)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
		return false, time.Since(start)
	}
}

// cli runs an admin subcommand against this env's config.
func (e *env) cli(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.cliEnv(nil, args...)
}

// cliEnv is cli with variables added to the environment (NAME=value).
func (e *env) cliEnv(vars []string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := exec.Command(binary, append([]string{"--config", e.cfgPath}, args...)...)
	if vars != nil {
		cmd.Env = append(os.Environ(), vars...)
	}
	return run(e.t, cmd)
}

// run runs cmd, collecting what it writes, and returns that and its exit
// code; a command that could not be run fails t.
func run(t testing.TB, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	code = exitCode(t, cmd.Run())
	return o.String(), se.String(), code
}

// exitCode is the exit code of a command that ended with err; an error
// other than an exit status fails t.
func exitCode(t testing.TB, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return 0
}

func (e *env) mustCLI(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.cli(args...)
	if code != 0 {
		e.t.Fatalf("dualmx %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// addForwarding adds an address and walks it to forwarding.
func (e *env) addForwarding(address, alias string, extra ...string) {
	e.t.Helper()
	e.mustCLI(append([]string{"address", "add", address, "--alias", alias}, extra...)...)
	e.mustCLI("address", "flip", address, "provisioned")
	e.mustCLI("address", "flip", address, "forwarding")
}

// send delivers one message in a fresh session and returns the DATA reply error (nil for 250).
func send(addr, from string, to []string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("oldhost.test"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func testMessage(id string) []byte {
	return []byte("From: Author <author@example.org>\r\nTo: scriba@hervormdputten.nl\r\nSubject: test " + id +
		"\r\nMessage-ID: <" + id + "@example.org>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n\r\nHello " + id + "\r\n")
}

// scrape returns the metrics text.
func (e *env) scrape() string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.httpAddr() + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// failsafe and waitFor are internal/testwait's: a generous bound for a
// wait on what must happen, and the wait.
const failsafe = testwait.Failsafe

var waitFor = testwait.For

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	if err == nil {
		return 250
	}
	return -1
}

var execCommand = exec.Command

// TestReadyLine: the harness finds the bound addresses in the daemon's ready
// line, in either log format, and nothing in other lines.
func TestReadyLine(t *testing.T) {
	for _, tc := range []struct {
		name, logs string
		want       map[string]string
	}{
		{"text", "time=2026-11-27T10:00:00.000+01:00 level=INFO msg=\"starting dualmx\" config=/x\n" +
			"time=2026-11-27T10:00:00.100+01:00 level=INFO msg=\"dualmx ready\" smtp=127.0.0.1:41234 metrics=127.0.0.1:41235 target=127.0.0.1:25 max_message_bytes=10485760\n",
			map[string]string{"smtp": "127.0.0.1:41234", "metrics": "127.0.0.1:41235"}},
		{"text, quoted and empty values", `time=x level=INFO msg="dualmx ready" smtp="[::1]:2525" metrics="" note="a \"b\" c"` + "\n",
			map[string]string{"smtp": "[::1]:2525", "metrics": "", "note": `a "b" c`}},
		{"json", `{"time":"x","level":"INFO","msg":"dualmx ready","smtp":"127.0.0.1:41234","metrics":"127.0.0.1:41235","max_message_bytes":10485760}` + "\n",
			map[string]string{"smtp": "127.0.0.1:41234", "metrics": "127.0.0.1:41235", "max_message_bytes": "10485760"}},
		{"not ready yet", "time=x level=INFO msg=\"starting dualmx\" smtp=127.0.0.1:0\n{\"msg\":\"arc sealing on\"}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readyLine(tc.logs)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("readyLine = %v, want none", got)
				}
				return
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}
