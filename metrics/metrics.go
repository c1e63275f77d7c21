// SPDX-License-Identifier: MIT

// Package metrics owns every Prometheus collector dualmx exports and the HTTP
// endpoint that serves them. Other packages receive a *Metrics and only touch
// the fields; gauges that mirror state elsewhere (queue size, address states)
// are read at scrape time through callbacks, so they can never drift.
package metrics

import (
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the collectors. Create it with New; the zero value is not usable.
type Metrics struct {
	Registry *prometheus.Registry

	// SMTP (inbound).
	SMTPSessions       prometheus.Counter
	SMTPSessionsActive prometheus.Gauge
	// SMTPReplies counts replies to MAIL, RCPT and DATA by command and code class ("2xx", "4xx", "5xx").
	SMTPReplies *prometheus.CounterVec
	// SMTPRefusals counts refused commands by a bounded reason ("unknown_recipient", "too_large", ...).
	SMTPRefusals     *prometheus.CounterVec
	MessagesAccepted prometheus.Counter
	AcceptedBytes    prometheus.Counter

	// Delivery (outbound). Result is one of delivered, deferred, held, bounced, dropped.
	Deliveries *prometheus.CounterVec
	// DeliveryLatency is the time from acceptance to the next hop's 250.
	DeliveryLatency prometheus.Histogram
	// AttemptDuration is the wall time of one SMTP transaction with the target.
	AttemptDuration prometheus.Histogram
	// AddressDelivered counts recipients delivered per public address (bounded by the routing table).
	AddressDelivered *prometheus.CounterVec
	DSNsGenerated    prometheus.Counter
	Quarantined      prometheus.Counter

	// ARCSeals counts messages by what sealing did: sealed, or skipped (the
	// chain could not be sealed, e.g. at the RFC 8617 limit of 50 sets, or the
	// key failed); a skipped message is forwarded with Authentication-Results only.
	ARCSeals *prometheus.CounterVec

	// SRSRefusals counts RCPTs to the SRS domain refused, and returns
	// refused after DATA, by reason (see SRSRefusalReasons).
	SRSRefusals *prometheus.CounterVec
	// SRSReturned counts bounces accepted for valid SRS addresses, on their
	// way back to the original sender.
	SRSReturned prometheus.Counter
	// SRSOutsideSources counts valid SRS recipients from clients outside
	// srs.return_sources, by what they got at RCPT: accepted, or deferred
	// because the guess budget was spent. Real returns come from the
	// sources, so any count here suggests the list is out of date.
	SRSOutsideSources *prometheus.CounterVec

	// ProbeArrivals counts forward probes (dualmx address probe) that reached
	// the relay, by result: verified, misrouted (valid marker, another
	// address's alias), invalid (bad or stale marker).
	ProbeArrivals *prometheus.CounterVec

	// Router.
	RouterReloads       prometheus.Counter
	RouterReloadErrors  prometheus.Counter
	SpoolWritable       prometheus.Gauge
	TargetSizeLimitByte prometheus.Gauge

	// Authentication on arrival (package authcheck), one observation per message.
	// Together they show whether the old host alters what it forwards and how
	// much of the mail depends on ARC (or Enhanced Filtering) at Microsoft 365.
	//
	// AuthAuthorDKIM counts messages by the state of the From domain's DKIM signature:
	// intact (an aligned signature verifies: DMARC survives forwarding on its own),
	// broken (an aligned signature is present and fails: the message was altered on the way),
	// absent (no aligned signature), unknown (aligned signatures could only be checked with a temporary DNS error).
	AuthAuthorDKIM *prometheus.CounterVec
	// AuthSPF counts messages by the SPF result for the connecting IP and MAIL FROM (HELO for <>);
	// on forwarded mail fail/softfail is expected and harmless when DKIM is intact.
	AuthSPF *prometheus.CounterVec
	// AuthDMARC counts messages by the DMARC result for the From domain, as seen on arrival.
	AuthDMARC *prometheus.CounterVec
	// AuthARC counts messages by the cv of the ARC chain they arrived with (none, pass, fail).
	AuthARC *prometheus.CounterVec
	// AuthDMARCSPFOnly counts messages whose DMARC pass on arrival rests on SPF alignment alone
	// (no aligned DKIM pass). SPF cannot align after dualmx forwards, so at Microsoft 365 only
	// a trusted ARC seal or Enhanced Filtering keeps these messages out of the junk folder.
	AuthDMARCSPFOnly prometheus.Counter
	// AuthCheckDuration is the wall time of the arrival checks of one message, DNS included;
	// a tail at the configured timeout means the resolver is slow or unreachable.
	AuthCheckDuration prometheus.Histogram

	// cutover is the function WatchCutover registered, for the status page.
	cutover atomic.Pointer[func() CutoverStatus]
	// target is the function WatchTarget registered, for the status page.
	target atomic.Pointer[func() TargetStatus]
}

// QueueStats is what the queue reports at scrape time.
type QueueStats struct {
	// ByState maps pending, deferred and held to a message count.
	ByState map[string]int
	// OldestAgeSeconds is the age of the oldest message still in the spool, 0 when empty.
	OldestAgeSeconds float64
}

// AddressState is one row of the routing table as exported.
type AddressState struct {
	Address string
	State   string
}

// Labels turns a package's enumeration (spool's, router's, cutover's
// states) into the label values a collector always exports, so a dashboard
// sees zeros rather than missing series. The owner passes its list when it
// registers: the values live in one place, and metrics imports none of them.
func Labels[S ~string](values []S) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

var (
	// The label values of the dualmx_auth_* counters; authcheck maps anything else onto them.
	AuthorDKIMStates = []string{"intact", "broken", "absent", "unknown"}
	SPFResults       = []string{"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}
	DMARCResults     = []string{"pass", "fail", "none", "temperror", "permerror"}
	ARCResults       = []string{"none", "pass", "fail"}
)

// New creates the collectors and registers them, with the Go and process collectors, on a new registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		SMTPSessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_smtp_sessions_total", Help: "Inbound SMTP sessions opened."}),
		SMTPSessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dualmx_smtp_sessions_active", Help: "Inbound SMTP sessions currently open."}),
		SMTPReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_smtp_replies_total", Help: "Replies to inbound MAIL, RCPT and DATA by command and code class."},
			[]string{"command", "code_class"}),
		SMTPRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_smtp_refusals_total", Help: "Inbound commands refused, by reason."}, []string{"reason"}),
		MessagesAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_smtp_messages_accepted_total", Help: "Messages acknowledged with 250 after being made durable in the spool."}),
		AcceptedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_smtp_accepted_bytes_total", Help: "Bytes of accepted messages as written to the spool."}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_delivery_recipients_total", Help: "Per-recipient delivery outcomes: delivered, deferred, held, bounced, dropped."},
			[]string{"result"}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dualmx_delivery_latency_seconds", Help: "Time from acceptance to the next hop's acceptance.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400}}),
		AttemptDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dualmx_delivery_attempt_duration_seconds", Help: "Duration of one SMTP transaction with the next hop.",
			Buckets: prometheus.DefBuckets}),
		AddressDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_address_delivered_total", Help: "Recipients delivered per public address."}, []string{"address"}),
		DSNsGenerated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_dsn_generated_total", Help: "Delivery status notifications generated by dualmx."}),
		Quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_queue_quarantined_total", Help: "Spool items that could not be read and were moved to quarantine."}),
		ARCSeals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_arc_seals_total", Help: "Forwarded messages by ARC sealing outcome: sealed or skipped."}, []string{"result"}),
		SRSRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_srs_refusals_total", Help: "Recipients at the SRS domain refused, by reason."}, []string{"reason"}),
		SRSReturned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_srs_returned_total", Help: "Bounces accepted for valid SRS addresses, returned to the original sender."}),
		SRSOutsideSources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_srs_outside_sources_total", Help: "Valid SRS recipients from clients outside srs.return_sources, by result at RCPT: accepted, deferred."},
			[]string{"result"}),
		ProbeArrivals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_probe_arrivals_total", Help: "Forward probes that reached the relay, by result: verified, misrouted, invalid."}, []string{"result"}),
		RouterReloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_router_reloads_total", Help: "Routing table reloads after a change in the state database."}),
		RouterReloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_router_reload_errors_total", Help: "Failed attempts to read the routing table."}),
		SpoolWritable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dualmx_spool_writable", Help: "1 while the spool's last health check (a write and fsync) succeeded."}),
		TargetSizeLimitByte: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dualmx_smtp_max_message_bytes", Help: "Message size limit in force (the lower of the config and the target's SIZE)."}),
		AuthAuthorDKIM: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_auth_author_dkim_total", Help: "Messages by the state of the From domain's DKIM signature on arrival: intact, broken, absent, unknown."},
			[]string{"state"}),
		AuthSPF: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_auth_spf_total", Help: "Messages by SPF result on arrival."}, []string{"result"}),
		AuthDMARC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_auth_dmarc_total", Help: "Messages by DMARC result for the From domain on arrival."}, []string{"result"}),
		AuthARC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualmx_auth_arc_total", Help: "Messages by the cv of the ARC chain they arrived with."}, []string{"result"}),
		AuthDMARCSPFOnly: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualmx_auth_dmarc_spf_only_total", Help: "Messages that passed DMARC on arrival only through SPF alignment; after forwarding only ARC or Enhanced Filtering can rescue them."}),
		AuthCheckDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dualmx_auth_check_duration_seconds", Help: "Wall time of the DKIM, SPF, DMARC and ARC checks of one message.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}),
	}
	r.MustRegister(m.SMTPSessions, m.SMTPSessionsActive, m.SMTPReplies, m.SMTPRefusals, m.MessagesAccepted,
		m.AcceptedBytes, m.Deliveries, m.DeliveryLatency, m.AttemptDuration, m.AddressDelivered, m.DSNsGenerated,
		m.Quarantined, m.ARCSeals, m.SRSRefusals, m.SRSReturned, m.RouterReloads, m.RouterReloadErrors, m.SpoolWritable, m.TargetSizeLimitByte)
	for _, res := range []string{"delivered", "deferred", "held", "bounced", "dropped"} {
		m.Deliveries.WithLabelValues(res)
	}
	r.MustRegister(m.SRSOutsideSources)
	for _, res := range []string{"accepted", "deferred"} {
		m.SRSOutsideSources.WithLabelValues(res)
	}
	r.MustRegister(m.ProbeArrivals)
	for _, res := range []string{"verified", "misrouted", "invalid"} {
		m.ProbeArrivals.WithLabelValues(res)
	}
	for _, res := range []string{"sealed", "skipped"} {
		m.ARCSeals.WithLabelValues(res)
	}
	for _, reason := range SRSRefusalReasons {
		m.SRSRefusals.WithLabelValues(reason)
	}
	for _, reason := range []string{"loop_seen", "loop_hops", "unknown_recipient", "spool_full", "bare_newline", "too_large"} {
		m.SMTPRefusals.WithLabelValues(reason)
	}
	r.MustRegister(m.AuthAuthorDKIM, m.AuthSPF, m.AuthDMARC, m.AuthARC, m.AuthDMARCSPFOnly, m.AuthCheckDuration)
	for _, st := range AuthorDKIMStates {
		m.AuthAuthorDKIM.WithLabelValues(st)
	}
	for _, res := range SPFResults {
		m.AuthSPF.WithLabelValues(res)
	}
	for _, res := range DMARCResults {
		m.AuthDMARC.WithLabelValues(res)
	}
	for _, res := range ARCResults {
		m.AuthARC.WithLabelValues(res)
	}
	return m
}

