// SPDX-License-Identifier: MIT

// Package config loads the dualmx configuration file. Layering is defaults →
// file → flags: Default gives the built-in values, Parse/Load overlay a YAML
// file, and cmd/dualmx may overlay flags and then call Validate again.
//
// The file is strict: unknown keys, duplicate keys, wrong types and
// impossible values are all errors, and every one of them is reported at once
// with file, line and key path, because a relay that half-understands its
// configuration is worse than one that refuses to start.
package config

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Values of Config.LogFormat.
const (
	LogText = "text"
	LogJSON = "json"
)

// Values of Target.TLS.
const (
	// TLSRequire insists on STARTTLS with a certificate that verifies for Target.Host.
	TLSRequire = "require"
	// TLSOpportunistic uses STARTTLS when offered and does not verify the certificate.
	TLSOpportunistic = "opportunistic"
	// TLSNone never starts TLS; meant for tests against a local fake.
	TLSNone = "none"
	// TLSDane insists on STARTTLS with a certificate that matches the
	// target's DNSSEC-signed TLSA records (RFC 7672); anything short of
	// that (no records, unsigned or bogus answers) defers the mail.
	TLSDane = "dane"
)

// Values of Delivery.OnPermanentFailure.
const (
	// OnFailureHold keeps the message in the queue for an administrator.
	OnFailureHold = "hold"
	// OnFailureBounce sends a DSN to the envelope sender and drops the message.
	OnFailureBounce = "bounce"
)

// Config is the effective configuration. Paths in it are absolute after Parse.
type Config struct {
	// Path is the file the configuration came from, as given to Load or Parse.
	Path string

	// Hostname is the name used in EHLO and Received lines.
	Hostname string
	// StateDir holds the state database and the spool.
	StateDir  string
	LogFormat string

	Listen   Listen
	Inbound  Inbound
	Target   Target
	Delivery Delivery

	// Resolver is the HOST:PORT of the DNS server every lookup goes to (DKIM,
	// SPF, DMARC, ARC, MX); "" uses the system's resolver.
	Resolver string

	ARC     ARC
	SRS     SRS
	M365    M365
	Cutover Cutover

	// origin remembers where each key was set in the file, so checks that run
	// after decoding (and Warnings) can still point into the file.
	origin map[string]origin
}

// origin is a key's line and the value the file gave it; a value changed
// since (by a flag) no longer points at that line.
type origin struct {
	line  int
	value any
}

// line returns the line key was set on, or 0 when its current value did not
// come from the file.
func (c *Config) line(key string) int {
	o, ok := c.origin[key]
	if !ok {
		return 0
	}
	if f := lookupField(key); f != nil && !reflect.DeepEqual(display(f.ptr(c)), o.value) {
		return 0
	}
	return o.line
}

// Listen holds the addresses dualmx listens on.
type Listen struct {
	// SMTP is the host:port of the inbound SMTP listener.
	SMTP string
	// Metrics is the host:port of the Prometheus endpoint (/metrics and
	// /healthz); "" disables it.
	Metrics string
	// MetricsWebConfig is a Prometheus exporter web config file
	// (tls_server_config, basic_auth_users) for the metrics listener; ""
	// serves plain HTTP without authentication.
	MetricsWebConfig string
	// Status is the host:port of the status page (/, /status and /healthz);
	// "" disables it. The page shows queued mail's senders, recipients and
	// replies, so it defaults to loopback.
	Status string
	// StatusWebConfig is the web config file of the status listener.
	StatusWebConfig string
	// HTTPHosts are more names the metrics and status listeners answer
	// to, besides IP literals, localhost and the hostname: requests naming
	// any other host get 421 (a defence against DNS rebinding).
	HTTPHosts []string
}

