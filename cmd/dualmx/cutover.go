// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/cutover"
	"github.com/dualmx/dualmx/internal/visible"
)

func newCutoverCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cutover",
		Short: "Show where the domain stands in the MX cutover, and confirm the go-ahead",
	}
	cmd.AddCommand(newCutoverStatusCmd(g), newCutoverConfirmCmd(g))
	return cmd
}

// cutoverStatus runs the check and evaluates the domain's state.
func cutoverStatus(cmd *cobra.Command, g *globalFlags, f *dnsFlags) (*admin, cutover.Status, error) {
	a, err := openAdmin(g, true)
	if err != nil {
		return nil, cutover.Status{}, err
	}
	if !a.cfg.Cutover.Enabled {
		a.close()
		return nil, cutover.Status{}, &exitError{code: 2, err: errors.New("the config has no cutover section")}
	}
	src, err := expectationsFor(a.cfg)
	if err != nil {
		a.close()
		return nil, cutover.Status{}, &exitError{code: 2, err: err}
	}
	w := &cutover.Watcher{Domain: a.cfg.Cutover.Domain, Checker: f.checker(a.cfg), Expectations: src,
		Addresses: a.store, Spool: a.spool, StateDir: a.cfg.StateDir, QuietPeriod: a.cfg.Cutover.QuietPeriod}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	st, err := w.Status(ctx)
	if err != nil {
		a.close()
		return nil, cutover.Status{}, err // the check could not run: 1
	}
	return a, st, nil
}

func newCutoverStatusCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	var f dnsFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cutover state: preparing, ready, switched, draining or done",
		Long: `Show where the domain stands:
  preparing  addresses not all migrated, or the DNS check (phase before) has errors
  ready      all addresses migrated and the DNS check is clean: confirm, then change the MX
  switched   every authoritative server answers the tenant's MX; resolvers may still
             hold the old MX (until twice its TTL has passed)
  draining   waiting until no mail has reached the relay for cutover.quiet_period
             and the queue is empty
  done       the relay may be stopped
Exit status 1 when the state cannot be known (the DNS check could not run),
2 without a cutover: section.`,
		Example: "  dualmx cutover status\n  dualmx cutover status --json | jq -r .state",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, st, err := cutoverStatus(cmd, g, &f)
			if err != nil {
				return err
			}
			defer a.close()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			writeCutoverStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	f.register(cmd)
	return cmd
}

func writeCutoverStatus(w io.Writer, st cutover.Status) {
	at := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	}
	fmt.Fprintf(w, "domain:          %s\nstate:           %s\n", visible.String(st.Domain), st.State)
	fmt.Fprintf(w, "addresses:       %d of %d migrated\n", st.Migrated, st.Addresses)
	fmt.Fprintf(w, "mx switched:     on %d of %d authoritative servers\n", st.MXSwitched, st.MXServers)
	if st.SwitchedAt != nil {
		fmt.Fprintf(w, "switched at:     %s\nold MX TTL:      %.0f s\nTTL wait until:  %s\n", at(st.SwitchedAt), st.OldMXTTL, at(st.TTLWaitUntil))
		fmt.Fprintf(w, "quiet until:     %s\n", at(st.QuietUntil))
	}
	fmt.Fprintf(w, "last received:   %s\nqueued:          %d\n", at(st.LastReceived), st.Queued)
	fmt.Fprintln(w, "why:")
	for _, r := range st.Reasons {
		fmt.Fprintf(w, "  - %s\n", visible.String(r))
	}
	if len(st.DNSErrors) > 0 {
		fmt.Fprintln(w, "dns errors (details: dualmx dns check):")
		for _, e := range st.DNSErrors {
			fmt.Fprintf(w, "  - %s %s: %s\n", e.Check, visible.String(strings.TrimSpace(e.Name+" "+e.Type)), visible.String(e.Message))
		}
	}
}

func newCutoverConfirmCmd(g *globalFlags) *cobra.Command {
	var reason string
	var force bool
	var f dnsFlags
	cmd := &cobra.Command{
		Use:   "confirm [--force --reason R]",
		Short: "Record the go-ahead for the MX change in the audit log (only when ready)",
		Long: `Record the admin's go-ahead for the MX change in the audit log. It is refused
unless the cutover state is ready; --force with --reason overrides that, and
the audit entry records what was overridden.`,
		Example: `  dualmx cutover confirm
  dualmx cutover confirm --force --reason "koster@ receives no mail; migrating it later"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if force && strings.TrimSpace(reason) == "" {
				return &exitError{code: 2, err: errors.New("--force needs --reason, which goes into the audit log")}
			}
			a, st, err := cutoverStatus(cmd, g, &f)
			if err != nil {
				return err
			}
			defer a.close()
			e, err := cutover.Confirm(cmd.Context(), a.store, st, cutover.ConfirmRequest{Actor: a.actor, Force: force, Reason: reason})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			forced := ""
			if e.Forced {
				forced = " (forced)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cutover of %s confirmed%s in state %s; recorded in the audit log.\nNow change the MX to the tenant's endpoint and follow it with: dualmx cutover status\n", st.Domain, forced, st.State)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "confirm although the state is not ready (needs --reason)")
	cmd.Flags().StringVar(&reason, "reason", "", "why; goes into the audit log (required with --force)")
	f.register(cmd)
	return cmd
}
