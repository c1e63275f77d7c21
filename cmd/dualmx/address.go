// SPDX-License-Identifier: MIT

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/checklist"
	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

// admin is what an admin subcommand works on: the state database and the spool.
type admin struct {
	cfg   *config.Config
	store *router.Store
	spool *spool.Spool
	// actor names who runs the command, for the audit log.
	actor string
}

// openAdmin opens the state to change it, as the commands that add, flip,
// release or record do. The user running the command must be able to write
// the state; if not, the error names the user that can.
func openAdmin(g *globalFlags, withSpool bool) (*admin, error) {
	// The keys the config names are the daemon's business (check-config
	// checks them): a command run as the wrong user hears that first.
	cfg, err := loadSettings(g)
	if err != nil {
		return nil, err
	}
	if err := g.checkOwner(cfg); err != nil {
		return nil, err
	}
	if err := cfg.CheckStateAccess(config.WriteState); err != nil {
		return nil, g.stateAccessError(cfg, err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	st, err := router.Open(cfg.DBPath())
	if err != nil {
		return nil, err
	}
	a := &admin{cfg: cfg, store: st, actor: g.actor()}
	if withSpool {
		// A spool that does not exist yet is an empty one; creating the
		// directory is what the daemon would do at its first start.
		if err := os.MkdirAll(cfg.SpoolDir(), 0o750); err != nil {
			st.Close()
			return nil, fmt.Errorf("spool dir: %w", err)
		}
		if err := a.openSpool(); err != nil {
			st.Close()
			return nil, err
		}
	}
	return a, nil
}

// openSpool opens the spool beside the state, as an admin (no daemon).
func (a *admin) openSpool() error {
	sp, err := spool.OpenAdmin(a.cfg.SpoolDir(), nil, spool.WithHostname(a.cfg.Hostname))
	if err != nil {
		return err
	}
	a.spool = sp
	return nil
}

// openReader opens the state only to read it, as the commands that show do:
// it creates and changes nothing, so read access is enough (the service
// user's group, for instance). Without a spool directory yet, a.spool is
// nil: nothing is queued.
func openReader(g *globalFlags, withSpool bool) (*admin, error) {
	cfg, err := loadSettings(g)
	if err != nil {
		return nil, err
	}
	return openReaderFor(g, cfg, withSpool)
}

// openTenantReader is openReader for the commands that show the tenant
// (provision plan, access report, m365 check, the --plan of m365 setup and
// teardown): before the daemon's first start there is no state database,
// and they read it as empty (router.Empty) rather than fail or create one.
func openTenantReader(g *globalFlags) (*admin, error) {
	cfg, err := loadSettings(g)
	if err != nil {
		return nil, err
	}
	// Only a database that is surely not there counts as empty; one that
	// cannot be looked at goes to openReaderFor, which says who may.
	if _, err := os.Stat(cfg.DBPath()); errors.Is(err, fs.ErrNotExist) {
		st, err := router.Empty()
		if err != nil {
			return nil, err
		}
		return &admin{cfg: cfg, store: st}, nil
	}
	return openReaderFor(g, cfg, false)
}

func openReaderFor(g *globalFlags, cfg *config.Config, withSpool bool) (*admin, error) {
	if err := cfg.CheckStateAccess(config.ReadState); err != nil {
		return nil, g.stateAccessError(cfg, err)
	}
	st, err := router.OpenReadOnly(cfg.DBPath())
	if err != nil {
		return nil, err
	}
	a := &admin{cfg: cfg, store: st}
	if withSpool {
		if _, err := os.Stat(cfg.SpoolDir()); errors.Is(err, fs.ErrNotExist) {
			return a, nil
		}
		if !spool.Made(cfg.SpoolDir()) {
			// Opening the spool makes it, owned by whoever runs this.
			if err := g.checkOwner(cfg); err != nil {
				st.Close()
				return nil, err
			}
		}
		if err := a.openSpool(); err != nil {
			st.Close()
			return nil, err
		}
	}
	return a, nil
}

// loadSettings is loadConfig for the admin commands: the files the config
// names (keys, certificates) are not looked at, so a member of the
// service's group, who may not read the keys, can run those that only read,
// and one run as the wrong user is told so rather than about a key.
func loadSettings(g *globalFlags) (*config.Config, error) {
	p, err := g.path()
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadSettings(p)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

// stateAccessError turns a permission problem with the state into advice:
// which user to run the command as. (Another user than state_dir's owner
// was already sent to the owner by checkOwner; this is what is left: a user
// who owns the state but cannot use it, or a reader outside its group.)
func (g *globalFlags) stateAccessError(cfg *config.Config, err error) error {
	var ae *config.AccessError
	if !errors.As(err, &ae) {
		return err
	}
	owner := cfg.StateOwner()
	fromEnv := ""
	if g.config == "" {
		fromEnv = cfg.Path
	}
	switch {
	case owner == "" || owner == ae.User:
		// Nobody to hand over to: the files themselves need fixing.
		return &exitError{code: 2, err: fmt.Errorf("%w; the user that runs dualmx serve needs to own state_dir %s and everything in it", ae, cfg.StateDir)}
	case ae.Need == "read":
		return &exitError{code: 2, err: fmt.Errorf("%w; run this command as %s, or as a member of the state's group:\n  sudo -u %s %s",
			ae, owner, shellQuote(owner), suggestion(g.argv, fromEnv))}
	}
	return &exitError{code: 2, err: fmt.Errorf("%w; the state belongs to %s: run this command as %s:\n  sudo -u %s %s",
		ae, owner, owner, shellQuote(owner), suggestion(g.argv, fromEnv))}
}

func (a *admin) close() { a.store.Close() }

func newAddressCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "address",
		Short: "Manage forwarding addresses and their migration state",
	}
	cmd.AddCommand(newAddressAddCmd(g), newAddressListCmd(g), newAddressShowCmd(g), newAddressFlipCmd(g),
		newAddressProbeCmd(g), newAddressChecklistCmd(g), newAddressConfirmCmd(g), newAddressOldRemovedCmd(g))
	return cmd
}

func newAddressAddCmd(g *globalFlags) *cobra.Command {
	var alias, target string
	cmd := &cobra.Command{
		Use:   "add ADDRESS --alias ALIAS [--target TARGET]",
		Short: "Add an address; it starts in the planned state",
		Example: `  dualmx address add scriba@hervormdputten.nl --alias scriba@fwd.hervormdputten.nl
  dualmx address add koster@hervormdputten.nl --alias koster@fwd.hervormdputten.nl --target koster@hervormdputten.onmicrosoft.com`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if alias == "" {
				return &exitError{code: 2, err: fmt.Errorf("--alias is required: the address the old host forwards to")}
			}
			a, err := openAdmin(g, false)
			if err != nil {
				return err
			}
			defer a.close()
			if target == "" {
				target = args[0]
			}
			ad, err := a.store.Add(cmd.Context(), args[0], alias, target, a.actor)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s (alias %s, target %s) in state %s\n", visible.String(ad.Address), visible.String(ad.Alias), visible.String(ad.Target), ad.State)
			return nil
		},
	}
	cmd.Flags().StringVar(&alias, "alias", "", "the address the old host forwards to, e.g. scriba@fwd.example.nl (required)")
	cmd.Flags().StringVar(&target, "target", "", "the recipient at Microsoft 365 (default: ADDRESS)")
	return cmd
}