// Inbound limits what the SMTP listener accepts.
type Inbound struct {
	// MaxMessageBytes is our own limit; the relay advertises the lower of
	// this and the target's SIZE.
	MaxMessageBytes int64
	MaxRecipients   int
	MaxConnections  int
	// MaxConnectionsPerIP bounds the simultaneous connections from one client
	// address, so one host cannot take every slot.
	MaxConnectionsPerIP int
	ReadTimeout         time.Duration
	// MaxSession bounds a connection's whole life, however steadily the
	// client talks; at it the client gets 421 4.4.2.
	MaxSession time.Duration
	// MaxHeaderBytes bounds the header block of a message; a larger one is
	// refused with 552 5.3.4.
	MaxHeaderBytes int64
	// RoutingMaxStale is how long RCPT is answered from the routing table in
	// memory while the state database cannot be read; after it, 451 4.3.0.
	RoutingMaxStale time.Duration
	// AllowedNetworks restricts which clients may connect; empty allows any.
	// Single addresses in the file become /32 or /128. Callers should Unmap
	// an IPv4-mapped client address before calling Contains.
	AllowedNetworks []netip.Prefix
	// TLSCertFile and TLSKeyFile enable STARTTLS when both are set.
	TLSCertFile string
	TLSKeyFile  string
	// MaxReceived is the hop limit: a message with more Received fields is
	// refused as a loop (Postfix's hopcount_limit is 50 too).
	MaxReceived int
}

// ARC configures sealing; it is on when the section is present.
type ARC struct {
	Enabled          bool
	Domain, Selector string
	// KeyFile is a PEM private key (PKCS#1 or PKCS#8, RSA or Ed25519) that
	// only its owner may read.
	KeyFile string
	// Headers lists the fields ARC-Message-Signature signs; empty means the
	// built-in default.
	Headers []string
}

// SRS configures the Sender Rewriting Scheme; it is on when the section is present.
type SRS struct {
	Enabled    bool
	Domain     string
	SecretFile string
	// PreviousSecretFiles still verify addresses made before a key rotation.
	PreviousSecretFiles []string
	MaxAge              time.Duration
	// DSNPerHour bounds the DSNs sent to original senders, the one place
	// dualmx delivers anywhere but the tenant; DSNPerClientPerHour bounds
	// those from one client network (address, or IPv6 /64), and
	// DSNPerDestinationPerHour those to one domain, so neither one client nor
	// one victim domain takes the whole reserve.
	DSNPerHour               int
	DSNPerClientPerHour      int
	DSNPerDestinationPerHour int
	// The SRS guard (docs/security.md): a client network (IPv4 address,
	// IPv6 /64) may send GuessesPerClient invalid SRS addresses per
	// GuessPenalty, and is then refused SRS recipients unchecked for a
	// GuessPenalty; clients outside ReturnSources together may send
	// GuessesPerHour invalid ones, and past that their SRS recipients are
	// deferred unchecked.
	GuessesPerClient int
	GuessPenalty     time.Duration
	GuessesPerHour   int
	// ReturnSources are the networks real returns come from: Microsoft
	// 365's outbound servers by default (M365Outbound). Their clients do not
	// draw on GuessesPerHour, so guessers elsewhere cannot defer real
	// returns; their penalty is ReturnSourcePenalty. Empty means every
	// client.
	ReturnSources       []netip.Prefix
	ReturnSourcePenalty time.Duration
}

// M365 holds the app registration dualmx uses for Microsoft Graph and
// Exchange Online; it is on when the section is present.
type M365 struct {
	Enabled          bool
	TenantID         string
	ClientID         string
	ClientSecretFile string
	CertificateFile  string
	// Cloud is the Microsoft cloud the tenant lives in (M365Clouds); it
	// decides the sign-in, Graph and Exchange hosts and token scopes.
	Cloud string
	// AuthorityURL, GraphURL and ExchangeURL override the cloud's sign-in,
	// Graph and Exchange endpoints, for tests; tokens are still asked for
	// the cloud's real resources.
	AuthorityURL string
	GraphURL     string
	ExchangeURL  string
}

// M365Clouds are the values of m365.cloud: Microsoft's global service, US
// Government GCC (on the global endpoints), GCC High, DoD, and the cloud
// operated by 21Vianet in China. m365.CloudNames is the same list.
var M365Clouds = []string{"china", "dod", "global", "usgov", "usgovhigh"}

