// SPDX-License-Identifier: MIT

package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dualmx/dualmx/dane"
	"github.com/dualmx/dualmx/internal/secretfile"
)

// Validate checks the values and their combinations. Parse already calls it;
// call it again after overlaying flags. The error is a Problems value.
func (c *Config) Validate() error {
	if ps := c.check(nil, true); len(ps) > 0 {
		ps.sortByLine()
		return ps
	}
	return nil
}

// checker collects problems for one configuration, pointing each at the line
// its key was set on.
type checker struct {
	c *Config
	// prior holds problems found while decoding; a key listed there is not
	// checked again, so one mistake yields one message.
	prior Problems
	out   Problems
}

func (c *Config) check(prior Problems, files bool) Problems {
	k := &checker{c: c, prior: prior}
	k.values()
	if files {
		k.files()
	}
	k.crossField()
	return k.out
}

// skip reports whether any of keys already has a problem, so a cross-field
// check does not add a derived complaint about a value already refused.
func (k *checker) skip(keys ...string) bool {
	for _, key := range keys {
		if k.prior.hasKey(key) || k.out.hasKey(key) {
			return true
		}
	}
	return false
}

func (k *checker) fail(key, format string, args ...any) {
	if k.prior.hasKey(key) {
		return
	}
	k.out.add(k.c.Path, k.c.line(key), key, format, args...)
}

