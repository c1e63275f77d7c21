// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/standin"
)

// demoAddresses are the two example addresses the demo puts in forwarding.
var demoAddresses = []struct{ address, alias string }{
	{"scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl"},
	{"kerkrentmeester@hervormdputten.nl", "kerkrentmeester@fwd.hervormdputten.nl"},
}

func newDemoCmd() *cobra.Command {
	var dir, smtpAddr, metricsAddr, statusAddr, resolver string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the relay on this machine with a stand-in for Microsoft 365, no set-up needed",
		Long: `Run the whole relay on loopback: a fresh state directory (or --dir), the relay
on 127.0.0.1:2525 (--smtp), a built-in stand-in for the Microsoft 365 endpoint
that writes every message it receives as an .eml file into a folder, metrics on
127.0.0.1:9464 (--metrics), the status page on 127.0.0.1:9465 (--status), and
two example addresses in the forwarding state. A port another program holds:
pick others with these flags (port 0 takes any free port; the start message
says which).

Without --dir the demo works in a new temporary directory and removes it when
it stops; with --dir the files stay.`,
		Example: "  go run ./cmd/dualmx demo\n  dualmx demo --dir /tmp/dualmx-demo",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			err := runDemo(ctx, cmd.OutOrStdout(), dir, smtpAddr, metricsAddr, statusAddr, resolver)
			if errors.Is(err, syscall.EADDRINUSE) {
				err = fmt.Errorf("%w; another program listens there: choose other addresses with --smtp, --metrics and --status (e.g. --smtp 127.0.0.1:2526, or port 0 for any free one)", err)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "state directory for the demo (default: a new temporary directory)")
	cmd.Flags().StringVar(&smtpAddr, "smtp", "127.0.0.1:2525", "address the relay listens on")
	cmd.Flags().StringVar(&metricsAddr, "metrics", "127.0.0.1:9464", "address of the metrics endpoint")
	cmd.Flags().StringVar(&statusAddr, "status", "127.0.0.1:9465", "address of the status page")
	cmd.Flags().StringVar(&resolver, "resolver", "", "DNS server (HOST:PORT) for the arrival checks (default: the system's)")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, dir, smtpAddr, metricsAddr, statusAddr, resolver string) error {
	// A directory the demo made for itself goes when it stops, so repeated
	// runs leave nothing behind; one the user named stays.
	keep := dir != ""
	if !keep {
		d, err := os.MkdirTemp("", "dualmx-demo-")
		if err != nil {
			return err
		}
		dir = d
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	defer func() {
		if keep {
			fmt.Fprintf(out, "\ndualmx demo stopped; its files stay in %s\n", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(out, "\ndualmx demo stopped; could not remove %s: %v\n", dir, err)
			return
		}
		fmt.Fprintf(out, "\ndualmx demo stopped; removed %s (run with --dir DIR to keep the files)\n", dir)
	}()
	inbox := filepath.Join(dir, "m365-inbox")
	if err := os.MkdirAll(inbox, 0o750); err != nil {
		return err
	}
	// The stand-in presents a certificate from a CA made for this run, so the
	// relay delivers with the same STARTTLS and verification it uses for real.
	ca, err := testca.New()
	if err != nil {
		return err
	}
	leaf, err := ca.Leaf("127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	caFile, err := ca.WriteCAFile(dir)
	if err != nil {
		return err
	}
	tenant, err := standin.Start(standin.Options{
		Domain:  "demo-tenant.mail.protection.outlook.test",
		TLS:     &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12},
		MaxSize: 36 * 1024 * 1024,
		Dir:     inbox,
		Keep:    -1,
	})
	if err != nil {
		return fmt.Errorf("stand-in tenant: %w", err)
	}
	defer tenant.Close()

	cfgPath := filepath.Join(dir, "dualmx.yaml")
	cfgText := fmt.Sprintf(`# written by "dualmx demo"; see deploy/dualmx.example.yaml for every key
hostname: relay.demo.localhost
state_dir: %q
listen:
  smtp: %q
  metrics: %q
  status: %q
target:
  host: 127.0.0.1
  port: %d
  tls: require
  ca_file: %q
delivery:
  retry_initial: 5s
  retry_max: 1m
resolver: %q
`, filepath.Join(dir, "state"), smtpAddr, metricsAddr, statusAddr, tenant.Port(), caFile, resolver)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o640); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return err
	}
	if err := seedDemo(ctx, cfg.DBPath()); err != nil {
		return err
	}
	log := newLogger("text", os.Stderr)
	d, err := startDaemon(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	relay := d.smtpAddr.String()
	kept := "removed when the demo stops; --dir DIR keeps them"
	if keep {
		kept = "kept when the demo stops"
	}
	fmt.Fprintf(out, `
dualmx demo is running.

  relay (SMTP)             %s
  metrics                  http://%s/metrics
  status page              http://%s/
  stand-in Microsoft 365   %s (STARTTLS, certificate from %s)
  state and config         %s (%s)

Addresses in the forwarding state (alias -> delivered to):
`, relay, addrString(d.httpAddr), addrString(d.statusAddr), tenant.Addr(), caFile, cfgPath, kept)
	for _, a := range demoAddresses {
		fmt.Fprintf(out, "  %-40s -> %s\n", a.alias, a.address)
	}
	host, port, _ := net.SplitHostPort(relay)
	fmt.Fprintf(out, `
Send a test message, as the old host would forward it:

  swaks --server %s --port %s --from someone@example.org --to %s

It lands in %s/ as an .eml file, unchanged below the fields dualmx adds on
top: Authentication-Results (what it saw on arrival), then Received.
Look around while it runs:

  go run ./cmd/dualmx address list --config %s
  go run ./cmd/dualmx queue list --config %s
  curl -s http://%s/metrics | grep ^dualmx_

Stop with Ctrl-C.
`, host, port, demoAddresses[0].alias, inbox, cfgPath, cfgPath, addrString(d.httpAddr))
	return d.wait()
}

// seedDemo adds the example addresses and walks them to forwarding, through
// the same audited transitions an admin would use.
func seedDemo(ctx context.Context, dbPath string) error {
	st, err := router.Open(dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, a := range demoAddresses {
		if _, err := st.Get(ctx, a.address); err == nil {
			continue
		} else if !errors.Is(err, router.ErrNotFound) {
			return err
		}
		if _, err := st.Add(ctx, a.address, a.alias, a.address, "demo"); err != nil {
			return err
		}
		for _, s := range []router.State{router.Provisioned, router.Forwarding} {
			if _, err := st.Flip(ctx, router.FlipRequest{Address: a.address, To: s, Actor: "demo", Reason: "demo set-up"}, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
