// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// cmdPorts prints N distinct ports that can be bound on 127.0.0.1 right now.
// They are drawn from below the kernel's ephemeral range, so the thousands of
// outbound connections a load test makes cannot take one of them between this
// check and the moment the real server binds it.
func cmdPorts(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: benchtool ports N")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 100 {
		return errors.New("ports: N must be 1..100")
	}
	hi := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 12000 {
				hi = lo
			}
		}
	}
	const lo = 10000
	held := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	seen := map[int]bool{}
	for tries := 0; len(held) < n; tries++ {
		if tries > 1000 {
			return fmt.Errorf("ports: found only %d free ports in [%d,%d)", len(held), lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		held = append(held, l)
	}
	for _, l := range held {
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}