func (k *checker) values() {
	c := k.c
	if c.Hostname == "" {
		k.fail("hostname", "required (the name this relay uses in EHLO, e.g. relay.example.nl)")
	} else if msg := checkDNSName(c.Hostname, false); msg != "" {
		k.fail("hostname", "%q %s", clip(c.Hostname), msg)
	}

	switch {
	case c.StateDir == "":
		k.fail("state_dir", "required (a directory for the state database and the spool)")
	case !filepath.IsAbs(c.StateDir):
		// Parse resolves relative paths; only a flag can leave one here, and
		// the daemon must not depend on its working directory.
		k.fail("state_dir", "%q must be an absolute path", c.StateDir)
	}

	k.oneOf("log_format", c.LogFormat, LogText, LogJSON)

	if c.Listen.SMTP == "" {
		k.fail("listen.smtp", "must not be empty (e.g. 0.0.0.0:25)")
	} else if msg := checkHostPort(c.Listen.SMTP); msg != "" {
		k.fail("listen.smtp", "%s", msg)
	}
	for _, l := range []struct{ key, v string }{{"listen.metrics", c.Listen.Metrics}, {"listen.status", c.Listen.Status}} {
		if l.v != "" {
			if msg := checkHostPort(l.v); msg != "" {
				k.fail(l.key, "%s", msg)
			}
		}
	}
	for _, h := range c.Listen.HTTPHosts {
		if msg := checkDNSName(strings.TrimSuffix(h, "."), false); msg != "" {
			k.fail("listen.http_hosts", "%q %s (a host name the listeners may be asked for by; IP addresses need no entry)", clip(h), msg)
		}
	}

	k.positive("inbound.max_message_bytes", c.Inbound.MaxMessageBytes)
	k.positive("inbound.max_recipients", int64(c.Inbound.MaxRecipients))
	k.positive("inbound.max_connections", int64(c.Inbound.MaxConnections))
	k.positiveDuration("inbound.read_timeout", c.Inbound.ReadTimeout)

	switch h := strings.TrimSuffix(c.Target.Host, "."); {
	case c.Target.Host == "":
		k.fail("target.host", "required (the tenant's MX host, e.g. example-nl.mail.protection.outlook.com)")
	case isIP(h):
	default:
		if msg := checkDNSName(h, true); msg != "" {
			k.fail("target.host", "%q %s", clip(c.Target.Host), msg)
		}
	}
	if c.Target.Port < 1 || c.Target.Port > 65535 {
		k.fail("target.port", "%d is not a port number (1-65535)", c.Target.Port)
	}
	k.oneOf("target.tls", c.Target.TLS, TLSRequire, TLSOpportunistic, TLSNone, TLSDane)
	k.oneOf("target.ip_family", c.Target.IPFamily, FamilyAny, FamilyIPv4, FamilyIPv6)
	if ip, err := netip.ParseAddr(strings.TrimSuffix(c.Target.Host, ".")); err == nil &&
		(c.Target.IPFamily == FamilyIPv4 && !ip.Unmap().Is4() || c.Target.IPFamily == FamilyIPv6 && ip.Unmap().Is4()) {
		k.fail("target.ip_family", "%s excludes target.host %s", c.Target.IPFamily, ip)
	}
	if c.Target.TLS == TLSDane && isIP(strings.TrimSuffix(c.Target.Host, ".")) {
		k.fail("target.tls", "dane needs target.host to be a host name, not an address: TLSA records are published under the name")
	}

	k.positiveDuration("delivery.retry_initial", c.Delivery.RetryInitial)
	k.positiveDuration("delivery.retry_max", c.Delivery.RetryMax)
	k.positiveDuration("delivery.give_up_after", c.Delivery.GiveUpAfter)
	k.oneOf("delivery.on_permanent_failure", c.Delivery.OnPermanentFailure, OnFailureHold, OnFailureBounce)
	k.positive("delivery.concurrency", int64(c.Delivery.Concurrency))
	k.positive("delivery.sender_concurrency", int64(c.Delivery.SenderConcurrency))
	// Each is a worker started with the daemon and a session at most: a
	// typo of a few zeros would start that many goroutines, not throttle.
	k.atMost("delivery.concurrency", int64(c.Delivery.Concurrency), maxConcurrency)
	k.atMost("delivery.sender_concurrency", int64(c.Delivery.SenderConcurrency), maxConcurrency)
	if c.Delivery.MXPort < 1 || c.Delivery.MXPort > 65535 {
		k.fail("delivery.mx_port", "%d is not a port number (1-65535)", c.Delivery.MXPort)
	}
	k.positive("inbound.max_received", int64(c.Inbound.MaxReceived))
	k.positive("inbound.max_connections_per_ip", int64(c.Inbound.MaxConnectionsPerIP))
	k.positive("inbound.max_header_bytes", c.Inbound.MaxHeaderBytes)
	k.positiveDuration("inbound.routing_max_stale", c.Inbound.RoutingMaxStale)
	k.positiveDuration("inbound.max_session", c.Inbound.MaxSession)
	k.positiveDuration("delivery.command_timeout", c.Delivery.CommandTimeout)
	k.positiveDuration("delivery.data_timeout", c.Delivery.DataTimeout)

	if c.Resolver != "" {
		if msg := checkHostPort(c.Resolver); msg != "" {
			k.fail("resolver", "%s", msg)
		}
	}
	if c.ARC.Enabled {
		k.name("arc.domain", c.ARC.Domain, "the sealing domain, d= of the seal, e.g. relay.example.nl")
		if c.ARC.Selector == "" {
			k.fail("arc.selector", "required (the selector the public key is published under, e.g. arc2026)")
		} else if msg := checkDNSName(c.ARC.Selector+".x", false); msg != "" || strings.Contains(c.ARC.Selector, ".") {
			k.fail("arc.selector", "%q is not a DNS label", clip(c.ARC.Selector))
		}
		if c.ARC.KeyFile == "" {
			k.fail("arc.key_file", "required (make one with: dualmx arc keygen)")
		}
		if len(c.ARC.Headers) > 0 {
			hasFrom := false
			for _, h := range c.ARC.Headers {
				if strings.EqualFold(h, "from") {
					hasFrom = true
				}
				if h == "" || strings.ContainsAny(h, ": \t") {
					k.fail("arc.headers", "%q is not a header field name", clip(h))
				}
			}
			if !hasFrom {
				k.fail("arc.headers", "must include From (RFC 6376 section 5.4)")
			}
		}
	}
	if c.SRS.Enabled {
		k.name("srs.domain", c.SRS.Domain, "the domain rewritten senders get, whose MX is this relay")
		if c.SRS.SecretFile == "" {
			k.fail("srs.secret_file", "required (a file with a long random secret, mode 0600)")
		}
		k.positiveDuration("srs.max_age", c.SRS.MaxAge)
		k.positive("srs.dsn_per_hour", int64(c.SRS.DSNPerHour))
		k.positive("srs.dsn_per_client_per_hour", int64(c.SRS.DSNPerClientPerHour))
		k.positive("srs.dsn_per_destination_per_hour", int64(c.SRS.DSNPerDestinationPerHour))
		k.positive("srs.guesses_per_client", int64(c.SRS.GuessesPerClient))
		k.positive("srs.guesses_per_hour", int64(c.SRS.GuessesPerHour))
		// A penalty shorter than this no longer slows a guesser down: it
		// reconnects after it.
		if c.SRS.GuessPenalty < time.Minute {
			k.fail("srs.guess_penalty", "%s must be at least 1m", fmtDuration(c.SRS.GuessPenalty))
		}
		if c.SRS.ReturnSourcePenalty < time.Minute {
			k.fail("srs.return_source_penalty", "%s must be at least 1m", fmtDuration(c.SRS.ReturnSourcePenalty))
		}
	}
	if c.M365.Enabled {
		if c.M365.TenantID == "" {
			k.fail("m365.tenant_id", "required (the directory (tenant) ID of the app registration)")
		}
		if c.M365.ClientID == "" {
			k.fail("m365.client_id", "required (the application (client) ID)")
		}
		if (c.M365.ClientSecretFile == "") == (c.M365.CertificateFile == "") {
			k.fail(k.setOne("m365.client_secret_file", "m365.certificate_file"), "set exactly one of client_secret_file and certificate_file")
		}
		if c.M365.Cloud != "" {
			k.oneOf("m365.cloud", c.M365.Cloud, M365Clouds...)
		}
		// Every endpoint gets a client secret or a bearer token: TLS only,
		// verified against the system's roots (tests add theirs through
		// SSL_CERT_FILE).
		for _, kv := range [][2]string{{"m365.authority_url", c.M365.AuthorityURL}, {"m365.graph_url", c.M365.GraphURL},
			{"m365.exchange_url", c.M365.ExchangeURL}} {
			if u, err := url.Parse(kv[1]); kv[1] != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
				k.fail(kv[0], "%q must be an https:// URL", clip(kv[1]))
			}
		}
	}
	if c.Cutover.Enabled {
		k.name("cutover.domain", c.Cutover.Domain, "the domain whose MX moves, e.g. example.nl")
		for _, mx := range c.Cutover.OldMX {
			if msg := checkDNSName(strings.TrimSuffix(mx, "."), true); msg != "" {
				k.fail("cutover.old_mx", "%q %s", clip(mx), msg)
			}
		}
		for key, v := range map[string]string{"cutover.tenant_mx": c.Cutover.TenantMX, "cutover.forward_domain": c.Cutover.ForwardDomain,
			"cutover.relay_host": c.Cutover.RelayHost} {
			if v != "" {
				if msg := checkDNSName(strings.TrimSuffix(v, "."), true); msg != "" {
					k.fail(key, "%q %s", clip(v), msg)
				}
			}
		}
		// DKIM CNAME targets contain underscore labels (_domainkey), so they
		// are only checked for being one word.
		for key, v := range map[string]string{"cutover.dkim_selector1": c.Cutover.DKIMSelector1, "cutover.dkim_selector2": c.Cutover.DKIMSelector2} {
			if strings.ContainsAny(v, " \t,;") {
				k.fail(key, "%q is not a host name", clip(v))
			}
		}
		k.positiveDuration("cutover.quiet_period", c.Cutover.QuietPeriod)
	}
}

