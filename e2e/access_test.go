// SPDX-License-Identifier: MIT

package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dualmx/dualmx/internal/dnstest"
)

// nobody is the user and group the access tests run commands as: a user
// other than the owner of the state, in the state's group.
const nobody = 65534

// requireRoot: running a command as another user needs root; CI runs as
// root, so there a missing root is a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test runs commands as another user and needs root")
	}
	t.Skip("needs root to run commands as another user")
}

// openToNobody makes dir and everything above it searchable, and everything
// below it readable by the group nobody, as the service's group would be;
// except the probe key, which dualmx makes 0600 whatever the umask and
// refuses otherwise.
func openToNobody(t *testing.T, dir string) {
	t.Helper()
	searchable(dir)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		os.Lchown(p, -1, nobody)
		if d.Name() == "probe.key" {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			extra := fs.FileMode(0o040)
			if d.IsDir() {
				extra = 0o050
			}
			os.Chmod(p, fi.Mode().Perm()|extra)
		}
		return nil
	})
}

// searchable makes dir and every directory above it searchable by anyone.
func searchable(dir string) {
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
}

// groupToNobody gives everything below dir to the group nobody without
// touching a mode: what the group may do is what dualmx's modes allow it.
func groupToNobody(t *testing.T, dir string) {
	t.Helper()
	searchable(dir)
	if err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, -1, nobody)
	}); err != nil {
		t.Fatal(err)
	}
}

// cliAs runs an admin command as uid/gid nobody.
func (e *env) cliAs(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.cliAsEnv(nil, args...)
}

// cliAsEnv is cliAs with more environment variables.
func (e *env) cliAsEnv(vars []string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := exec.Command(binary, append([]string{"--config", e.cfgPath}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=/"}, vars...)
	return run(e.t, cmd)
}

// TestReadOnlyCommandsAsAnotherUser: a user who may read the state but not
// write it (the service user's group) runs the commands that show, with the
// daemon running and stopped; they open the state read-only and leave no
// file behind. A command that changes the state says which user to run it
// as (checkStateOwner), not SQLite's "attempt to write a readonly database".
// check-config, run as that user, says it cannot keep state in state_dir.
func TestReadOnlyCommandsAsAnotherUser(t *testing.T) {
	requireRoot(t)
	base, err := os.MkdirTemp("", "dualmx-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// A sealing key only its owner may read: the commands that only show
	// do not need it, so its mode must not stop them.
	keyFile := filepath.Join(base, "arc.key")
	if out, errOut, code := runBinary(t, nil, "arc", "keygen", "--domain", "relay.test.localhost", "--selector", "arc2026", "--out", keyFile); code != 0 {
		t.Fatalf("arc keygen: %d %s%s", code, out, errOut)
	}
	e := newEnv(t, envOptions{stateDir: filepath.Join(base, "state"),
		extraConfig: fmt.Sprintf("arc:\n  domain: relay.test.localhost\n  selector: arc2026\n  key_file: %q\n", keyFile)})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.mustCLI("address", "add", "koster@hervormdputten.nl", "--alias", "koster@fwd.hervormdputten.nl")
	openToNobody(t, e.dir)
	openToNobody(t, filepath.Dir(binary))

	owned := func() []string {
		var out []string
		filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				if fi, err := d.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Uid == nobody {
					out = append(out, p)
				}
			}
			return nil
		})
		return out
	}
	for _, running := range []bool{true, false} {
		name := "daemon stopped"
		if running {
			name = "daemon running"
			e.start()
		}
		openToNobody(t, filepath.Join(base, "state")) // the daemon's files, as a umask of 027 leaves them
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				args []string
				want string
			}{
				{[]string{"address", "list"}, "koster@hervormdputten.nl"},
				{[]string{"address", "show", "scriba@hervormdputten.nl"}, "state:          forwarding"},
				{[]string{"address", "checklist", "scriba@hervormdputten.nl"}, "next:"},
				{[]string{"queue", "list"}, "ID"},
			} {
				out, errOut, code := e.cliAs(tc.args...)
				if code != 0 || !strings.Contains(out, tc.want) {
					t.Errorf("as nobody, dualmx %s: exit %d, want 0 and %q\n%s%s", strings.Join(tc.args, " "), code, tc.want, out, errOut)
				}
			}
			out, errOut, code := e.cliAs("address", "flip", "koster@hervormdputten.nl", "provisioned")
			if code != 2 || !strings.Contains(errOut, "belongs to root") ||
				!strings.Contains(errOut, "sudo -u root dualmx --config ") || strings.Contains(errOut, "readonly database") {
				t.Errorf("as nobody, a flip: exit %d, want 2 naming the user to run as\n%s%s", code, out, errOut)
			}
			out, errOut, code = e.cliAs("check-config")
			if code != 1 || !strings.Contains(out, "state_dir: user nobody cannot write") || !strings.Contains(out, "sudo -u root dualmx check-config") {
				t.Errorf("as nobody, check-config: exit %d, want 1 naming state_dir\n%s%s", code, out, errOut)
			}
			if files := owned(); len(files) > 0 {
				t.Errorf("commands run as nobody left files it owns: %v", files)
			}
		})
		if running {
			e.stop(syscall.SIGTERM)
		}
	}
	// The state is still the owner's: the daemon starts and takes a flip.
	e.start()
	e.mustCLI("address", "flip", "koster@hervormdputten.nl", "provisioned")
}