// SRSRefusalReasons are the values of dualmx_srs_refusals_total's reason:
// the address was malformed, its hash wrong, or it expired; the sender was
// not null (not_dsn); a return mixed with other recipients; a return rate
// limit: in all (rate_limited), per client network (client_rate_limited) or
// per destination domain (destination_rate_limited); the invalid address that used up its client's allowance
// (guess_limit, answered 421 and the connection closed); an SRS recipient
// from a client network in its penalty (penalised, 421, not checked); one
// refused unchecked because the hourly budget for invalid addresses of
// clients outside srs.return_sources was spent, or the table of client
// networks was full (guess_budget); a message that is neither a delivery report nor an
// automatic reply (not_return, after DATA).
var SRSRefusalReasons = []string{"malformed", "bad_hash", "expired", "not_dsn", "rate_limited", "mixed",
	"client_rate_limited", "destination_rate_limited", "guess_limit", "penalised", "guess_budget", "not_return"}

// CodeClass maps an SMTP reply code to its label value.
func CodeClass(code int) string {
	switch code / 100 {
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	default:
		return "5xx"
	}
}

// WatchQueue exports queue size by state and the oldest message's age, read from f at scrape time.
// states are every state a message can be in (spool's).
func (m *Metrics) WatchQueue(states []string, f func() QueueStats) {
	m.Registry.MustRegister(&queueCollector{states: states, f: f})
}

