// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/queue"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

func newQueueCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Inspect and act on queued and held messages",
	}
	cmd.AddCommand(newQueueListCmd(g), newQueueShowCmd(g), newQueueRetryCmd(g), newQueueReleaseCmd(g),
		newQueueBounceCmd(g), newQueueDropCmd(g))
	return cmd
}

func newQueueListCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List messages in the spool, held first",
		Example: "  dualmx queue list\n  dualmx queue list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := openReader(g, true)
			if err != nil {
				return err
			}
			defer a.close()
			items := []spool.Item{}
			if a.spool != nil { // else no spool yet: nothing queued
				if items, err = a.spool.List(); err != nil {
					return err
				}
			}
			// Held mail waits for a person, so it comes first; the rest stays in arrival order.
			spool.HeldFirst(items)
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), items)
			}
			if line := waitingLine(a.cfg.TargetStatusPath(), time.Now()); line != "" && len(items) > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tAGE\tFROM\tTO\tATTEMPTS\tLAST REPLY")
			for _, it := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", visible.String(it.ID), it.State, time.Since(it.ReceivedAt).Round(time.Second),
					visible.String(dash(it.From)), visible.String(targets(it)), it.Attempts, visible.String(it.LastError))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newQueueShowCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show one message's envelope, per-recipient state and attempts",
		Example: "  dualmx queue show 20261127T101500-3f2a9c",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openReader(g, true)
			if err != nil {
				return err
			}
			defer a.close()
			if a.spool == nil {
				return fmt.Errorf("%s: no such message (the spool %s does not exist yet)", args[0], a.cfg.SpoolDir())
			}
			it, err := a.spool.Get(args[0])
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), it)
		},
	}
}

func newQueueRetryCmd(g *globalFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "retry ID | --all",
		Short:   "Try a deferred message (or all) again now",
		Example: "  dualmx queue retry 20261127T101500-3f2a9c\n  dualmx queue retry --all",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return &exitError{code: 2, err: fmt.Errorf("give either one ID or --all")}
			}
			a, err := openAdmin(g, true)
			if err != nil {
				return err
			}
			defer a.close()
			if all {
				n, err := a.spool.RetryAll()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d message(s) scheduled for delivery now\n", n)
				return nil
			}
			if err := a.spool.Retry(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s scheduled for delivery now\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every deferred message")
	return cmd
}

// auditedQueueCmd builds release/bounce/drop: each changes the spool and
// writes who did it into the audit log.
func auditedQueueCmd(g *globalFlags, use, short, example, action string, needReason bool,
	do func(out io.Writer, sp *spool.Spool, id, actor, reason string) (spool.Item, error)) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if needReason && reason == "" {
				return &exitError{code: 2, err: fmt.Errorf("--reason is required: it goes into the audit log")}
			}
			a, err := openAdmin(g, true)
			if err != nil {
				return err
			}
			defer a.close()
			who := a.actor
			it, err := do(cmd.OutOrStdout(), a.spool, args[0], who, reason)
			if err != nil {
				return err
			}
			for _, addr := range it.Addresses() {
				if err := a.store.AppendAudit(cmd.Context(), router.AuditEntry{Actor: who, Address: addr, Action: action,
					Reason: reason, Detail: "message " + it.ID + " from <" + it.From + ">"}); err != nil {
					return fmt.Errorf("%s done, but the audit log write failed: %w", action, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", it.ID, action)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why; goes into the audit log")
	return cmd
}

func newQueueReleaseCmd(g *globalFlags) *cobra.Command {
	return auditedQueueCmd(g, "release ID", "Send a held message back to delivery",
		"  dualmx queue release 20261127T101500-3f2a9c", "release", false,
		func(_ io.Writer, sp *spool.Spool, id, _, _ string) (spool.Item, error) {
			it, err := sp.Get(id)
			if err != nil {
				return it, err
			}
			return it, sp.Release(id)
		})
}

func newQueueBounceCmd(g *globalFlags) *cobra.Command {
	return auditedQueueCmd(g, "bounce ID", "Return a message to its sender with a delivery status notification",
		"  dualmx queue bounce 20261127T101500-3f2a9c --reason \"mailbox does not exist yet\"", "bounce", false,
		func(out io.Writer, sp *spool.Spool, id, who, _ string) (spool.Item, error) {
			it, err := sp.Get(id)
			if err != nil {
				return it, err
			}
			dsn, err := sp.Bounce(id, who)
			if err == nil && dsn != "" {
				fmt.Fprintf(out, "delivery status notification %s queued for <%s>\n", dsn, visible.String(it.From))
			}
			return it, err
		})
}

func newQueueDropCmd(g *globalFlags) *cobra.Command {
	return auditedQueueCmd(g, "drop ID --reason TEXT", "Remove a message without delivery or DSN (audited)",
		"  dualmx queue drop 20261127T101500-3f2a9c --reason \"spam that slipped through the old host\"", "drop", true,
		func(_ io.Writer, sp *spool.Spool, id, who, reason string) (spool.Item, error) {
			return sp.Drop(id, who, reason)
		})
}

// waitingLine says why mail waits when the running daemon has the target
// suspended; "" when it is up or no daemon recorded anything.
func waitingLine(path string, now time.Time) string {
	st, ok, err := queue.ReadTargetStatus(path)
	switch {
	case err != nil:
		return "target health unknown: " + visible.String(err.Error())
	case !ok || st.Up:
		return ""
	}
	next := "now"
	if d := st.NextProbe.Sub(now); d > 0 {
		next = "in " + d.Round(time.Second).String()
	}
	return fmt.Sprintf("target suspended since %s (%s ago): %s\nqueued mail waits without connections; next probe %s (as of %s)",
		st.Since.Local().Format(time.DateTime), now.Sub(st.Since).Round(time.Second), visible.String(st.Reason), next,
		st.Updated.Local().Format(time.DateTime))
}

// targets lists an item's recipients at the target, for one table cell.
func targets(it spool.Item) string {
	var b strings.Builder
	for i, r := range it.Recipients {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(r.Target)
	}
	return b.String()
}

// addresses lists the distinct public addresses an item is for, so an admin
// action on it shows up in each address's audit trail.
