// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/authcheck"
	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/probe"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/smtpd"
)

func probeKeyPath(cfg *config.Config) string { return filepath.Join(cfg.StateDir, probe.KeyFile) }

// probeArrivals is the daemon's side of the probe: smtpd reports marked
// messages, the recorder checks the marker and records the evidence.
func probeArrivals(cfg *config.Config, store *router.Store, m *metrics.Metrics, log *slog.Logger) (func(smtpd.Marked), error) {
	key, err := probe.LoadOrCreateKey(probeKeyPath(cfg))
	if err != nil {
		return nil, err
	}
	rec := &probe.Recorder{Key: key, Ledger: store, Metrics: m, Log: log}
	return func(mk smtpd.Marked) {
		rcpts := make([]probe.Recipient, 0, len(mk.Recipients))
		for _, r := range mk.Recipients {
			rcpts = append(rcpts, probe.Recipient{Rcpt: r.Rcpt, Address: r.Address})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := rec.Arrived(ctx, mk.ID, mk.Value, mk.ClientIP, rcpts); err != nil {
			log.Error("recording a forward probe failed", "id", mk.ID, "err", err)
		}
	}, nil
}

func newAddressProbeCmd(g *globalFlags) *cobra.Command {
	var via, from string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "probe ADDRESS [--via HOST:PORT] [--wait DURATION]",
		Short: "Prove the old host's forward: send a marked test message to ADDRESS through the old host",
		Long: `Send a test message to ADDRESS through the domain's current MX (the old host),
which should forward it to the address's alias at the relay. The message carries
an HMAC marker made with the relay's probe key (probe.key in the state
directory), so only dualmx can make one that counts. When the relay receives it
through the alias it records "forward verified" for the address (audit log,
dualmx_probe_arrivals_total) and delivers it like any other message, so the
holder finds it in the shared mailbox.

--via names the old host's SMTP server directly; without it the MX of
ADDRESS's domain is used. With --wait the command waits for the verification
and exits 1 with advice when it does not come in time.`,
		Example: `  dualmx address probe scriba@hervormdputten.nl --wait 5m
  dualmx address probe scriba@hervormdputten.nl --via mx1.solcon.nl:25 --wait 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openAdmin(g, false)
			if err != nil {
				return err
			}
			defer a.close()
			ctx := cmd.Context()
			ad, err := a.store.Get(ctx, args[0])
			if err != nil {
				return err
			}
			key, err := probe.LoadOrCreateKey(probeKeyPath(a.cfg))
			if err != nil {
				return err
			}
			mk, err := probe.New(key, ad.Address, time.Now())
			if err != nil {
				return err
			}
			if from == "" {
				from = "postmaster@" + a.cfg.Hostname
			}
			s := probe.Sender{Via: via, Resolver: authcheck.NewResolver(a.cfg.Resolver), Helo: a.cfg.Hostname}
			host, err := s.Send(ctx, from, ad.Address, probe.Message(mk, from, a.cfg.Hostname))
			if err != nil {
				return err
			}
			if err := a.store.AppendAudit(ctx, router.AuditEntry{Actor: a.actor, Address: ad.Address, Action: "probe-sent",
				Detail: fmt.Sprintf("probe %s via %s", mk.Nonce, host)}); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "probe %s for %s handed to %s; it should arrive at %s\n", mk.Nonce, visible.String(ad.Address), visible.String(host), visible.String(ad.Alias))
			if wait <= 0 {
				fmt.Fprintf(out, "see whether it arrived with: dualmx address checklist %s\n", visible.String(ad.Address))
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			ev, err := probe.Wait(wctx, a.store, mk, 500*time.Millisecond)
			if errors.Is(err, probe.ErrTimeout) {
				return &exitError{code: 1, err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "forward verified at %s: %s\n", ev.At.Local().Format("2006-01-02 15:04:05"), visible.String(ev.Detail))
			return nil
		},
	}
	cmd.Flags().StringVar(&via, "via", "", "the old host's SMTP server as HOST:PORT (default: the MX of ADDRESS's domain, port 25)")
	cmd.Flags().StringVar(&from, "from", "", "envelope and header sender of the probe (default postmaster@ the relay's hostname)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the verification; exit 1 with advice when it does not come")
	return cmd
}
