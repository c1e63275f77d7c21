// SPDX-License-Identifier: MIT

package queue

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

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
	Host      string
	Port      int    // default 25
	TLS       string // TLSRequire (default), TLSOpportunistic or TLSNone
	RootCAs   *x509.CertPool
	HelloName string // default the host name

	RetryInitial time.Duration // default 1m
	RetryMax     time.Duration // default 1h
	GiveUpAfter  time.Duration // since receipt (or release); default 5 days (RFC 5321 4.5.4.1)

	OnPermanentFailure string // PolicyHold (default) or PolicyBounce
	Concurrency        int    // parallel deliveries (and connections); default 4

	DialTimeout    time.Duration // default 30s
	CommandTimeout time.Duration // default 5m
	DataTimeout    time.Duration // sending the body and waiting for the final reply; default 10m
	IdleTimeout    time.Duration // pooled connections older than this are closed; default 30s
	StopTimeout    time.Duration // how long Run waits for in-flight deliveries after cancel; default 10s
	PollInterval   time.Duration // how often the admin kick file is checked; default 500ms
	RescanInterval time.Duration // full rescan of the spool as a safety net; default 1m

	Recorder Recorder

	// Prepare computes, once per message, the header fields prepended at
	// delivery to the tenant (Authentication-Results and the ARC set). Its
	// result is stored in the item before the first attempt, so every retry
	// sends the same bytes. nil prepends nothing. DSNs are never prepared.
	Prepare func(ctx context.Context, it *spool.Item, body io.ReadSeeker) ([]byte, error)
	// RewriteFrom maps the envelope sender for delivery to the tenant (SRS);
	// nil keeps it. It is not applied to DSNs, whose sender is null.
	RewriteFrom func(from string) (string, error)

	// Resolver answers every lookup delivery makes: the target's and MX
	// hosts' addresses, and MX records. nil means net.DefaultResolver.
	Resolver *net.Resolver
	LookupMX func(ctx context.Context, domain string) ([]*net.MX, error) // default Resolver.LookupMX
	DSNPort  int                                                         // default 25

	Now  func() time.Time // default time.Now
	Rand func() float64   // jitter source in [0,1); default math/rand/v2
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Port == 0 {
		o.Port = 25
	}
	if o.TLS == "" {
		o.TLS = TLSRequire
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
	def(&o.DialTimeout, 30*time.Second)
	def(&o.CommandTimeout, 5*time.Minute)
	def(&o.DataTimeout, 10*time.Minute)
	def(&o.IdleTimeout, 30*time.Second)
	def(&o.StopTimeout, 10*time.Second)
	def(&o.PollInterval, 500*time.Millisecond)
	def(&o.RescanInterval, time.Minute)
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.LookupMX == nil {
		o.LookupMX = o.Resolver.LookupMX
	}
	if o.DSNPort == 0 {
		o.DSNPort = 25
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
}

func (o *Options) dialer() dialer {
	return dialer{
		addr: net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), serverName: o.Host, policy: o.TLS, roots: o.RootCAs,
		helo: o.HelloName, dial: o.DialTimeout, command: o.CommandTimeout, data: o.DataTimeout, resolver: o.Resolver,
	}
}

// Runner delivers what is in the spool. One scheduler goroutine decides what
// is due; at most Concurrency workers deliver; nothing sleeps per item.
type Runner struct {
	sp     *spool.Spool
	opts   Options
	m      *metrics.Metrics
	log    *slog.Logger
	pool   *pool
	tenant deliveryTarget
	dsn    deliveryTarget

	mu    sync.Mutex
	sched *schedule
	// prefixes holds the prepended fields of items still in the spool.
	prefixes map[string][]byte
	// removing holds items delivered to every recipient whose removal
	// failed: only the removal is retried, the message is not sent again.
	removing map[string]bool
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
}

// NewRunner prepares delivery from sp. m and log may be nil.
func NewRunner(sp *spool.Spool, opts Options, m *metrics.Metrics, log *slog.Logger) *Runner {
	opts.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{sp: sp, opts: opts, m: m, log: log, sched: newSchedule(),
		prefixes: map[string][]byte{}, removing: map[string]bool{}, delivered: map[string]record{}}
	r.pool = newPool(opts.Concurrency, opts.IdleTimeout, opts.Now)
	r.tenant = &tenantTarget{d: opts.dialer(), pool: r.pool, rewriteFrom: opts.RewriteFrom}
	tmpl := opts.dialer()
	r.dsn = &mxTarget{lookup: opts.LookupMX, port: opts.DSNPort, tmpl: tmpl}
	return r
}