// name checks a required DNS name.
func (k *checker) name(key, v, what string) {
	if v == "" {
		k.fail(key, "required (%s)", what)
	} else if msg := checkDNSName(strings.TrimSuffix(v, "."), true); msg != "" {
		k.fail(key, "%q %s", clip(v), msg)
	}
}

func (k *checker) files() {
	c := k.c
	if c.Inbound.TLSCertFile != "" {
		if msg := checkReadable(c.Inbound.TLSCertFile); msg != "" {
			k.fail("inbound.tls_cert_file", "%s", msg)
		}
	}
	if c.Inbound.TLSKeyFile != "" {
		if msg := checkReadable(c.Inbound.TLSKeyFile); msg != "" {
			k.fail("inbound.tls_key_file", "%s", msg)
		} else if msg := checkPrivate(c.Inbound.TLSKeyFile); msg != "" {
			k.fail("inbound.tls_key_file", "%s", msg)
		}
	}
	if c.Target.CAFile != "" {
		if msg := checkCABundle(c.Target.CAFile); msg != "" {
			k.fail("target.ca_file", "%s", msg)
		}
	}
	if f := c.Target.DaneTrustAnchorFile; f != "" {
		if msg := checkReadable(f); msg != "" {
			k.fail("target.dane_trust_anchor_file", "%s", msg)
		} else if _, err := dane.LoadTrustAnchorFile(f); err != nil {
			k.fail("target.dane_trust_anchor_file", "%v", err)
		}
	}
	for _, w := range []struct{ key, path string }{
		{"listen.metrics_web_config", c.Listen.MetricsWebConfig}, {"listen.status_web_config", c.Listen.StatusWebConfig},
	} {
		if w.path == "" {
			continue
		}
		if msg := checkReadable(w.path); msg != "" {
			k.fail(w.key, "%s", msg)
		} else if msg := checkWebConfig(w.path); msg != "" {
			k.fail(w.key, "%s", msg)
		}
	}
	// Secrets: a key or secret file others can read must be treated as
	// leaked, so it is refused rather than used.
	private := func(key, path string) {
		if path == "" {
			return
		}
		if msg := checkReadable(path); msg != "" {
			k.fail(key, "%s", msg)
		} else if msg := checkPrivate(path); msg != "" {
			k.fail(key, "%s", msg)
		}
	}
	if c.ARC.Enabled {
		private("arc.key_file", c.ARC.KeyFile)
	}
	if c.SRS.Enabled {
		private("srs.secret_file", c.SRS.SecretFile)
		for _, p := range c.SRS.PreviousSecretFiles {
			private("srs.previous_secret_files", p)
		}
	}
	if c.M365.Enabled {
		private("m365.client_secret_file", c.M365.ClientSecretFile)
		private("m365.certificate_file", c.M365.CertificateFile)
	}
}

