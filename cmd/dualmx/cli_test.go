package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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

// TestExitCodes: the exit status the README documents — 0 success, 1 the
// command failed, 2 usage error or no usable config.
func TestExitCodes(t *testing.T) {
	t.Setenv("DUALMX_CONFIG", "")
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--help"}, 0},
		{[]string{"queue", "--help"}, 0},
		{[]string{"--no-such-flag"}, 2},
		{[]string{"queue", "list", "--no-such-flag"}, 2},
		{[]string{"address", "flip", "only-one-arg"}, 2},
		{[]string{"no-such-command"}, 2},
		{[]string{"address", "list"}, 2}, // no config
		{[]string{"address", "list", "--config", "/nonexistent/dualmx.yaml"}, 2},
		{[]string{"check-config", "--config", "/nonexistent/dualmx.yaml"}, 1}, // the check ran and found a problem
	} {
		_, err := execute(t, c.args...)
		if got := exitCode(err); got != c.want {
			t.Errorf("dualmx %s: exit %d (%v), want %d", strings.Join(c.args, " "), got, err, c.want)
		}
	}
}
