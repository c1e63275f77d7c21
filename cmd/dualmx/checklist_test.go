// SPDX-License-Identifier: MIT

package main

import (
	"strings"
	"testing"
)

// TestConfirmAndNextStep: address confirm records the confirmation and moves
// a forwarding address to confirmed (the rule is router.Confirm's); the
// checklist prints the next step with its reason and, on the next line, its
// command, or what is needed where no command can do it.
func TestConfirmAndNextStep(t *testing.T) {
	cfg := testState(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := execute(t, append(args, "--config", cfg)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	run("address", "add", "scriba@example.nl", "--alias", "scriba@fwd.example.nl")
	if out := run("address", "checklist", "scriba@example.nl"); !strings.Contains(out,
		"next: holder's account exists and has signed in: not checked (the config has no m365: section)\n  add one to check them (docs/microsoft-365.md)\n") {
		t.Errorf("checklist of a planned address:\n%s", out)
	}
	run("address", "flip", "scriba@example.nl", "provisioned")
	run("address", "flip", "scriba@example.nl", "forwarding")
	out := run("address", "confirm", "scriba@example.nl", "--by", "Anna", "--note", "by phone")
	if want := "scriba@example.nl: holder confirmed recorded (Anna: by phone)\nscriba@example.nl: forwarding -> confirmed\n"; out != want {
		t.Errorf("confirm printed:\n%s\nwant:\n%s", out, want)
	}
	if out := run("address", "confirm", "scriba@example.nl", "--by", "Anna"); strings.Contains(out, "->") {
		t.Errorf("a second confirmation flipped again:\n%s", out)
	}
}