// WatchAddresses exports one dualmx_address_state series per address and
// state, 1 for the current state; states are every state an address can be
// in (router's).
func (m *Metrics) WatchAddresses(states []string, f func() []AddressState) {
	m.Registry.MustRegister(&addressCollector{states: states, f: f})
}

var (
	queueSizeDesc = prometheus.NewDesc("dualmx_queue_messages", "Messages in the spool by state.", []string{"state"}, nil)
	queueAgeDesc  = prometheus.NewDesc("dualmx_queue_oldest_message_age_seconds", "Age of the oldest message in the spool.", nil, nil)
	addrStateDesc = prometheus.NewDesc("dualmx_address_state", "1 for the state each address is in, 0 for the others.", []string{"address", "state"}, nil)
)

type queueCollector struct {
	states []string
	f      func() QueueStats
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueSizeDesc
	ch <- queueAgeDesc
}
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f()
	for _, st := range c.states {
		ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, float64(s.ByState[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, s.OldestAgeSeconds)
}

type addressCollector struct {
	states []string
	f      func() []AddressState
}

func (c *addressCollector) Describe(ch chan<- *prometheus.Desc) { ch <- addrStateDesc }
func (c *addressCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.f() {
		for _, st := range c.states {
			v := 0.0
			if st == a.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(addrStateDesc, prometheus.GaugeValue, v, a.Address, st)
		}
	}
}

// CutoverStatus is what the cutover watcher reports at scrape time.
type CutoverStatus struct {
	// State is one of the cutover's states; "" before the first successful check.
	State string
	// Checks maps a DNS check name to its worst level (ok, warning, error)
	// for the phase that matters in the current state.
	Checks map[string]string
	// Up is true when the last DNS check could run.
	Up      bool
	LastRun time.Time
}

var (
	cutoverStateDesc = prometheus.NewDesc("dualmx_cutover_state", "1 for the domain's cutover state, 0 for the others.", []string{"state"}, nil)
	cutoverCheckDesc = prometheus.NewDesc("dualmx_cutover_check", "1 for each DNS check's worst result (ok, warning, error), 0 for the others.", []string{"check", "level"}, nil)
	cutoverUpDesc    = prometheus.NewDesc("dualmx_cutover_check_up", "1 when the last cutover DNS check could run.", nil, nil)
	cutoverLastDesc  = prometheus.NewDesc("dualmx_cutover_last_check_timestamp_seconds", "When the last cutover DNS check ran.", nil, nil)
)

// WatchCutover exports the cutover state and the DNS checks' results, read
// from f at scrape time; states are every cutover state (cutover's), levels
// every result a check can have (dnscheck's).
func (m *Metrics) WatchCutover(states, levels []string, f func() CutoverStatus) {
	m.Registry.MustRegister(&cutoverCollector{states: states, levels: levels, f: f})
	m.cutover.Store(&f)
}

type cutoverCollector struct {
	states, levels []string
	f              func() CutoverStatus
}

func (c *cutoverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cutoverStateDesc
	ch <- cutoverCheckDesc
	ch <- cutoverUpDesc
	ch <- cutoverLastDesc
}

func (c *cutoverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f()
	for _, st := range c.states {
		ch <- prometheus.MustNewConstMetric(cutoverStateDesc, prometheus.GaugeValue, cutoverGauge(st == s.State), st)
	}
	for check, level := range s.Checks {
		for _, l := range c.levels {
			ch <- prometheus.MustNewConstMetric(cutoverCheckDesc, prometheus.GaugeValue, cutoverGauge(l == level), check, l)
		}
	}
	ch <- prometheus.MustNewConstMetric(cutoverUpDesc, prometheus.GaugeValue, cutoverGauge(s.Up))
	last := 0.0
	if !s.LastRun.IsZero() {
		last = float64(s.LastRun.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(cutoverLastDesc, prometheus.GaugeValue, last)
}

func cutoverGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Cutover returns what the cutover watcher reports now; ok is false when no
// watcher runs (the config has no cutover section).
func (m *Metrics) Cutover() (s CutoverStatus, ok bool) {
	f := m.cutover.Load()
	if f == nil {
		return CutoverStatus{}, false
	}
	return (*f)(), true
}

// AddressActivity is one address's history as exported for alerting.
type AddressActivity struct {
	Address string
	// LastDelivery is the zero time until the target first accepted mail for the address.
	LastDelivery time.Time
	// StateSince is when the address entered its current state.
	StateSince time.Time
}

var (
	addrLastDeliveryDesc = prometheus.NewDesc("dualmx_address_last_delivery_timestamp_seconds",
		"When the target last accepted mail for the address; absent until the first delivery.", []string{"address"}, nil)
	addrStateSinceDesc = prometheus.NewDesc("dualmx_address_state_since_timestamp_seconds",
		"When the address entered its current state.", []string{"address"}, nil)
)

// WatchAddressActivity exports each address's last delivery and the time it
// entered its current state, read from f at scrape time. Together with
// dualmx_address_state they show a forwarding address that stopped receiving
// mail: a forward at the old host that broke.
func (m *Metrics) WatchAddressActivity(f func() []AddressActivity) {
	m.Registry.MustRegister(&activityCollector{f: f})
}

type activityCollector struct{ f func() []AddressActivity }

func (c *activityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- addrLastDeliveryDesc
	ch <- addrStateSinceDesc
}

func (c *activityCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.f() {
		if !a.LastDelivery.IsZero() {
			ch <- prometheus.MustNewConstMetric(addrLastDeliveryDesc, prometheus.GaugeValue, unixSeconds(a.LastDelivery), a.Address)
		}
		if !a.StateSince.IsZero() {
			ch <- prometheus.MustNewConstMetric(addrStateSinceDesc, prometheus.GaugeValue, unixSeconds(a.StateSince), a.Address)
		}
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

var (
	spoolFreeDesc = prometheus.NewDesc("dualmx_spool_free_bytes",
		"Bytes available to dualmx on the spool's file system.", nil, nil)
	spoolSizeDesc = prometheus.NewDesc("dualmx_spool_size_bytes",
		"Size of the spool's file system in bytes.", nil, nil)
)

// WatchSpoolDisk exports the free and total bytes of the file system holding
// dir, read with statfs at scrape time. When statfs fails nothing is
// exported, and dualmx_spool_writable tells the rest.
func (m *Metrics) WatchSpoolDisk(dir string) {
	m.Registry.MustRegister(&diskCollector{dir: dir})
}

type diskCollector struct{ dir string }

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- spoolFreeDesc
	ch <- spoolSizeDesc
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.dir, &st); err != nil {
		return
	}
	bsize := uint64(st.Bsize)
	ch <- prometheus.MustNewConstMetric(spoolFreeDesc, prometheus.GaugeValue, float64(uint64(st.Bavail)*bsize))
	ch <- prometheus.MustNewConstMetric(spoolSizeDesc, prometheus.GaugeValue, float64(uint64(st.Blocks)*bsize))
}

// WatchARCSignerFallbacks exports how many ARC signatures Go made because
// the OpenSSL signer failed after passing its start-up self-test, read from
// f at scrape time. Any at all means the system's libcrypto misbehaves.
func (m *Metrics) WatchARCSignerFallbacks(f func() int64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "dualmx_arc_signer_fallbacks_total",
		Help: "ARC signatures made by Go because OpenSSL failed or made one that did not verify.",
	}, func() float64 { return float64(f()) }))
}

