// SPDX-License-Identifier: MIT

package provisioning

import (
	"os"
	"strings"
	"testing"
)

// The daily timer is what makes expired access end on time: it must run
// apply with --yes (there is no terminal), daily, and catch up after downtime.
func TestSystemdTimerRunsApplyDaily(t *testing.T) {
	svc, err := os.ReadFile("../deploy/systemd/dualmx-provision.service")
	if err != nil {
		t.Fatal(err)
	}
	tim, err := os.ReadFile("../deploy/systemd/dualmx-provision.timer")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=oneshot", "provision apply --yes", "DUALMX_PROVISION_FILE="} {
		if !strings.Contains(string(svc), want) {
			t.Errorf("service lacks %q", want)
		}
	}
	for _, want := range []string{"OnCalendar=*-*-* ", "Persistent=true", "Unit=dualmx-provision.service", "WantedBy=timers.target"} {
		if !strings.Contains(string(tim), want) {
			t.Errorf("timer lacks %q", want)
		}
	}
}
