// SPDX-License-Identifier: MIT

//go:build unix

package srs

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/testlog"
	"github.com/dualmx/dualmx/internal/testnet"
)

// TestInteropPostsrsd checks the claim the package makes: with the same
// secret and domain, Debian's postsrsd reverses what Forward makes and
// Reverse accepts what postsrsd makes. It starts its own postsrsd (1.x,
// Postfix tcp_table protocol, one port per direction) on loopback.
func TestInteropPostsrsd(t *testing.T) {
	bin := findPostsrsd(t)
	version := postsrsdVersion(t, bin)
	if !strings.HasPrefix(version, "1.") {
		// 2.x dropped tcp_table for a socketmap and reads a config file
		// instead of flags: the harness below has to learn both first.
		t.Fatalf("postsrsd %s: this test drives postsrsd 1.x (tcp_table); extend startPostsrsd for 2.x's socketmap", version)
	}

	cur, old := randomSecret(t), randomSecret(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "postsrsd.secret")
	// postsrsd reads one secret per line: the first signs, the rest verify.
	if err := os.WriteFile(secretFile, []byte(cur+"\n"+old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ps := startPostsrsd(t, bin, secretFile, testDomain)
	t.Logf("postsrsd %s, forward table %s, reverse table %s", version, ps.forward, ps.reverse)

	ours := &Rewriter{Domain: testDomain, Secret: []byte(cur)}

	// Senders in Postfix's internal (unquoted) form, which is what postsrsd
	// sees behind Postfix.
	senders := []string{
		"user@author.example",
		"first.last+tag@mail.author.example",
		"a=b==c@author.example",
		"John.Doe@Author.Example",
		"john doe@author.example",
		"jürgen@author.example",
		"SRS0=AbCd=XY=author.example=user@first.example",
		"SRS0+AbCd=XY=author.example=user@first.example",
		"SRS1=zzzz=first.example==AbCd=XY=author.example=user@second.example",
	}

	t.Run("dualmx forwards, postsrsd reverses", func(t *testing.T) {
		for _, s := range senders {
			addr := mustForward(t, ours, s)
			want := internal(t, mustReverse(t, ours, addr))
			got, err := ps.get(ps.reverse, internal(t, addr))
			if err != nil || got != want {
				t.Errorf("postsrsd reverse of %q = %q, %v; want %q", addr, got, err, want)
			}
		}
	})

	t.Run("postsrsd forwards, dualmx reverses", func(t *testing.T) {
		for _, s := range senders {
			addr, err := ps.get(ps.forward, s)
			if err != nil {
				t.Fatalf("postsrsd forward of %q: %v", s, err)
			}
			got, err := ours.Reverse(addr)
			if err != nil {
				t.Errorf("Reverse(%q) (postsrsd's for %q): %v", addr, s, err)
				continue
			}
			want, err := ps.get(ps.reverse, addr)
			if err != nil || internal(t, got) != want {
				t.Errorf("Reverse(%q) = %q, postsrsd says %q (%v)", addr, got, want, err)
			}
		}
	})

	t.Run("same bytes", func(t *testing.T) {
		// Within one day both sides must make exactly the same address.
		for _, s := range senders {
			before := internal(t, mustForward(t, ours, s))
			got, err := ps.get(ps.forward, s)
			after := internal(t, mustForward(t, ours, s))
			if err != nil || (got != before && got != after) {
				t.Errorf("postsrsd forward of %q = %q, %v; dualmx made %q", s, got, err, before)
			}
		}
	})

	t.Run("case-folded on the way back", func(t *testing.T) {
		for _, s := range senders[:3] {
			addr, err := ps.get(ps.forward, s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ours.Reverse(strings.ToUpper(addr)); err != nil {
				t.Errorf("Reverse of postsrsd's %q upper-cased: %v", addr, err)
			}
			mine := mustForward(t, ours, s)
			if _, err := ps.get(ps.reverse, strings.ToLower(mine)); err != nil {
				t.Errorf("postsrsd reverse of dualmx's %q lower-cased: %v", mine, err)
			}
		}
	})

	t.Run("rotation", func(t *testing.T) {
		// dualmx still signing with the old secret: postsrsd has it as second line.
		before := &Rewriter{Domain: testDomain, Secret: []byte(old)}
		addr := mustForward(t, before, "user@author.example")
		if got, err := ps.get(ps.reverse, addr); err != nil || got != "user@author.example" {
			t.Errorf("postsrsd reverse of old-secret %q = %q, %v", addr, got, err)
		}
		// dualmx rotated further: postsrsd's current secret is now its previous.
		after := &Rewriter{Domain: testDomain, Secret: randomSecretBytes(t), Previous: [][]byte{[]byte(cur)}}
		addr, err := ps.get(ps.forward, "user@author.example")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := after.Reverse(addr); err != nil || got != "user@author.example" {
			t.Errorf("Reverse(%q) with the secret as previous = %q, %v", addr, got, err)
		}
		// Neither side knows this one.
		stranger := &Rewriter{Domain: testDomain, Secret: randomSecretBytes(t)}
		forged := mustForward(t, stranger, "user@author.example")
		if got, err := ps.get(ps.reverse, forged); err == nil {
			t.Errorf("postsrsd reversed %q signed with an unknown secret to %q", forged, got)
		}
	})

	t.Run("timestamps agree", func(t *testing.T) {
		now := time.Now()
		for _, tt := range []struct {
			age   int
			valid bool
		}{{0, true}, {20, true}, {23, false}, {400, false}} {
			// 23, not 22: a midnight between our clock read and postsrsd's
			// must not flip the answer.
			r := &Rewriter{Domain: testDomain, Secret: []byte(cur), Now: at(now.Add(-time.Duration(tt.age) * day))}
			addr := mustForward(t, r, "user@author.example")
			_, psErr := ps.get(ps.reverse, addr)
			_, ourErr := ours.Reverse(addr)
			if (psErr == nil) != tt.valid || (ourErr == nil) != tt.valid {
				t.Errorf("%d days old %q: postsrsd %v, dualmx %v; want valid=%t", tt.age, addr, psErr, ourErr, tt.valid)
			}
			if !tt.valid && (!errors.Is(ourErr, ErrExpired) || !strings.Contains(psErr.Error(), "out of date")) {
				t.Errorf("%d days old: want expiry on both sides, got postsrsd %v, dualmx %v", tt.age, psErr, ourErr)
			}
		}
	})

	t.Run("forgery refused by both", func(t *testing.T) {
		addr, err := ps.get(ps.forward, "user@author.example")
		if err != nil {
			t.Fatal(err)
		}
		forged := replaceField(addr, 4, "victim")
		_, psErr := ps.get(ps.reverse, forged)
		_, ourErr := ours.Reverse(forged)
		if psErr == nil || !strings.Contains(psErr.Error(), "Hash invalid") || !errors.Is(ourErr, ErrBadHash) {
			t.Errorf("forged %q: postsrsd %v, dualmx %v", forged, psErr, ourErr)
		}
	})

	t.Run("own domain left alone", func(t *testing.T) {
		for _, s := range []string{"postmaster@" + testDomain, mustForward(t, ours, "user@author.example")} {
			got, err := ps.get(ps.forward, s)
			// postsrsd answers 500 for its own valid SRS addresses and the
			// address itself for other local ones; both mean "unchanged".
			if err != nil && !strings.Contains(err.Error(), "Already rewritten") {
				t.Errorf("postsrsd forward of %q: %v", s, err)
			} else if err == nil && got != s {
				t.Errorf("postsrsd forward of %q = %q", s, got)
			}
			if mine := mustForward(t, ours, s); mine != s {
				t.Errorf("Forward(%q) = %q", s, mine)
			}
		}
	})
}

func mustReverse(t *testing.T, r *Rewriter, addr string) string {
	t.Helper()
	got, err := r.Reverse(addr)
	if err != nil {
		t.Fatalf("Reverse(%q): %v", addr, err)
	}
	return got
}

// internal converts a wire-form address to the unquoted form Postfix keeps
// internally and hands to its lookup tables.
func internal(t *testing.T, addr string) string {
	t.Helper()
	local, domain, ok := split(addr)
	if !ok {
		t.Fatalf("%q is not an address", addr)
	}
	raw, err := unquote(local)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return raw + "@" + domain
}

func randomSecretBytes(t *testing.T) []byte { return []byte(randomSecret(t)) }

// randomSecret is shaped like the secret Debian's postinst generates.
func randomSecret(t *testing.T) string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func findPostsrsd(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("postsrsd"); err == nil {
		return p
	}
	// /usr/sbin is often not on a non-root PATH.
	if _, err := os.Stat("/usr/sbin/postsrsd"); err == nil {
		return "/usr/sbin/postsrsd"
	}
	if os.Getenv("CI") == "" {
		t.Skip("postsrsd not installed (apt-get install postsrsd); CI runs this test")
	}
	t.Fatal("postsrsd not installed: CI must apt-get install postsrsd")
	return ""
}

func postsrsdVersion(t *testing.T, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -v: %v: %s", bin, err, out)
	}
	return strings.TrimSpace(string(out))
}

// postsrsd is a running postsrsd 1.x: two Postfix tcp_table servers.
type postsrsd struct {
	forward, reverse string // host:port
}

// startPostsrsd runs postsrsd in the foreground in its own process group, so
// that cleanup also ends the children it forks per connection. It binds port
// 0 for both tables; the test reads the two ports from the kernel and asks
// each which table it is.
func startPostsrsd(t *testing.T, bin, secretFile, domain string) *postsrsd {
	t.Helper()
	cmd := exec.Command(bin,
		"-s"+secretFile, "-d"+domain, "-l127.0.0.1", "-f0", "-r0",
		"-t10", // children idle longer than this exit on their own
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &testlog.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("postsrsd (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
	})
	ps, err := findTables(cmd.Process.Pid, exited, domain, 30*time.Second)
	if err != nil {
		t.Fatalf("postsrsd did not come up: %v; output:\n%s", err, out.String())
	}
	return ps
}

// findTables waits until postsrsd listens on two ports and tells them apart:
// the forward table rewrites an ordinary address, the reverse one refuses it.
func findTables(pid int, exited <-chan error, domain string, timeout time.Duration) (*postsrsd, error) {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("exited early: %v", err)
		default:
		}
		ports, err := testnet.ListeningPorts(pid)
		if err != nil {
			return nil, err
		}
		if len(ports) == 2 {
			ps := &postsrsd{}
			for _, p := range ports {
				addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
				if v, err := ps.get(addr, "someone@example.org"); err == nil && strings.HasSuffix(v, "@"+domain) {
					ps.forward = addr
				} else {
					ps.reverse = addr
				}
			}
			if ps.forward == "" || ps.reverse == "" {
				return nil, fmt.Errorf("cannot tell the tables apart on ports %v", ports)
			}
			return ps, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("listening on %v after %s, want two ports", ports, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get is one Postfix tcp_table lookup: "get KEY\n", answered by "200 VALUE",
// "500 reason" (no such key) or "400 reason" (try again), keys and values
// %XX-encoded. A non-200 answer is returned as an error with its text.
func (ps *postsrsd) get(table, key string) (string, error) {
	conn, err := net.DialTimeout("tcp", table, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("tcp_table %s: %w", table, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(conn, "get %s\n", tableEncode(key)); err != nil {
		return "", fmt.Errorf("tcp_table %s: %w", table, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("tcp_table %s: get %q: %w", table, key, err)
	}
	code, text, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	if code != "200" {
		return "", fmt.Errorf("tcp_table %s: get %q: %s %s", table, key, code, text)
	}
	return tableDecode(text)
}

// tableEncode escapes what Postfix's tcp_table escapes: whitespace, control
// and non-ASCII octets, and '%' itself.
func tableEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func tableDecode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("tcp_table: truncated escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("tcp_table: bad escape in %q", s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
