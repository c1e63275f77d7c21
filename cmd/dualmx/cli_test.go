// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/router"
)

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walk(s, f)
	}
}

// TestEveryCommandHasAnExample: --help of every runnable command shows an
// example that runs that very command.
func TestEveryCommandHasAnExample(t *testing.T) {
	n := 0
	walk(newRootCmd(), func(c *cobra.Command) {
		if !c.Runnable() || c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no Example", c.CommandPath())
			return
		}
		if !strings.Contains(c.Example, c.CommandPath()) {
			t.Errorf("the Example of %q does not run it:\n%s", c.CommandPath(), c.Example)
		}
		if c.Short == "" {
			t.Errorf("%q has no Short description", c.CommandPath())
		}
		var out bytes.Buffer
		c.SetOut(&out)
		if err := c.Help(); err != nil {
			t.Errorf("%s --help: %v", c.CommandPath(), err)
		}
		if !strings.Contains(out.String(), "Examples:") {
			t.Errorf("%s --help shows no examples", c.CommandPath())
		}
	})
	if n < 15 {
		t.Errorf("only %d runnable commands found", n)
	}
}

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String() + errOut.String(), err
}

// TestCompletion: dualmx completion bash|zsh|fish prints a completion script.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "__start_dualmx",
		"zsh":  "#compdef dualmx",
		"fish": "complete -c dualmx",
	} {
		out, err := execute(t, "completion", shell)
		if err != nil {
			t.Errorf("completion %s: %v", shell, err)
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("completion %s: output lacks %q (%d bytes)", shell, want, len(out))
		}
	}
	// Completion knows the subcommands.
	out, err := execute(t, "__complete", "queue", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"list", "release", "bounce", "drop"} {
		if !strings.Contains(out, sub) {
			t.Errorf("completing \"dualmx queue \" does not offer %s:\n%s", sub, out)
		}
	}
}

// invocations holds, for every runnable command, arguments that get past
// its own checks, so the config is what decides. noConfig are the commands
// that run without one.
var (
	invocations = map[string][]string{
		"dualmx serve":               {},
		"dualmx check-config":        {},
		"dualmx address add":         {"a@example.nl", "--alias", "a@fwd.example.nl"},
		"dualmx address list":        {},
		"dualmx address show":        {"a@example.nl"},
		"dualmx address flip":        {"a@example.nl", "forwarding"},
		"dualmx address probe":       {"a@example.nl"},
		"dualmx address checklist":   {"a@example.nl"},
		"dualmx address confirm":     {"a@example.nl", "--by", "Anna"},
		"dualmx address old-removed": {"a@example.nl", "--by", "Anna"},
		"dualmx queue list":          {},
		"dualmx queue show":          {"20261127T101500-3f2a9c"},
		"dualmx queue retry":         {"20261127T101500-3f2a9c"},
		"dualmx queue release":       {"20261127T101500-3f2a9c"},
		"dualmx queue bounce":        {"20261127T101500-3f2a9c"},
		"dualmx queue drop":          {"20261127T101500-3f2a9c", "--reason", "spam"},
		"dualmx dns check":           {"--domain", "example.nl"},
		"dualmx cutover status":      {},
		"dualmx cutover confirm":     {},
		"dualmx provision plan":      {},
		"dualmx provision apply":     {"--yes"},
		"dualmx access report":       {},
		"dualmx m365 setup":          {"--plan", "--relay-ip", "192.0.2.1", "--old-host-ip", "192.0.2.2"},
		"dualmx m365 check":          {},
		"dualmx m365 teardown":       {"--plan", "--relay-ip", "192.0.2.1", "--old-host-ip", "192.0.2.2"},
		"dualmx import start":        {"a@example.nl", "--imap-host", "imap.example.nl", "--imap-user", "a"},
		"dualmx import status":       {"a@example.nl"},
		"dualmx import pst":          {"/nonexistent/old.pst", "--to", "a@example.nl"},
	}
	noConfig = map[string]bool{"dualmx demo": true, "dualmx version": true, "dualmx arc keygen": true, "dualmx arc verify": true}
)

