// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

var msgIDRe = regexp.MustCompile(`Message-ID: <([^>]+)>`)

// TestSIGKILLLosesNothing kills the daemon with SIGKILL at random moments
// while clients send a stream of messages (bounded in count and time; the
// senders start no new message once the last kill is done, so the kills fall
// under load however fast the relay is), restarts it each time, and then
// checks that every message that got a 250 reached the tenant. A message
// may arrive twice only when a delivery was cut between the tenant's 250 and
// the spool removal; those duplicates are counted and reported.
func TestSIGKILLLosesNothing(t *testing.T) {
	const (
		senders     = 8
		maxMessages = 20000
		kills       = 25
	)
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()

	var mu sync.Mutex
	acked := map[string]bool{}
	started := 0
	var killing atomic.Bool
	killing.Store(true)
	next := make(chan int, maxMessages)
	for i := 0; i < maxMessages; i++ {
		next <- i
	}
	close(next)
	stop := time.Now().Add(2 * time.Minute) // bound on the whole stream
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if !killing.Load() {
					return
				}
				mu.Lock()
				started++
				mu.Unlock()
				id := fmt.Sprintf("kill-%05d", i)
				for time.Now().Before(stop) {
					err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage(id))
					if err == nil {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
						break
					}
					if se, ok := err.(*smtp.SMTPError); ok && se.Code >= 500 {
						t.Errorf("%s: permanent refusal %v", id, err)
						break
					}
					time.Sleep(20 * time.Millisecond) // the daemon is down: retry, as the old host would
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	killed, underLoad := 0, 0
	for killed < kills {
		select {
		case <-done:
		case <-time.After(time.Duration(100+rand.IntN(300)) * time.Millisecond):
		}
		select {
		case <-done:
		default:
			underLoad++
		}
		e.stop(syscall.SIGKILL)
		killed++
		e.start()
	}
	killing.Store(false)
	<-done
	mu.Lock()
	nAcked, nStarted := len(acked), started
	mu.Unlock()
	if nAcked != nStarted {
		t.Fatalf("only %d of %d messages were acknowledged within the time bound", nAcked, nStarted)
	}
	if nAcked < 500 {
		t.Fatalf("only %d messages sent in %d kills: too few to mean anything", nAcked, kills)
	}
	// After the last restart every acknowledged message must arrive.
	seen := map[string]int{}
	waitFor(t, 90*time.Second, "every acknowledged message at the tenant", func() bool {
		for k := range seen {
			delete(seen, k)
		}
		for _, m := range e.tenant.Messages() {
			if sm := msgIDRe.FindSubmatch(m.Data); sm != nil {
				seen[string(bytes.TrimSuffix(sm[1], []byte("@example.org")))]++
			}
		}
		for id := range acked {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	// Each copy is the message as sent, below the fields the relay adds:
	// spool files are reused, and no copy may carry another's bytes.
	for _, m := range e.tenant.Messages() {
		if sm := msgIDRe.FindSubmatch(m.Data); sm == nil {
			t.Errorf("a delivered message without its Message-ID: %q", m.Data)
		} else if id := string(bytes.TrimSuffix(sm[1], []byte("@example.org"))); !bytes.HasSuffix(m.Data, testMessage(id)) {
			t.Errorf("%s delivered damaged: %q", id, m.Data)
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("SIGKILL run: %d messages acknowledged, %d kills (%d while clients were sending), %d delivered, 0 lost, %d duplicates", nAcked, killed, underLoad, len(seen), dups)
	if underLoad < kills*3/4 {
		t.Errorf("only %d of %d kills came while clients were sending", underLoad, kills)
	}
	// A duplicate needs a delivery cut between the tenant's 250 and the spool
	// removal; there can be at most a few per kill.
	if dups > kills*8 {
		t.Errorf("%d duplicates for %d kills: more than interrupted deliveries explain", dups, kills)
	}
}

// TestSIGTERMGraceful: on SIGTERM a session inside DATA still gets its 250, an
// idle session gets a 421, and the process exits within the bound.
func TestSIGTERMGraceful(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()

	idle, err := smtp.Dial(e.smtpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := idle.Hello("idle.test"); err != nil {
		t.Fatal(err)
	}

	busy, err := smtp.Dial(e.smtpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := busy.Mail("author@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt("scriba@fwd.hervormdputten.nl", nil); err != nil {
		t.Fatal(err)
	}
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	msg := testMessage("sigterm-1")
	if _, err := w.Write(msg[:40]); err != nil {
		t.Fatal(err)
	}

	exited := make(chan time.Duration, 1)
	go func() {
		_, took := e.stop(syscall.SIGTERM)
		exited <- took
	}()
	time.Sleep(300 * time.Millisecond) // SIGTERM is being handled while DATA is open
	if _, err := w.Write(msg[40:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("message in DATA during SIGTERM was not accepted: %v", err)
	}
	// The idle session was told to go away.
	if err := idle.Noop(); smtpCode(err) != 421 {
		t.Errorf("idle session: got %v, want 421", err)
	}
	select {
	case took := <-exited:
		if took > 25*time.Second {
			t.Errorf("shutdown took %s", took)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("dualmx did not exit after SIGTERM")
	}
	// Accepted before the exit: it is delivered now or after the next start.
	e.start()
	waitTenant(t, e.tenant, 1)
}

// TestShutdownRemovesReusedFiles: the files of delivered messages that the
// daemon keeps for reuse are removed at a clean shutdown; none of that mail
// stays on disk after dualmx stops.
func TestShutdownRemovesReusedFiles(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	for i := range 3 {
		id := fmt.Sprintf("pool-%d", i)
		if err := send(e.smtpAddr(), "author@example.org", []string{"scriba@fwd.hervormdputten.nl"}, testMessage(id)); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(e.dir, "state", "spool")
	pooled := func() []string {
		m, err := filepath.Glob(filepath.Join(spool, ".tmp-free-*"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	waitFor(t, failsafe, "delivered messages' files kept for reuse", func() bool {
		return len(e.tenant.Messages()) == 3 && len(pooled()) > 0
	})
	if exited, _ := e.stop(syscall.SIGTERM); !exited {
		t.Fatal("dualmx did not exit on SIGTERM")
	}
	if left := pooled(); len(left) != 0 {
		t.Errorf("after shutdown the spool still holds %v", left)
	}
}
