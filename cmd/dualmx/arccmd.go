// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/arc"
	"github.com/dualmx/dualmx/authcheck"
	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/internal/secretfile"
	"github.com/dualmx/dualmx/internal/visible"
)

func newARCCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "arc",
		Short: "ARC sealing key and chain tools",
	}
	cmd.AddCommand(newARCKeygenCmd(), newARCVerifyCmd(g))
	return cmd
}

func newARCKeygenCmd() *cobra.Command {
	var domain, selector, out, alg string
	cmd := &cobra.Command{
		Use:   "keygen --domain D --selector S --out FILE",
		Short: "Make a new ARC sealing key and print the DNS record to publish",
		Example: `  dualmx arc keygen --domain relay.example.nl --selector arc2026 --out /etc/dualmx/arc.key
  dualmx arc keygen --domain relay.example.nl --selector arc2026ed --algorithm ed25519 --out arc-ed.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if domain == "" || selector == "" || out == "" {
				return &exitError{code: 2, err: errors.New("--domain, --selector and --out are required")}
			}
			key, pemBytes, err := arc.GenerateKey(alg)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			record, err := arc.DNSRecord(key.Public())
			if err != nil {
				return err
			}
			// An existing key is never overwritten: that would silently
			// invalidate the published record.
			if err := secretfile.Create(out, pemBytes); err != nil {
				return fmt.Errorf("write key: %w", err)
			}
			name := selector + "._domainkey." + strings.TrimSuffix(domain, ".")
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Wrote %s (mode 0600). Publish this TXT record:\n\n%s\n\n", out, dnscheck.TXTLine(name+".", 3600, record))
			fmt.Fprintf(w, "Then configure:\n\narc:\n  domain: %s\n  selector: %s\n  key_file: %s\n", domain, selector, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "sealing domain (d=), e.g. relay.example.nl")
	cmd.Flags().StringVar(&selector, "selector", "", "selector (s=), e.g. arc2026")
	cmd.Flags().StringVar(&out, "out", "", "file to write the private key to (must not exist)")
	cmd.Flags().StringVar(&alg, "algorithm", "rsa", "rsa (2048-bit, rsa-sha256) or ed25519 (ed25519-sha256)")
	return cmd
}

func newARCVerifyCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Print the ARC chain verdict of a message file (e.g. one Microsoft 365 received)",
		Long: `Print the ARC chain verdict of a message file. Keys are looked up in DNS: with
--config (or $DUALMX_CONFIG) through the configured resolver, else the system's.
Exit status: 0 for cv=pass or none, 1 for cv=fail, 2 when the file cannot be read.`,
		Example: "  dualmx arc verify message.eml\n  dualmx arc verify --json message.eml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			defer f.Close()
			server := ""
			if p, perr := g.path(); perr == nil {
				cfg, err := config.Load(p)
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				server = cfg.Resolver
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			res := arc.Verify(ctx, f, authcheck.NewResolver(server).LookupTXT)
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "cv=%s instances=%d", res.CV, res.Instance)
				if res.OldestPass > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), " oldest-pass=%d", res.OldestPass)
				}
				if len(res.Domains) > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), " sealers=%s", visible.String(strings.Join(res.Domains, ",")))
				}
				if res.Reason != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "\nreason: %s", visible.String(res.Reason))
				}
				fmt.Fprintln(cmd.OutOrStdout())
			}
			if res.CV == arc.CVFail {
				return &exitError{code: 1, err: errors.New("ARC chain fails")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
