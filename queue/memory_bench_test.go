// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/spool"
)

// backlogItems is the backlog BenchmarkBacklogMemory spools: enough that
// what each item costs stands out from what the daemon costs anyway.
const backlogItems = 20000

// BenchmarkBacklogMemory measures what a backlog costs the daemon in memory
// while the tenant is down (issue 18: 100 000 messages spooled, RSS at most
// 128 MiB): the live heap, after a collection, per spooled item, in the
// spool's view of its items and the runner's schedule together.
//
//   - accepting: items committed one after the other while the runner runs
//     with the tenant suspended; each is parked and judged as it comes.
//   - restarted: the same backlog, found by a new daemon at start.
//
// Run it once: go test -run - -bench BacklogMemory -benchtime 1x ./queue/
func BenchmarkBacklogMemory(b *testing.B) {
	b.Run("accepting", func(b *testing.B) {
		for b.Loop() {
			benchBacklog(b, false)
		}
	})
	b.Run("restarted", func(b *testing.B) {
		for b.Loop() {
			benchBacklog(b, true)
		}
	})
}

func benchBacklog(b *testing.B, restart bool) {
	dir := b.TempDir()
	// A tenant nothing answers for: every connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tenant, err := courier.NewTenant(courier.TenantConfig{
		Client: courier.Client{HelloName: "relay.test", DialTimeout: failsafe, CommandTimeout: failsafe, DataTimeout: failsafe},
		Host:   "127.0.0.1", Port: port, TLS: courier.TLSNone, MaxIdle: 2,
		Health: courier.HealthConfig{ProbeInitial: time.Hour, ProbeMax: time.Hour},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer tenant.Close()
	opts := Options{Tenant: newJudge(tenant), Health: tenant.Health(), Sender: tenant, HelloName: "relay.test",
		RetryInitial: time.Hour, RetryMax: time.Hour, GiveUpAfter: 24 * time.Hour, Concurrency: 20,
		StopTimeout: time.Second, PollInterval: 20 * time.Millisecond}

	start := func() (*spool.Spool, *Runner, func()) {
		sp, err := spool.Open(dir, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		r := NewRunner(sp, opts, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() { r.Run(ctx); close(ran) }()
		return sp, r, func() { cancel(); <-ran; sp.Close() }
	}
	sp, r, stop := start()
	// Suspend the tenant with a few messages, as the first of an outage.
	for range 5 {
		spoolOne(b, sp)
	}
	waitBench(b, "the tenant suspended", func() bool { return opts.Health.Suspended() })
	waitBench(b, "the first messages parked", func() bool { return parkedJudged(r) == 5 })
	if restart {
		for range backlogItems {
			spoolOne(b, sp)
		}
		waitBench(b, "the backlog parked", func() bool { return parkedJudged(r) == backlogItems+5 })
		stop()
		sp, r, stop = start()
	}
	defer func() { stop() }()
	before := liveHeap()
	if !restart {
		for range backlogItems {
			spoolOne(b, sp)
		}
	}
	waitBench(b, "the backlog parked and judged", func() bool { return parkedJudged(r) == backlogItems+5 })
	after := liveHeap()
	b.ReportMetric(float64(after-before)/backlogItems, "B/item")
	b.ReportMetric(float64(after)/(1<<20), "MiB-heap")
}

func spoolOne(b *testing.B, sp *spool.Spool) {
	w, err := sp.NewWriter(defaultEnv())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Write([]byte(testBody)); err != nil {
		b.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		b.Fatal(err)
	}
}

// parkedJudged counts the entries with their verdict taken that no worker
// holds: parked, or deferred by the attempts that suspended the tenant.
func parkedJudged(r *Runner) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.sched.byID {
		if e.judged && !e.running {
			n++
		}
	}
	return n
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func waitBench(b *testing.B, what string, cond func() bool) {
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within 5 minutes", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
