// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/provisioning"
)

func TestApplyConfirmation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		input     string
		terminal  bool
		yes       bool
		wantErr   string
		wantAsked bool
	}{
		{name: "no terminal, no --yes: refused", wantErr: "pass --yes"},
		{name: "no terminal, --yes", yes: true},
		{name: "terminal, yes", input: "yes\n", terminal: true, wantAsked: true},
		{name: "terminal, YES with blanks", input: "  YES \n", terminal: true, wantAsked: true},
		{name: "terminal, anything else", input: "y\n", terminal: true, wantErr: "not yes", wantAsked: true},
		{name: "terminal, end of input", terminal: true, wantErr: "not yes", wantAsked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := confirm(strings.NewReader(tc.input), &out, tc.terminal, tc.yes)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errNoConfirmation)) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
			if asked := strings.Contains(out.String(), "Apply these changes?"); asked != tc.wantAsked {
				t.Errorf("asked=%v", asked)
			}
		})
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(strings.NewReader("yes\n")) {
		t.Error("a reader is not a terminal")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
	// A character device, but nobody there to answer or to watch.
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Errorf("%s is not a terminal", os.DevNull)
	}
}

// TestProvisionPlanHelp: provision plan --help names the default file and
// shows its format with an example the parser takes.
func TestProvisionPlanHelp(t *testing.T) {
	out, err := execute(t, "provision", "plan", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{defaultDesiredFile, "$DUALMX_PROVISION_FILE", "YAML", "docs/microsoft-365.md"} {
		if !strings.Contains(out, want) {
			t.Errorf("provision plan --help does not name %q:\n%s", want, out)
		}
	}
	// The example is the indented block after "In short:".
	_, rest, ok := strings.Cut(out, "In short:\n\n")
	if !ok {
		t.Fatalf("no example in:\n%s", out)
	}
	example, _, _ := strings.Cut(rest, "\n\n")
	var lines []string
	for _, l := range strings.Split(example, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	f := filepath.Join(t.TempDir(), "provision.yaml")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := provisioning.LoadFile(f)
	if err != nil {
		t.Fatalf("the example in the help does not load: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if len(d.People) != 1 || len(d.Functions) != 1 || len(d.Functions[0].Holders) != 1 {
		t.Errorf("the example loaded as %+v", d)
	}
}
