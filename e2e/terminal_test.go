// SPDX-License-Identifier: MIT

package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dualmx/dualmx/internal/testlog"
)

// openPTY opens a pseudo-terminal: tty is what a program gets as its
// terminal, master is the admin's side (what they read and type).
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("a terminal for the test: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("the terminal's number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open the terminal: %v", err)
	}
	return master, tty
}

// onTerminal runs the binary with standard input, output and error on one
// terminal, types answer once the terminal shows prompt, and returns what
// the terminal showed (line ends as "\n") and the exit code.
func (e *tenantEnv) onTerminal(prompt, answer string, args ...string) (string, int) {
	e.t.Helper()
	master, tty := openPTY(e.t)
	cmd := exec.Command(binary, append([]string{"--config", e.cfgPath}, args...)...)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+e.caFile, "DUALMX_PROVISION_FILE="+e.desired)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	err := cmd.Start()
	tty.Close() // the program has its own; reading the master ends when it exits
	if err != nil {
		e.t.Fatal(err)
	}
	var shown testlog.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&shown, master); close(read) }()
	var waitErr error
	ended := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(ended) }()
	waitFor(e.t, failsafe, fmt.Sprintf("the terminal to show %q", prompt), func() bool {
		select {
		case <-ended: // without asking
			return true
		default:
			return strings.Contains(shown.String(), prompt)
		}
	})
	select {
	case <-ended:
	default:
		if _, err := master.Write([]byte(answer)); err != nil {
			e.t.Fatal(err)
		}
	}
	code := 0
	select {
	case <-ended:
		code = exitCode(e.t, waitErr)
	case <-time.After(failsafe):
		cmd.Process.Kill()
		e.t.Fatalf("dualmx %s did not end; the terminal showed:\n%s", strings.Join(args, " "), shown.String())
	}
	select {
	case <-read:
	case <-time.After(failsafe):
		e.t.Fatal("the terminal did not close after the program ended")
	}
	return strings.ReplaceAll(shown.String(), "\r\n", "\n"), code
}

// TestProvisionApplyOnATerminal: on a terminal, provision apply's own
// output (the plan, the question, a line per step as it ends, the totals)
// is not broken up by log lines, and lists each step once more after the
// plan, not twice; --verbose logs each step as well. Off a terminal (the
// daily timer) each step is logged for the journal and the summary lists
// them.
func TestProvisionApplyOnATerminal(t *testing.T) {
	const step = "create account anna.devries@hervormdputten.nl"
	const question = "Apply these changes? Type yes to go on: "
	progress := regexp.MustCompile(`(?m)^  \[(\d)/7\] done +(.*)$`)
	logged := regexp.MustCompile(`(?m)^time=\S+ level=INFO msg="provision step"`)

	t.Run("terminal", func(t *testing.T) {
		e := newTenantEnv(t, tenantOptions{desired: desiredState})
		out, code := e.onTerminal(question, "yes\n", "provision", "apply")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if m := progress.FindAllStringSubmatch(out, -1); len(m) != 7 || m[0][1] != "1" || m[6][1] != "7" {
			t.Errorf("%d progress lines, want one per step, [1/7] to [7/7]:\n%s", len(m), out)
		}
		if strings.Contains(out, "level=") || strings.Contains(out, "provision step") {
			t.Errorf("log lines among the output on a terminal:\n%s", out)
		}
		plan, after, _ := strings.Cut(out, question+"yes\n")
		if !strings.Contains(plan, step) || strings.Count(after, step) != 1 || !strings.Contains(after, "Applied 7 of 7 steps.") {
			t.Errorf("want the step in the plan, once in the progress after it, and the totals:\n%s", out)
		}
	})

	t.Run("terminal, --verbose", func(t *testing.T) {
		e := newTenantEnv(t, tenantOptions{desired: desiredState})
		out, code := e.onTerminal(question, "yes\n", "provision", "apply", "--verbose")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if n := len(logged.FindAllString(out, -1)); n != 7 {
			t.Errorf("%d steps logged with --verbose, want 7:\n%s", n, out)
		}
		if n := len(progress.FindAllString(out, -1)); n != 7 {
			t.Errorf("%d progress lines with --verbose, want 7:\n%s", n, out)
		}
	})

	t.Run("no terminal", func(t *testing.T) {
		e := newTenantEnv(t, tenantOptions{desired: desiredState})
		out, errOut, code := e.m365("provision", "apply", "--yes")
		if code != 0 {
			t.Fatalf("exit %d:\n%s%s", code, out, errOut)
		}
		if n := len(logged.FindAllString(errOut, -1)); n != 7 {
			t.Errorf("%d steps logged for the journal, want 7:\n%s", n, errOut)
		}
		if progress.MatchString(out) || !strings.Contains(out, "Applied 7 of 7 steps.\n  done    "+step) {
			t.Errorf("want the summary listing every step, no progress lines:\n%s", out)
		}
	})
}
