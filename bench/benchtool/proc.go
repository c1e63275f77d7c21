// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memStatus is the part of /proc/PID/status the benchmark reports, in KiB.
type memStatus struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: peak resident since start or since the last resetHWM
}

func readMem(pid int) (memStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	var m memStatus
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		f := strings.Fields(val) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return memStatus{}, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, key, sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memStatus{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, key, err)
		}
		*dst = n
	}
	if m.RSS == 0 || m.HWM == 0 {
		return memStatus{}, fmt.Errorf("/proc/%d/status: no VmRSS/VmHWM (is it a kernel thread or a zombie?)", pid)
	}
	return m, nil
}

// resetHWM resets VmHWM to the current RSS (Linux ≥ 4.0, needs the right to
// write /proc/PID/clear_refs: same user or root).
func resetHWM(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// sampler polls VmRSS of a process and keeps the maximum it saw. VmHWM is the
// authoritative peak; the samples are a cross-check that does not depend on
// clear_refs.
type sampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	maxRSS int64
	n      int
	err    error
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				s.sample()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	m, err := readMem(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.n++
	s.maxRSS = max(s.maxRSS, m.RSS)
}

// Stop ends sampling and returns the largest VmRSS seen and how many samples were taken.
func (s *sampler) Stop() (maxRSS int64, n int, err error) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 && s.err == nil {
		s.err = errors.New("no samples")
	}
	return s.maxRSS, s.n, s.err
}

func cmdRSS(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: benchtool rss PID")
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("pid: %w", err)
	}
	m, err := readMem(pid)
	if err != nil {
		return err
	}
	fmt.Printf("rss_kib=%d\nhwm_kib=%d\n", m.RSS, m.HWM)
	return nil
}
