package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
}
