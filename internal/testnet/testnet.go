// SPDX-License-Identifier: MIT

// Package testnet gives tests loopback ports without the race of "pick a free
// port, close it, hand the number on", in which a test running in parallel (or
// any outbound connection of the machine) can take the port in between.
//
// Servers of our own bind port 0 and say which port they got. For the rest:
// Hold keeps a port for a server that must go down and come back on the same
// address, and ListeningPorts reads the ports an outside program (Postfix,
// chromedriver) bound from the kernel.
package testnet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Hold is a TCP port kept for one test. A socket is bound to it with
// SO_REUSEPORT and never listens: while no listener is up, connections to the
// port are refused (a server that is down), and nobody else can bind it, since
// a bind without SO_REUSEPORT clashes with a bound socket. Listen opens
// listeners on it, as often as the test needs.
type Hold struct {
	fd   int
	addr *net.TCPAddr
}

// HoldTCP reserves a port on ip (e.g. "127.0.0.1") until the test ends.
func HoldTCP(t testing.TB, ip string) *Hold {
	t.Helper()
	h, err := holdTCP(ip)
	if err != nil {
		t.Fatalf("testnet: hold a port on %s: %v", ip, err)
	}
	t.Cleanup(func() { unix.Close(h.fd) })
	return h
}

func holdTCP(ip string) (*Hold, error) {
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, fmt.Errorf("not an IP address: %q", ip)
	}
	family := unix.AF_INET6
	var sa unix.Sockaddr
	if a4 := addr.To4(); a4 != nil {
		family = unix.AF_INET
		sa4 := &unix.SockaddrInet4{}
		copy(sa4.Addr[:], a4)
		sa = sa4
	} else {
		sa6 := &unix.SockaddrInet6{}
		copy(sa6.Addr[:], addr.To16())
		sa = sa6
	}
	// Go's net package has no bind without listen, hence the system calls.
	fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	var port int
	switch s := got.(type) {
	case *unix.SockaddrInet4:
		port = s.Port
	case *unix.SockaddrInet6:
		port = s.Port
	}
	return &Hold{fd: fd, addr: &net.TCPAddr{IP: addr, Port: port}}, nil
}

// Addr is the held address, host:port.
func (h *Hold) Addr() string { return h.addr.String() }

// Port is the held port.
func (h *Hold) Port() int { return h.addr.Port }

// Listen opens a listener on the held port. Close it before the next Listen:
// two listeners up at once would share the connections.
func (h *Hold) Listen() (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", h.Addr())
}

// ListeningPorts returns the TCP ports that process pid listens on, read from
// /proc: the process's socket descriptors matched against the kernel's socket
// tables. It lets a test start an outside program on port 0 and then find the
// port it got, where the program does not say.
func ListeningPorts(pid int) ([]int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		p, err := listeningIn(fmt.Sprintf("/proc/%d/net/%s", pid, table), inodes)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		ports = append(ports, p...)
	}
	return ports, nil
}

// listeningIn reads one /proc/net/tcp table: the local ports of the sockets
// in LISTEN state (0A) whose inode is among inodes.
func listeningIn(path string, inodes map[string]bool) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ports []int
	sc := bufio.NewScanner(f)
	sc.Scan() // the header line
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("%s: local address %q: %w", path, fields[1], err)
		}
		ports = append(ports, int(port))
	}
	return ports, sc.Err()
}
