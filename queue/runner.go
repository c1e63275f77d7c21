// SPDX-License-Identifier: MIT

// Package queue drives delivery: it decides which spooled message is due,
// claims it from the spool for an attempt, hands it to a courier target
// (the tenant, through the stages before it, or for a DSN the sender's MX),
// and records each recipient's outcome: delivered and removed, retried
// later with backoff, held for an admin, or bounced.
package queue

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/spool"
)

// Recorder notes successful deliveries per public address in the state
// database, which the router checks before an address may be flipped to migrated.
type Recorder interface {
	RecordDelivery(address string, at time.Time, n int) error
}

// Permanent-failure policies.
const (
	PolicyHold   = "hold"
	PolicyBounce = "bounce"
)

// Options configure delivery. Zero fields take the defaults noted.
type Options struct {
	// Tenant is where mail for the tenant goes: the courier's Tenant,
	// wrapped in the stages that change what it sees (the arrival verdict
	// and ARC seal, SRS).
	Tenant courier.Target
	// Sender is where DSNs and returned bounces go: the sender's MX.
	Sender courier.Target
	// Health is the tenant's health (courier.Tenant.Health): while it is
	// suspended, due mail for the tenant is parked without an attempt and
	// one message at a time goes out as the probe (the docs' probe); while
	// it is up, at most its window of deliveries run at once. Nil: neither.
	Health *courier.Health
	// StatusFile, when set, receives the tenant's health as JSON whenever
	// it changes, for the admin commands (ReadTargetStatus); it is removed
	// when Run returns.
	StatusFile string
	// HelloName names the reporting MTA in DSNs; default the host name.
	HelloName string

	RetryInitial time.Duration // default 1m
	RetryMax     time.Duration // default 1h
	GiveUpAfter  time.Duration // since receipt (or release); default 5 days (RFC 5321 4.5.4.1)

	OnPermanentFailure string // PolicyHold (default) or PolicyBounce
	Concurrency        int    // parallel deliveries to the tenant; default 4
	// SenderConcurrency is how many DSNs and returned bounces go to
	// senders' servers at once, on workers of their own: a server that
	// never answers (a tarpit) holds one of these, never a worker of the
	// tenant's; default 2.
	SenderConcurrency int

	StopTimeout  time.Duration // how long Run waits for in-flight deliveries after cancel; default 10s
	PollInterval time.Duration // how often the admin kick file is checked; default 500ms
	// RescanInterval is how often the spool is listed for what the daemon
	// does not know: items another process committed without a kick,
	// arrivals the runner could not take, items it dropped that may still
	// be there (Spool.Recheck); and items known but no longer there are
	// dropped. Only those are read. Default 1m.
	RescanInterval time.Duration
	// FullRescanInterval is how often every item is read instead, as a
	// safety net for what the listing cannot tell (a record changed on
	// disk without a kick); default 60 × RescanInterval.
	FullRescanInterval time.Duration

	Recorder Recorder

	Now  func() time.Time // default time.Now
	Rand func() float64   // jitter source in [0,1); default math/rand/v2
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.HelloName == "" {
		o.HelloName, _ = os.Hostname()
		if o.HelloName == "" {
			o.HelloName = "localhost"
		}
	}
	def(&o.RetryInitial, time.Minute)
	def(&o.RetryMax, time.Hour)
	def(&o.GiveUpAfter, 5*24*time.Hour)
	if o.OnPermanentFailure == "" {
		o.OnPermanentFailure = PolicyHold
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.SenderConcurrency <= 0 {
		o.SenderConcurrency = 2
	}
	def(&o.StopTimeout, 10*time.Second)
	def(&o.PollInterval, 500*time.Millisecond)
	def(&o.RescanInterval, time.Minute)
	def(&o.FullRescanInterval, 60*o.RescanInterval)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
}

// Runner delivers what is in the spool. One scheduler goroutine decides what
// is due; Concurrency workers deliver to the tenant and SenderConcurrency
// others to senders' servers; nothing sleeps per item.
type Runner struct {
	sp   *spool.Spool
	opts Options
	m    *metrics.Metrics
	log  *slog.Logger

	// Only Run's goroutine uses these. probe is the item out as the probe
	// of the suspended tenant ("" when none is); busy counts the items the
	// workers hold, by kind; judging, the tenant's items out only to be
	// judged while it is suspended.
	probe         string
	busy          [2]int
	judging       int
	statusVersion uint64

	mu    sync.Mutex
	sched *schedule
	// removing holds items delivered to every recipient whose removal
	// failed: only the removal is retried, the message is not sent again.
	removing map[string]bool
	// saving holds the records of attempts that could not be written (a
	// full disk): until one is, only the write is retried; sending the
	// message again would deliver it twice to the recipients that attempt
	// reached, since the spool still says they are pending.
	saving map[string]*spool.Item
	// delivered batches Recorder updates: one write per address per flush
	// instead of a database transaction per message.
	delivered map[string]record
}

type record struct {
	n    int
	last time.Time
}

// recordEvery is how often batched deliveries reach the Recorder. The record
// only gates flipping an address to migrated, so a crash losing the last
// fraction of a second errs on the safe side.
const recordEvery = 250 * time.Millisecond

type done struct {
	id   string
	keep bool
	next time.Time
	also []string // ids created by the attempt (a DSN)
	// park: the attempt found the tenant suspended and sent nothing.
	park bool
	// other: the item goes elsewhere than the tenant (a DSN, a return).
	other bool
	// judged: the item's arrival verdict is kept with it (or there is
	// none to take).
	judged bool
	// job is what the runner handed out; process copies it.
	job job
}

// job is an item handed to a worker, and why.
type job struct {
	id   string
	kind kind
	// judge: the tenant is suspended and the item was never judged; it
	// goes through the stages (which take the arrival verdict), and
	// reaches the tenant only if that is up again by then.
	judge bool
}

// NewRunner prepares delivery from sp. m and log may be nil.
func NewRunner(sp *spool.Spool, opts Options, m *metrics.Metrics, log *slog.Logger) *Runner {
	opts.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{sp: sp, opts: opts, m: m, log: log, sched: newSchedule(),
		removing: map[string]bool{}, saving: map[string]*spool.Item{}, delivered: map[string]record{}}
}

// Run delivers until ctx is cancelled, then stops taking work and waits up to
// StopTimeout for deliveries in flight; one that does not finish is cut off
// and stays in the spool for the next start.
func (r *Runner) Run(ctx context.Context) error {
	// The spool's recovery reads every item left by the last run, seconds
	// for a backlog of 100 000; the daemon takes mail meanwhile, and what
	// it reads is scheduled batch by batch. A runner started again on a
	// spool already recovered (tests) reads it at once. The admin's change
	// mark is read first: a change made while the spool is read may be
	// missed by the reading, never by the next poll.
	lastKick := r.sp.ChangeMark()
	var loaded chan []spool.Entry
	var recovering sync.WaitGroup
	// Run's callers close the spool once it returns: recovery, which
	// stops at its next batch once ctx ends, is waited for.
	defer recovering.Wait()
	if r.sp.Recovered() {
		r.scan(true)
	} else {
		loaded = make(chan []spool.Entry, 4)
		recovering.Go(func() {
			defer close(loaded)
			r.sp.Recover(func(b []spool.Entry) bool {
				select {
				case loaded <- b:
					return true
				case <-ctx.Done():
					return false
				}
			})
		})
	}
	// Fixed sets of workers: a goroutine per attempt would grow a fresh
	// stack through the whole delivery path for every message.
	var work [2]chan job // unbuffered: after close nothing is left to start
	work[forTenant], work[forSender] = make(chan job), make(chan job)
	results := make(chan done, r.opts.Concurrency+r.opts.SenderConcurrency) // each worker sends once per item taken
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	var wg sync.WaitGroup
	for k, n := range map[kind]int{forTenant: r.opts.Concurrency, forSender: r.opts.SenderConcurrency} {
		for range n {
			wg.Go(func() {
				for j := range work[k] {
					results <- r.process(workCtx, j)
				}
			})
		}
	}

	poll := time.NewTicker(r.opts.PollInterval)
	defer poll.Stop()
	flush := time.NewTicker(recordEvery)
	defer flush.Stop()
	defer r.flushRecords()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	arrivals := r.sp.Arrivals()
	lastScan, lastFull := time.Now(), time.Now()
	broken := false // the spool's failure has been logged
	r.writeStatus()
	defer r.removeStatus()

	for {
		// Start what is due, as far as there are idle workers and the
		// tenant's window allows.
		now := r.opts.Now()
		r.dispatch(now, work)
		timer.Reset(r.nextWake(now))
		select {
		case <-ctx.Done():
			close(work[forTenant])
			close(work[forSender])
			return r.stop(&wg, cancelWork, results)
		case b, ok := <-loaded:
			if !ok {
				loaded = nil // recovered: rescans may run
				continue
			}
			r.add(b)
		case a := <-arrivals:
			r.mu.Lock()
			r.sched.set(a.ID, r.opts.Now())
			if a.DSN {
				r.sched.setOther(a.ID)
			}
			r.mu.Unlock()
		case d := <-results:
			r.busy[d.job.kind]--
			if d.job.judge {
				r.judging--
			}
			if d.id == r.probe {
				r.probe = ""
			}
			r.finish(d)
		case <-poll.C:
			// A broken spool (a failed directory fsync) fails every flush
			// until restart; it is said once, and /healthz keeps saying it.
			if err := r.sp.FlushRemovals(); err != nil && !broken {
				r.log.Error("queue: make removals durable", "err", err)
				broken = r.sp.Broken() != nil
			}
			if loaded != nil {
				break // recovery is still reading; a kick waits for it
			}
			k := r.sp.ChangeMark()
			kicked := !bytes.Equal(k, lastKick)
			full := kicked || time.Since(lastFull) >= r.opts.FullRescanInterval
			if full || r.sp.Dropped() || time.Since(lastScan) >= r.opts.RescanInterval {
				if kicked && r.opts.Health != nil {
					// An admin changed the queue (queue retry, release):
					// a suspended target gets its probe now.
					r.opts.Health.ProbeNow()
				}
				lastKick = k
				lastScan = time.Now()
				if full {
					lastFull = lastScan
				}
				r.scan(full)
			}
		case <-flush.C:
			r.flushRecords()
		case <-timer.C:
		}
	}
}

// noteDelivered adds to the batch for the Recorder.
func (r *Runner) noteDelivered(addr string, at time.Time, n int) {
	r.mu.Lock()
	rec := r.delivered[addr]
	rec.n += n
	if at.After(rec.last) {
		rec.last = at
	}
	r.delivered[addr] = rec
	r.mu.Unlock()
}

func (r *Runner) flushRecords() {
	if r.opts.Recorder == nil {
		return
	}
	r.mu.Lock()
	batch := r.delivered
	r.delivered = map[string]record{}
	r.mu.Unlock()
	for addr, rec := range batch {
		if err := r.opts.Recorder.RecordDelivery(addr, rec.last, rec.n); err != nil {
			r.log.Error("queue: record delivery", "address", addr, "err", err)
		}
	}
}

func (r *Runner) stop(wg *sync.WaitGroup, cancelWork context.CancelFunc, results chan done) error {
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	// Outcomes of attempts finishing now are recorded on disk by the
	// workers; the schedule dies with the runner, so they are only drained.
	go func() {
		for {
			select {
			case <-results:
			case <-finished:
				return
			}
		}
	}()
	select {
	case <-finished:
	case <-time.After(r.opts.StopTimeout):
		r.log.Warn("queue: stop timeout, cutting off deliveries in flight; they stay in the spool")
		cancelWork()
		select {
		case <-finished:
		case <-time.After(2 * time.Second):
		}
	}
	if err := r.sp.FlushRemovals(); err != nil {
		r.log.Error("queue: make removals durable", "err", err)
	}
	return nil
}

// scan brings the schedule in line with the spool. A full scan reads every
// item, after an admin retried, held, released or removed some in another
// process, and hourly as a safety net; the periodic one reads only the
// items the daemon does not know (another process's, an arrival dropped,
// one the runner dropped that may still be there) and drops those no
// longer there, so that a backlog of 100 000 parked messages costs a
// directory listing a minute, not 100 000 reads.
func (r *Runner) scan(full bool) {
	l, err := r.sp.Rescan(full)
	if err != nil {
		r.log.Error("queue: scan", "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// An item the scan could not read is scheduled too: its attempt
	// quarantines it if it is damaged, rather than leaving it unseen until
	// a restart.
	for _, id := range l.Unreadable {
		if r.sched.get(id) == nil {
			r.sched.set(id, r.opts.Now())
		}
	}
	r.addLocked(l.Entries)
	gone := l.Gone
	if full {
		seen := make(map[string]bool, len(l.Entries)+len(l.Unreadable))
		for _, id := range l.Unreadable {
			seen[id] = true
		}
		for _, e := range l.Entries {
			seen[e.ID] = true
		}
		for id := range r.sched.byID {
			if !seen[id] {
				gone = append(gone, id)
			}
		}
	}
	for _, id := range gone {
		if e := r.sched.get(id); e != nil && !e.running && !r.removing[id] {
			r.sched.remove(id)
			delete(r.saving, id)
		}
	}
}

// add schedules items the spool read.
func (r *Runner) add(entries []spool.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(entries)
}

func (r *Runner) addLocked(entries []spool.Entry) {
	for _, it := range entries {
		e := r.sched.get(it.ID)
		switch {
		case e != nil && e.running:
		case it.State == spool.StateHeld:
			r.sched.remove(it.ID)
		default:
			r.sched.set(it.ID, it.NextAttempt)
			if it.DSN {
				r.sched.setOther(it.ID)
			}
			if it.Judged {
				r.sched.setJudged(it.ID)
			}
		}
	}
}

func (r *Runner) finish(d done) {
	if d.park && r.opts.Health == nil {
		// A tenant suspended behind the runner's back: without its
		// health the runner cannot wait for the probe, so it looks again
		// later rather than in a loop.
		d.park, d.next = false, r.opts.Now().Add(busyRetry)
	}
	r.mu.Lock()
	if d.other {
		r.sched.setOther(d.id)
	}
	if d.judged {
		r.sched.setJudged(d.id)
	}
	if d.park {
		r.sched.park(d.id)
	} else {
		r.sched.done(d.id, d.keep, d.next)
	}
	now := r.opts.Now()
	for _, id := range d.also {
		r.sched.set(id, now)
		r.sched.setOther(id) // a DSN
	}
	r.mu.Unlock()
}

// tenantLimit is how many deliveries to the tenant may run at once: its
// workers, and no more than its window. DSNs and returned bounces do not
// count: they go to senders' servers, on workers of their own.
func (r *Runner) tenantLimit() int {
	if h := r.opts.Health; h != nil {
		return min(r.opts.Concurrency, h.Window())
	}
	return r.opts.Concurrency
}

// judgeLimit bounds the parked messages being judged at once while the
// tenant is suspended: the verdict is the work a delivery would do anyway,
// done while it is fresh, but an outage is also when mail keeps arriving,
// and acceptance must keep the CPU it needs; a backlog of unjudged mail
// is judged at this pace.
func (r *Runner) judgeLimit() int { return max(1, r.opts.Concurrency/4) }

// dispatch hands due items to the workers. DSNs and returns go to their own
// workers whatever the tenant's state. While the tenant is suspended, its
// due mail is parked instead; one parked message goes out as the probe when
// the health allows one, and parked messages never judged go out, a few at
// a time, to be judged.
func (r *Runner) dispatch(now time.Time, work [2]chan job) {
	h := r.opts.Health
	if h != nil && h.Version() != r.statusVersion {
		r.writeStatus()
	}
	for r.busy[forSender] < r.opts.SenderConcurrency {
		id, ok := r.takeDue(now, forSender)
		if !ok {
			break
		}
		r.send(work, job{id: id, kind: forSender})
	}
	if h == nil || !h.Suspended() {
		r.mu.Lock()
		if r.sched.nParked > 0 {
			r.sched.release()
		}
		r.mu.Unlock()
		for r.busy[forTenant] < r.tenantLimit() {
			id, ok := r.takeDue(now, forTenant)
			if !ok {
				break
			}
			r.send(work, job{id: id, kind: forTenant})
		}
		return
	}
	r.mu.Lock()
	r.sched.parkDue(now)
	r.mu.Unlock()
	if r.probe == "" && r.busy[forTenant] < r.opts.Concurrency && h.ProbeDue() {
		r.mu.Lock()
		id, ok := r.sched.takeProbe()
		r.mu.Unlock()
		if ok {
			r.probe = id
			r.send(work, job{id: id, kind: forTenant})
		}
	}
	for r.busy[forTenant] < r.opts.Concurrency && r.judging < r.judgeLimit() {
		r.mu.Lock()
		id, ok := r.sched.takeUnjudged()
		r.mu.Unlock()
		if !ok {
			break
		}
		r.judging++
		r.send(work, job{id: id, kind: forTenant, judge: true})
	}
}

// send hands j to an idle worker of its kind (one is idle, or about to be:
// busy counts what they hold).
func (r *Runner) send(work [2]chan job, j job) {
	r.busy[j.kind]++
	work[j.kind] <- j
}

// takeDue hands out the item of kind k due earliest, if any is due,
// marking it running.
func (r *Runner) takeDue(now time.Time, k kind) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sched.takeDue(now, k)
}

// nextWake is how long the scheduler may sleep. Due items for workers that
// are all busy wait for one to finish (which wakes the loop) rather than
// spinning the timer; so does a due probe, and one under way is waited
// for, not polled.
func (r *Runner) nextWake(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	wake := r.opts.RescanInterval
	if next, ok := r.sched.nextDue(forSender); ok && r.busy[forSender] < r.opts.SenderConcurrency {
		wake = min(wake, next.Sub(now))
	}
	h := r.opts.Health
	suspended := h != nil && h.Suspended()
	if next, ok := r.sched.nextDue(forTenant); ok && (suspended || r.busy[forTenant] < r.tenantLimit()) {
		// While suspended, a due item is only parked: no worker needed.
		wake = min(wake, next.Sub(now))
	}
	if suspended && r.sched.nParked > 0 && r.probe == "" && r.busy[forTenant] < r.opts.Concurrency {
		if at, ok := h.ProbeAt(); ok {
			wake = min(wake, at.Sub(now))
		}
	}
	return max(wake, time.Millisecond)
}

// Stats reports the queue for metrics.WatchQueue.
func (r *Runner) Stats() metrics.QueueStats {
	return r.sp.Stats(r.opts.Now())
}
