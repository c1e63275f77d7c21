// SPDX-License-Identifier: MIT

package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const unitPath = "systemd/dualmx.service"

// shutdownGrace mirrors cmd/dualmx's shutdownGrace; TestSystemdStopTimeout
// reads the constant from serve.go so the two cannot drift apart silently.
func shutdownGrace(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("../cmd/dualmx/serve.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const shutdownGrace = (\d+) \* time\.Second`).FindSubmatch(b)
	if m == nil {
		t.Fatal("shutdownGrace not found in cmd/dualmx/serve.go")
	}
	d, err := time.ParseDuration(string(m[1]) + "s")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// unitDirectives reads the [Service] section: key → values in order.
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", unitPath, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestSystemdHardening: the unit keeps the hardening a mail daemon deserves.
func TestSystemdHardening(t *testing.T) {
	d := unitDirectives(t)
	for key, want := range map[string]string{
		"User":                    "dualmx",
		"Group":                   "dualmx",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"StateDirectory":          "dualmx",
		"Restart":                 "on-failure",
		"RestrictSUIDSGID":        "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
	} {
		got := d["Service."+key]
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", key, got, want)
		}
	}
	if got := d["Service.ReadWritePaths"]; len(got) != 1 || got[0] != "/var/lib/dualmx" {
		t.Errorf("ReadWritePaths=%v, want only the state directory", got)
	}
	if len(d["Service.PrivateUsers"]) > 0 {
		t.Error("PrivateUsers= breaks binding port 25 with CAP_NET_BIND_SERVICE")
	}
	for _, v := range d["Service.ExecStart"] {
		if !strings.Contains(v, " serve ") {
			t.Errorf("ExecStart=%s does not run dualmx serve", v)
		}
	}
}

// TestSystemdStopTimeout: systemd waits longer than dualmx's graceful
// shutdown before it sends SIGKILL.
func TestSystemdStopTimeout(t *testing.T) {
	d := unitDirectives(t)
	v := d["Service.TimeoutStopSec"]
	if len(v) != 1 {
		t.Fatalf("TimeoutStopSec=%v, want one value", v)
	}
	stop, err := time.ParseDuration(v[0])
	if err != nil {
		t.Fatalf("TimeoutStopSec=%s: %v", v[0], err)
	}
	grace := shutdownGrace(t)
	if stop <= grace || stop > grace+time.Minute {
		t.Errorf("TimeoutStopSec=%s, want a little more than the %s graceful shutdown", stop, grace)
	}
	if got := d["Service.KillSignal"]; len(got) > 0 && got[0] != "SIGTERM" {
		t.Errorf("KillSignal=%s; dualmx stops gracefully on SIGTERM", got[0])
	}
}

// TestSystemdAnalyze runs systemd-analyze verify on the unit, and
// systemd-analyze security to keep its exposure level low. The binary the
// unit names does not exist here, so a copy of the unit points at a stand-in.
func TestSystemdAnalyze(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "dualmx")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	if n := strings.Count(unit, "/usr/local/bin/dualmx"); n != 2 {
		t.Fatalf("the unit names /usr/local/bin/dualmx %d times, want 2 (ExecStartPre and ExecStart)", n)
	}
	unit = strings.ReplaceAll(unit, "/usr/local/bin/dualmx", stand)
	path := filepath.Join(dir, "dualmx.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	// Outside a booted systemd, verify may only miss the default targets.
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, "Unit sysinit.target not found") {
			problems = append(problems, l)
		}
	}
	if len(problems) > 0 || (err != nil && len(out) == 0) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--threshold=25", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.5 (%v)\n%s", err, out)
	}
}

// TestSystemdBackupUnits: the backup service and its timer pass
// systemd-analyze verify (every program they run exists: .ci/run installs
// sqlite3), the service is locked down, runs as dualmx with a umask that
// keeps the copies private, and writes nowhere but /var/backups/dualmx.
// e2e's TestBackupAndRestore runs its commands against a live relay.
func TestSystemdBackupUnits(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	requireTool(t, "sqlite3", "sqlite3")
	dir := t.TempDir()
	for _, f := range []string{"dualmx-backup.service", "dualmx-backup.timer"} {
		b, err := os.ReadFile(filepath.Join("systemd", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	svc := filepath.Join(dir, "dualmx-backup.service")
	out, err := exec.Command(sa, "verify", svc, filepath.Join(dir, "dualmx-backup.timer")).CombinedOutput()
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, "Unit sysinit.target not found") {
			problems = append(problems, l)
		}
	}
	if len(problems) > 0 || (err != nil && len(out) == 0) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := exec.Command(sa, "security", "--offline=true", "--threshold=15", svc).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: exposure above 1.5 (%v)\n%s", err, out)
	}
	b, _ := os.ReadFile(svc)
	unit := string(b)
	for _, want := range []string{"\nUser=dualmx\n", "\nUMask=0077\n", "\nReadWritePaths=/var/backups/dualmx\n", "\nProtectSystem=strict\n", "sqlite3 -readonly /var/lib/dualmx/state.db \".backup "} {
		if !strings.Contains(unit, want) {
			t.Errorf("dualmx-backup.service lacks %q", strings.TrimSpace(want))
		}
	}
}