// ExportTLSCertificate exports the expiry of the certificate a listener
// ("smtp") presents, as dualmx_tls_certificate_expiry_timestamp_seconds. The
// certificate is loaded at start, so the value is the one in use: a renewed
// file on disk counts only after a restart.
func (m *Metrics) ExportTLSCertificate(listener string, notAfter time.Time) {
	v := unixSeconds(notAfter)
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "dualmx_tls_certificate_expiry_timestamp_seconds",
		Help:        "When the certificate a listener presents expires.",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, func() float64 { return v }))
}

// TargetStatus is the tenant's health as the queue sees it. The daemon also
// writes it as JSON for the admin commands (queue list), so the fields that
// only make sense in process are left out of the JSON.
type TargetStatus struct {
	// Up is false while the target is suspended: its mail waits, without
	// connections, for a probe to succeed.
	Up        bool      `json:"up"`
	Since     time.Time `json:"since,omitzero"`   // when the suspension began
	Reason    string    `json:"reason,omitempty"` // the last failure, as the target or the network said it
	NextProbe time.Time `json:"next_probe,omitzero"`
	Probes    int       `json:"probes,omitempty"` // failed probes in this suspension
	// Parked counts messages due for the target and waiting for it.
	Parked int `json:"-"`
	// Concurrency is the sessions the target gets at once now, out of ConcurrencyLimit.
	Concurrency      int `json:"concurrency"`
	ConcurrencyLimit int `json:"concurrency_limit"`
	// SuspendedSeconds is the time spent suspended since start.
	SuspendedSeconds float64 `json:"-"`
	// Connections counts connection attempts by result
	// (TargetConnectionResults).
	Connections map[string]uint64 `json:"-"`
	// Throttles counts throttling replies; Suspensions, suspensions.
	Throttles   uint64    `json:"-"`
	Suspensions uint64    `json:"-"`
	Updated     time.Time `json:"updated"`
}

