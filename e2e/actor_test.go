// SPDX-License-Identifier: MIT

package e2e

import (
	"strings"
	"testing"
)

// TestSudoUserIsOnlyAClaim: SUDO_USER, which any root shell can set, does
// not name the person in the audit log; it is kept beside the actor as a
// claim.
func TestSudoUserIsOnlyAClaim(t *testing.T) {
	e := newEnv(t, envOptions{})
	t.Setenv("SUDO_USER", "mallory")
	e.mustCLI("address", "add", "scriba@hervormdputten.nl", "--alias", "scriba@fwd.hervormdputten.nl")
	audit := e.show("scriba@hervormdputten.nl").Audit
	if len(audit) != 1 {
		t.Fatalf("audit trail: %+v", audit)
	}
	got := audit[0].Actor
	if strings.HasPrefix(got, "mallory") || !strings.Contains(got, "sudo claims mallory") {
		t.Errorf("actor = %q: SUDO_USER must be recorded only as a claim beside the person", got)
	}
}
