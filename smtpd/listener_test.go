package smtpd

import (
	"net"
	"slices"
	"testing"
)

func TestContinuesReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"250-relay.test Hello c\r\n", true},
		{"250-8BITMIME\r\n", true},
		{"250 SMTPUTF8\r\n", false},          // the last line of a reply
		{"250-PIPELINING", false},            // not a whole line
		{"250-A\r\n250 B\r\n", false},        // more than one line
		{"25-A\r\n", false},                  // not a reply code
		{"2x0-A\r\n", false},                 // not a reply code
		{"\x17\x03\x03\x00\x20-\r\n", false}, // a TLS record
		{"", false},
	} {
		if got := continuesReply([]byte(tc.in)); got != tc.want {
			t.Errorf("continuesReply(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// writes records each Write that reaches the connection under conn.
type writes struct {
	net.Conn
	got []string
	err error
}

func (w *writes) Write(p []byte) (int, error) {
	w.got = append(w.got, string(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func TestConnWritesRepliesWhole(t *testing.T) {
	w := &writes{}
	c := &conn{Conn: w}
	for _, line := range []string{"220 relay.test ESMTP\r\n", "250-relay.test Hello\r\n", "250-PIPELINING\r\n", "250 8BITMIME\r\n", "250 2.0.0 OK\r\n"} {
		if n, err := c.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	want := []string{"220 relay.test ESMTP\r\n", "250-relay.test Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n", "250 2.0.0 OK\r\n"}
	if !slices.Equal(w.got, want) {
		t.Errorf("segments %q, want %q", w.got, want)
	}

	// A failure sending the reply is reported on its last line.
	w.got, w.err = nil, net.ErrClosed
	c.Write([]byte("250-A\r\n"))
	if n, err := c.Write([]byte("250 B\r\n")); n != 0 || err == nil {
		t.Errorf("failed write = %d, %v", n, err)
	}
	if len(c.held) != 0 {
		t.Errorf("%q still held after the failure", c.held)
	}
}