// Cutover holds the expected DNS values used when the tenant cannot be asked.
type Cutover struct {
	Enabled bool
	Domain  string
	// OldMX lists the old host's MX targets, expected before the cutover.
	OldMX []string
	// TenantMX is the Microsoft 365 MX target expected after the cutover.
	TenantMX string
	// OldSPF is the SPF mechanism that authorises the old host, e.g. include:spf.solcon.nl.
	OldSPF                       string
	ForwardDomain                string
	RelayHost                    string
	DKIMSelector1, DKIMSelector2 string
	VerificationTXT              string
	// QuietPeriod is how long the relay must see no traffic before it may stop.
	QuietPeriod time.Duration
}

func (c *Config) setEnabled(section string, on bool) {
	switch section {
	case "arc":
		c.ARC.Enabled = on
	case "srs":
		c.SRS.Enabled = on
	case "m365":
		c.M365.Enabled = on
	case "cutover":
		c.Cutover.Enabled = on
	}
}

// Target is the next hop every message is delivered to.
type Target struct {
	Host string
	Port int
	// TLS is one of TLSRequire, TLSOpportunistic, TLSNone, TLSDane.
	TLS string
	// CAFile is an extra PEM bundle trusted for the target, for tests.
	CAFile string
	// DaneTrustAnchorFile holds the DS or DNSKEY records DNSSEC validation
	// starts from with TLSDane; "" means the IANA root anchors built in.
	DaneTrustAnchorFile string
	// IPFamily is one of FamilyAny, FamilyIPv4, FamilyIPv6: which of the
	// host's addresses delivery uses.
	IPFamily string
}

