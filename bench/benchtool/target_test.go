// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The stand-in's counts are the benchmark's figures, so they are checked
// against what a real SMTP client saw, connection by connection.
func TestTarget(t *testing.T) {
	tests := []struct {
		name       string
		mode       string
		every      int64
		limit      int64
		atGreeting bool
		sessions   int
		wantCode   []int // per session: 0 = delivered, else the refusal's code
		wantEnh    string
	}{
		{"421 refuses every connection", "421", 0, 0, false, 3, []int{421, 421, 421}, "4.3.2"},
		{"throttle at the greeting, every second", "throttle", 2, 0, true, 5, []int{0, 451, 0, 451, 0}, "4.7.500"},
		{"throttle at RCPT TO, every second", "throttle", 2, 0, false, 4, []int{0, 451, 0, 451}, "4.7.500"},
		{"throttle never", "throttle", 0, 0, true, 3, []int{0, 0, 0}, ""},
		// Sessions one after the other never find one open: the limit is
		// about sessions at once (TestTargetLimit).
		{"limit, sessions in turn", "throttle", 0, 1, true, 3, []int{0, 0, 0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var st targetStats
			srv := newTarget(&st, tt.mode, tt.every, tt.limit, tt.atGreeting)
			go srv.Serve(&throttleListener{Listener: ln, t: srv})
			defer srv.Close()

			delivered, refused := 0, 0
			for i, want := range tt.wantCode {
				err := sendOne(ln.Addr().String())
				var se *smtp.SMTPError
				switch {
				case want == 0 && err == nil:
					delivered++
				case want != 0 && errors.As(err, &se) && se.Code == want:
					refused++
					if got := se.EnhancedCode; tt.wantEnh != "" && enh(got) != tt.wantEnh {
						t.Errorf("session %d: enhanced code %s, want %s", i+1, enh(got), tt.wantEnh)
					}
				default:
					t.Fatalf("session %d: got %v, want code %d", i+1, err, want)
				}
				// The client has its 221 before the server has closed its
				// end: sessions in turn means the next one starts after that.
				deadline := time.Now().Add(30 * time.Second)
				for srv.open.Load() > 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			// The server counts a message once its DATA reply went out.
			deadline := time.Now().Add(30 * time.Second)
			for st.mesg.Load() < int64(delivered) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			got := st.line()
			want := fmt.Sprintf("conns=%d refused=%d mesg=%d", tt.sessions, refused, delivered)
			if got != want {
				t.Errorf("counts %q, want %q", got, want)
			}
		})
	}
}

func enh(c smtp.EnhancedCode) string { return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2]) }

// sendOne delivers one small message in a session of its own.
func sendOne(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("test.bench.localhost"); err != nil {
		return err
	}
	if err := c.Mail("a@example.org", nil); err != nil {
		return err
	}
	if err := c.Rcpt("b@example.nl", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte("Subject: t\r\n\r\nhello\r\n")); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// With -limit K, a connection that finds K sessions open is refused, and
// one that comes after a session closed is served again.
func TestTargetLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var st targetStats
	srv := newTarget(&st, "throttle", 0, 2, true)
	go srv.Serve(&throttleListener{Listener: ln, t: srv})
	defer srv.Close()

	var held []*smtp.Client
	for range 2 {
		c, err := smtp.Dial(ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("test.bench.localhost"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	var se *smtp.SMTPError
	if err := sendOne(ln.Addr().String()); !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("third session at once: %v, want 451", err)
	}
	held[0].Quit()
	deadline := time.Now().Add(30 * time.Second)
	for srv.open.Load() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := sendOne(ln.Addr().String()); err != nil {
		t.Fatalf("after one session closed: %v", err)
	}
	held[1].Quit()
	if got, want := st.line(), "conns=4 refused=1 mesg=1"; got != want {
		t.Errorf("counts %q, want %q", got, want)
	}
}
