// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualmx/dualmx/arc"
	"github.com/dualmx/dualmx/authcheck"
	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/cutover"
	"github.com/dualmx/dualmx/dane"
	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/probe"
	"github.com/dualmx/dualmx/queue"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/smtpd"
	"github.com/dualmx/dualmx/spool"
	"github.com/dualmx/dualmx/srs"
	"github.com/dualmx/dualmx/vouch"
)

// shutdownGrace bounds how long SIGTERM waits for sessions in DATA and
// deliveries in flight; the systemd unit's TimeoutStopSec is set above it.
const shutdownGrace = 20 * time.Second

// m365DefaultSize is Microsoft 365's default maximum message size, used when
// the target cannot be asked at start.
const m365DefaultSize = 36 * 1024 * 1024

func newServeCmd(g *globalFlags) *cobra.Command {
	var jsonLogs, debug bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the relay daemon",
		Example: `  dualmx serve --config /etc/dualmx/dualmx.yaml
  DUALMX_CONFIG=/etc/dualmx/dualmx.yaml dualmx serve --log-json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			if err := g.checkOwner(cfg); err != nil {
				return err
			}
			if err := cfg.CheckStateAccess(config.WriteState); err != nil {
				return g.stateAccessError(cfg, err)
			}
			if jsonLogs {
				cfg.LogFormat = "json"
			}
			log := newLogger(cfg.LogFormat, os.Stderr)
			if debug {
				log = newLeveledLogger(cfg.LogFormat, os.Stderr, slog.LevelDebug)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if path := os.Getenv("DUALMX_CPUPROFILE"); path != "" {
				// Profiling the real daemon under a real load (bench/run.sh)
				// shows what an in-process benchmark hides: the client's share.
				f, err := os.Create(path)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
			if path := os.Getenv("DUALMX_MEMPROFILE"); path != "" {
				// The live heap whenever the daemon gets SIGUSR1: what a
				// spooled backlog costs in memory while it is there.
				usr1 := make(chan os.Signal, 1)
				signal.Notify(usr1, syscall.SIGUSR1)
				defer signal.Stop(usr1)
				go func() {
					for range usr1 {
						writeHeapProfile(path, log)
					}
				}()
			}
			d, err := startDaemon(ctx, cfg, log, nil)
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%w; another program (or another dualmx) listens there: stop it, or change listen.smtp or listen.metrics in %s", err, cfg.Path)
			}
			if err != nil {
				return err
			}
			return d.wait()
		},
	}
	cmd.Flags().BoolVar(&jsonLogs, "log-json", false, "write logs as JSON (overrides log_format)")
	cmd.Flags().BoolVar(&debug, "debug", false, "log the config one line a section, and each delivery attempt before it starts and each spool commit")
	return cmd
}

func loadConfig(g *globalFlags) (*config.Config, error) {
	p, err := g.path()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(p)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

func newLogger(format string, w io.Writer) *slog.Logger {
	return newLeveledLogger(format, w, slog.LevelInfo)
}

func newLeveledLogger(format string, w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// daemon is a running relay: the pieces wired together, and how to stop them.
type daemon struct {
	log   *slog.Logger
	cfg   *config.Config
	m     *metrics.Metrics
	store *router.Store
	table *router.Table
	spool *spool.Spool
	// resolver answers every lookup the daemon makes (authcheck's, the
	// sender's MX, the cutover's way to the authoritative servers).
	resolver *net.Resolver
	tenant   *courier.Tenant
	runner   *queue.Runner
	// returnPolicy is how smtpd accepts bounces to SRS addresses; nil without srs.
	returnPolicy *smtpd.ReturnPolicy
	maxSize      int64
	smtp         *smtpd.Server
	smtpLn       net.Listener
	smtpAddr     net.Addr
	httpSrv      *http.Server
	httpAddr     net.Addr
	// statusSrv serves the status page on its own listener.
	statusSrv  *http.Server
	statusAddr net.Addr

	ctx     context.Context
	cancel  context.CancelFunc
	runDone chan error
	errs    chan error
	once    sync.Once
}

// startDaemon starts the relay. It returns once the listeners are open, so a
// caller (the demo, a test) may connect immediately. The daemon stops when ctx
// is cancelled; wait reports how it ended.
//
// Each piece opens on what the ones before it opened: the state, the spool,
// delivery, the SMTP listener, the HTTP listeners; the loops start last, once
// every listener is open, and stop shuts them down in its own order.
func startDaemon(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (*daemon, error) {
	if m == nil {
		m = metrics.New()
	}
	logConfig(ctx, log, cfg)
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", "problem", w.String())
	}
	d := &daemon{log: log, cfg: cfg, m: m, runDone: make(chan error, 1), errs: make(chan error, 3)}
	if err := d.openState(ctx); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.store.Close()
		}
	}()
	if err := d.openSpool(); err != nil {
		return nil, err
	}
	if err := d.openDelivery(); err != nil {
		return nil, err
	}
	d.maxSize = d.messageSizeLimit(ctx)
	if err := d.openSMTP(); err != nil {
		return nil, err
	}
	if err := d.startHTTP(); err != nil {
		d.smtpLn.Close()
		return nil, err
	}
	d.startLoops(ctx)
	log.Info("dualmx ready", "smtp", d.smtpAddr.String(), "metrics", addrString(d.httpAddr), "status", addrString(d.statusAddr), "target", net.JoinHostPort(cfg.Target.Host, strconv.Itoa(cfg.Target.Port)), "max_message_bytes", d.maxSize)
	ok = true
	return d, nil
}

// logConfig logs the effective configuration, secrets masked: in the start
// line, or with --debug one line per section after it.
func logConfig(ctx context.Context, log *slog.Logger, cfg *config.Config) {
	if !log.Enabled(ctx, slog.LevelDebug) {
		log.Info("starting dualmx", "config", cfg)
		return
	}
	log.Info("starting dualmx", "config", cfg.Path)
	for _, line := range cfg.LogSections() {
		log.LogAttrs(ctx, slog.LevelDebug, "config", line...)
	}
}

// openState opens the state database and loads the routing table from it.
func (d *daemon) openState(ctx context.Context) error {
	if err := os.MkdirAll(d.cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	store, err := router.Open(d.cfg.DBPath())
	if err != nil {
		return err
	}
	d.store = store
	d.table = router.NewTable(store, d.m, d.log)
	d.table.MaxStale = d.cfg.Inbound.RoutingMaxStale
	if err := d.table.Load(ctx); err != nil {
		store.Close()
		return fmt.Errorf("routing table: %w", err)
	}
	d.m.WatchAddresses(metrics.Labels(router.States), d.table.Snapshot)
	return nil
}

// openSpool opens the spool, recovering what an earlier run left there.
func (d *daemon) openSpool() error {
	sp, err := spool.Open(d.cfg.SpoolDir(), d.m, d.log, spool.WithHostname(d.cfg.Hostname))
	if err != nil {
		return err
	}
	d.spool = sp
	watchOperations(d.m, d.store, d.cfg.SpoolDir())
	return nil
}

// openDelivery assembles the targets and the queue's runner; nothing is
// dialled yet.
func (d *daemon) openDelivery() error {
	cfg := d.cfg
	roots, err := targetRoots(cfg)
	if err != nil {
		return err
	}
	d.resolver = authcheck.NewResolver(cfg.Resolver)
	client := courier.Client{HelloName: cfg.Hostname, CommandTimeout: cfg.Delivery.CommandTimeout,
		DataTimeout: cfg.Delivery.DataTimeout, Resolver: d.resolver}
	daneResolver, err := newDANE(cfg)
	if err != nil {
		return err
	}
	d.tenant, err = courier.NewTenant(courier.TenantConfig{Client: client, Host: cfg.Target.Host, Port: cfg.Target.Port, DANE: daneResolver,
		TLS: cfg.Target.TLS, RootCAs: roots, MaxIdle: cfg.Delivery.Concurrency, IPFamily: cfg.Target.IPFamily,
		Health: courier.HealthConfig{MaxConcurrency: cfg.Delivery.Concurrency,
			ProbeInitial: cfg.Delivery.RetryInitial, ProbeMax: cfg.Delivery.RetryMax}})
	if err != nil {
		return err
	}
	v, err := newVoucher(cfg, d.m, d.log)
	if err != nil {
		return err
	}
	// The message's way to the tenant: the arrival verdict and ARC seal
	// (vouch), the sender rewritten (SRS), then the courier.
	var toTenant courier.Target = d.tenant
	if cfg.SRS.Enabled {
		rw, err := newSRS(cfg)
		if err != nil {
			return err
		}
		toTenant = courier.RewriteSender(toTenant, rw.Forward)
		d.returnPolicy = &smtpd.ReturnPolicy{Domain: rw.Domain, Reverse: rw.Reverse, Reason: srs.Reason, PerHour: cfg.SRS.DSNPerHour,
			PerClientPerHour: cfg.SRS.DSNPerClientPerHour, PerDestinationPerHour: cfg.SRS.DSNPerDestinationPerHour,
			MaxInvalid: cfg.SRS.GuessesPerClient, Penalty: cfg.SRS.GuessPenalty, InvalidPerHour: cfg.SRS.GuessesPerHour,
			Sources: cfg.SRS.ReturnSources, SourcePenalty: cfg.SRS.ReturnSourcePenalty}
	}
	toTenant = v.Target(toTenant)
	d.runner = queue.NewRunner(d.spool, queue.Options{
		Tenant:             toTenant,
		Health:             d.tenant.Health(),
		StatusFile:         cfg.TargetStatusPath(),
		Sender:             courier.NewMX(courier.MXConfig{Client: client, Port: cfg.Delivery.MXPort, AllowLoopback: cfg.Delivery.MXAllowLoopback}),
		HelloName:          cfg.Hostname,
		RetryInitial:       cfg.Delivery.RetryInitial,
		RetryMax:           cfg.Delivery.RetryMax,
		GiveUpAfter:        cfg.Delivery.GiveUpAfter,
		OnPermanentFailure: cfg.Delivery.OnPermanentFailure,
		Concurrency:        cfg.Delivery.Concurrency,
		SenderConcurrency:  cfg.Delivery.SenderConcurrency,
		Recorder:           d.store,
	}, d.m, d.log)
	d.m.WatchQueue(metrics.Labels(spool.States), d.runner.Stats)
	d.m.WatchTarget(d.runner.TargetStatus)
	return nil
}

// newDANE makes the validating TLSA resolver for target.tls: dane (nil
// otherwise): it asks the configured resolver (or the system's first name
// server) and validates from the IANA root keys, or from
// target.dane_trust_anchor_file.
func newDANE(cfg *config.Config) (*dane.Resolver, error) {
	if cfg.Target.TLS != config.TLSDane {
		return nil, nil
	}
	server := cfg.Resolver
	if server == "" {
		var err error
		if server, err = dane.SystemServer("/etc/resolv.conf"); err != nil {
			return nil, fmt.Errorf("target.tls dane: %w", err)
		}
	}
	anchors := dane.RootAnchors()
	if f := cfg.Target.DaneTrustAnchorFile; f != "" {
		var err error
		if anchors, err = dane.LoadTrustAnchorFile(f); err != nil {
			return nil, fmt.Errorf("target.dane_trust_anchor_file: %w", err)
		}
	}
	return dane.New(dane.Options{Server: server, Anchors: anchors})
}

// targetRoots is the system's roots plus target.ca_file, or nil (the
// system's) without one.
func targetRoots(cfg *config.Config) (*x509.CertPool, error) {
	if cfg.Target.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(cfg.Target.CAFile)
	if err != nil {
		return nil, fmt.Errorf("target.ca_file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("target.ca_file %s: no PEM certificates", cfg.Target.CAFile)
	}
	return roots, nil
}

// messageSizeLimit is the SIZE smtpd offers: the configured limit, lowered
// to what the target takes (Microsoft 365's default when it cannot be asked),
// so a message the tenant would refuse is refused before 250.
func (d *daemon) messageSizeLimit(ctx context.Context) int64 {
	maxSize := d.cfg.Inbound.MaxMessageBytes
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	caps, err := d.tenant.Capabilities(pctx)
	pcancel()
	switch {
	case err != nil:
		d.log.Warn("could not ask the target for its size limit; assuming Microsoft 365's default", "target", d.cfg.Target.Host, "err", err, "assumed_bytes", m365DefaultSize)
		maxSize = min(maxSize, m365DefaultSize)
	case caps.MaxSize > 0:
		maxSize = min(maxSize, caps.MaxSize)
	}
	d.m.TargetSizeLimitByte.Set(float64(maxSize))
	return maxSize
}

// openSMTP sets up the SMTP server and opens its listener; it serves once
// startLoops runs.
func (d *daemon) openSMTP() error {
	cfg := d.cfg
	var tlsCfg *tls.Config
	if cfg.Inbound.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Inbound.TLSCertFile, cfg.Inbound.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("inbound TLS: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		exportCertificate(d.m, cert)
	}
	marked, err := probeArrivals(cfg, d.store, d.m, d.log)
	if err != nil {
		return err
	}
	d.smtp = smtpd.New(smtpd.Options{
		Hostname:            cfg.Hostname,
		MaxMessageBytes:     d.maxSize,
		MaxRecipients:       cfg.Inbound.MaxRecipients,
		MaxConnections:      cfg.Inbound.MaxConnections,
		MaxConnectionsPerIP: cfg.Inbound.MaxConnectionsPerIP,
		MaxHeaderBytes:      cfg.Inbound.MaxHeaderBytes,
		ReadTimeout:         cfg.Inbound.ReadTimeout,
		MaxSession:          cfg.Inbound.MaxSession,
		AllowedNetworks:     cfg.Inbound.AllowedNetworks,
		TLS:                 tlsCfg,
		MaxReceived:         cfg.Inbound.MaxReceived,
		ARCDomain:           cfg.ARC.Domain,
		ReturnPolicy:        d.returnPolicy,
		Router:              d.table,
		Spool:               d.spool,
		MarkerField:         probe.Field,
		Marked:              marked,
		Metrics:             d.m,
		Logger:              d.log,
	})
	// No TCP keep-alive on inbound sessions: the SMTP read timeout already
	// ends a dead one, and keep-alive costs four system calls per connection.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", cfg.Listen.SMTP)
	if err != nil {
		return fmt.Errorf("listen smtp: %w", err)
	}
	d.smtpLn, d.smtpAddr = ln, ln.Addr()
	return nil
}

// startLoops starts what runs until the daemon stops: the routing table's
// reload, the cutover watch, delivery, the SMTP server, and the watch on
// ctx and on listener errors that stops them all.
func (d *daemon) startLoops(ctx context.Context) {
	d.ctx, d.cancel = context.WithCancel(context.Background())
	go d.table.Run(d.ctx, 250*time.Millisecond)
	d.startCutoverWatch()
	go func() { d.runDone <- d.runner.Run(d.ctx) }()
	go func() {
		if err := d.smtp.Serve(d.smtpLn); err != nil {
			d.errs <- fmt.Errorf("smtp listener: %w", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
		case err := <-d.errs:
			d.errs <- err
		}
		d.stop()
	}()
}

// startCutoverWatch watches the domain's DNS for the cutover when the
// cutover section is present.
func (d *daemon) startCutoverWatch() {
	cfg := d.cfg
	if !cfg.Cutover.Enabled {
		return
	}
	// The system (or configured) resolver only finds the authoritative
	// servers; every check asks those servers directly.
	src, err := expectationsFor(cfg)
	if err != nil {
		d.log.Error("cutover checks off: no source of expected DNS values", "err", err)
		return
	}
	w := &cutover.Watcher{Domain: cfg.Cutover.Domain, Checker: &dnscheck.Checker{Resolver: d.resolver},
		Expectations: src, Addresses: d.store, Spool: d.spool, StateDir: cfg.StateDir,
		QuietPeriod: cfg.Cutover.QuietPeriod, Log: d.log}
	go cutover.Watch(d.ctx, w, 5*time.Minute, d.m)
}

// newVoucher sets up the arrival checks and, when the arc section is present,
// sealing. The key is loaded once here; a key file others can read is refused.
func newVoucher(cfg *config.Config, m *metrics.Metrics, log *slog.Logger) (*vouch.Voucher, error) {
	v := &vouch.Voucher{
		// The cache honours each record's TTL (at most five minutes): a
		// burst from one sender domain then costs one SPF and one DMARC
		// lookup, not two per message.
		Check:   authcheck.Checker{AuthServID: cfg.Hostname, Lookup: authcheck.NewCache(cfg.Resolver), Metrics: m},
		Metrics: m,
		Logger:  log,
	}
	if cfg.ARC.Enabled {
		key, err := arc.LoadKey(cfg.ARC.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("arc.key_file: %w", err)
		}
		v.Sealer = &arc.Sealer{Domain: cfg.ARC.Domain, Selector: cfg.ARC.Selector, Key: key}
		log.Info("arc sealing on", "domain", cfg.ARC.Domain, "selector", cfg.ARC.Selector, "signer", arc.SignerInfo(key))
		if m != nil {
			m.WatchARCSignerFallbacks(arc.SignerFallbacks)
		}
		if len(cfg.ARC.Headers) > 0 { // "headers: []" means the default, not "sign nothing"
			v.Sealer.Headers = cfg.ARC.Headers
		}
	}
	return v, nil
}

// newSRS loads the SRS secrets; they are read once, never logged.
func newSRS(cfg *config.Config) (*srs.Rewriter, error) {
	cur, prev, err := srs.LoadSecrets(cfg.SRS.SecretFile, cfg.SRS.PreviousSecretFiles)
	if err != nil {
		return nil, fmt.Errorf("srs: %w", err)
	}
	return &srs.Rewriter{Domain: cfg.SRS.Domain, Secret: cur, Previous: prev, MaxAge: cfg.SRS.MaxAge}, nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// stop shuts down in the order that keeps mail safe: no new sessions, sessions
// in DATA finish (or are cut at the deadline, unacknowledged), then delivery
// stops with in-flight messages either finished or left in the spool.
func (d *daemon) stop() {
	d.once.Do(func() {
		d.log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace/2)
		if err := d.smtp.Shutdown(sctx); err != nil {
			d.log.Warn("smtp shutdown cut sessions", "err", err)
		}
		cancel()
		d.cancel()
		select {
		case err := <-d.runDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				d.log.Warn("delivery stopped with error", "err", err)
			}
			// Delivery is over: idle connections to the tenant say QUIT,
			// and the spool's files kept for reuse go. (If it did not
			// stop in time, the next start removes them.)
			d.tenant.Close()
			if err := d.spool.Close(); err != nil {
				d.log.Warn("closing the spool", "err", err)
			}
		case <-time.After(shutdownGrace / 2):
			d.log.Warn("delivery did not stop in time; unfinished messages stay in the spool")
		}
		d.stopHTTP()
		d.store.Close()
		d.log.Info("stopped")
		close(d.errs)
	})
}

// wait blocks until the daemon has stopped and returns the first listener error, if any.
func (d *daemon) wait() error {
	var first error
	for err := range d.errs {
		if first == nil {
			first = err
		}
	}
	return first
}

// healthz answers 200 while the spool takes mail (see spool.Health).
func (d *daemon) healthz() http.HandlerFunc {
	return healthzHandler(d.m, d.spool.Health)
}

func healthzHandler(m *metrics.Metrics, health func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		err := health()
		if err == nil {
			m.SpoolWritable.Set(1)
		} else {
			m.SpoolWritable.Set(0)
		}
		if err != nil {
			http.Error(w, "spool not writable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// writeHeapProfile writes the live heap, after a collection, to path.
func writeHeapProfile(path string, log *slog.Logger) {
	f, err := os.Create(path)
	if err != nil {
		log.Error("heap profile", "err", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		log.Error("heap profile", "err", err)
	}
}