// Run delivers until ctx is cancelled, then stops taking work and waits up to
// StopTimeout for deliveries in flight; one that does not finish is cut off
// and stays in the spool for the next start.
func (r *Runner) Run(ctx context.Context) error {
	r.scan()
	// A fixed set of workers: a goroutine per attempt would grow a fresh
	// stack through the whole delivery path for every message.
	work := make(chan string)                      // unbuffered: after close nothing is left to start
	results := make(chan done, r.opts.Concurrency) // each worker sends once per item taken
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	var wg sync.WaitGroup
	for range r.opts.Concurrency {
		wg.Go(func() {
			for id := range work {
				results <- r.process(workCtx, id)
			}
		})
	}
	busy := 0

	poll := time.NewTicker(r.opts.PollInterval)
	defer poll.Stop()
	flush := time.NewTicker(recordEvery)
	defer flush.Stop()
	defer r.flushRecords()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastKick := r.sp.ChangeMark()
	arrivals := r.sp.Arrivals()
	lastScan := time.Now()
	broken := false // the spool's failure has been logged

	for {
		// Start what is due, as far as there are idle workers.
		now := r.opts.Now()
		for busy < r.opts.Concurrency {
			id, ok := r.takeDue(now)
			if !ok {
				break
			}
			busy++
			work <- id // a worker is idle or about to be: busy counts what they hold
		}
		timer.Reset(r.nextWake(now, busy == r.opts.Concurrency))
		select {
		case <-ctx.Done():
			close(work)
			return r.stop(&wg, cancelWork, results)
		case id := <-arrivals:
			r.schedule(id, r.opts.Now())
		case d := <-results:
			busy--
			r.finish(d)
		case <-poll.C:
			r.pool.reap()
			// A broken spool (a failed directory fsync) fails every flush
			// until restart; it is said once, and /healthz keeps saying it.
			if err := r.sp.FlushRemovals(); err != nil && !broken {
				r.log.Error("queue: make removals durable", "err", err)
				broken = r.sp.Broken() != nil
			}
			if k := r.sp.ChangeMark(); !bytes.Equal(k, lastKick) || time.Since(lastScan) >= r.opts.RescanInterval {
				lastKick = k
				lastScan = time.Now()
				r.scan()
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
	r.pool.closeAll()
	if err := r.sp.FlushRemovals(); err != nil {
		r.log.Error("queue: make removals durable", "err", err)
	}
	return nil
}

// scan brings the schedule in line with the spool: new items, items an
// admin retried, held, released or removed in another process.
func (r *Runner) scan() {
	items, unreadable, err := r.sp.Scan()
	if err != nil {
		r.log.Error("queue: scan", "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool, len(items)+len(unreadable))
	// An item Scan could not read is scheduled too: its attempt
	// quarantines it if it is damaged, rather than leaving it unseen until
	// a restart.
	for _, id := range unreadable {
		seen[id] = true
		if r.sched.get(id) == nil {
			r.sched.set(id, r.opts.Now())
		}
	}
	for _, it := range items {
		seen[it.ID] = true
		e := r.sched.get(it.ID)
		switch {
		case e != nil && e.running:
		case it.State == spool.StateHeld:
			r.sched.remove(it.ID)
		default:
			r.sched.set(it.ID, it.NextAttempt)
		}
	}
	var gone []string
	for id, e := range r.sched.byID {
		if !seen[id] && !e.running && !r.removing[id] {
			gone = append(gone, id)
		}
	}
	for _, id := range gone {
		r.sched.remove(id)
		delete(r.prefixes, id)
	}
}

func (r *Runner) schedule(id string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sched.set(id, at)
}

func (r *Runner) finish(d done) {
	r.mu.Lock()
	r.sched.done(d.id, d.keep, d.next)
	if !d.keep {
		delete(r.prefixes, d.id)
	}
	r.mu.Unlock()
	for _, id := range d.also {
		r.schedule(id, r.opts.Now())
	}
}

// takeDue hands out the item due earliest, if any is due, marking it running.
func (r *Runner) takeDue(now time.Time) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sched.takeDue(now)
}

// nextWake is how long the scheduler may sleep. With every worker busy,
// overdue items wait for a worker to finish (which wakes the loop) rather
// than spinning the timer.
func (r *Runner) nextWake(now time.Time, full bool) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	wake := r.opts.RescanInterval
	if next, ok := r.sched.nextDue(); ok && !full {
		wake = min(wake, next.Sub(now))
	}
	return max(wake, time.Millisecond)
}

// Stats reports the queue for metrics.WatchQueue.
func (r *Runner) Stats() metrics.QueueStats {
	return r.sp.Stats(r.opts.Now())
}
