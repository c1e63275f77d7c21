// SPDX-License-Identifier: MIT

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dualmx/dualmx/internal/testnet"
)

// oldHost is a Postfix instance with its own config and queue directories,
// listening on loopback, playing the old mail host: it accepts mail for
// hervormdputten.nl and forwards addresses by virtual alias to the relay.
type oldHost struct {
	dir, addr string
}

// startOldHost starts Postfix forwarding each key of aliases to its value,
// delivering the forward domain to relay (host:port); transports adds
// transport_maps entries ("domain=transport:nexthop"). Postfix needs root; a
// machine without it skips, unless CI=true, where that is a failure.
func startOldHost(t *testing.T, relay string, aliases map[string]string, transports ...string) *oldHost {
	t.Helper()
	pf, err := exec.LookPath("postfix")
	if err != nil {
		pf = "/usr/sbin/postfix"
		if _, err := os.Stat(pf); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("postfix is not installed (Debian package postfix); CI needs it")
			}
			t.Skip("postfix not installed")
		}
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the Postfix test needs root")
		}
		t.Skip("postfix needs root")
	}
	pu, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("no postfix user: %v", err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	// Postfix's daemons run as the postfix user and must reach the queue, so
	// the directory is not t.TempDir (0700 parents).
	dir, err := os.MkdirTemp("", "dualmx-oldhost-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	for _, d := range []string{"etc", "queue", "data"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.Chown(filepath.Join(dir, "data"), uid, -1)
	var va, rd []string
	for k, v := range aliases {
		va = append(va, k+"="+v)
	}
	_, relayPort, _ := strings.Cut(relay, ":")
	rd = append(rd, "fwd.hervormdputten.nl=smtp:[127.0.0.1]:"+relayPort)
	rd = append(rd, transports...)
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
mail_owner = postfix
setgid_group = postdrop
myhostname = oldhost.test
mydomain = oldhost.test
myorigin = oldhost.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_alias_domains = hervormdputten.nl
virtual_alias_maps = inline:{ %[2]s }
transport_maps = inline:{ %[3]s }
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_tls_security_level = none
smtpd_tls_security_level = none
`, dir, strings.Join(va, ", "), strings.Join(rd, ", "))
	// Port 0: Postfix binds a free port and the test reads which from the
	// kernel, so no other test can take it in between.
	master := "127.0.0.1:0 inet n - n - - smtpd\n" + `pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`
	os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(main), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(master), 0o644)
	h := &oldHost{dir: dir}
	if out, err := exec.Command(pf, "-c", filepath.Join(dir, "etc"), "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		os.RemoveAll(dir)
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		exec.Command(pf, "-c", filepath.Join(dir, "etc"), "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("postfix log:\n%s", log)
		}
		os.RemoveAll(dir)
	})
	waitFor(t, failsafe, "postfix listening", func() bool {
		pid, err := os.ReadFile(filepath.Join(dir, "queue", "pid", "master.pid"))
		if err != nil {
			return false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(pid)))
		if err != nil {
			return false
		}
		ports, err := testnet.ListeningPorts(n)
		if err != nil || len(ports) == 0 {
			return false
		}
		if len(ports) > 1 {
			t.Fatalf("postfix listens on %v; its master.cf has one TCP service", ports)
		}
		h.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		return true
	})
	c, err := execDial(h.addr)
	if err != nil {
		t.Fatalf("postfix at %s: %v", h.addr, err)
	}
	c.Close()
	return h
}
