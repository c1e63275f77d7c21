// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/config"
)

func newCheckConfigCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "Validate a config file and list every problem (file, line, key, what is wrong)",
		Long: `Validate a config file and list every problem with file, line and key.
Files are checked as the user the command runs as: the key and certificate
files must be readable, and state_dir must be creatable and writable. Run it
as the user that runs dualmx serve (sudo -u dualmx dualmx check-config ...).
Exit status 0: no problem (warnings may be printed); 1: problems listed;
2: no config file to check.`,
		Example: `  dualmx check-config --config /etc/dualmx/dualmx.yaml
  DUALMX_CONFIG=deploy/dualmx.example.yaml dualmx check-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.path()
			if err != nil {
				return err
			}
			cfg, err := config.Load(p)
			var probs, warnings config.Problems
			switch {
			case errors.As(err, &probs):
				// The values may still be enough to look at state_dir.
				cfg, _ = config.LoadSettings(p)
			case err != nil:
				// No file to check (missing, unreadable): no usable config.
				return &exitError{code: 2, err: err}
			default:
				warnings = cfg.Warnings()
			}
			if cfg != nil {
				// Can the user this runs as keep state there?
				for _, pr := range cfg.StateProblems() {
					if pr.Warning {
						warnings = append(warnings, pr)
					} else {
						probs = append(probs, pr)
					}
				}
			}
			out := cmd.OutOrStdout()
			for _, pr := range probs {
				fmt.Fprintln(out, pr.String())
			}
			if len(probs) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", p, len(probs))}
			}
			for _, w := range warnings {
				fmt.Fprintln(out, w.String())
			}
			fmt.Fprintf(out, "%s: ok\n", p)
			return nil
		},
	}
}
