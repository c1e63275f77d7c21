// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/provisioning"
)

// defaultDesiredFile is where the desired-state file lives unless --file or
// $DUALMX_PROVISION_FILE says otherwise; the systemd timer relies on it.
const defaultDesiredFile = "/etc/dualmx/provision.yaml"

func desiredPath(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv("DUALMX_PROVISION_FILE"); v != "" {
		return v
	}
	return defaultDesiredFile
}

// m365Admin is an admin session that also talks to Microsoft 365.
type m365Admin struct {
	*admin
	cred     azcore.TokenCredential
	ends     m365.Endpoints
	graph    *m365.Graph
	exchange *m365.Exchange
}

// openM365 opens the state and connects to the tenant. A command that
// only shows (write false) opens the state read-only, as address list
// does: it creates nothing in state_dir, so it may run as another user than
// the state's owner (root, or a member of its group who may read the app's
// credential); one that changes the state opens it to write, as its owner.
func openM365(g *globalFlags, write bool) (*m365Admin, error) {
	open := openTenantReader
	if write {
		open = func(g *globalFlags) (*admin, error) { return openAdmin(g, false) }
	}
	a, err := open(g)
	if err != nil {
		return nil, err
	}
	m := a.cfg.M365
	if !m.Enabled {
		a.close()
		return nil, &exitError{code: 2, err: fmt.Errorf("%s has no m365: section; see docs/microsoft-365.md", a.cfg.Path)}
	}
	t, err := newM365Session(a.cfg)
	if err != nil {
		a.close()
		return nil, &exitError{code: 2, err: err}
	}
	return &m365Admin{admin: a, cred: t.cred, ends: t.ends, graph: t.graph, exchange: t.exchange}, nil
}

// m365Endpoints are the sign-in, Graph and Exchange endpoints of the
// configured cloud, with the config's test overrides.
func m365Endpoints(cfg *config.Config) (m365.Endpoints, error) {
	m := cfg.M365
	c, err := m365.CloudByName(m.Cloud)
	if err != nil {
		return m365.Endpoints{}, err
	}
	return m365.Endpoints{Cloud: c, AuthorityURL: m.AuthorityURL, GraphURL: m.GraphURL, ExchangeURL: m.ExchangeURL}, nil
}

// m365Credential is the app-only credential of the m365 section; it reads
// its secret only when a token is first needed.
func m365Credential(cfg *config.Config) (azcore.TokenCredential, error) {
	m := cfg.M365
	ends, err := m365Endpoints(cfg)
	if err != nil {
		return nil, err
	}
	return m365.Credential(m365.App{TenantID: m.TenantID, ClientID: m.ClientID, ClientSecretFile: m.ClientSecretFile,
		CertificateFile: m.CertificateFile, Endpoints: ends})
}

// m365Session is what the commands that talk to Microsoft 365 use.
type m365Session struct {
	cred     azcore.TokenCredential
	ends     m365.Endpoints
	graph    *m365.Graph
	exchange *m365.Exchange
}

func newM365Session(cfg *config.Config) (*m365Session, error) {
	m := cfg.M365
	ends, err := m365Endpoints(cfg)
	if err != nil {
		return nil, err
	}
	cred, err := m365Credential(cfg)
	if err != nil {
		return nil, err
	}
	gr, err := m365.NewGraph(cred, m365.GraphOptions{BaseURL: ends.Graph(), Scope: ends.Cloud.GraphScope()})
	if err != nil {
		return nil, err
	}
	log := newLogger(cfg.LogFormat, os.Stderr)
	cmd, err := m365.NewExchange(cred, m365.ExchangeOptions{BaseURL: ends.Exchange(), Scope: ends.Cloud.ExchangeScope(), TenantID: m.TenantID,
		Warn: func(cmdlet, text string) { log.Warn("exchange online warning", "cmdlet", cmdlet, "warning", text) }})
	if err != nil {
		return nil, err
	}
	return &m365Session{cred: cred, ends: ends, graph: gr, exchange: m365.NewExchangeOps(cmd, m365.Retry{})}, nil
}

// m365Clients builds the Graph and Exchange clients from the m365 section.
func m365Clients(cfg *config.Config) (*m365.Graph, *m365.Exchange, error) {
	t, err := newM365Session(cfg)
	if err != nil {
		return nil, nil, err
	}
	return t.graph, t.exchange, nil
}

func (m *m365Admin) env() provisioning.Env {
	return provisioning.Env{Dir: m.graph, MB: m.exchange, Ledger: m.store, Actor: m.actor, Log: newLogger(m.cfg.LogFormat, os.Stderr)}
}

// openProvisioning reads the desired-state file and connects to the tenant,
// what plan, apply and the access report all start with; only apply writes.
func openProvisioning(g *globalFlags, file string, write bool) (*provisioning.Desired, *m365Admin, error) {
	d, err := loadDesired(file)
	if err != nil {
		return nil, nil, err
	}
	m, err := openM365(g, write)
	if err != nil {
		return nil, nil, err
	}
	return d, m, nil
}

func loadDesired(flag string) (*provisioning.Desired, error) {
	d, err := provisioning.LoadFile(desiredPath(flag))
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return d, nil
}

func newProvisionCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Make Microsoft 365 match the desired-state file: accounts, shared mailboxes, access",
		Long: `The desired-state file lists the people (each gets a personal account) and the
functions (each gets a shared mailbox) with their holders and from/until dates.
"plan" shows what would change; "apply" shows the plan, asks, and does it.
The file is --file, else $DUALMX_PROVISION_FILE, else ` + defaultDesiredFile + `.`,
	}
	cmd.AddCommand(newProvisionPlanCmd(g), newProvisionApplyCmd(g))
	return cmd
}

func newProvisionPlanCmd(g *globalFlags) *cobra.Command {
	var file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan [--file F] [--json]",
		Short: "Show what apply would change, grouped by person and by function",
		Long: `Show what apply would change in Microsoft 365, grouped by person and by
function; nothing is changed. Needs the config's m365: section.

The desired-state file is --file, else $DUALMX_PROVISION_FILE, else
` + defaultDesiredFile + `. It is YAML; unknown and duplicate keys are refused
with file and line. docs/microsoft-365.md section 5 documents every key. In short:

  domain: example.nl
  licence: O365_BUSINESS_PREMIUM     # SKU part number
  welcome: {from: ithelp@example.nl, help: ithelp@example.nl}
  people:
    anna: {given_name: Anna, surname: de Vries, private_email: anna@example.org}
  functions:
    - address: scriba@example.nl
      name: Scriba
      holders:
        - {person: anna, from: 2026-01-01, until: 2026-04-30}`,
		Example: "  dualmx provision plan --file /etc/dualmx/provision.yaml\n  dualmx provision plan --json | jq '.changes'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, m, err := openProvisioning(g, file, false)
			if err != nil {
				return err
			}
			defer m.close()
			p, _, err := provisioning.MakePlan(cmd.Context(), m.env(), d)
			if err != nil {
				return err
			}
			if asJSON {
				return p.WriteJSON(cmd.OutOrStdout())
			}
			return p.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "desired-state file, YAML (default $DUALMX_PROVISION_FILE or "+defaultDesiredFile+")")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func newProvisionApplyCmd(g *globalFlags) *cobra.Command {
	var file string
	var yes, verbose bool
	cmd := &cobra.Command{
		Use:   "apply [--file F] [--yes] [--verbose]",
		Short: "Show the plan, ask for confirmation, and carry it out",
		Long: `Show the plan, ask for confirmation, and carry it out. Without a terminal
(cron, systemd) it refuses unless --yes. A failed step does not stop the steps
that do not depend on it; the summary says what to re-run. New accounts get a
random temporary password that is only ever written into the welcome mail.

On a terminal each step is shown as it ends and only warnings are logged
(--verbose logs every step too); elsewhere every step is logged, for the
journal, and the summary lists them all.`,
		Example: "  dualmx provision apply --file /etc/dualmx/provision.yaml\n  dualmx provision apply --yes   # from the daily timer",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, m, err := openProvisioning(g, file, true)
			if err != nil {
				return err
			}
			defer m.close()
			out := cmd.OutOrStdout()
			env := m.env()
			// Log lines and the command's own output on one terminal break
			// each other up: there, the steps show as progress and the log
			// keeps only what needs attention.
			watched := isTerminal(out) && isTerminal(cmd.ErrOrStderr())
			if watched {
				level := slog.LevelWarn
				if verbose {
					level = slog.LevelInfo
				}
				env.Progress, env.Log = out, newLeveledLogger(m.cfg.LogFormat, cmd.ErrOrStderr(), level)
			}
			p, a, err := provisioning.MakePlan(cmd.Context(), env, d)
			if err != nil {
				return err
			}
			if err := p.WriteText(out); err != nil {
				return err
			}
			if p.Empty() {
				return nil
			}
			if err := confirm(cmd.InOrStdin(), out, isTerminal(cmd.InOrStdin()), yes); err != nil {
				return err
			}
			sum, err := provisioning.Apply(cmd.Context(), env, d, a, p)
			write := sum.WriteText
			if watched {
				write = sum.WriteTotals
			}
			if werr := write(out); werr != nil && err == nil {
				err = werr
			}
			if errors.Is(err, provisioning.ErrIncomplete) {
				return &exitError{code: 1, err: err}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "desired-state file, YAML (default $DUALMX_PROVISION_FILE or "+defaultDesiredFile+"; see provision plan --help)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask (needed without a terminal)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "on a terminal, log every step as well (without a terminal it always does)")
	return cmd
}

// errNoConfirmation is returned when apply cannot or did not get a yes.
var errNoConfirmation = errors.New("not applied")

// confirm asks on a terminal; without one only --yes lets apply go on, so a
// script cannot change the tenant by accident.
func confirm(in io.Reader, out io.Writer, terminal, yes bool) error {
	if yes {
		return nil
	}
	if !terminal {
		return &exitError{code: 2, err: fmt.Errorf("%w: standard input is not a terminal; pass --yes to apply without asking", errNoConfirmation)}
	}
	fmt.Fprint(out, "\nApply these changes? Type yes to go on: ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(line)) != "yes" {
		return &exitError{code: 1, err: fmt.Errorf("%w: the answer was not yes", errNoConfirmation)}
	}
	return nil
}

// isTerminal says whether v, a command's input or output, is a terminal.
// A character device is not enough: /dev/null is one.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