func (k *checker) crossField() {
	c := k.c
	// Each cross-field problem is reported on the key the operator most likely
	// has to change: the one set in the file, preferring the dependent key.
	if !k.skip("delivery.retry_initial", "delivery.retry_max") && c.Delivery.RetryInitial > 0 &&
		c.Delivery.RetryMax < c.Delivery.RetryInitial {
		key := k.setOne("delivery.retry_max", "delivery.retry_initial")
		k.fail(key, "retry_max (%s) must be at least retry_initial (%s)",
			fmtDuration(c.Delivery.RetryMax), fmtDuration(c.Delivery.RetryInitial))
	}
	if !k.skip("delivery.retry_initial", "delivery.give_up_after") && c.Delivery.RetryInitial > 0 &&
		c.Delivery.GiveUpAfter < c.Delivery.RetryInitial {
		key := k.setOne("delivery.give_up_after", "delivery.retry_initial")
		k.fail(key, "give_up_after (%s) must be at least retry_initial (%s)",
			fmtDuration(c.Delivery.GiveUpAfter), fmtDuration(c.Delivery.RetryInitial))
	}
	if !k.skip("inbound.read_timeout", "inbound.max_session") && c.Inbound.MaxSession < c.Inbound.ReadTimeout {
		key := k.setOne("inbound.max_session", "inbound.read_timeout")
		k.fail(key, "max_session (%s) must be at least read_timeout (%s)",
			fmtDuration(c.Inbound.MaxSession), fmtDuration(c.Inbound.ReadTimeout))
	}
	cert, key := c.Inbound.TLSCertFile, c.Inbound.TLSKeyFile
	switch {
	case cert != "" && key == "":
		k.fail("inbound.tls_cert_file", "set without inbound.tls_key_file; set both to offer STARTTLS, or neither")
	case key != "" && cert == "":
		k.fail("inbound.tls_key_file", "set without inbound.tls_cert_file; set both to offer STARTTLS, or neither")
	}
}

// setOne returns the first key that was set in the file, or the first key
// when none was (the values then came from defaults or flags).
func (k *checker) setOne(keys ...string) string {
	for _, key := range keys {
		if k.c.line(key) > 0 {
			return key
		}
	}
	return keys[0]
}