// TestCompletionFromState: an address or a state is completed from the state
// database, opened read-only, and no command offers file names where no file
// belongs; only arc verify takes a file.
func TestCompletionFromState(t *testing.T) {
	cfg := testState(t)
	for _, args := range [][]string{
		{"address", "add", "scriba@example.nl", "--alias", "scriba@fwd.example.nl"},
		{"address", "add", "koster@example.nl", "--alias", "koster@fwd.example.nl"},
		{"address", "flip", "koster@example.nl", "provisioned"},
	} {
		if _, err := execute(t, append(args, "--config", cfg)...); err != nil {
			t.Fatal(err)
		}
	}
	const noFiles = ":4\n" // cobra.ShellCompDirectiveNoFileComp
	for _, tc := range []struct {
		args []string
		want []string // lines of the completion, before the directive
		dir  string
	}{
		{[]string{"address", "show", ""}, []string{"koster@example.nl\tprovisioned", "scriba@example.nl\tplanned"}, noFiles},
		{[]string{"address", "flip", ""}, []string{"koster@example.nl\tprovisioned", "scriba@example.nl\tplanned"}, noFiles},
		{[]string{"address", "flip", "koster@example.nl", ""}, []string{"planned", "forwarding", "confirmed", "migrated"}, noFiles},
		{[]string{"address", "flip", "koster@example.nl", "migrated", ""}, nil, noFiles},
		{[]string{"address", "probe", ""}, []string{"koster@example.nl\tprovisioned", "scriba@example.nl\tplanned"}, noFiles},
		{[]string{"address", "list", ""}, nil, noFiles},
		{[]string{"address", "add", "x@example.nl", "--alias", ""}, nil, noFiles},
		{[]string{"queue", "show", ""}, nil, noFiles},
		{[]string{"dns", "check", "--phase", ""}, []string{"before", "after"}, noFiles},
		{[]string{"arc", "verify", ""}, nil, ":0\n"},
	} {
		out, err := execute(t, append([]string{"__complete", "--config", cfg}, tc.args...)...)
		if err != nil {
			t.Fatalf("complete %v: %v", tc.args, err)
		}
		body, _, _ := strings.Cut(out, "Completion ended")
		i := strings.LastIndex(body, ":")
		lines, dir := strings.TrimSuffix(body[:i], "\n"), body[i:]
		var got []string
		if lines != "" {
			got = strings.Split(lines, "\n")
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || dir != tc.dir {
			t.Errorf("complete %v: %q directive %q, want %q directive %q", tc.args, got, dir, tc.want, tc.dir)
		}
	}
	// Every command but arc verify completes its arguments without files.
	walk(newRootCmd(), func(c *cobra.Command) {
		if !c.Runnable() || c.CommandPath() == "dualmx arc verify" || c.CommandPath() == "dualmx import pst" || strings.HasPrefix(c.CommandPath(), "dualmx completion") || c.Name() == "help" {
			return
		}
		args := append([]string{"__complete"}, strings.Fields(c.CommandPath())[1:]...)
		out, err := execute(t, append(args, "")...)
		if err != nil || !strings.Contains(out, noFiles) {
			t.Errorf("completing %s offers files: %q %v", c.CommandPath(), out, err)
		}
	})
	// Completing against a config whose state does not exist creates nothing.
	empty := testState(t)
	if _, err := execute(t, "__complete", "--config", empty, "address", "show", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(empty), "state")); err == nil {
		t.Error("completion created the state directory")
	}
}

// TestExitCodes: every command follows the README's table of exit statuses:
// 2 for a usage error or no usable config (no --config, a missing file, a
// file with problems), whatever the command; check-config alone reports a
// file with problems as 1, its finding.
func TestExitCodes(t *testing.T) {
	t.Setenv("DUALMX_CONFIG", "")
	t.Setenv("DUALMX_PROVISION_FILE", filepath.Join(t.TempDir(), "provision.yaml"))
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("hostname: relay.example.nl\nno_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := 0
	walk(newRootCmd(), func(c *cobra.Command) {
		if !c.Runnable() || c.Name() == "help" || strings.HasPrefix(c.CommandPath(), "dualmx completion") {
			return
		}
		path := c.CommandPath()
		words := strings.Fields(path)[1:]
		n++
		cases := []struct {
			name string
			args []string
			want int
		}{{"unknown flag", append(append([]string{}, words...), "--no-such-flag"), 2}}
		if !noConfig[path] {
			args, ok := invocations[path]
			if !ok {
				t.Errorf("%s: not in the invocations table of this test", path)
				return
			}
			with := func(extra ...string) []string { return append(append(append([]string{}, words...), args...), extra...) }
			badWant := 2
			if path == "dualmx check-config" {
				badWant = 1
			}
			cases = append(cases,
				struct {
					name string
					args []string
					want int
				}{"no config", with(), 2},
				struct {
					name string
					args []string
					want int
				}{"missing config file", with("--config", "/nonexistent/dualmx.yaml"), 2},
				struct {
					name string
					args []string
					want int
				}{"config with a problem", with("--config", bad), badWant})
		}
		for _, tc := range cases {
			out, err := execute(t, tc.args...)
			if got := exitCode(err); got != tc.want {
				t.Errorf("%s: dualmx %s: exit %d (%v), want %d\n%s", tc.name, strings.Join(tc.args, " "), got, err, tc.want, out)
			}
		}
	})
	if n < 28 {
		t.Errorf("only %d runnable commands found", n)
	}
	for path := range invocations {
		if c, _, err := newRootCmd().Find(strings.Fields(path)[1:]); err != nil || c.CommandPath() != path {
			t.Errorf("%s is in the table but not a command", path)
		}
	}
}

// testState writes a config whose state_dir is in a new temporary
// directory, without m365 or cutover sections, and returns its path.
func testState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dualmx.yaml")
	text := "hostname: relay.example.nl\nstate_dir: " + filepath.Join(dir, "state") + "\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: \"\"\n" +
		"target:\n  host: example-nl.mail.protection.outlook.com\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DUALMX_PROVISION_FILE", filepath.Join(dir, "provision.yaml")) // none
	return cfg
}

