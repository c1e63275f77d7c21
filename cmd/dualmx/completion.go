// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/router"
)

// Shell completion offers what belongs in each place: addresses and states
// from the state database (opened read-only, so completing never creates or
// changes anything), queue IDs from the spool, file names only where a file
// belongs, and nothing where the value is new (an alias, a reason).

// argCompletions maps a command path to what its positional arguments are.
func argCompletions(g *globalFlags) map[string]cobra.CompletionFunc {
	addr := g.completeFirst(completeAddresses)
	return map[string]cobra.CompletionFunc{
		"dualmx address show":        addr,
		"dualmx address probe":       addr,
		"dualmx address checklist":   addr,
		"dualmx address confirm":     addr,
		"dualmx address old-removed": addr,
		"dualmx import start":        addr,
		"dualmx import status":       addr,
		"dualmx address flip":        g.completeFlip,
		"dualmx queue show":          g.completeFirst(completeQueueIDs),
		"dualmx queue retry":         g.completeFirst(completeQueueIDs),
		"dualmx queue release":       g.completeFirst(completeQueueIDs),
		"dualmx queue bounce":        g.completeFirst(completeQueueIDs),
		"dualmx queue drop":          g.completeFirst(completeQueueIDs),
		"dualmx arc verify":          fileArg,
		"dualmx import pst":          fileArg,
	}
}

// fileFlags are the flags whose value is a file name.
var fileFlags = map[string]bool{"config": true, "file": true, "out": true, "dir": true, "password-file": true}

// setCompletions wires the completions into every command of the tree.
func setCompletions(root *cobra.Command, g *globalFlags) {
	args := argCompletions(g)
	walkCommands(root, func(c *cobra.Command) {
		if f, ok := args[c.CommandPath()]; ok {
			c.ValidArgsFunction = f
		} else if c.ValidArgsFunction == nil && len(c.ValidArgs) == 0 {
			c.ValidArgsFunction = cobra.NoFileCompletions
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if fileFlags[f.Name] || f.Value.Type() == "bool" {
				return
			}
			if _, ok := c.GetFlagCompletionFunc(f.Name); ok {
				return
			}
			fn := cobra.NoFileCompletions
			if f.Name == "to" { // import pst --to ADDRESS
				fn = func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
					return completeAddresses(g), cobra.ShellCompDirectiveNoFileComp
				}
			}
			if f.Name == "phase" {
				fn = cobra.FixedCompletions([]string{"before", "after"}, cobra.ShellCompDirectiveNoFileComp)
			}
			_ = c.RegisterFlagCompletionFunc(f.Name, fn)
		})
	})
}

func walkCommands(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walkCommands(s, f)
	}
}

func fileArg(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveDefault
}

// completeFirst completes the first positional argument with list, and
// offers nothing after it.
func (g *globalFlags) completeFirst(list func(*globalFlags) []cobra.Completion) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return list(g), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFlip offers an address, then the states it could move to.
func (g *globalFlags) completeFlip(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return completeAddresses(g), cobra.ShellCompDirectiveNoFileComp
	case 1:
		var current router.State
		withReadOnlyState(g, func(ctx context.Context, _ *config.Config, st *router.Store) {
			if a, err := st.Get(ctx, args[0]); err == nil {
				current = a.State
			}
		})
		var out []cobra.Completion
		for _, s := range router.States {
			if s != current {
				out = append(out, string(s))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeAddresses lists the public addresses, each described by its state.
func completeAddresses(g *globalFlags) []cobra.Completion {
	var out []cobra.Completion
	withReadOnlyState(g, func(ctx context.Context, _ *config.Config, st *router.Store) {
		list, err := st.List(ctx)
		if err != nil {
			return
		}
		for _, a := range list {
			out = append(out, cobra.CompletionWithDesc(a.Address, string(a.State)))
		}
	})
	return out
}

// completeQueueIDs lists the spool's message IDs, each described by its state.
func completeQueueIDs(g *globalFlags) []cobra.Completion {
	var out []cobra.Completion
	if a, err := openReader(g, true); err == nil {
		defer a.close()
		if a.spool != nil {
			items, _ := a.spool.List()
			for _, it := range items {
				out = append(out, cobra.CompletionWithDesc(it.ID, string(it.State)+" "+targets(it)))
			}
		}
	}
	return out
}

// withReadOnlyState runs f on the state opened read-only; without a config
// or a state it does nothing: completion has no one to report errors to.
func withReadOnlyState(g *globalFlags, f func(context.Context, *config.Config, *router.Store)) {
	p, err := g.path()
	if err != nil {
		return
	}
	cfg, err := config.LoadSettings(p)
	if err != nil {
		return
	}
	st, err := router.OpenReadOnly(cfg.DBPath(), router.WithBusyTimeout(time.Second))
	if err != nil {
		return
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f(ctx, cfg, st)
}
