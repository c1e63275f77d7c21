package e2e

import (
	"bufio"
	"bytes"
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
	deadline := time.After(20 * time.Second)
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
	waitFor(t, 15*time.Second, "an .eml file in the demo inbox", func() bool {
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