// TestExitCodesOnState: what a script sees from commands that ran: 0 for
// success and for nothing to do, 1 for a failure or refusal, 2 for bad input.
func TestExitCodesOnState(t *testing.T) {
	cfg := testState(t)
	for _, tc := range []struct {
		args    []string
		want    int
		wantOut string
	}{
		{[]string{"check-config"}, 0, ": ok"},
		{[]string{"address", "add", "scriba@example.nl", "--alias", "scriba@fwd.example.nl"}, 0, "added scriba@example.nl"},
		{[]string{"address", "add", "scriba@example.nl", "--alias", "scriba@fwd.example.nl"}, 1, "already exists"},
		{[]string{"address", "show", "nobody@example.nl"}, 1, "nobody@example.nl: address not found (dualmx address list shows the addresses)"},
		{[]string{"address", "flip", "scriba@example.nl", "planned"}, 0, "scriba@example.nl is already planned; nothing to do"},
		{[]string{"address", "flip", "scriba@example.nl", "confirmed"}, 1, "that skips provisioned, forwarding"},
		{[]string{"address", "flip", "scriba@example.nl", "nonsense"}, 2, "unknown state"},
		{[]string{"address", "flip", "scriba@example.nl", "provisioned"}, 0, "planned -> provisioned"},
		{[]string{"address", "flip", "scriba@example.nl", "provisioned"}, 0, "already provisioned; nothing to do"},
		{[]string{"queue", "show", "20261127T101500-3f2a9c"}, 1, "20261127T101500-3f2a9c"},
		{[]string{"dns", "check", "--domain", "example.nl", "--phase", "sometime"}, 2, "sometime"},
		// Nothing answers on the discard port: the check ran and failed.
		{[]string{"dns", "check", "--domain", "example.nl", "--nameserver", "127.0.0.1:9", "--query-timeout", "100ms", "--retries", "0", "--timeout", "5s"}, 1, "could not run"},
		{[]string{"arc", "verify", "/nonexistent/message.eml"}, 2, "no such file"},
	} {
		out, err := execute(t, append(tc.args, "--config", cfg)...)
		msg := out
		if err != nil {
			msg += plainError(err)
		}
		if got := exitCode(err); got != tc.want || !strings.Contains(msg, tc.wantOut) {
			t.Errorf("dualmx %s: exit %d, want %d with %q:\n%s", strings.Join(tc.args, " "), got, tc.want, tc.wantOut, msg)
		}
	}
}

// TestPlainError: the CLI's errors read without internal package names.
func TestPlainError(t *testing.T) {
	wrapped := fmt.Errorf("router: get nobody@example.nl: %w", router.ErrNotFound)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{wrapped, "get nobody@example.nl: address not found (dualmx address list shows the addresses)"},
		{errors.New("spool 123: queue: open x: permission denied"), "spool 123: open x: permission denied"},
		{errors.New("cutover: router: list addresses: database is locked"), "list addresses: database is locked"},
		{errors.New("the config has no m365: section"), "the config has no m365: section"},
		{errors.New("line one\narc: seal: bad key"), "line one\nseal: bad key"},
	} {
		if got := plainError(tc.err); got != tc.want {
			t.Errorf("plainError(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