func (k *checker) oneOf(key, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	k.fail(key, "%q is not one of %s", clip(got), strings.Join(allowed, ", "))
}

func (k *checker) positive(key string, n int64) {
	if n <= 0 {
		k.fail(key, "%d must be greater than 0", n)
	}
}

// maxConcurrency bounds delivery.concurrency and sender_concurrency: far
// above any sensible number of sessions with one target, far below what
// would exhaust the daemon.
const maxConcurrency = 1000

func (k *checker) atMost(key string, n, limit int64) {
	if n > limit {
		k.fail(key, "%d is more than %d", n, limit)
	}
}

func (k *checker) positiveDuration(key string, d time.Duration) {
	if d <= 0 {
		k.fail(key, "%s must be greater than 0", fmtDuration(d))
	}
}

// Warnings lists settings that are allowed but deserve a line in the log.
// They are computed from the current values, so flags are taken into account.
func (c *Config) Warnings() []Problem {
	var ws []Problem
	warn := func(key, format string, args ...any) {
		ws = append(ws, Problem{File: c.Path, Line: c.line(key), Key: key, Msg: fmt.Sprintf(format, args...), Warning: true})
	}
	if c.Target.TLS == TLSNone {
		warn("target.tls", "TLS to the target is off; mail crosses the network in clear text (meant for tests)")
		if c.Target.CAFile != "" {
			warn("target.ca_file", "ignored because target.tls is none")
		}
	}
	if c.Delivery.MXAllowLoopback {
		warn("delivery.mx_allow_loopback", "DSNs and returned bounces may go to a sender's MX on a loopback address (meant for tests)")
	}
	if c.Target.TLS == TLSDane && c.Target.CAFile != "" {
		warn("target.ca_file", "ignored because target.tls is dane: the certificate is checked against the TLSA records, not CAs")
	}
	if c.Target.TLS != TLSDane && c.Target.DaneTrustAnchorFile != "" {
		warn("target.dane_trust_anchor_file", "ignored because target.tls is %s, not dane", c.Target.TLS)
	}
	if len(c.Inbound.AllowedNetworks) == 0 && exposed(c.Listen.SMTP) {
		key := "inbound.allowed_networks"
		if c.line(key) == 0 {
			key = "listen.smtp"
		}
		warn(key, "no allowed_networks while listening on %s: any client that can reach it may submit mail for the routed recipients", c.Listen.SMTP)
	}
	if msg := c.srsWarning(); msg != "" {
		warn("inbound.allowed_networks", "%s", msg)
	}
	if c.SRS.Enabled && len(c.SRS.ReturnSources) == 0 {
		warn("srs.return_sources", "empty: every client is exempt from srs.guesses_per_hour, so guessers on many networks are bounded only per network "+
			"(an IPv6 /48 holds 65,536 /64s); list the networks returns come from (docs/security.md)")
	}
	if c.Listen.Metrics != "" && exposed(c.Listen.Metrics) {
		key := "listen.metrics"
		if c.line("listen.metrics_web_config") > 0 {
			key = "listen.metrics_web_config"
		}
		if msg := webExposure(c.Listen.MetricsWebConfig); msg != "" {
			warn(key, "metrics and /healthz are served %s on %s; see docs/install.md for a safe scrape set-up", msg, c.Listen.Metrics)
		}
	}
	if c.Listen.Status != "" && !loopback(c.Listen.Status) {
		key := "listen.status"
		if c.line("listen.status_web_config") > 0 {
			key = "listen.status_web_config"
		}
		if msg := webExposure(c.Listen.StatusWebConfig); msg != "" {
			warn(key, "the status page (senders, recipients and replies of queued mail, the address list) is served %s on %s; keep it on loopback", msg, c.Listen.Status)
		}
	}
	if c.Hostname != "" && !strings.Contains(c.Hostname, ".") {
		warn("hostname", "%q is not fully qualified; receiving servers may distrust the EHLO", c.Hostname)
	}
	return ws
}

// exposed reports whether a listen address may be reachable from outside
// the host's own networks: unspecified, public, or a name we cannot judge.
func exposed(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false // an invalid address is an error already, not a warning
	}
	if host == "localhost" {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return true
	}
	a = a.Unmap()
	return !(a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast())
}

