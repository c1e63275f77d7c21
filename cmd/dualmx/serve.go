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
	cmd.Flags().BoolVar(&debug, "debug", false, "also log each delivery attempt before it starts and each spool commit")
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
	log      *slog.Logger
	cfg      *config.Config
	store    *router.Store
	spool    *spool.Spool
	tenant   *courier.Tenant
	runner   *queue.Runner
	smtp     *smtpd.Server
	smtpAddr net.Addr
	httpSrv  *http.Server
	httpAddr net.Addr
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
func startDaemon(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (*daemon, error) {
	if m == nil {
		m = metrics.New()
	}
	// The dane package checks TLSA records, but delivery does not call it
	// yet, and the queue would take "dane" for a policy without certificate
	// checks: refuse to start rather than downgrade.
	if cfg.Target.TLS == config.TLSDane {
		return nil, errors.New("target.tls: dane is not used by delivery yet; set it to require until it is")
	}
	log.Info("starting dualmx", "config", cfg.Path, "effective", cfg.Redacted())
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", "problem", w.String())
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	store, err := router.Open(cfg.DBPath())
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, cfg: cfg, store: store, runDone: make(chan error, 1), errs: make(chan error, 3)}
	ok := false
	defer func() {
		if !ok {
			store.Close()
		}
	}()
	table := router.NewTable(store, m, log)
	table.MaxStale = cfg.Inbound.RoutingMaxStale
	if err := table.Load(ctx); err != nil {
		return nil, fmt.Errorf("routing table: %w", err)
	}
	m.WatchAddresses(table.Snapshot)

	sp, err := spool.Open(cfg.SpoolDir(), m, log, spool.WithHostname(cfg.Hostname))
	if err != nil {
		return nil, err
	}
	d.spool = sp
	watchOperations(m, store, cfg.SpoolDir())

	var roots *x509.CertPool
	if cfg.Target.CAFile != "" {
		pem, err := os.ReadFile(cfg.Target.CAFile)
		if err != nil {
			return nil, fmt.Errorf("target.ca_file: %w", err)
		}
		roots, err = x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("target.ca_file %s: no PEM certificates", cfg.Target.CAFile)
		}
	}
	resolver := authcheck.NewResolver(cfg.Resolver)
	client := courier.Client{HelloName: cfg.Hostname, CommandTimeout: cfg.Delivery.CommandTimeout,
		DataTimeout: cfg.Delivery.DataTimeout, Resolver: resolver}
	d.tenant = courier.NewTenant(courier.TenantConfig{Client: client, Host: cfg.Target.Host, Port: cfg.Target.Port,
		TLS: cfg.Target.TLS, RootCAs: roots, MaxIdle: cfg.Delivery.Concurrency})
	v, err := newVoucher(cfg, m, log)
	if err != nil {
		return nil, err
	}
	// The message's way to the tenant: the arrival verdict and ARC seal
	// (vouch), the sender rewritten (SRS), then the courier.
	var toTenant courier.Target = d.tenant
	var returns *smtpd.Returns
	if cfg.SRS.Enabled {
		rw, err := newSRS(cfg)
		if err != nil {
			return nil, err
		}
		toTenant = srsStage{rw: rw, next: toTenant}
		returns = &smtpd.Returns{Domain: rw.Domain, Reverse: rw.Reverse, Reason: srs.Reason, PerHour: cfg.SRS.DSNPerHour,
			PerClientPerHour: cfg.SRS.DSNPerClientPerHour, PerDestinationPerHour: cfg.SRS.DSNPerDestinationPerHour}
	}
	toTenant = v.Target(toTenant)
	d.runner = queue.NewRunner(sp, queue.Options{
		Tenant:             toTenant,
		Sender:             courier.NewMX(courier.MXConfig{Client: client, Port: cfg.Delivery.MXPort, AllowLoopback: cfg.Delivery.MXAllowLoopback}),
		HelloName:          cfg.Hostname,
		RetryInitial:       cfg.Delivery.RetryInitial,
		RetryMax:           cfg.Delivery.RetryMax,
		GiveUpAfter:        cfg.Delivery.GiveUpAfter,
		OnPermanentFailure: cfg.Delivery.OnPermanentFailure,
		Concurrency:        cfg.Delivery.Concurrency,
		Recorder:           store,
	}, m, log)
	m.WatchQueue(d.runner.Stats)

	maxSize := cfg.Inbound.MaxMessageBytes
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	caps, perr := d.tenant.Capabilities(pctx)
	pcancel()
	switch {
	case perr != nil:
		log.Warn("could not ask the target for its size limit; assuming Microsoft 365's default", "target", cfg.Target.Host, "err", perr, "assumed_bytes", m365DefaultSize)
		maxSize = min(maxSize, m365DefaultSize)
	case caps.MaxSize > 0:
		maxSize = min(maxSize, caps.MaxSize)
	}
	m.TargetSizeLimitByte.Set(float64(maxSize))

	var tlsCfg *tls.Config
	if cfg.Inbound.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Inbound.TLSCertFile, cfg.Inbound.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("inbound TLS: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		exportCertificate(m, cert)
	}
	marked, err := probeArrivals(cfg, store, m, log)
	if err != nil {
		return nil, err
	}
	d.smtp = smtpd.New(smtpd.Options{
		Hostname:            cfg.Hostname,
		MaxMessageBytes:     maxSize,
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
		Returns:             returns,
		Router:              table,
		Spool:               sp,
		MarkerField:         probe.Field,
		Marked:              marked,
		Metrics:             m,
		Logger:              log,
	})
	// No TCP keep-alive on inbound sessions: the SMTP read timeout already
	// ends a dead one, and the probes cost four system calls per connection.
	sln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", cfg.Listen.SMTP)
	if err != nil {
		return nil, fmt.Errorf("listen smtp: %w", err)
	}
	d.smtpAddr = sln.Addr()

	if err := d.startHTTP(m); err != nil {
		sln.Close()
		return nil, err
	}

	d.ctx, d.cancel = context.WithCancel(context.Background())
	go table.Run(d.ctx, 250*time.Millisecond)
	if cfg.Cutover.Enabled {
		// The system (or configured) resolver only finds the authoritative
		// servers; every check asks those servers directly.
		if src, err := expectationsFor(cfg); err != nil {
			log.Error("cutover checks off: no source of expected DNS values", "err", err)
		} else {
			w := &cutover.Watcher{Domain: cfg.Cutover.Domain, Checker: &dnscheck.Checker{Resolver: resolver},
				Expectations: src, Addresses: store, Spool: sp, StateDir: cfg.StateDir,
				QuietPeriod: cfg.Cutover.QuietPeriod, Log: log}
			go cutover.Watch(d.ctx, w, 5*time.Minute, m)
		}
	}
	go func() { d.runDone <- d.runner.Run(d.ctx) }()
	go func() {
		if err := d.smtp.Serve(sln); err != nil {
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
	log.Info("dualmx ready", "smtp", d.smtpAddr.String(), "metrics", addrString(d.httpAddr), "status", addrString(d.statusAddr), "target", net.JoinHostPort(cfg.Target.Host, strconv.Itoa(cfg.Target.Port)), "max_message_bytes", maxSize)
	ok = true
	return d, nil
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
func (d *daemon) healthz(m *metrics.Metrics) http.HandlerFunc {
	return healthzHandler(m, d.spool.Health)
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
