// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/textproto"
	"time"
)

// cmdIdle opens -n SMTP sessions to the relay, says EHLO on each and leaves
// them idle, then reads the relay's VmRSS. Before closing it checks with NOOP
// that every session is still open, so the figure is for n live sessions.
func cmdIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "relay SMTP address host:port")
	n := fs.Int("n", 200, "number of sessions")
	pid := fs.Int("pid", 0, "relay process id (for /proc/PID/status)")
	settle := fs.Duration("settle", 3*time.Second, "how long the sessions stay idle before and while sampling")
	helo := fs.String("helo", "idle.bench.localhost", "EHLO name")
	timeout := fs.Duration("timeout", 10*time.Second, "per-command timeout")
	fs.Parse(args)
	if *addr == "" || *pid <= 0 || *n < 1 {
		return errors.New("idle: -addr and -pid are required, -n ≥ 1")
	}

	before, err := readMem(*pid)
	if err != nil {
		return err
	}
	conns := make([]*textproto.Conn, 0, *n)
	raw := make([]net.Conn, 0, *n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < *n; i++ {
		c, err := net.DialTimeout("tcp", *addr, *timeout)
		if err != nil {
			return fmt.Errorf("session %d: %w", i+1, err)
		}
		tc := textproto.NewConn(c)
		conns = append(conns, tc)
		raw = append(raw, c)
		c.SetDeadline(time.Now().Add(*timeout))
		if _, _, err := tc.ReadResponse(220); err != nil {
			return fmt.Errorf("session %d: greeting: %w", i+1, err)
		}
		if err := tc.PrintfLine("EHLO %s", *helo); err != nil {
			return fmt.Errorf("session %d: EHLO: %w", i+1, err)
		}
		if _, _, err := tc.ReadResponse(250); err != nil {
			return fmt.Errorf("session %d: EHLO: %w", i+1, err)
		}
		c.SetDeadline(time.Time{})
	}
	opened := time.Since(start)

	// Let the relay settle (GC, goroutine stacks), then sample a few times
	// and keep the largest value.
	var idle memStatus
	const samples = 5
	for i := 0; i < samples; i++ {
		time.Sleep(*settle / samples)
		m, err := readMem(*pid)
		if err != nil {
			return err
		}
		idle.RSS = max(idle.RSS, m.RSS)
		idle.HWM = m.HWM
	}

	alive := 0
	for i, tc := range conns {
		raw[i].SetDeadline(time.Now().Add(*timeout))
		if err := tc.PrintfLine("NOOP"); err != nil {
			continue
		}
		if _, _, err := tc.ReadResponse(250); err != nil {
			continue
		}
		alive++
	}
	for i, tc := range conns {
		raw[i].SetDeadline(time.Now().Add(*timeout))
		if tc.PrintfLine("QUIT") == nil {
			tc.ReadResponse(221)
		}
	}

	fmt.Printf("sessions=%d\nalive=%d\nopen_seconds=%.3f\n", *n, alive, opened.Seconds())
	fmt.Printf("rss_before_kib=%d\nrss_idle_kib=%d\nhwm_kib=%d\n", before.RSS, idle.RSS, idle.HWM)
	fmt.Printf("per_session_kib=%.1f\n", float64(idle.RSS-before.RSS)/float64(*n))
	if alive != *n {
		return fmt.Errorf("idle: only %d of %d sessions answered NOOP after idling", alive, *n)
	}
	return nil
}