// TestTenantReadOnlyCommandsAsAnotherUser: the commands that only show the
// tenant (provision plan, access report, m365 check, the --plan of m365
// setup and teardown) open the state read-only, so a member of the state's
// group may run them and they leave nothing behind; before, they opened it
// to write and refused anyone but the state's owner. The app's secret is
// this user's own here (a file only they may read, as dualmx insists): what
// is tested is the state, not who may sign in.
func TestTenantReadOnlyCommandsAsAnotherUser(t *testing.T) {
	requireRoot(t)
	e := newTenantEnv(t, tenantOptions{desired: desiredState, extraConfig: "cutover:\n  domain: hervormdputten.nl\n  old_mx: [mx.solcon.nl]\n"})
	e.tn.SetArcSealers("forwarder.example")
	e.tn.SetPremium(true)
	e.mustCLI("address", "add", "financien@"+tenantDomain, "--alias", "financien@fwd."+tenantDomain)
	tenantDir := filepath.Dir(e.desired)
	for _, d := range []string{e.dir, filepath.Dir(binary), tenantDir} {
		openToNobody(t, d)
	}
	secret := filepath.Join(tenantDir, "m365.secret")
	if err := os.Chown(secret, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	stateFiles := func() string {
		var b strings.Builder
		filepath.WalkDir(filepath.Join(e.dir, "state"), func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				fi, _ := d.Info()
				st := fi.Sys().(*syscall.Stat_t)
				fmt.Fprintf(&b, "%s uid=%d\n", p, st.Uid)
			}
			return nil
		})
		return b.String()
	}
	before := stateFiles()
	ns := dnstest.Start(t, "")
	relay := []string{"--relay-ip", "203.0.113.10", "--old-host-ip", "198.51.100.0/24", "--arc-domain", "relay.hervormdputten.nl", "--nameserver", ns.Addr()}
	vars := []string{"SSL_CERT_FILE=" + e.caFile, "DUALMX_PROVISION_FILE=" + e.desired}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"provision", "plan"}, "create account anna.devries@hervormdputten.nl"},
		{[]string{"access", "report"}, "1 difference from the desired state."},
		{[]string{"m365", "check"}, "Nothing needed is missing."},
		{append([]string{"m365", "setup", "--plan"}, relay...), "New-InboundConnector"},
		{append([]string{"m365", "teardown", "--plan"}, relay...), "nothing of dualmx's left"},
	} {
		out, errOut, code := e.cliAsEnv(vars, tc.args...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("as nobody, dualmx %s: exit %d, want 0 and %q\n%s%s", strings.Join(tc.args, " "), code, tc.want, out, errOut)
		}
	}
	if after := stateFiles(); after != before {
		t.Errorf("commands run as nobody changed state_dir:\nbefore:\n%safter:\n%s", before, after)
	}
	// Apply changes the state: it is still the owner's, and says so.
	out, errOut, code := e.cliAsEnv(vars, "provision", "apply", "--yes")
	if code != 2 || !strings.Contains(errOut, "belongs to root") {
		t.Errorf("as nobody, provision apply: exit %d, want 2 naming the user to run as\n%s%s", code, out, errOut)
	}
}