// Values of Target.IPFamily.
const (
	FamilyAny  = "any"
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// Delivery controls retries towards the target.
type Delivery struct {
	RetryInitial time.Duration
	RetryMax     time.Duration
	GiveUpAfter  time.Duration
	// OnPermanentFailure is one of OnFailureHold, OnFailureBounce.
	OnPermanentFailure string
	Concurrency        int
	// SenderConcurrency is how many DSNs and returned bounces go to
	// senders' servers at once, on workers of their own: a sender's server
	// that never answers holds up other DSNs, never the tenant's mail.
	SenderConcurrency int
	// CommandTimeout bounds the wait for each reply of the next hop;
	// DataTimeout bounds sending the body and waiting for its final reply.
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	// MXPort is the port DSNs are delivered to at the sender's MX: 25,
	// except in tests that play the sender's server on loopback.
	MXPort int
	// MXAllowLoopback lets DSNs and returned bounces go to a sender's MX on
	// a loopback address, which is otherwise refused like every other
	// non-public address: for tests that play that server on loopback.
	MXAllowLoopback bool
}

// Default returns the built-in values. Hostname, StateDir and Target.Host
// have no sensible default and stay empty, so Validate refuses them until a
// file or flag sets them.
func Default() Config {
	return Config{
		LogFormat: LogText,
		Listen: Listen{
			SMTP:    "0.0.0.0:25",
			Metrics: "127.0.0.1:9464",
			Status:  "127.0.0.1:9465",
		},
		Inbound: Inbound{
			MaxMessageBytes:     50 << 20,
			MaxRecipients:       100,
			MaxConnections:      200,
			MaxConnectionsPerIP: 50,
			ReadTimeout:         5 * time.Minute,
			MaxSession:          30 * time.Minute,
			MaxHeaderBytes:      256 << 10,
			RoutingMaxStale:     30 * time.Second,
			MaxReceived:         50,
		},
		Target: Target{
			Port:     25,
			TLS:      TLSRequire,
			IPFamily: FamilyAny,
		},
		Delivery: Delivery{
			RetryInitial:       time.Minute,
			RetryMax:           time.Hour,
			GiveUpAfter:        120 * time.Hour,
			OnPermanentFailure: OnFailureHold,
			Concurrency:        8,
			SenderConcurrency:  2,
			CommandTimeout:     5 * time.Minute,
			DataTimeout:        10 * time.Minute,
			MXPort:             25,
		},
		SRS: SRS{
			MaxAge:                   21 * 24 * time.Hour,
			DSNPerHour:               100,
			DSNPerClientPerHour:      20,
			DSNPerDestinationPerHour: 10,
			GuessesPerClient:         3,
			GuessPenalty:             time.Hour,
			GuessesPerHour:           30,
			ReturnSources:            slices.Clone(M365Outbound),
			ReturnSourcePenalty:      10 * time.Minute,
		},
		Cutover: Cutover{
			QuietPeriod: 72 * time.Hour,
		},
	}
}

// Load reads and parses the file at path. A file that cannot be read gives
// the *fs.PathError; a file with problems gives a Problems value.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// LoadSettings reads the file like Load but does not open or stat the files
// it names (keys, certificates, CA bundles, web configs): for the admin
// commands that only show the state, which need none of them and may be run
// by a member of the service's group, who may not read the keys. The daemon
// and check-config use Load.
func LoadSettings(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(path, data, false)
}

// SpoolDir is where queued messages live.
func (c *Config) SpoolDir() string { return filepath.Join(c.StateDir, "spool") }

// DBPath is the state database.
func (c *Config) DBPath() string { return filepath.Join(c.StateDir, "state.db") }

// TargetStatusPath is where the running daemon records the target's health
// (up, or suspended since when and why) for the admin commands.
func (c *Config) TargetStatusPath() string { return filepath.Join(c.StateDir, "target.json") }

// Redacted returns the effective configuration as dotted key → value, for the
// start-up log. It is built from the same table the parser uses, so a new key
// shows up here without further work, and it is the one place secrets are
// masked: a key whose name looks secret is shown only as set or unset. File
// paths (tls_key_file) are shown; their contents are never read here.
func (c *Config) Redacted() map[string]any {
	m := make(map[string]any, len(schema))
	for _, f := range schema {
		m[f.path] = redact(f.path, display(f.ptr(c)))
	}
	return m
}

// LogValue lets slog log a *Config: the file, then every key as key=value
// in the order of the example file (a section's keys under its name, so the
// text handler writes config.inbound.max_recipients=100 and the JSON
// handler nests them), secrets masked as in Redacted. An optional section
// that is absent is one value, off.
func (c *Config) LogValue() slog.Value {
	var attrs []slog.Attr
	for _, line := range c.LogSections() {
		attrs = append(attrs, line...)
	}
	return slog.GroupValue(append([]slog.Attr{slog.String("file", c.Path)}, attrs...)...)
}

// LogSections is what LogValue holds, a log line's worth at a time: the
// top-level keys, then each section as a group (--debug logs one a line).
func (c *Config) LogSections() [][]slog.Attr {
	var top []slog.Attr
	var order []string
	sections := map[string][]slog.Attr{}
	for _, f := range schema {
		v := logValue(redact(f.path, display(f.ptr(c))))
		sec, key, ok := strings.Cut(f.path, ".")
		if !ok {
			top = append(top, slog.Any(sec, v))
			continue
		}
		if _, seen := sections[sec]; !seen {
			order = append(order, sec)
		}
		sections[sec] = append(sections[sec], slog.Any(key, v))
	}
	lines := [][]slog.Attr{top}
	for _, sec := range order {
		if slices.Contains(optionalSections, sec) && !c.enabled(sec) {
			lines = append(lines, []slog.Attr{slog.String(sec, "off")})
			continue
		}
		lines = append(lines, []slog.Attr{slog.Attr{Key: sec, Value: slog.GroupValue(sections[sec]...)}})
	}
	return lines
}

// logValue writes a list as one comma-separated value, so it stays one
// token of a key=value line.
func logValue(v any) any {
	if l, ok := v.([]string); ok {
		return strings.Join(l, ",")
	}
	return v
}

func (c *Config) enabled(section string) bool {
	switch section {
	case "arc":
		return c.ARC.Enabled
	case "srs":
		return c.SRS.Enabled
	case "m365":
		return c.M365.Enabled
	case "cutover":
		return c.Cutover.Enabled
	}
	return true
}
