package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/router"
)

var errOneFormat = errors.New("choose one of --json and --csv")

// nowFunc is the wall clock of the CLI.
func nowFunc() time.Time { return time.Now() }

func newM365Cmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "m365",
		Short: "Prepare the Microsoft 365 tenant for the relay",
	}
	cmd.AddCommand(newM365SetupCmd(g))
	return cmd
}

func newM365SetupCmd(g *globalFlags) *cobra.Command {
	var plan, apply, pilot, asJSON bool
	s := m365.RelaySetup{ConnectorName: "dualmx relay"}
	cmd := &cobra.Command{
		Use:   "setup --plan|--apply --relay-ip IP --old-host-ip IP [...]",
		Short: "Partner inbound connector, Enhanced Filtering of both hops, trusted ARC sealer",
		Long: `Prepare the tenant for mail that the old host forwards through the relay:

  - a Partner inbound connector for the relay's IPv4 addresses (or its
    certificate name) that requires TLS;
  - Enhanced Filtering for Connectors skipping both hops, the relay's IPs and
    the old host's forwarding IPs (EFSkipIPs), optionally only for the
    addresses in dualmx's address table (--pilot);
  - the relay's ARC signing domain added to the trusted ARC sealers (the list
    is read first and kept: Exchange replaces it whole).

--plan shows the commands; --apply runs them, then reads every setting back.`,
		Example: `  dualmx m365 setup --plan --relay-ip 203.0.113.10 --old-host-ip 198.51.100.0/24
  dualmx m365 setup --apply --relay-ip 203.0.113.10 --old-host-ip 198.51.100.0/24 --pilot`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plan == apply {
				return &exitError{code: 2, err: errors.New("give exactly one of --plan and --apply")}
			}
			m, err := openM365(g)
			if err != nil {
				return err
			}
			defer m.close()
			if s.ArcDomain == "" {
				s.ArcDomain = m.cfg.ARC.Domain
			}
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
			changes, err := m.exchange.PlanRelaySetup(ctx, s)
			if err != nil {
				return err
			}
			if asJSON && plan {
				return writeJSON(out, changes)
			}
			if len(changes) == 0 {
				fmt.Fprintln(out, "The tenant is set up for the relay; nothing to change.")
			}
			for _, c := range changes {
				fmt.Fprintf(out, "+ %s\n    %s %s\n", visible.String(c.What), c.Cmdlet, visible.String(fmt.Sprint(c.Params)))
			}
			if plan {
				return nil
			}
			if err := m.exchange.ApplyRelaySetup(ctx, changes); err != nil {
				return err
			}
			checks, err := m.exchange.CheckRelaySetup(ctx, s)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, checks)
			}
			fmt.Fprintln(out, "\nRead back from the tenant:")
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			bad := 0
			for _, c := range checks {
				st := "ok"
				if !c.OK {
					st, bad = "MISMATCH", bad+1
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", st, c.Setting, visible.String(c.Got))
			}
			tw.Flush()
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d setting(s) did not read back as set", bad)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&plan, "plan", false, "show the changes only")
	f.BoolVar(&apply, "apply", false, "make the changes, then read them back")
	f.StringSliceVar(&s.RelayIPs, "relay-ip", nil, "the relay's public IPv4 address or CIDR (/24-/32); repeatable")
	f.StringSliceVar(&s.OldHostIPs, "old-host-ip", nil, "an address or CIDR the old host forwards from; repeatable")
	f.StringVar(&s.CertificateName, "certificate-name", "", "identify the relay by its TLS certificate name instead of or besides its IPs")
	f.StringVar(&s.ArcDomain, "arc-domain", "", "the relay's ARC signing domain (default: arc.domain from the config)")
	f.StringVar(&s.ConnectorName, "connector-name", s.ConnectorName, "name of the inbound connector dualmx manages")
	f.BoolVar(&pilot, "pilot", false, "apply Enhanced Filtering only to the addresses in dualmx's address table (EFUsers)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
