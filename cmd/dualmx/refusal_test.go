// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/router"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestFlipMigratedRefusalGolden: the refusal to flip to migrated is a short
// list of what is missing, one line per command that proves it, offering
// only commands that can work with the config (here: no m365: section, so
// no provision apply), and how to force it.
func TestFlipMigratedRefusalGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proof func(ctx context.Context, st *router.Store) error
	}{
		{"nothing-proven", nil},
		{"probe-and-confirmation", func(ctx context.Context, st *router.Store) error {
			if _, _, err := st.RecordEvidence(ctx, router.Evidence{Address: "scriba@example.nl", Kind: router.ForwardVerified, Ref: "p1", Detail: "probe p1"}); err != nil {
				return err
			}
			if _, _, err := st.RecordEvidence(ctx, router.Evidence{Address: "scriba@example.nl", Kind: router.HolderConfirmed, Detail: "Anna"}); err != nil {
				return err
			}
			return st.RecordDelivery("scriba@example.nl", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath := testState(t)
			for _, args := range [][]string{
				{"address", "add", "scriba@example.nl", "--alias", "scriba@fwd.example.nl"},
				{"address", "flip", "scriba@example.nl", "provisioned"},
				{"address", "flip", "scriba@example.nl", "forwarding"},
				{"address", "flip", "scriba@example.nl", "confirmed"},
			} {
				if out, err := execute(t, append(args, "--config", cfgPath)...); err != nil {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
			}
			if tc.proof != nil {
				cfg, err := config.Load(cfgPath)
				if err != nil {
					t.Fatal(err)
				}
				st, err := router.Open(cfg.DBPath())
				if err != nil {
					t.Fatal(err)
				}
				if err := tc.proof(context.Background(), st); err != nil {
					t.Fatal(err)
				}
				st.Close()
			}
			_, err := execute(t, "address", "flip", "scriba@example.nl", "migrated", "--config", cfgPath)
			if exitCode(err) != 1 {
				t.Fatalf("flip to migrated: exit %d (%v), want 1", exitCode(err), err)
			}
			got := "dualmx: " + plainError(err) + "\n"
			golden := filepath.Join("testdata", "flip-migrated-"+tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("refusal differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
			for i, line := range strings.Split(got, "\n") {
				if len(line) > 120 {
					t.Errorf("line %d is %d characters long: %q", i+1, len(line), line)
				}
			}
			if strings.Contains(got, "provision apply") {
				t.Error("offers provision apply without an m365: section")
			}
		})
	}
}