// TargetConnectionResults are the values of dualmx_target_connections_total's result.
var TargetConnectionResults = []string{"ok", "failed", "throttled", "dns_failed"}

var (
	targetUpDesc          = prometheus.NewDesc("dualmx_target_up", "1 while the target is up, 0 while it is suspended (mail waits for a probe connection to succeed).", nil, nil)
	targetSuspendedDesc   = prometheus.NewDesc("dualmx_target_suspended_seconds_total", "Time the target has spent suspended.", nil, nil)
	targetConcurrencyDesc = prometheus.NewDesc("dualmx_target_concurrency", "Sessions the target gets at once now (adaptive: grows on success, halves on throttling and failed connections).", nil, nil)
	targetLimitDesc       = prometheus.NewDesc("dualmx_target_concurrency_limit", "The ceiling of dualmx_target_concurrency (delivery.concurrency).", nil, nil)
	targetParkedDesc      = prometheus.NewDesc("dualmx_target_parked_messages", "Messages due for the target that wait for it to come back.", nil, nil)
	targetConnsDesc       = prometheus.NewDesc("dualmx_target_connections_total", "Connection attempts to the target by result: ok, failed (connect, greeting or TLS), throttled (refused with a throttling reply), dns_failed (its addresses could not be looked up).", []string{"result"}, nil)
	targetThrottlesDesc   = prometheus.NewDesc("dualmx_target_throttles_total", "Throttling replies from the target (421, 4.7.x and Microsoft's rate limits).", nil, nil)
	targetSuspensionsDesc = prometheus.NewDesc("dualmx_target_suspensions_total", "Times the target was suspended.", nil, nil)
)

