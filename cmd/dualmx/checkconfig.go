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
		Example: `  dualmx check-config --config /etc/dualmx/dualmx.yaml
  DUALMX_CONFIG=deploy/dualmx.example.yaml dualmx check-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.path()
			if err != nil {
				return err
			}
			cfg, err := config.Load(p)
			if err != nil {
				var probs config.Problems
				if errors.As(err, &probs) {
					for _, pr := range probs {
						fmt.Fprintln(cmd.OutOrStdout(), pr.String())
					}
					return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", p, len(probs))}
				}
				return &exitError{code: 1, err: err}
			}
			for _, w := range cfg.Warnings() {
				fmt.Fprintln(cmd.OutOrStdout(), w.String())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", p)
			return nil
		},
	}
}
