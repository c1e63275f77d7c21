// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/checklist"
	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/provisioning"
	"github.com/dualmx/dualmx/router"
)

// checklistSources gathers what the checklist reads. Microsoft 365 is asked
// when the config has an m365: section; the desired-state file is read when
// it exists. Without either the tenant steps are "unknown".
func checklistSources(a *admin) (checklist.Sources, error) {
	src := checklist.Sources{Store: a.store}
	if a.spool != nil {
		src.Spool = a.spool
	}
	d, err := provisioning.LoadFile(desiredPath(""))
	switch {
	case err == nil:
		src.Desired = d
	case errors.Is(err, fs.ErrNotExist):
	default:
		return src, &exitError{code: 2, err: err}
	}
	if a.cfg.M365.Enabled {
		t, err := tenantClients(a.cfg)
		if err != nil {
			return src, err
		}
		src.Tenant = t
	}
	return src, nil
}

func tenantClients(cfg *config.Config) (checklist.M365, error) {
	gr, exo, err := m365Clients(cfg)
	if err != nil {
		return checklist.M365{}, &exitError{code: 2, err: err}
	}
	return checklist.M365{Graph: gr, Exchange: exo}, nil
}

func newAddressChecklistCmd(g *globalFlags) *cobra.Command {
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "checklist ADDRESS | --all",
		Short: "Show the migration steps of an address with the evidence for each, and the next step",
		Long: `Show the migration plan of an address as a checklist: the holder's account
exists and has signed in, the shared mailbox exists, the current holder has
access, the forward is verified (address probe), the last delivery through
the relay, the holder's confirmation (address confirm), the old mailbox
removed (address old-removed), and no mail queued or held. Each step shows
its evidence; the last line says what to do next and the command for it.
Flipping to migrated needs evidence for every step, or --force with --reason.`,
		Example: "  dualmx address checklist scriba@hervormdputten.nl\n  dualmx address checklist --all --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if (all && len(args) == 0) || (!all && len(args) == 1) {
				return nil
			}
			return &exitError{code: 2, err: errors.New("name one ADDRESS, or --all")}
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openReader(g, true)
			if err != nil {
				return err
			}
			defer a.close()
			src, err := checklistSources(a)
			if err != nil {
				return err
			}
			addrs := args
			if all {
				list, err := a.store.List(cmd.Context())
				if err != nil {
					return err
				}
				for _, ad := range list {
					addrs = append(addrs, ad.Address)
				}
			}
			var out []checklist.Checklist
			for _, ad := range addrs {
				c, err := checklist.For(cmd.Context(), src, ad)
				if err != nil {
					return err
				}
				out = append(out, c)
			}
			if asJSON {
				if all {
					return writeJSON(cmd.OutOrStdout(), out)
				}
				return writeJSON(cmd.OutOrStdout(), out[0])
			}
			for i, c := range out {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				writeChecklist(cmd.OutOrStdout(), c)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

var statusMark = map[checklist.Status]string{checklist.Done: "[x]", checklist.Missing: "[ ]", checklist.Unknown: "[?]"}

func writeChecklist(w io.Writer, c checklist.Checklist) {
	fmt.Fprintf(w, "%s (%s)", visible.String(c.Address), c.State)
	if c.Holder != "" {
		fmt.Fprintf(w, ", holder %s", visible.String(c.Holder))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range c.Steps {
		fmt.Fprintf(tw, "  %s %s\t%s\n", statusMark[s.Status], s.Title, visible.String(s.Evidence))
	}
	tw.Flush()
	n := c.Next
	if n == nil {
		fmt.Fprintln(w, "next: nothing, the address is migrated")
		return
	}
	step := n.Step
	if n.Reason != "" {
		step += ": " + n.Reason
	}
	how := n.Command
	switch {
	case how == "" && n.Need != "":
		how = n.Need
	case how == "":
		how = "see the evidence above"
	}
	fmt.Fprintf(w, "next: %s\n  %s\n", visible.String(step), visible.String(how))
}

func newAddressConfirmCmd(g *globalFlags) *cobra.Command {
	var by, note string
	cmd := &cobra.Command{
		Use:     "confirm ADDRESS --by NAME",
		Short:   "Record that the holder confirmed both accounts work (step 3); moves forwarding to confirmed",
		Example: `  dualmx address confirm scriba@hervormdputten.nl --by "Anna de Vries"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return statement(cmd, g, args[0], router.HolderConfirmed, by, note)
		},
	}
	cmd.Flags().StringVar(&by, "by", "", "who confirmed (required)")
	cmd.Flags().StringVar(&note, "note", "", "how, e.g. \"by phone\"")
	return cmd
}

func newAddressOldRemovedCmd(g *globalFlags) *cobra.Command {
	var by, note string
	cmd := &cobra.Command{
		Use:     "old-removed ADDRESS --by NAME",
		Short:   "Record the admin's statement that the old host's mailbox is removed (step 4)",
		Example: `  dualmx address old-removed scriba@hervormdputten.nl --by "Jan (Solcon ticket 4711)"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return statement(cmd, g, args[0], router.OldMailboxRemoved, by, note)
		},
	}
	cmd.Flags().StringVar(&by, "by", "", "who states it (required)")
	cmd.Flags().StringVar(&note, "note", "", "details, e.g. the old host's ticket")
	return cmd
}

// statement records an admin's statement as evidence; the holder's
// confirmation also moves a forwarding address to confirmed (router.Confirm).
func statement(cmd *cobra.Command, g *globalFlags, address string, kind router.EvidenceKind, by, note string) error {
	by = strings.TrimSpace(by)
	if by == "" {
		return &exitError{code: 2, err: errors.New("--by NAME is required: the audit log says who")}
	}
	a, err := openAdmin(g, false)
	if err != nil {
		return err
	}
	defer a.close()
	detail := by
	if note != "" {
		detail += ": " + note
	}
	ev := router.Evidence{Address: address, Kind: kind, Actor: a.actor, Detail: detail}
	var flip *router.AuditEntry
	if kind == router.HolderConfirmed {
		ev, flip, err = a.store.Confirm(cmd.Context(), ev)
	} else {
		ev, _, err = a.store.RecordEvidence(cmd.Context(), ev)
	}
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%s: %s recorded (%s)\n", visible.String(ev.Address), strings.ReplaceAll(string(kind), "_", " "), visible.String(detail))
	if flip != nil {
		fmt.Fprintf(w, "%s: %s -> %s\n", visible.String(flip.Address), flip.From, flip.To)
	}
	return nil
}

// migratedMissing is the checklist's tenant half of the migrated guard, for
// address flip.
func migratedMissing(ctx context.Context, a *admin, address string) ([]router.MissingEvidence, error) {
	src, err := checklistSources(a)
	if err != nil {
		return nil, err
	}
	c, err := checklist.For(ctx, src, address)
	if err != nil {
		return nil, err
	}
	return c.TenantMissing(), nil
}

// showChecklist adds the checklist to address show.
func showChecklist(ctx context.Context, a *admin, address string) (*checklist.Checklist, error) {
	src, err := checklistSources(a)
	if err != nil {
		return nil, err
	}
	c, err := checklist.For(ctx, src, address)
	if err != nil {
		return nil, err
	}
	return &c, nil
}
