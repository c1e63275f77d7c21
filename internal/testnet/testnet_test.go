// SPDX-License-Identifier: MIT

package testnet

import (
	"errors"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// TestHoldKeepsThePort: a held port refuses connections while no listener is
// up, cannot be bound by anyone else at any time, and takes a listener again
// after one closed: what "pick a free port, close it, reuse it" cannot promise.
func TestHoldKeepsThePort(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			if ip == "::1" {
				if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			h := HoldTCP(t, ip)
			if h.Port() == 0 {
				t.Fatal("no port held")
			}
			stranger := func(when string) {
				t.Helper()
				ln, err := net.Listen("tcp", h.Addr())
				if err == nil {
					ln.Close()
					t.Fatalf("%s: another listener could bind the held %s", when, h.Addr())
				}
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Fatalf("%s: bind %s: %v, want EADDRINUSE", when, h.Addr(), err)
				}
			}
			refused := func(when string) {
				t.Helper()
				if err := dial(h.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("%s: dial %s: %v, want connection refused", when, h.Addr(), err)
				}
			}
			refused("before any listener")
			stranger("before any listener")
			for round := range 2 {
				ln, err := h.Listen()
				if err != nil {
					t.Fatalf("round %d: listen on the held port: %v", round, err)
				}
				if got := ln.Addr().(*net.TCPAddr).Port; got != h.Port() {
					t.Fatalf("listener on port %d, held %d", got, h.Port())
				}
				stranger("with our listener up")
				if err := dial(h.Addr()); err != nil {
					t.Fatalf("round %d: dial the listener: %v", round, err)
				}
				ln.Close()
				refused("after our listener closed")
				stranger("after our listener closed")
			}
		})
	}
}

// TestListeningPorts finds this process's own listener, and not one that closed.
func TestListeningPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gonePort := gone.Addr().(*net.TCPAddr).Port
	gone.Close()
	// A connected socket is not a listener.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ports, err := ListeningPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ports, ln.Addr().(*net.TCPAddr).Port) {
		t.Errorf("ListeningPorts = %v, lacks %s", ports, ln.Addr())
	}
	if slices.Contains(ports, gonePort) {
		t.Errorf("ListeningPorts = %v, has the closed %d", ports, gonePort)
	}
	if slices.Contains(ports, c.LocalAddr().(*net.TCPAddr).Port) {
		t.Errorf("ListeningPorts = %v, has the client side %s", ports, c.LocalAddr())
	}
}