// WatchTarget exports the target's health, read from f at scrape time, and
// keeps f for the status page.
func (m *Metrics) WatchTarget(f func() TargetStatus) {
	m.Registry.MustRegister(&targetCollector{f: f})
	m.target.Store(&f)
}

// Target returns the target's health now; ok is false when nothing watches it.
func (m *Metrics) Target() (s TargetStatus, ok bool) {
	f := m.target.Load()
	if f == nil {
		return TargetStatus{}, false
	}
	return (*f)(), true
}

type targetCollector struct{ f func() TargetStatus }

func (c *targetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{targetUpDesc, targetSuspendedDesc, targetConcurrencyDesc, targetLimitDesc,
		targetParkedDesc, targetConnsDesc, targetThrottlesDesc, targetSuspensionsDesc} {
		ch <- d
	}
}

func (c *targetCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f()
	ch <- prometheus.MustNewConstMetric(targetUpDesc, prometheus.GaugeValue, cutoverGauge(s.Up))
	ch <- prometheus.MustNewConstMetric(targetSuspendedDesc, prometheus.CounterValue, s.SuspendedSeconds)
	ch <- prometheus.MustNewConstMetric(targetConcurrencyDesc, prometheus.GaugeValue, float64(s.Concurrency))
	ch <- prometheus.MustNewConstMetric(targetLimitDesc, prometheus.GaugeValue, float64(s.ConcurrencyLimit))
	ch <- prometheus.MustNewConstMetric(targetParkedDesc, prometheus.GaugeValue, float64(s.Parked))
	for _, res := range TargetConnectionResults {
		ch <- prometheus.MustNewConstMetric(targetConnsDesc, prometheus.CounterValue, float64(s.Connections[res]), res)
	}
	ch <- prometheus.MustNewConstMetric(targetThrottlesDesc, prometheus.CounterValue, float64(s.Throttles))
	ch <- prometheus.MustNewConstMetric(targetSuspensionsDesc, prometheus.CounterValue, float64(s.Suspensions))
}