// checkDNSName returns why s is not a usable host name, or "".
func checkDNSName(s string, trailingDot bool) string {
	if isIP(s) {
		return "is an IP address; a DNS name is needed"
	}
	if strings.HasSuffix(s, ".") {
		if !trailingDot {
			return "must not end with a dot"
		}
		s = strings.TrimSuffix(s, ".")
	}
	if len(s) > 253 {
		return "is longer than 253 characters"
	}
	for _, label := range strings.Split(s, ".") {
		switch {
		case label == "":
			return "has an empty label"
		case len(label) > 63:
			return "has a label longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "has a label that starts or ends with a hyphen"
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Sprintf("contains %q; only letters, digits, hyphens and dots are allowed", r)
			}
		}
	}
	return ""
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// checkHostPort returns why s is not a listen address, or "". Port 0 is
// allowed so tests can ask for an ephemeral port; service names are not,
// because they depend on /etc/services.
func checkHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (e.g. 0.0.0.0:25 or [::1]:25)", clip(s))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("%q: port %q is not a number from 0 to 65535", clip(s), clip(port))
	}
	if host == "" || host == "localhost" || isIP(host) {
		return ""
	}
	if msg := checkDNSName(host, false); msg != "" {
		return fmt.Sprintf("%q: host %s", clip(s), msg)
	}
	return ""
}

// checkReadable returns why path is not a regular file we can open, or "".
// Devices and FIFOs are refused: opening a FIFO blocks and reading
// /dev/zero never ends.
func checkReadable(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return fileErr(path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Sprintf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fileErr(path, err)
	}
	f.Close()
	return ""
}

// checkPrivate refuses a key file that anyone but its owner can read or
// change: such a key must be treated as leaked, and starting with it would
// hide that.
func checkPrivate(path string) string {
	var me *secretfile.ModeError
	switch err := secretfile.Check(path); {
	case err == nil:
		return ""
	case errors.As(err, &me):
		return err.Error()
	default:
		return fileErr(path, err)
	}
}

// maxCABundle bounds how much of ca_file is read; real bundles are a few
// hundred kilobytes.
const maxCABundle = 16 << 20

func checkCABundle(path string) string {
	if msg := checkReadable(path); msg != "" {
		return msg
	}
	f, err := os.Open(path)
	if err != nil {
		return fileErr(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCABundle+1))
	if err != nil {
		return fileErr(path, err)
	}
	if len(data) > maxCABundle {
		return fmt.Sprintf("%s is larger than %d MiB; not a CA bundle", path, maxCABundle>>20)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Sprintf("%s holds no PEM certificates", path)
	}
	return ""
}

func fileErr(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("%s cannot be read: permission denied", path)
	}
	return err.Error()
}

// fmtDuration prints durations the way they are written in the file ("1h",
// not "1h0m0s"), so a message can be matched against the config by eye.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// display turns a Config field into a plain value for logging.
func display(ptr any) any {
	switch p := ptr.(type) {
	case *string:
		return *p
	case *int:
		return *p
	case *int64:
		return *p
	case *bool:
		return *p
	case *time.Duration:
		return fmtDuration(*p)
	case *[]netip.Prefix:
		out := make([]string, len(*p))
		for i, n := range *p {
			out[i] = n.String()
		}
		return out
	case *[]string:
		return append([]string{}, *p...)
	}
	return fmt.Sprint(ptr)
}

// secretWords mark a key whose value must never reach a log. No current key
// holds a secret; the check is here so the first one that does is masked
// without anybody remembering to.
var secretWords = []string{"secret", "password", "passphrase", "token"}

func redact(key string, v any) any {
	name := strings.ToLower(key[strings.LastIndex(key, ".")+1:])
	// A key naming a file holds a path, not the secret itself; the path is
	// what an admin needs to see in the log.
	if strings.HasSuffix(name, "_file") || strings.HasSuffix(name, "_files") {
		return v
	}
	// A URL may carry a password (https://user:pass@host/).
	if u, err := url.Parse(fmt.Sprint(v)); strings.HasSuffix(name, "_url") && err == nil && u.User != nil {
		return u.Redacted()
	}
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			if v == "" || v == nil {
				return "(unset)"
			}
			return "(set, hidden)"
		}
	}
	return v
}
