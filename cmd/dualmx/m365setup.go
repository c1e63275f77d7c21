// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/cutover"
	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/migrate"
	"github.com/dualmx/dualmx/router"
)

var errOneFormat = errors.New("choose one of --json and --csv")

// nowFunc is the wall clock of the CLI.
func nowFunc() time.Time { return time.Now() }

func newM365Cmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "m365",
		Short: "Prepare the Microsoft 365 tenant for the relay, check the app's rights, undo it after the cutover",
	}
	cmd.AddCommand(newM365CheckCmd(g), newM365SetupCmd(g), newM365TeardownCmd(g))
	return cmd
}

// relayFlags are the parts of the relay setup that setup and teardown both
// take, so teardown is the setup command line with another verb.
type relayFlags struct {
	s      m365.RelaySetup
	domain string
}

func (r *relayFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&r.s.RelayIPs, "relay-ip", nil, "the relay's public IPv4 address or CIDR (/24-/32); repeatable")
	f.StringSliceVar(&r.s.OldHostIPs, "old-host-ip", nil, "an address or CIDR the old host forwards from; repeatable")
	f.StringVar(&r.s.CertificateName, "certificate-name", "", "identify the relay by its TLS certificate name instead of or besides its IPs")
	f.StringVar(&r.s.ArcDomain, "arc-domain", "", "the relay's ARC signing domain (default: arc.domain from the config)")
	f.StringVar(&r.s.ConnectorName, "connector-name", "dualmx relay", "name of the inbound connector dualmx manages")
	f.StringVar(&r.domain, "domain", "", "the custom domain that signs with DKIM (default: cutover.domain from the config)")
}

func (r *relayFlags) fill(cfg *config.Config) {
	if r.s.ArcDomain == "" {
		r.s.ArcDomain = cfg.ARC.Domain
	}
	if r.domain == "" {
		r.domain = cfg.Cutover.Domain
	}
}

// dkimPublished asks the domain's authoritative servers, as `dualmx dns
// check` does, whether the two DKIM CNAMEs point where Microsoft 365 says.
func dkimPublished(cfg *config.Config, f *dnsFlags) func(ctx context.Context, domain, s1, s2 string) (bool, string, error) {
	return func(ctx context.Context, domain, s1, s2 string) (bool, string, error) {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		rep, err := f.checker(cfg).Check(ctx, dnscheck.Expected{Domain: domain, Source: "Get-DkimSigningConfig", DKIM1: s1, DKIM2: s2}, dnscheck.Before)
		if err != nil {
			return false, "", err
		}
		ok, why := rep.Passed(dnscheck.CheckDKIM)
		return ok, why, nil
	}
}

func printChanges(out io.Writer, changes []m365.SetupChange) {
	for _, c := range changes {
		if c.Cmdlet == "" {
			fmt.Fprintf(out, "- %s\n", visible.String(c.What))
			continue
		}
		p, _ := json.Marshal(c.Params)
		fmt.Fprintf(out, "+ %s\n    %s %s\n", visible.String(c.What), c.Cmdlet, visible.String(string(p)))
	}
}

