// SPDX-License-Identifier: MIT

package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

func execDial(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, 200*time.Millisecond)
}

// TestProbeThroughPostfix: Postfix plays the old host with a virtual alias
// forwarding scriba@ to the relay's alias; "address probe --wait" sends
// through it, the relay records "forward verified", the probe is delivered
// to the tenant like any other message, and the checklist shows it.
func TestProbeThroughPostfix(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.start()
	const addr = "scriba@hervormdputten.nl"
	e.addForwarding(addr, "scriba@fwd.hervormdputten.nl")
	old := startOldHost(t, e.smtpAddr(), map[string]string{addr: "scriba@fwd.hervormdputten.nl"})

	out := e.mustCLI("address", "probe", addr, "--via", old.addr, "--wait", "60s")
	if !strings.Contains(out, "forward verified at") || !strings.Contains(out, "arrived at scriba@fwd.hervormdputten.nl") {
		t.Fatalf("probe output:\n%s", out)
	}
	waitTenant(t, e.tenant, 1)
	var got string
	for _, m := range e.tenant.Messages() {
		got += string(m.Data)
	}
	if !strings.Contains(got, "X-Dualmx-Probe: v=1; a=scriba@hervormdputten.nl") || !strings.Contains(got, "oldhost.test") {
		t.Errorf("the tenant did not get the probe through the old host:\n%s", got)
	}
	if m := e.scrape(); !strings.Contains(m, `dualmx_probe_arrivals_total{result="verified"} 1`) {
		t.Errorf("metric not counted")
	}
	var v struct {
		Audit     []struct{ Action, Actor, Detail string }
		Checklist struct {
			Steps []struct{ ID, Status, Evidence string }
		}
	}
	if err := json.Unmarshal([]byte(e.mustCLI("address", "show", addr, "--json")), &v); err != nil {
		t.Fatal(err)
	}
	var audited bool
	for _, a := range v.Audit {
		audited = audited || (a.Action == "forward-verified" && a.Actor == "relay")
	}
	var step string
	for _, s := range v.Checklist.Steps {
		if s.ID == "forward_verified" {
			step = s.Status
		}
	}
	if !audited || step != "done" {
		t.Errorf("address show: audited %v, checklist forward step %q: %+v", audited, step, v)
	}
	if text := e.mustCLI("address", "checklist", addr); !strings.Contains(text, "[x] forward verified (probe)") {
		t.Errorf("checklist:\n%s", text)
	}
}

// TestProbeWrongAlias: the old host forwards to a misspelt alias, the relay
// refuses it, and "probe --wait" fails with the advice.
func TestProbeWrongAlias(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.start()
	const addr = "scriba@hervormdputten.nl"
	e.addForwarding(addr, "scriba@fwd.hervormdputten.nl")
	old := startOldHost(t, e.smtpAddr(), map[string]string{addr: "scirba@fwd.hervormdputten.nl"})

	out, errOut, code := e.cli("address", "probe", addr, "--via", old.addr, "--wait", "4s")
	if code != 1 {
		t.Fatalf("probe with a wrong alias: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"did not arrive", "forward not set", "wrong alias", "must name exactly scriba@fwd.hervormdputten.nl", "relay not reachable"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("advice lacks %q:\n%s", want, errOut)
		}
	}
	if ev := e.mustCLI("address", "checklist", addr); !strings.Contains(ev, "[ ] forward verified (probe)") {
		t.Errorf("checklist after a failed probe:\n%s", ev)
	}
}
