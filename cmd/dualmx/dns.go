// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/dnscheck"
)

// dnsFlags are shared by dns check and the cutover commands, which run the
// same check.
type dnsFlags struct {
	nameservers  []string
	timeout      time.Duration
	queryTimeout time.Duration
	retries      int
}

func (f *dnsFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.nameservers, "nameserver", nil, "ask this server (HOST[:PORT]) instead of the discovered authoritative ones; repeatable")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 60*time.Second, "deadline for the whole check")
	cmd.Flags().DurationVar(&f.queryTimeout, "query-timeout", 2*time.Second, "deadline for one attempt of one query")
	cmd.Flags().IntVar(&f.retries, "retries", 2, "further attempts after a query timed out")
}

func (f *dnsFlags) checker(cfg *config.Config) *dnscheck.Checker {
	c := &dnscheck.Checker{Nameservers: f.nameservers, QueryTimeout: f.queryTimeout, Retries: f.retries}
	if f.retries == 0 {
		c.Retries = -1
	}
	if cfg.Resolver != "" {
		// The configured resolver is only used to find the authoritative
		// servers; the questions themselves go to those servers.
		var d net.Dialer
		c.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, cfg.Resolver)
		}}
	}
	return c
}

func newDNSCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Check the domain's DNS records on every authoritative name server",
	}
	cmd.AddCommand(newDNSCheckCmd(g))
	return cmd
}

func newDNSCheckCmd(g *globalFlags) *cobra.Command {
	var domain, phase string
	var asJSON bool
	var f dnsFlags
	cmd := &cobra.Command{
		Use:   "check [--domain D] [--phase before|after] [--json] [--nameserver HOST[:PORT]]...",
		Short: "Check the records the MX cutover depends on, asking each authoritative server directly",
		Long: `Find the domain's authoritative name servers (the parent's delegation and the
zone's own NS set) and ask each of them directly, without recursion, for the
records the Microsoft 365 cutover depends on: MX, SPF, DKIM, autodiscover, the
MS= verification record, DMARC, the relay's own records (forward domain MX,
forward-confirmed reverse DNS, ARC key), consistency between the servers,
TTL advice and DNSSEC. Expected values come from the cutover and arc sections
of the config.

Exit status: 0 no error found (warnings may be printed), 1 errors found or
the check could not run (no name server answered), 2 a usage error or no
domain to check.`,
		Example: `  dualmx dns check
  dualmx dns check --phase after --json
  dualmx dns check --nameserver ns1.newprovider.example --nameserver ns2.newprovider.example`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			if domain == "" {
				domain = cfg.Cutover.Domain
			}
			if domain == "" {
				return &exitError{code: 2, err: errors.New("no domain: pass --domain or configure cutover.domain")}
			}
			ph, err := dnscheck.ParsePhase(phase)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			src, err := expectationsFor(cfg)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			// From here on a failure is the check's, not the input's: 1.
			exp, err := src.Expected(ctx, domain)
			if err != nil {
				return err
			}
			rep, err := f.checker(cfg).Check(ctx, exp, ph)
			if err != nil {
				return fmt.Errorf("dns check: %w", err)
			}
			if asJSON {
				err = rep.WriteJSON(cmd.OutOrStdout())
			} else {
				err = rep.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if n := rep.Count(dnscheck.Error); n > 0 {
				return &exitError{code: 1, err: fmt.Errorf("dns check of %s (phase %s): %d error(s)", rep.Domain, rep.Phase, n)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "the domain to check (default cutover.domain)")
	cmd.Flags().StringVar(&phase, "phase", "before", "judge for the time before or after the MX change: before|after")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	f.register(cmd)
	return cmd
}
