// SPDX-License-Identifier: MIT

package main

import (
	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/provisioning"
)

func newAccessCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Who has access to which shared mailbox",
	}
	cmd.AddCommand(newAccessReportCmd(g))
	return cmd
}

func newAccessReportCmd(g *globalFlags) *cobra.Command {
	var file string
	var asJSON, asCSV bool
	cmd := &cobra.Command{
		Use:   "report [--file F] [--json|--csv]",
		Short: "List every shared mailbox, who holds FullAccess and SendAs now, since and until when, and differences from the file",
		Long: `List every shared mailbox of the tenant with who holds FullAccess and SendAs
now (read from Exchange Online), since when (the holder's from date in the
desired-state file, and when dualmx granted it according to the audit log),
until when, and a status: ok, upcoming, missing (the file says access, the
tenant has none), expired (until date passed, not yet revoked), unexpected
(access the file does not explain) or "not in file" (a shared mailbox the
file does not name).`,
		Example: "  dualmx access report\n  dualmx access report --csv > access.csv",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON && asCSV {
				return &exitError{code: 2, err: errOneFormat}
			}
			d, m, err := openProvisioning(g, file, false)
			if err != nil {
				return err
			}
			defer m.close()
			env := m.env()
			a, err := provisioning.ObserveAll(cmd.Context(), env, d)
			if err != nil {
				return err
			}
			rows := provisioning.Report(d, a, provisioning.DateOf(nowFunc(), d.TimeZone))
			switch {
			case asJSON:
				return provisioning.WriteAccessJSON(cmd.OutOrStdout(), rows)
			case asCSV:
				return provisioning.WriteAccessCSV(cmd.OutOrStdout(), rows)
			}
			return provisioning.WriteAccessText(cmd.OutOrStdout(), rows)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "desired-state file (default $DUALMX_PROVISION_FILE or "+defaultDesiredFile+")")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV")
	return cmd
}
