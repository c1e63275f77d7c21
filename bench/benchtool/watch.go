// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cmdRSSWatch samples VmRSS of a process every -every until SIGTERM/SIGINT,
// until the process is gone, or for -lifetime, then prints the largest
// sample and the process's VmHWM at the last good sample. It is how run.sh
// follows a relay's memory through a restart and a drain.
func cmdRSSWatch(args []string) error {
	fs := flag.NewFlagSet("rsswatch", flag.ExitOnError)
	pid := fs.Int("pid", 0, "process id")
	every := fs.Duration("every", 100*time.Millisecond, "sampling interval")
	lifetime := fs.Duration("lifetime", time.Hour, "stop after this long")
	fs.Parse(args)
	if *pid <= 0 {
		return errors.New("rsswatch: -pid is required")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	t := time.NewTicker(*every)
	defer t.Stop()
	end := time.After(*lifetime)
	var maxRSS, hwm, last int64
	n := 0
	for {
		m, err := readMem(*pid)
		if err != nil {
			break // gone
		}
		n++
		maxRSS = max(maxRSS, m.RSS)
		hwm, last = m.HWM, m.RSS
		select {
		case <-sig:
		case <-end:
		case <-t.C:
			continue
		}
		break
	}
	if n == 0 {
		return fmt.Errorf("rsswatch: no sample of pid %d", *pid)
	}
	fmt.Printf("samples=%d\nmax_rss_kib=%d\nhwm_kib=%d\nlast_rss_kib=%d\n", n, maxRSS, hwm, last)
	return nil
}

// cmdTCPStat prints the TCP counters of /proc/net/snmp that run.sh uses to
// count connection attempts: in the benchmark's own network namespace
// (run.sh runs the outage part under "unshare -n"), attempt_fails counts
// exactly the connections refused by a port nothing listens on.
func cmdTCPStat(args []string) error {
	if len(args) != 0 {
		return errors.New("usage: benchtool tcpstat")
	}
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return err
	}
	var names, values []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "Tcp: ")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(line)
		} else {
			values = strings.Fields(line)
		}
	}
	if names == nil || len(names) != len(values) {
		return errors.New("tcpstat: no Tcp lines in /proc/net/snmp")
	}
	want := map[string]string{"ActiveOpens": "active_opens", "PassiveOpens": "passive_opens",
		"AttemptFails": "attempt_fails", "OutRsts": "out_rsts"}
	for i, name := range names {
		if key, ok := want[name]; ok {
			if _, err := strconv.ParseInt(values[i], 10, 64); err != nil {
				return fmt.Errorf("tcpstat: %s: %w", name, err)
			}
			fmt.Printf("%s=%s\n", key, values[i])
		}
	}
	return nil
}