// addressView is the JSON shape of an address, stable for scripts.
type addressView struct {
	Address      string               `json:"address"`
	Alias        string               `json:"alias"`
	Target       string               `json:"target"`
	State        string               `json:"state"`
	Created      time.Time            `json:"created"`
	Updated      time.Time            `json:"updated"`
	LastDelivery *time.Time           `json:"last_delivery"`
	Delivered    int64                `json:"delivered"`
	Queued       *int                 `json:"queued,omitempty"`
	Held         *int                 `json:"held,omitempty"`
	Audit        []router.AuditEntry  `json:"audit,omitempty"`
	Checklist    *checklist.Checklist `json:"checklist,omitempty"`
}

func viewOf(ad router.Address) addressView {
	v := addressView{Address: ad.Address, Alias: ad.Alias, Target: ad.Target, State: string(ad.State),
		Created: ad.CreatedAt, Updated: ad.UpdatedAt, Delivered: ad.Delivered}
	if !ad.LastDelivery.IsZero() {
		t := ad.LastDelivery
		v.LastDelivery = &t
	}
	return v
}

func newAddressListCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List addresses with state, alias, target and last delivery",
		Example: "  dualmx address list\n  dualmx address list --json | jq -r '.[] | select(.state==\"forwarding\") | .address'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := openReader(g, false)
			if err != nil {
				return err
			}
			defer a.close()
			list, err := a.store.List(cmd.Context())
			if err != nil {
				return err
			}
			views := make([]addressView, 0, len(list))
			for _, ad := range list {
				views = append(views, viewOf(ad))
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), views)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tSTATE\tALIAS\tTARGET\tLAST DELIVERY\tDELIVERED")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", visible.String(v.Address), v.State, visible.String(v.Alias), visible.String(v.Target), fmtTime(v.LastDelivery), v.Delivered)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAddressShowCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "show ADDRESS",
		Short:   "Show one address: state, alias, target, last delivery, counts and the audit trail",
		Example: "  dualmx address show scriba@hervormdputten.nl",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openReader(g, true)
			if err != nil {
				return err
			}
			defer a.close()
			ad, err := a.store.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			v := viewOf(ad)
			var q, h int
			if a.spool != nil { // else no spool yet, nothing queued
				if q, h, err = a.spool.Pending(ad.Address); err != nil {
					return err
				}
			}
			v.Queued, v.Held = &q, &h
			if v.Audit, err = a.store.Audit(cmd.Context(), ad.Address); err != nil {
				return err
			}
			if v.Checklist, err = showChecklist(cmd.Context(), a, ad.Address); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "address:        %s\nstate:          %s\nalias:          %s\ntarget:         %s\n", visible.String(v.Address), v.State, visible.String(v.Alias), visible.String(v.Target))
			fmt.Fprintf(w, "last delivery:  %s\ndelivered:      %d\nqueued:         %d\nheld:           %d\n", fmtTime(v.LastDelivery), v.Delivered, q, h)
			fmt.Fprintln(w, "audit trail:")
			for _, e := range v.Audit {
				fmt.Fprintf(w, "  %s  %-8s %-10s %s -> %s  %s\n", e.At.Local().Format("2006-01-02 15:04:05"), visible.String(e.Action), visible.String(e.Actor),
					dash(string(e.From)), dash(string(e.To)), visible.String(e.Reason))
			}
			fmt.Fprint(w, "checklist: ")
			writeChecklist(w, *v.Checklist)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAddressFlipCmd(g *globalFlags) *cobra.Command {
	var reason string
	var force bool
	cmd := &cobra.Command{
		Use:   "flip ADDRESS STATE",
		Short: "Move an address to another state (planned, provisioned, forwarding, confirmed, migrated)",
		Long: `Move an address to another state. Forward moves go one step at a time:
planned -> provisioned -> forwarding -> confirmed -> migrated. Going back needs
--reason. Flipping to migrated is refused while mail for the address is queued
or held, before any delivery through the relay has succeeded, or while a step
of "dualmx address checklist" lacks evidence, unless --force with --reason.
Every transition is written to the audit log.`,
		Example: `  dualmx address flip scriba@hervormdputten.nl forwarding
  dualmx address flip scriba@hervormdputten.nl provisioned --reason "old host forward not set yet"
  dualmx address flip koster@hervormdputten.nl migrated --force --reason "address never receives mail"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			to, err := router.ParseState(args[1])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			a, err := openAdmin(g, true)
			if err != nil {
				return err
			}
			defer a.close()
			req := router.FlipRequest{Address: args[0], To: to, Reason: reason, Actor: a.actor, Force: force}
			if to == router.Migrated {
				if req.Missing, err = migratedMissing(cmd.Context(), a, args[0]); err != nil {
					return err
				}
			}
			e, err := a.store.Flip(cmd.Context(), req, a.spool)
			var te *router.TransitionError
			if errors.As(err, &te) && te.Refusal == router.RefusedSameState {
				// What was asked is already so: not a failure for a script.
				fmt.Fprintf(cmd.OutOrStdout(), "%s is already %s; nothing to do\n", te.Address, te.From)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s -> %s\n", visible.String(e.Address), e.From, e.To)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required for going back and with --force); goes into the audit log")
	cmd.Flags().BoolVar(&force, "force", false, "override a refused transition (needs --reason)")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
