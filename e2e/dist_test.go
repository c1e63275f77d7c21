// SPDX-License-Identifier: MIT

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDist: the binary scripts/dist.sh made (TestMain built the one every
// test here runs) says its version, which is git's description of the
// checkout, and its checksum file verifies with sha256sum -c, as the install
// guide tells an admin to do on the server.
func TestDist(t *testing.T) {
	want := "dev"
	if out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		want = strings.TrimSpace(string(out))
	}
	dir, name := filepath.Split(binary)
	if wantName := "dualmx-" + want + "-" + runtime.GOOS + "-" + runtime.GOARCH + "-" + distKind; name != wantName {
		t.Errorf("dist.sh made %s, want %s", name, wantName)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(binary, args...).Output()
		if err != nil {
			t.Fatalf("dualmx %s: %v", args[0], err)
		}
		if first, _, _ := strings.Cut(string(out), "\n"); first != "dualmx "+want {
			t.Errorf("dualmx %s prints %q, want %q", args[0], first, "dualmx "+want)
		}
	}
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if kind := map[string]string{"cgo": "cgo: ARC sealing signs through the system's OpenSSL 3", "static": "static (CGO_ENABLED=0)"}[distKind]; !strings.Contains(string(out), kind) {
		t.Errorf("dualmx version does not say the build is %s:\n%s", distKind, out)
	}

	sumFile, err := os.ReadFile(binary + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got, wantLine := string(sumFile), hex.EncodeToString(sum[:])+"  "+name+"\n"; got != wantLine {
		t.Errorf("%s.sha256 = %q, want %q", name, got, wantLine)
	}
	check := exec.Command("sha256sum", "-c", name+".sha256")
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), name+": OK") {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
}

// TestDistRefusesBadArguments: the script stops with status 2 before
// building anything when it is asked for what it cannot do.
func TestDistRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"},
		{"--version", "1.0 beta"},
		{"--version", "$(id)"},
		{"--out"},
	} {
		cmd := exec.Command("../scripts/dist.sh", args...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("dist.sh %s: %v, want exit 2\n%s", strings.Join(args, " "), err, out)
		}
	}
	cross := exec.Command("../scripts/dist.sh", "--cgo", "--out", t.TempDir())
	cross.Env = append(os.Environ(), "GOARCH=riscv64")
	if runtime.GOARCH == "riscv64" {
		cross.Env = append(os.Environ(), "GOARCH=amd64")
	}
	out, err := cross.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--static") {
		t.Errorf("dist.sh --cgo for another architecture: %v, want exit 2 naming --static\n%s", err, out)
	}
}
