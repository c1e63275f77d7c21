// SPDX-License-Identifier: MIT

package standin

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dualmx/dualmx/internal/testca"
	"github.com/emersion/go-smtp"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func serverTLS(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.ServerTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return srv, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
}

// send runs one transaction and returns the client for extension checks.
func send(t *testing.T, s *Server, clientTLS *tls.Config, from string, to []string, body string) (*smtp.Client, error) {
	t.Helper()
	var c *smtp.Client
	var err error
	if clientTLS != nil {
		c, err = smtp.DialStartTLS(s.Addr(), clientTLS)
	} else {
		c, err = smtp.Dial(s.Addr())
	}
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Mail(from, nil); err != nil {
		return c, err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return c, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return c, err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return c, err
	}
	return c, w.Close()
}

func TestAcceptRecordAndStore(t *testing.T) {
	dir := t.TempDir()
	srvTLS, cliTLS := serverTLS(t)
	s := start(t, Options{TLS: srvTLS, Dir: dir, MaxSize: 1 << 20})
	body := "Subject: hi\r\n\r\nhello\r\n.dot line\r\n"
	c, err := send(t, s, cliTLS, "a@example.test", []string{"b@example.test", "c@example.test"}, body)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := c.MaxMessageSize(); !ok || n != 1<<20 {
		t.Errorf("SIZE = %d, %v", n, ok)
	}
	if ok, _ := c.Extension("8BITMIME"); !ok {
		t.Error("8BITMIME not advertised")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := s.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if m.From != "a@example.test" || strings.Join(m.To, ",") != "b@example.test,c@example.test" || !m.TLS {
		t.Errorf("message = %+v", m)
	}
	if string(m.Data) != body {
		t.Errorf("data = %q", m.Data)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".eml") || !strings.HasPrefix(ents[0].Name(), "000001-") {
		t.Fatalf("dir = %v", ents)
	}
	if s.Connections() != 1 || s.Count() != 1 {
		t.Errorf("connections %d count %d", s.Connections(), s.Count())
	}
}

func TestNo8BitMIME(t *testing.T) {
	srvTLS, cliTLS := serverTLS(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"starttls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{No8BitMIME: true}
			var cli *tls.Config
			if tc.tls {
				opts.TLS, cli = srvTLS, cliTLS
			}
			s := start(t, opts)
			// A body line that looks like a command must stay data.
			body := "Subject: x\r\n\r\nSTARTTLS\r\n250-8BITMIME\r\n"
			c, err := send(t, s, cli, "a@example.test", []string{"b@example.test"}, body)
			if err != nil {
				t.Fatal(err)
			}
			for _, ext := range []string{"8BITMIME", "CHUNKING"} {
				if ok, _ := c.Extension(ext); ok {
					t.Errorf("%s advertised", ext)
				}
			}
			if ok, _ := c.Extension("SIZE"); !ok {
				t.Error("SIZE missing")
			}
			// Second transaction on the same connection.
			if err := c.Mail("a@example.test", nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("d@example.test", nil); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("Subject: 2\r\n\r\n.\r\n"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			msgs, err := s.Wait(ctx, 2)
			if err != nil {
				t.Fatal(err)
			}
			if string(msgs[0].Data) != body || msgs[0].TLS != tc.tls || msgs[1].To[0] != "d@example.test" {
				t.Errorf("messages = %+v", msgs)
			}
			if string(msgs[1].Data) != "Subject: 2\r\n\r\n.\r\n" {
				t.Errorf("dot-stuffed line: %q", msgs[1].Data)
			}
		})
	}
}

func TestHook(t *testing.T) {
	reject := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	for _, tc := range []struct {
		name    string
		hook    func(Event) error
		wantErr func(error) bool
	}{
		{"rcpt 550", func(e Event) error {
			if e.Stage == StageRcpt && e.Rcpt == "bad@example.test" {
				return reject
			}
			return nil
		}, func(err error) bool {
			var se *smtp.SMTPError
			return errors.As(err, &se) && se.Code == 550
		}},
		{"data-done 451", func(e Event) error {
			if e.Stage == StageDataDone {
				return errors.New("try later")
			}
			return nil
		}, func(err error) bool {
			var se *smtp.SMTPError
			return errors.As(err, &se) && se.Code == 451
		}},
		{"drop at mail", func(e Event) error {
			if e.Stage == StageMail {
				return ErrDrop
			}
			return nil
		}, func(err error) bool {
			var se *smtp.SMTPError
			return err != nil && !errors.As(err, &se)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Options{Hook: tc.hook})
			_, err := send(t, s, nil, "a@example.test", []string{"bad@example.test"}, "x\r\n")
			if !tc.wantErr(err) {
				t.Fatalf("err = %v", err)
			}
			if s.Count() != 0 {
				t.Errorf("message recorded despite %v", err)
			}
		})
	}
}

func TestKeepBounds(t *testing.T) {
	s := start(t, Options{Keep: 2})
	for i := 0; i < 3; i++ {
		if _, err := send(t, s, nil, "a@example.test", []string{"b@example.test"}, "n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(s.Messages()); got != 2 || s.Count() != 3 {
		t.Fatalf("kept %d count %d", got, s.Count())
	}
}
