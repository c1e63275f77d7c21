// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. Beyond "never panics" it checks
// the contract callers rely on: a nil error means a config that validates,
// and a non-nil error is a non-empty Problems list of errors, each located.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "deploy", "dualmx.example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, tc := range badCases {
		f.Add([]byte(tc.yaml))
	}
	path := filepath.Join(f.TempDir(), "fuzz.yaml")

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(path, data)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate refuses:\n%v", verr)
			}
			if !filepath.IsAbs(c.StateDir) || c.Delivery.RetryMax < c.Delivery.RetryInitial {
				t.Fatalf("accepted config breaks an invariant: %+v", c)
			}
			_ = c.Warnings()
			_ = c.LogValue()
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error is not a non-empty Problems: %#v", err)
		}
		for _, p := range ps {
			if p.Warning {
				t.Fatalf("warning returned as an error: %v", p)
			}
			if p.Line == 0 && p.Key == "" && p.File == path {
				// A problem with neither line nor key cannot be found in
				// the file; only a syntax error the library could not place
				// may be like that.
				if len(p.Msg) < 12 || p.Msg[:12] != "invalid YAML" {
					t.Fatalf("problem without a location: %v", p)
				}
			}
		}
	})
}
