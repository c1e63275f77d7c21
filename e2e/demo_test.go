// SPDX-License-Identifier: MIT

package e2e

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/internal/testlog"
)

// TestDemo runs "dualmx demo" as the README tells a newcomer to, follows the
// printed how-to (its swaks line), and finds the message in the printed folder.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	ns := dnstest.Start(t, "")
	// Port 0: the demo prints the addresses it got.
	cmd := exec.Command(binary, "demo", "--dir", dir, "--smtp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--status", "127.0.0.1:0", "--resolver", ns.Addr())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("demo did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("demo log:\n%s", logs.String())
		}
	}()
	var howto strings.Builder
	sc := bufio.NewScanner(stdout)
	lines := make(chan string)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(failsafe)
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited early; printed:\n%s", howto.String())
			}
			howto.WriteString(l + "\n")
			if strings.Contains(l, "Stop with Ctrl-C") {
				break read
			}
		case <-deadline:
			t.Fatalf("demo printed no how-to in time:\n%s", howto.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	text := howto.String()
	swaksLine := regexp.MustCompile(`(?m)^\s*(swaks .*)$`).FindStringSubmatch(text)
	inbox := regexp.MustCompile(`It lands in (\S+)/ as an \.eml file`).FindStringSubmatch(text)
	if swaksLine == nil || inbox == nil {
		t.Fatalf("how-to lacks the swaks line or the folder:\n%s", text)
	}
	relay := regexp.MustCompile(`relay \(SMTP\)\s+(127\.0\.0\.1:\d+)`).FindStringSubmatch(text)
	if relay == nil || strings.HasSuffix(relay[1], ":0") {
		t.Fatalf("how-to does not name the relay's address and port:\n%s", text)
	}
	smtpAddr := relay[1]
	if !strings.Contains(swaksLine[1], "--port "+smtpAddr[strings.LastIndexByte(smtpAddr, ':')+1:]) {
		t.Errorf("the swaks line does not name the relay's port %s:\n%s", smtpAddr, text)
	}
	if _, err := exec.LookPath("swaks"); err == nil {
		out, err := exec.Command("sh", "-c", swaksLine[1]).CombinedOutput()
		if err != nil {
			t.Fatalf("the printed swaks line failed: %v\n%s", err, out)
		}
	} else {
		// Without swaks, send what it would.
		f := strings.Fields(swaksLine[1])
		to := f[len(f)-1]
		if err := send(smtpAddr, "someone@example.org", []string{to}, testMessage("demo-1")); err != nil {
			t.Fatal(err)
		}
	}
	var eml []byte
	waitFor(t, failsafe, "an .eml file in the demo inbox", func() bool {
		files, _ := filepath.Glob(filepath.Join(inbox[1], "*.eml"))
		if len(files) == 0 {
			return false
		}
		eml, _ = os.ReadFile(files[0])
		return len(eml) > 0
	})
	if !bytes.HasPrefix(eml, []byte("Authentication-Results: relay.demo.localhost;")) || !bytes.Contains(eml, []byte("\r\nReceived: from ")) {
		t.Errorf("delivered message lacks dualmx's Authentication-Results and Received fields on top:\n%s", eml)
	}
}

// TestDemoRemovesItsFolder: without --dir the demo works in a temporary
// folder, says in its start message that it goes when the demo stops, and on
// SIGTERM removes it and says so.
func TestDemoRemovesItsFolder(t *testing.T) {
	tmp := t.TempDir()
	ns := dnstest.Start(t, "")
	cmd := exec.Command(binary, "demo", "--smtp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--status", "127.0.0.1:0", "--resolver", ns.Addr())
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out, logs testlog.Buffer
	cmd.Stdout, cmd.Stderr = &out, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitFor(t, failsafe, "the demo's how-to", func() bool { return strings.Contains(out.String(), "Stop with Ctrl-C") })
	m := regexp.MustCompile(`state and config\s+(\S+)/dualmx\.yaml \(removed when the demo stops; --dir DIR keeps them\)`).FindStringSubmatch(out.String())
	if m == nil || !strings.HasPrefix(m[1], tmp) {
		t.Fatalf("the start message does not say the folder goes:\n%s", out.String())
	}
	if _, err := os.Stat(m[1]); err != nil {
		t.Fatalf("demo folder: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("demo did not stop on SIGTERM")
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the demo left %s behind (%v)", m[1], err)
	}
	if !strings.Contains(out.String(), "dualmx demo stopped; removed "+m[1]) {
		t.Errorf("the demo did not say it removed its folder:\n%s", out.String())
	}
}

// TestPortClashNamesTheSetting: a port another program holds stops the demo
// and serve with an error that names what chooses the address: the demo's
// flags, serve's listen keys.
func TestPortClashNamesTheSetting(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr().String()

	out, err := exec.Command(binary, "demo", "--dir", t.TempDir(), "--smtp", addr, "--metrics", "127.0.0.1:0", "--status", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), "--smtp") {
		t.Errorf("demo on a taken port: %v\n%s", err, out)
	}

	e := newEnv(t, envOptions{})
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.cfgPath, []byte(strings.Replace(string(cfg), "smtp: 127.0.0.1:0", "smtp: "+addr, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binary, "serve", "--config", e.cfgPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), "listen.smtp") {
		t.Errorf("serve on a taken port: %v\n%s", err, out)
	}
}
