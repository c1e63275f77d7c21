// SPDX-License-Identifier: MIT

// Command dualmx is the dualmx relay daemon and its admin CLI. This package
// parses flags, loads the config and hands its values to the packages, wires
// them into the daemon (serve.go: one function a listener or loop), and
// prints what the admin commands get back, with the exit status the README
// documents. What the relay does, and what the data means, is in the
// packages; deploy's TestLayout keeps the config out of them.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/router"
)

// exitError carries a specific exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		// An error may quote what a remote server or the tenant said.
		fmt.Fprintln(os.Stderr, "dualmx:", visible.Lines(plainError(err)))
		os.Exit(exitCode(err))
	}
}

// internalPackages are the packages whose errors start with their name
// ("router: ..."), as Go libraries' errors do: context for a developer,
// noise for an admin reading the CLI's answer.
var internalPackages = []string{"arc", "authcheck", "checklist", "config", "courier", "cutover", "dane", "dnscheck",
	"m365", "migrate", "probe", "provisioning", "queue", "router", "smtpd", "spool", "srs", "standin", "vouch"}

// plainError is err as an admin should read it: without the internal
// package names in front of its parts, and with a hint where one helps.
func plainError(err error) string {
	msg := err.Error()
	for before := ""; before != msg; {
		before = msg
		for _, p := range internalPackages {
			prefix := p + ": "
			msg = strings.ReplaceAll(msg, ": "+prefix, ": ")
			msg = strings.ReplaceAll(msg, "\n"+prefix, "\n")
			msg = strings.TrimPrefix(msg, prefix)
		}
	}
	if errors.Is(err, router.ErrNotFound) {
		msg += " (dualmx address list shows the addresses)"
	}
	return msg
}

// exitCode is the exit status the README documents: 0 success (also when
// there was nothing to do), 1 the command ran and failed, 2 a usage error or
// no usable config.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case strings.HasPrefix(err.Error(), "unknown command "): // cobra has no type for it
		return 2
	}
	return 1
}

// usageErrors makes bad flags and wrong argument counts exit with 2.
func usageErrors(c *cobra.Command) {
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	var wrap func(*cobra.Command)
	wrap = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return &exitError{code: 2, err: err}
				}
				return nil
			}
		}
		for _, s := range c.Commands() {
			wrap(s)
		}
	}
	wrap(c)
}

type globalFlags struct {
	config string
	// identity is who runs the command, for the audit log and the check
	// that it runs as the owner of state_dir.
	identity router.Identity
	// argv is the command line, to suggest it again as the right user.
	argv []string
}

// actor names the person behind an admin command in the audit log.
func (g *globalFlags) actor() string { return g.identity.Actor() }

func newRootCmd() *cobra.Command { return newRootCmdFor(router.SystemIdentity()) }

// newRootCmdFor builds the command tree for a given identity; tests pass a
// made-up one.
func newRootCmdFor(id router.Identity) *cobra.Command {
	g := &globalFlags{identity: id, argv: os.Args}
	root := &cobra.Command{
		Use:   "dualmx",
		Short: "Relay forwarded mail into Microsoft 365 without losing it, and manage the migration",
		Long: `dualmx accepts mail that the old mail host forwards for migrating addresses,
keeps it safe on disk, and delivers it into Microsoft 365. The admin commands
manage the addresses, their migration state and the queue.

Every command finds its state through --config FILE or $DUALMX_CONFIG.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("dualmx {{.Version}}\n")
	root.PersistentFlags().StringVar(&g.config, "config", "", "config file (default $DUALMX_CONFIG)")
	root.AddCommand(
		newServeCmd(g),
		newCheckConfigCmd(g),
		newDemoCmd(),
		newAddressCmd(g),
		newQueueCmd(g),
		newARCCmd(g),
		newDNSCmd(g),
		newCutoverCmd(g),
		newProvisionCmd(g),
		newAccessCmd(g),
		newM365Cmd(g),
		newImportCmd(g),
		newVersionCmd(),
	)
	_ = root.MarkPersistentFlagFilename("config", "yaml", "yml")
	setCompletions(root, g)
	usageErrors(root)
	return root
}

// checkOwner is checkStateOwner for this command line.
func (g *globalFlags) checkOwner(cfg *config.Config) error {
	fromEnv := ""
	if g.config == "" {
		fromEnv = cfg.Path
	}
	return checkStateOwner(cfg.StateDir, g.identity.EUID, g.argv, fromEnv)
}

func (g *globalFlags) path() (string, error) {
	p := g.config
	if p == "" {
		p = os.Getenv("DUALMX_CONFIG")
	}
	if p == "" {
		return "", &exitError{code: 2, err: errors.New("no config: pass --config FILE or set DUALMX_CONFIG")}
	}
	return p, nil
}
