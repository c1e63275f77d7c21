// SPDX-License-Identifier: MIT

package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/standin"
)

// TestSizeNeverAboveTarget: the relay advertises the lower of its own limit
// and the target's SIZE, so it never accepts what the tenant would refuse.
func TestSizeNeverAboveTarget(t *testing.T) {
	e := newEnv(t, envOptions{tenant: func(o *standin.Options) { o.MaxSize = 2 << 20 }})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	c, err := smtp.Dial(e.smtpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("oldhost.test"); err != nil {
		t.Fatal(err)
	}
	ok, size := c.Extension("SIZE")
	if !ok || size != "2097152" {
		t.Fatalf("SIZE %q advertised; the target allows 2097152 and the config 10485760", size)
	}
	if !strings.Contains(e.scrape(), "dualmx_smtp_max_message_bytes 2.097152e+06") {
		t.Error("metric dualmx_smtp_max_message_bytes does not show the limit in force")
	}
}

// TestFullSpoolFileSystem fills a small tmpfs under the spool: new mail gets
// 452 4.3.1, /healthz reports the spool unwritable, mail accepted before is
// still delivered, and everything recovers when space returns.
func TestFullSpoolFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	spool := filepath.Join(state, "spool")
	if err := os.MkdirAll(spool, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", spool).Run() })

	var hold = make(chan struct{})
	e := newEnv(t, envOptions{stateDir: state, tenant: func(o *standin.Options) {
		o.Hook = func(ev standin.Event) error {
			if ev.Stage == standin.StageMail {
				<-hold // the tenant is slow: accepted mail waits in the spool
			}
			return nil
		}
	}})
	defer func() {
		select {
		case <-hold:
		default:
			close(hold)
		}
	}()
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("before-full")); err != nil {
		t.Fatal(err)
	}
	// Fill the file system.
	filler := filepath.Join(spool, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	big := append(testMessage("while-full"), []byte(strings.Repeat("z", 998)+"\r\n")...)
	err = send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, big)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("full spool: got %v, want 452 4.3.1", err)
	}
	waitFor(t, failsafe, "/healthz to report the full spool", func() bool { return healthz(t, e) == http.StatusServiceUnavailable })
	entries, _ := os.ReadDir(spool)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".tmp-") {
			t.Errorf("half-written file left behind: %s", en.Name())
		}
	}
	// Space returns; the accepted message is delivered, new mail is taken again.
	os.Remove(filler)
	close(hold)
	waitTenant(t, e.tenant, 1)
	if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage("after-full")); err != nil {
		t.Fatalf("after space returned: %v", err)
	}
	waitTenant(t, e.tenant, 2)
	waitFor(t, failsafe, "/healthz to recover", func() bool { return healthz(t, e) == http.StatusOK })
}

func healthz(t *testing.T, e *env) int {
	resp, err := http.Get("http://" + e.httpAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