func printDKIM(out io.Writer, d *m365.DKIMState, applied bool) {
	if d == nil {
		return
	}
	fmt.Fprintf(out, "\nDKIM for %s: ", visible.String(d.Domain))
	switch {
	case d.Enabled:
		fmt.Fprintf(out, "signing (%s).\n", visible.String(d.Status))
		return
	case !d.Exists && applied:
		fmt.Fprintln(out, "no signing config (it was not created).")
		return
	case !d.Exists:
		fmt.Fprintln(out, "not set up; --apply creates the signing config (disabled) and shows the two CNAME records to publish.")
		return
	case d.Pending != "":
		fmt.Fprintf(out, "not signing yet: %s.\n", visible.String(d.Pending))
	case d.Published:
		fmt.Fprintln(out, "the CNAMEs are published; --apply turns signing on.")
	default:
		fmt.Fprintf(out, "not signing yet (%s): publish these two records at the domain's DNS host,\n", orDash(visible.String(d.Why)))
		fmt.Fprintln(out, "check them with `dualmx dns check`, then run `dualmx m365 setup --apply` again to turn signing on:")
	}
	for _, r := range d.Records() {
		fmt.Fprintf(out, "    %s\n", visible.String(r))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newM365SetupCmd(g *globalFlags) *cobra.Command {
	var plan, apply, pilot, asJSON bool
	var rf relayFlags
	var df dnsFlags
	cmd := &cobra.Command{
		Use:   "setup --plan|--apply --relay-ip IP --old-host-ip IP [...]",
		Short: "Partner inbound connector, Enhanced Filtering of both hops, trusted ARC sealer, DKIM for the domain",
		Long: `Prepare the tenant for mail that the old host forwards through the relay:

  - a Partner inbound connector for the relay's IPv4 addresses (or its
    certificate name), with RequireTls off: it matches every partner
    sender, and the relay insists on verified TLS on its own;
  - Enhanced Filtering for Connectors skipping both hops, the relay's IPs and
    the old host's forwarding IPs (EFSkipIPs), optionally only for the
    addresses in dualmx's address table (--pilot);
  - the relay's ARC signing domain added to the trusted ARC sealers (the list
    is read first and kept: Exchange replaces it whole);
  - DKIM for the custom domain (--domain, default cutover.domain): the
    signing config is created disabled and its two CNAME records printed;
    once they resolve on every authoritative server, --apply turns signing on.

--plan shows the commands; --apply runs them, then reads every setting back.
Running --apply again changes only what is not yet as it should be.`,
		Example: `  dualmx m365 setup --plan --relay-ip 203.0.113.10 --old-host-ip 198.51.100.0/24
  dualmx m365 setup --apply --relay-ip 203.0.113.10 --old-host-ip 198.51.100.0/24 --pilot`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plan == apply {
				return &exitError{code: 2, err: errors.New("give exactly one of --plan and --apply")}
			}
			m, err := openM365(g, apply)
			if err != nil {
				return err
			}
			defer m.close()
			rf.fill(m.cfg)
			s := rf.s
			if rf.domain == "" {
				return &exitError{code: 2, err: fmt.Errorf("no domain for DKIM: m365 setup also sets up DKIM signing for the custom domain; "+
					"pass --domain DOMAIN (e.g. --domain example.nl), or add the domain to %s:\n  cutover:\n    domain: example.nl", m.cfg.Path)}
			}
			s.DKIMDomain, s.DKIMPublished = rf.domain, dkimPublished(m.cfg, &df)
			if pilot {
				list, err := m.store.List(cmd.Context())
				if err != nil {
					return err
				}
				for _, ad := range list {
					if ad.State != router.Migrated {
						s.PilotUsers = append(s.PilotUsers, ad.Address)
					}
				}
				if len(s.PilotUsers) == 0 {
					return &exitError{code: 2, err: errors.New("--pilot: the address table has no migrating addresses")}
				}
			}
			if err := s.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			p, err := m.exchange.PlanRelaySetup(ctx, s)
			if err != nil {
				return err
			}
			if asJSON && plan {
				return writeJSON(out, p)
			}
			if len(p.Changes) == 0 {
				fmt.Fprintln(out, "The tenant is set up for the relay; nothing to change.")
			}
			printChanges(out, p.Changes)
			if plan {
				printDKIM(out, p.DKIM, false)
				return nil
			}
			dkim, err := m.exchange.ApplyRelaySetup(ctx, s, p)
			if err != nil {
				return err
			}
			checks, err := m.exchange.CheckRelaySetup(ctx, s)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, struct {
					Checks []m365.SetupCheck `json:"checks"`
					DKIM   *m365.DKIMState   `json:"dkim"`
				}{checks, dkim})
			}
			fmt.Fprintln(out, "\nRead back from the tenant:")
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			bad := 0
			for _, c := range checks {
				st := "ok"
				if !c.OK {
					st, bad = "MISMATCH", bad+1
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", st, visible.String(c.Setting), visible.String(c.Got))
			}
			tw.Flush()
			printDKIM(out, dkim, true)
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d setting(s) did not read back as set", bad)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&plan, "plan", false, "show the changes only")
	f.BoolVar(&apply, "apply", false, "make the changes, then read them back")
	rf.register(cmd)
	df.register(cmd)
	f.BoolVar(&pilot, "pilot", false, "apply Enhanced Filtering only to the addresses in dualmx's address table (EFUsers)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// teardownParts each give the teardown steps of one thing dualmx added to
// the tenant. A feature that adds something to the tenant adds its part
// here, and `m365 teardown` plans and removes it with the rest.
var teardownParts = []func(m *m365Admin, s m365.RelaySetup) []m365.TeardownStep{
	func(m *m365Admin, s m365.RelaySetup) []m365.TeardownStep { return m.exchange.RelayTeardown(s) },
	importTeardown,
}

// importTeardown removes the import's finished migration batches and the
// IMAP endpoints no running batch uses (migrate.TeardownSteps).
func importTeardown(m *m365Admin, _ m365.RelaySetup) []m365.TeardownStep {
	return []m365.TeardownStep{{Name: "migration batches and endpoints of the import", Plan: func(ctx context.Context) ([]m365.SetupChange, []string, error) {
		steps, kept, err := migrate.TeardownSteps(ctx, m.exchange.Cmd)
		if err != nil {
			return nil, nil, err
		}
		var cs []m365.SetupChange
		for _, s := range steps {
			cs = append(cs, m365.SetupChange{What: s.What, Do: s.Do})
		}
		return cs, kept, nil
	}}}
}

func newM365TeardownCmd(g *globalFlags) *cobra.Command {
	var plan, apply, force, asJSON bool
	var reason string
	var rf relayFlags
	var df dnsFlags
	cmd := &cobra.Command{
		Use:   "teardown --plan|--apply --relay-ip IP --old-host-ip IP [--force --reason TEXT]",
		Short: "After the cutover: remove the connector's skip-listing and dualmx's trusted ARC sealer",
		Long: `Undo what the migration added to the tenant once the relay is no longer
needed (cutover status "done"): the relay's and the old host's addresses in
the inbound connector's Enhanced Filtering skip list, and the relay's domain
among the trusted ARC sealers. Each is read, changed and written back, so
entries that others added stay. Give the same --relay-ip and --old-host-ip as
at setup. DKIM signing and the connector itself stay.

--plan shows the commands; --apply runs them (refused before the cutover is
done, unless --force with a --reason), then plans again to confirm nothing
is left.`,
		Example: `  dualmx m365 teardown --plan --relay-ip 203.0.113.10 --old-host-ip 198.51.100.0/24
  dualmx m365 teardown --apply --relay-ip 203.0.113.10 --old-host-ip 198.51.100.0/24`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plan == apply {
				return &exitError{code: 2, err: errors.New("give exactly one of --plan and --apply")}
			}
			if force && reason == "" {
				return &exitError{code: 2, err: errors.New("--force needs --reason")}
			}
			m, err := openM365(g, apply)
			if err != nil {
				return err
			}
			defer m.close()
			rf.fill(m.cfg)
			var steps []m365.TeardownStep
			for _, part := range teardownParts {
				steps = append(steps, part(m, rf.s)...)
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			planned, err := m365.PlanTeardown(ctx, steps)
			if err != nil {
				return err
			}
			if asJSON && plan {
				return writeJSON(out, planned)
			}
			n := printTeardown(out, planned)
			if plan || n == 0 {
				return nil
			}
			if !force {
				if err := cutoverDone(cmd, g, &df); err != nil {
					return err
				}
			}
			if force {
				if err := m.store.AppendAudit(ctx, router.AuditEntry{At: nowFunc(), Actor: m.actor, Action: "m365-teardown-forced",
					Reason: reason, Detail: fmt.Sprintf("%d change(s) without waiting for the cutover to be done", n)}); err != nil {
					return err
				}
			}
			for _, p := range planned {
				if err := m.exchange.ApplyChanges(ctx, p.Changes); err != nil {
					return fmt.Errorf("teardown %s: %w", p.Name, err)
				}
			}
			again, err := m365.PlanTeardown(ctx, steps)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "\nRead back from the tenant:")
			if left := printTeardown(out, again); left > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d change(s) still to make after the teardown", left)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&plan, "plan", false, "show the changes only")
	f.BoolVar(&apply, "apply", false, "make the changes")
	f.BoolVar(&force, "force", false, "apply although the cutover is not done (audited; needs --reason)")
	f.StringVar(&reason, "reason", "", "why --force")
	f.BoolVar(&asJSON, "json", false, "print the plan as JSON")
	rf.register(cmd)
	df.register(cmd)
	return cmd
}

func printTeardown(out io.Writer, planned []m365.PlannedStep) int {
	n := 0
	for _, p := range planned {
		if len(p.Changes) == 0 && len(p.Notes) == 0 {
			fmt.Fprintf(out, "= %s: nothing of dualmx's left\n", visible.String(p.Name))
		}
		printChanges(out, p.Changes)
		for _, note := range p.Notes {
			fmt.Fprintf(out, "! kept: %s\n", visible.String(note))
		}
		n += len(p.Changes)
	}
	return n
}

// cutoverDone refuses a teardown while the relay may still forward mail:
// removing the skip-listing then would make Microsoft 365 judge forwarded
// mail by the relay's address again.
func cutoverDone(cmd *cobra.Command, g *globalFlags, f *dnsFlags) error {
	a, st, err := cutoverStatus(cmd, g, f)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("cannot tell whether the cutover is done (%w); pass --force --reason TEXT to tear down anyway", err)}
	}
	a.close()
	if st.State != cutover.Done {
		why := strings.Join(st.Reasons, "; ")
		return &exitError{code: 1, err: fmt.Errorf("the cutover is %s, not done (%s): the relay may still forward mail; tear down once `dualmx cutover status` says done, or pass --force --reason TEXT", st.State, orDash(why))}
	}
	return nil
}

func newM365CheckCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [--json]",
		Short: "Sign in and list, per command, which permissions and roles the app has and which are missing",
		Long: `Sign in as the app of the m365 section, once for Microsoft Graph and once for
Exchange Online, and read the application permissions each token carries
(its roles claim). Read the app's Entra roles (this needs
RoleManagement.Read.Directory; without it the Exchange roles are judged by
read-only probes: Get-Mailbox for the recipient role, Get-InboundConnector
for Exchange Administrator) and whether the tenant reports sign-in activity.
Then list for every command what it needs, what is there, and for what is
missing the admin-center step that grants it. Nothing is changed.

Exit status: 0 nothing needed is missing, 1 something is, 2 the check could
not run.`,
		Example: "  dualmx m365 check\n  dualmx m365 check --json | jq '.requirements[] | select(.status==\"missing\")'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := openM365(g, false)
			if err != nil {
				return err
			}
			defer m.close()
			rep, err := m365.RunCheck(cmd.Context(), m365.CheckEnv{Cred: m.cred, Endpoints: m.ends, Graph: m.graph, Exchange: m.exchange})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				err = writeJSON(out, rep)
			} else {
				err = writeCheck(out, m.ends, rep)
			}
			if err != nil {
				return err
			}
			if n := rep.Missing(); n > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d requirement(s) missing", n)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writeCheck(out io.Writer, ends m365.Endpoints, rep *m365.CheckReport) error {
	fmt.Fprintf(out, "Signed in to tenant %s as app %s (service principal %s), cloud %s.\n", visible.String(rep.TenantID), visible.String(rep.AppID), orDash(visible.String(rep.ObjectID)), ends.Cloud.Name)
	fmt.Fprintf(out, "Graph permissions: %s\n", orDash(visible.String(strings.Join(rep.GraphRoles, ", "))))
	fmt.Fprintf(out, "Exchange Online permissions: %s\n", orDash(visible.String(strings.Join(rep.ExoRoles, ", "))))
	if rep.EntraRoles != nil {
		var names []string
		for _, r := range rep.EntraRoles {
			names = append(names, m365.RoleName(r))
		}
		fmt.Fprintf(out, "Entra roles: %s\n", orDash(visible.String(strings.Join(names, ", "))))
	}
	cur := ""
	for _, r := range rep.Rows {
		if r.Command != cur {
			cur = r.Command
			fmt.Fprintf(out, "\n%s\n", cur)
		}
		fmt.Fprintf(out, "  %-7s %s", r.Status, r.Need)
		if r.Evidence != "" {
			fmt.Fprintf(out, " (%s)", visible.String(r.Evidence))
		}
		fmt.Fprintln(out)
		if r.Grant != "" {
			fmt.Fprintf(out, "          grant: %s\n", r.Grant)
		}
		if r.Unverified != "" {
			fmt.Fprintf(out, "          unverified: %s\n", r.Unverified)
		}
	}
	n := rep.Missing()
	switch n {
	case 0:
		fmt.Fprintln(out, "\nNothing needed is missing.")
	default:
		fmt.Fprintf(out, "\n%d requirement(s) missing.\n", n)
	}
	return nil
}
