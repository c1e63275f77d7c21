// SPDX-License-Identifier: MIT

package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// yamlLines joins lines so that the n-th argument is line n of the file,
// which keeps the expected line numbers in the tables easy to check by eye.
func yamlLines(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// minimal is the smallest valid file: the three required keys on lines 1-4.
// Cases append from line 5 on; a case that starts with "  " continues target.
var minimal = []string{
	"hostname: relay.example.nl",
	"state_dir: /var/lib/dualmx",
	"target:",
	"  host: mx.example.net",
}

func withMinimal(more ...string) string {
	return yamlLines(append(append([]string{}, minimal...), more...)...)
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; the tests need the exact bits.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// selfSigned returns a PEM certificate and key, so the CA and TLS file checks
// run against real content.
func selfSigned(t testing.TB) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay.example.nl"},
		DNSNames:     []string{"relay.example.nl"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

type badCase struct {
	name string
	yaml string
	// setup plants files next to bad.yaml; relative paths in yaml resolve there.
	setup func(t testing.TB, dir string)
	// want holds one fragment per expected problem, in reported order; the
	// count must match too, so extra derived complaints fail the test.
	want []string
}

func plantSecret(t testing.TB, dir string) {
	writeFile(t, filepath.Join(dir, "m365.secret"), "s", 0o600)
}

var badCases = []badCase{
	{
		name: "unknown key near a known one",
		yaml: withMinimal("inbound:", "  max_mesage_bytes: 10"),
		want: []string{"bad.yaml:6: inbound.max_mesage_bytes: unknown key (did you mean max_message_bytes?)"},
	},
	{
		name: "unknown key far from any",
		yaml: withMinimal("colour: blue"),
		want: []string{"bad.yaml:5: colour: unknown key (known keys: hostname, state_dir, log_format, listen, inbound, target, delivery, resolver, arc, srs, m365, cutover)"},
	},
	{
		name: "duplicate key",
		yaml: withMinimal("hostname: other.example.nl"),
		want: []string{"bad.yaml:5: hostname: duplicate key (first set on line 1)"},
	},
	{
		name: "duplicate key inside a section",
		yaml: withMinimal("  host: mx2.example.net"),
		want: []string{"bad.yaml:5: target.host: duplicate key (first set on line 4)"},
	},
	{
		name: "duplicate section",
		yaml: withMinimal("target:", "  port: 26"),
		want: []string{"bad.yaml:5: target: duplicate key (first set on line 3)"},
	},
	{
		name: "string where an integer belongs",
		yaml: withMinimal("inbound:", "  max_recipients: lots"),
		want: []string{`bad.yaml:6: inbound.max_recipients: "lots" is not an integer`},
	},
	{
		name: "quoted integer",
		yaml: withMinimal(`  port: "25"`),
		want: []string{`bad.yaml:5: target.port: "25" is quoted; write the number without quotes`},
	},
	{
		name: "no workers for DSNs",
		yaml: withMinimal("delivery:", "  sender_concurrency: 0"),
		want: []string{"bad.yaml:6: delivery.sender_concurrency: 0 must be greater than 0"},
	},
	{
		name: "a typo of a few zeros in the workers",
		yaml: withMinimal("delivery:", "  concurrency: 8000000", "  sender_concurrency: 2000"),
		want: []string{"bad.yaml:6: delivery.concurrency: 8000000 is more than 1000",
			"bad.yaml:7: delivery.sender_concurrency: 2000 is more than 1000"},
	},
	{
		name: "float where an integer belongs",
		yaml: withMinimal("delivery:", "  concurrency: 2.5"),
		want: []string{"bad.yaml:6: delivery.concurrency: 2.5 is not an integer"},
	},
	{
		name: "integer too large",
		yaml: withMinimal("inbound:", "  max_message_bytes: 99999999999999999999"),
		want: []string{"bad.yaml:6: inbound.max_message_bytes: 99999999999999999999 is out of range"},
	},
	{
		name: "empty integer",
		yaml: withMinimal("  port:"),
		want: []string{"bad.yaml:5: target.port: has no value"},
	},
	{
		name: "boolean where a string belongs",
		yaml: withMinimal("log_format: true"),
		want: []string{"bad.yaml:5: log_format: true is a boolean, expected a string"},
	},
	{
		name: "list where a section belongs",
		yaml: withMinimal("listen: [a, b]"),
		want: []string{"bad.yaml:5: listen: expected a mapping of keys, found a list"},
	},
	{
		name: "bad enum",
		yaml: withMinimal("  tls: required"),
		want: []string{`bad.yaml:5: target.tls: "required" is not one of require, opportunistic, none`},
	},
	{
		name:  "unknown Microsoft cloud",
		yaml:  withMinimal("m365:", "  tenant_id: t", "  client_id: c", "  client_secret_file: m365.secret", "  cloud: germany"),
		setup: plantSecret,
		want:  []string{`bad.yaml:9: m365.cloud: "germany" is not one of china, dod, global, usgov, usgovhigh`},
	},
	{
		name: "Microsoft 365 endpoints only over TLS, loopback too",
		yaml: withMinimal("m365:", "  tenant_id: t", "  client_id: c", "  client_secret_file: m365.secret",
			"  authority_url: http://127.0.0.1:8080/", "  graph_url: http://localhost:1/v1.0", "  exchange_url: outlook.office365.com"),
		setup: plantSecret,
		want: []string{`bad.yaml:9: m365.authority_url: "http://127.0.0.1:8080/" must be an https:// URL`,
			`bad.yaml:10: m365.graph_url: "http://localhost:1/v1.0" must be an https:// URL`,
			`bad.yaml:11: m365.exchange_url: "outlook.office365.com" must be an https:// URL`},
	},
	{
		name: "bad enum for permanent failures",
		yaml: withMinimal("delivery:", "  on_permanent_failure: drop"),
		want: []string{`bad.yaml:6: delivery.on_permanent_failure: "drop" is not one of hold, bounce`},
	},
	{
		name: "bad duration",
		yaml: withMinimal("delivery:", "  retry_max: 1 hour"),
		want: []string{`bad.yaml:6: delivery.retry_max: "1 hour" is not a duration (use Go syntax, e.g. 1h30m)`},
	},
	{
		name: "plain integer as duration",
		yaml: withMinimal("inbound:", "  read_timeout: 300"),
		want: []string{"bad.yaml:6: inbound.read_timeout: 300 has no unit (use Go syntax, e.g. 300s or 5m)"},
	},
	{
		name: "quoted integer as duration",
		yaml: withMinimal("inbound:", `  read_timeout: "300"`),
		want: []string{`bad.yaml:6: inbound.read_timeout: "300" has no unit`},
	},
	{
		name: "negative size",
		yaml: withMinimal("inbound:", "  max_message_bytes: -1"),
		want: []string{"bad.yaml:6: inbound.max_message_bytes: -1 must be greater than 0"},
	},
	{
		name: "zero and negative durations",
		yaml: withMinimal("inbound:", "  read_timeout: 0s", "delivery:", "  give_up_after: -1h"),
		want: []string{
			"bad.yaml:6: inbound.read_timeout: 0s must be greater than 0",
			"bad.yaml:8: delivery.give_up_after: -1h must be greater than 0",
		},
	},
	{
		name: "resource limits and timeouts must be positive",
		yaml: withMinimal("inbound:", "  max_connections_per_ip: 0", "  max_header_bytes: -5", "  routing_max_stale: 0s",
			"delivery:", "  command_timeout: 0s", "  data_timeout: 30"),
		want: []string{
			"bad.yaml:6: inbound.max_connections_per_ip: 0 must be greater than 0",
			"bad.yaml:7: inbound.max_header_bytes: -5 must be greater than 0",
			"bad.yaml:8: inbound.routing_max_stale: 0s must be greater than 0",
			"bad.yaml:10: delivery.command_timeout: 0s must be greater than 0",
			"bad.yaml:11: delivery.data_timeout: 30 has no unit",
		},
	},
	{
		name: "session limit zero",
		yaml: withMinimal("inbound:", "  max_session: 0s"),
		want: []string{"bad.yaml:6: inbound.max_session: 0s must be greater than 0"},
	},
	{
		name: "session limit below the read timeout",
		yaml: withMinimal("inbound:", "  read_timeout: 10m", "  max_session: 5m"),
		want: []string{"bad.yaml:7: inbound.max_session: max_session (5m) must be at least read_timeout (10m)"},
	},
	{
		name: "bad CIDRs, each reported",
		yaml: withMinimal(
			"inbound:",
			"  allowed_networks:",
			"    - 10.0.0.0/33",
			"    - 192.0.2.1",
			"    - 10.1.0.0/8",
			"    - nonsense",
			"    - [nested]",
		),
		want: []string{
			`bad.yaml:7: inbound.allowed_networks[0]: "10.0.0.0/33" is not a CIDR network`,
			`bad.yaml:9: inbound.allowed_networks[2]: "10.1.0.0/8" has host bits set; did you mean 10.0.0.0/8?`,
			`bad.yaml:10: inbound.allowed_networks[3]: "nonsense" is not an IP address or CIDR network`,
			`bad.yaml:11: inbound.allowed_networks[4]: expected a string, found a list`,
		},
	},
	{
		name: "allowed_networks not a list",
		yaml: withMinimal("inbound:", "  allowed_networks: 10.0.0.0/8"),
		want: []string{"bad.yaml:6: inbound.allowed_networks: expected a list of networks"},
	},
	{
		name: "key file readable by group",
		yaml: withMinimal("inbound:", "  tls_cert_file: cert.pem", "  tls_key_file: key.pem"),
		setup: func(t testing.TB, dir string) {
			cert, key := selfSigned(t)
			writeFile(t, filepath.Join(dir, "cert.pem"), cert, 0o644)
			writeFile(t, filepath.Join(dir, "key.pem"), key, 0o640)
		},
		want: []string{"bad.yaml:7: inbound.tls_key_file: ", "key.pem is accessible by group or others (mode 0640); chmod 600 it"},
	},
	{
		name: "key file readable by anyone",
		yaml: withMinimal("inbound:", "  tls_cert_file: cert.pem", "  tls_key_file: key.pem"),
		setup: func(t testing.TB, dir string) {
			cert, key := selfSigned(t)
			writeFile(t, filepath.Join(dir, "cert.pem"), cert, 0o644)
			writeFile(t, filepath.Join(dir, "key.pem"), key, 0o604)
		},
		want: []string{"bad.yaml:7: inbound.tls_key_file: ", "(mode 0604)"},
	},
	{
		name: "certificate without key",
		yaml: withMinimal("inbound:", "  tls_cert_file: cert.pem"),
		setup: func(t testing.TB, dir string) {
			cert, _ := selfSigned(t)
			writeFile(t, filepath.Join(dir, "cert.pem"), cert, 0o644)
		},
		want: []string{"bad.yaml:6: inbound.tls_cert_file: set without inbound.tls_key_file"},
	},
	{
		name: "missing tls files",
		yaml: withMinimal("inbound:", "  tls_cert_file: cert.pem", "  tls_key_file: key.pem"),
		want: []string{
			"bad.yaml:6: inbound.tls_cert_file: ", "cert.pem does not exist",
			"bad.yaml:7: inbound.tls_key_file: ", "key.pem does not exist",
		},
	},
	{
		name: "ca_file is a directory",
		yaml: withMinimal("  ca_file: ."),
		want: []string{"bad.yaml:5: target.ca_file: ", "is not a regular file"},
	},
	{
		name: "ca_file without certificates",
		yaml: withMinimal("  ca_file: ca.pem"),
		setup: func(t testing.TB, dir string) {
			writeFile(t, filepath.Join(dir, "ca.pem"), "not a certificate\n", 0o644)
		},
		want: []string{"bad.yaml:5: target.ca_file: ", "ca.pem holds no PEM certificates"},
	},
	{
		name: "dane for an address",
		yaml: yamlLines("hostname: relay.example.nl", "state_dir: /x", "target:", "  host: 192.0.2.25", "  tls: dane"),
		want: []string{"bad.yaml:5: target.tls: dane needs target.host to be a host name, not an address"},
	},
	{
		name: "unknown tls policy lists dane",
		yaml: withMinimal("  tls: danish"),
		want: []string{"bad.yaml:5: target.tls: ", "dane"},
	},
	{
		name: "unknown ip family",
		yaml: withMinimal("  ip_family: ipv5"),
		want: []string{"bad.yaml:5: target.ip_family: ", "ipv4"},
	},
	{
		name: "ip family excludes the host",
		yaml: yamlLines("hostname: relay.example.nl", "state_dir: /x", "target:", "  host: 192.0.2.25", "  ip_family: ipv6"),
		want: []string{"bad.yaml:5: target.ip_family: ipv6 excludes target.host 192.0.2.25"},
	},
	{
		name: "dane trust anchors missing",
		yaml: withMinimal("  tls: dane", "  dane_trust_anchor_file: anchors"),
		want: []string{"bad.yaml:6: target.dane_trust_anchor_file: ", "anchors does not exist"},
	},
	{
		name: "dane trust anchor with a SHA-1 digest",
		yaml: withMinimal("  tls: dane", "  dane_trust_anchor_file: anchors"),
		setup: func(t testing.TB, dir string) {
			writeFile(t, filepath.Join(dir, "anchors"), ". IN DS 20326 8 1 0123456789abcdef0123456789abcdef01234567\n", 0o644)
		},
		want: []string{"bad.yaml:6: target.dane_trust_anchor_file: ", "digest type 1 is refused"},
	},
	{
		name: "missing required keys",
		yaml: yamlLines("log_format: json"),
		want: []string{
			"bad.yaml: hostname: required",
			"bad.yaml: state_dir: required",
			"bad.yaml: target.host: required",
		},
	},
	{
		name: "empty file",
		yaml: "",
		want: []string{"bad.yaml: hostname: required", "bad.yaml: state_dir: required", "bad.yaml: target.host: required"},
	},
	{
		name: "type error on a required key is not also reported as missing",
		yaml: yamlLines("hostname: [relay]", "state_dir: /x", "target: {host: mx.example.net}"),
		want: []string{"bad.yaml:1: hostname: expected a string, found a list"},
	},
	{
		name: "mx_allow_loopback takes true or false only",
		yaml: withMinimal("delivery:", "  mx_allow_loopback: yes"),
		want: []string{`bad.yaml:6: delivery.mx_allow_loopback: "yes" is a string, expected true or false`},
	},
	{
		name: "retry_max below retry_initial points at retry_max",
		yaml: withMinimal("delivery:", "  retry_initial: 10m", "  retry_max: 5m"),
		want: []string{"bad.yaml:7: delivery.retry_max: retry_max (5m) must be at least retry_initial (10m)"},
	},
	{
		name: "retry_initial above the default retry_max points at retry_initial",
		yaml: withMinimal("delivery:", "  retry_initial: 2h"),
		want: []string{"bad.yaml:6: delivery.retry_initial: retry_max (1h) must be at least retry_initial (2h)"},
	},
	{
		name: "give_up_after below retry_initial",
		yaml: withMinimal("delivery:", "  retry_initial: 30m", "  retry_max: 1h", "  give_up_after: 10m"),
		want: []string{"bad.yaml:8: delivery.give_up_after: give_up_after (10m) must be at least retry_initial (30m)"},
	},
	{
		name: "an invalid retry_initial adds no cross-field complaint",
		yaml: withMinimal("delivery:", "  retry_initial: soon", "  retry_max: 30s"),
		want: []string{`bad.yaml:6: delivery.retry_initial: "soon" is not a duration`},
	},
	{
		name: "listen address without port",
		yaml: withMinimal("listen:", "  smtp: 0.0.0.0", "  metrics: 127.0.0.1:metrics"),
		want: []string{
			`bad.yaml:6: listen.smtp: "0.0.0.0" is not host:port`,
			`bad.yaml:7: listen.metrics: "127.0.0.1:metrics": port "metrics" is not a number from 0 to 65535`,
		},
	},
	{
		name: "http_hosts holds host names",
		yaml: withMinimal("listen:", `  http_hosts: [prometheus.example.lan, "relay example", "*.example"]`),
		want: []string{
			`bad.yaml:6: listen.http_hosts: "relay example"`,
			`bad.yaml:6: listen.http_hosts: "*.example"`,
		},
	},
	{
		name: "empty smtp listen address",
		yaml: withMinimal("listen:", `  smtp: ""`),
		want: []string{"bad.yaml:6: listen.smtp: must not be empty"},
	},
	{
		name: "hostnames that are not DNS names",
		yaml: yamlLines("hostname: relay_1.example.nl", "state_dir: /x", "target:", "  host: -mx.example.net"),
		want: []string{
			`bad.yaml:1: hostname: "relay_1.example.nl" contains '_'`,
			`bad.yaml:4: target.host: "-mx.example.net" has a label that starts or ends with a hyphen`,
		},
	},
	{
		name: "IP address as hostname",
		yaml: yamlLines("hostname: 192.0.2.1", "state_dir: /x", "target: {host: 192.0.2.2, port: 0}"),
		want: []string{
			`bad.yaml:1: hostname: "192.0.2.1" is an IP address; a DNS name is needed`,
			"bad.yaml:3: target.port: 0 is not a port number (1-65535)",
		},
	},
	{
		name: "YAML syntax error",
		yaml: yamlLines("hostname: relay.example.nl", "state_dir: /x", "  target: mx.example.net"),
		// Only the syntax error: the keys after it were never read, so
		// "target.host: required" would be a false complaint.
		want: []string{"bad.yaml:3: invalid YAML: mapping values are not allowed in this context"},
	},
	{
		name: "second document",
		yaml: withMinimal("---", "hostname: other.example.nl"),
		want: []string{"bad.yaml:5: a second YAML document; the file must hold exactly one"},
	},
	{
		name: "alias",
		yaml: withMinimal("inbound:", "  max_connections: &n 4", "  max_recipients: *n"),
		want: []string{"bad.yaml:7: inbound.max_recipients: YAML aliases (*n) are not supported"},
	},
	{
		name: "merge key",
		yaml: withMinimal("defaults: &d {port: 26}", "delivery:", "  <<: *d"),
		want: []string{"bad.yaml:5: defaults: unknown key", "bad.yaml:7: delivery.<<: unknown key"},
	},
	{
		name: "top level is a list",
		yaml: yamlLines("- hostname: relay.example.nl"),
		want: []string{
			"bad.yaml:1: expected a mapping of keys, found a list",
			"bad.yaml: hostname: required", "bad.yaml: state_dir: required", "bad.yaml: target.host: required",
		},
	},
	{
		name: "several problems in one file are reported together, in file order",
		yaml: yamlLines(
			"hostname: relay.example.nl",
			"state_dir: /var/lib/dualmx",
			"log_format: xml",
			"listen:",
			"  smtp: 0.0.0.0:25",
			"  metric: 127.0.0.1:9464",
			"inbound:",
			"  max_recipients: 0",
			"  allowed_networks: [10.0.0.0/8, 300.1.1.1]",
			"target:",
			"  host: mx.example.net",
			"  tls: maybe",
			"delivery:",
			"  retry_initial: 1",
			"  retry_initial: 2m",
		),
		want: []string{
			`bad.yaml:3: log_format: "xml" is not one of text, json`,
			"bad.yaml:6: listen.metric: unknown key (did you mean metrics?)",
			"bad.yaml:8: inbound.max_recipients: 0 must be greater than 0",
			`bad.yaml:9: inbound.allowed_networks[1]: "300.1.1.1" is not an IP address`,
			`bad.yaml:12: target.tls: "maybe" is not one of`,
			"bad.yaml:14: delivery.retry_initial: 1 has no unit",
			"bad.yaml:15: delivery.retry_initial: duplicate key (first set on line 14)",
		},
	},
}

func TestBadConfigs(t *testing.T) {
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			c, err := Parse(filepath.Join(dir, "bad.yaml"), []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", c)
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, want Problems: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			// A fragment pair like "key: ", "file detail" may share one
			// problem, so fragments are matched in order against the lines.
			i := 0
			for _, w := range tc.want {
				for i < len(got) && !strings.Contains(got[i], w) {
					i++
				}
				if i == len(got) {
					t.Fatalf("missing %q (in order) in:\n%s", w, err)
				}
			}
			if n := countProblems(tc.want); len(ps) != n {
				t.Errorf("got %d problems, want %d:\n%s", len(ps), n, err)
			}
			for _, p := range ps {
				if p.Warning {
					t.Errorf("warning among the errors: %v", p)
				}
			}
		})
	}
}

// countProblems counts the expected problems: fragments that start with the
// file name open a new problem; others add detail to the one before.
func countProblems(want []string) int {
	n := 0
	for _, w := range want {
		if strings.HasPrefix(w, "bad.yaml") {
			n++
		}
	}
	return n
}

// isOptional reports whether path lies in one of the optionalSections,
// which the example may leave out (commented) since being present is what
// switches them on.
func isOptional(path string) bool {
	sec, _, _ := strings.Cut(path, ".")
	return slices.Contains(optionalSections, sec)
}

func TestExampleParses(t *testing.T) {
	c, err := Load(filepath.Join("..", "deploy", "dualmx.example.yaml"))
	if err != nil {
		t.Fatalf("example config:\n%v", err)
	}
	// The example documents every key, so it must name every one.
	for _, f := range schema {
		if c.line(f.path) == 0 && !isOptional(f.path) {
			t.Errorf("example config lacks %s", f.path)
		}
	}
	// It also shows the defaults; a change to one must change the other.
	def := Default()
	def.Hostname, def.StateDir, def.Target.Host = c.Hostname, c.StateDir, c.Target.Host
	if got, want := c.Redacted(), def.Redacted(); !reflect.DeepEqual(got, want) {
		t.Errorf("example values differ from Default:\n got %v\nwant %v", got, want)
	}
}

func TestDefaultsApplied(t *testing.T) {
	c, err := Parse("/etc/dualmx/dualmx.yaml", []byte(withMinimal()))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Path = "/etc/dualmx/dualmx.yaml"
	want.Hostname = "relay.example.nl"
	want.StateDir = "/var/lib/dualmx"
	want.Target.Host = "mx.example.net"
	want.origin = c.origin
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
	// Spot-check the numbers the rest of the relay depends on, so a typo in
	// Default is not silently mirrored by the comparison above.
	if c.Inbound.MaxMessageBytes != 52428800 || c.Inbound.MaxConnections != 200 || c.Delivery.Concurrency != 8 || c.Delivery.SenderConcurrency != 2 ||
		c.Delivery.GiveUpAfter != 120*time.Hour || c.Target.Port != 25 || c.Target.TLS != TLSRequire ||
		c.Listen.SMTP != "0.0.0.0:25" || c.Inbound.ReadTimeout != 5*time.Minute {
		t.Errorf("unexpected defaults: %+v", *c)
	}
}

func TestEmptySectionsKeepDefaults(t *testing.T) {
	c, err := Parse("x.yaml", []byte(withMinimal("inbound:", "delivery: {}", "listen:", "  metrics: \"\"")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Inbound.MaxRecipients != 100 || c.Delivery.RetryMax != time.Hour {
		t.Errorf("defaults lost: %+v", *c)
	}
	if c.Listen.Metrics != "" {
		t.Errorf("metrics = %q, want it disabled", c.Listen.Metrics)
	}
}

func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t)
	writeFile(t, filepath.Join(sub, "cert.pem"), cert, 0o644)
	writeFile(t, filepath.Join(sub, "key.pem"), key, 0o600)
	writeFile(t, filepath.Join(sub, "ca.pem"), cert, 0o644)
	path := filepath.Join(sub, "dualmx.yaml")
	writeFile(t, path, yamlLines(
		"hostname: relay.example.nl",
		"state_dir: ../state",
		"inbound:",
		"  tls_cert_file: cert.pem",
		"  tls_key_file: ./key.pem",
		"target:",
		"  host: mx.example.net",
		"  ca_file: ca.pem",
		"  tls: dane",
		"  dane_trust_anchor_file: root.ds",
	), 0o644)
	writeFile(t, filepath.Join(sub, "root.ds"), ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n", 0o644)

	// Load from another working directory must not matter; the test's cwd is
	// the package directory, which differs from dir.
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"state_dir":     {c.StateDir, filepath.Join(dir, "state")},
		"spool":         {c.SpoolDir(), filepath.Join(dir, "state", "spool")},
		"db":            {c.DBPath(), filepath.Join(dir, "state", "state.db")},
		"tls_cert_file": {c.Inbound.TLSCertFile, filepath.Join(sub, "cert.pem")},
		"tls_key_file":  {c.Inbound.TLSKeyFile, filepath.Join(sub, "key.pem")},
		"ca_file":       {c.Target.CAFile, filepath.Join(sub, "ca.pem")},
		"dane anchors":  {c.Target.DaneTrustAnchorFile, filepath.Join(sub, "root.ds")},
		"tls":           {c.Target.TLS, TLSDane},
	}
	for name, gw := range checks {
		if gw[0] != gw[1] {
			t.Errorf("%s = %q, want %q", name, gw[0], gw[1])
		}
	}
}

func TestAllowedNetworks(t *testing.T) {
	c, err := Parse("x.yaml", []byte(withMinimal(
		"inbound:",
		`  allowed_networks: [192.0.2.7, 10.0.0.0/8, "2001:db8::1", "2001:db8::/32"]`,
	)))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if !reflect.DeepEqual(c.Inbound.AllowedNetworks, want) {
		t.Errorf("got %v, want %v", c.Inbound.AllowedNetworks, want)
	}
}

func TestAcceptedValues(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"tls files with private key", ""}, // filled in below, needs files
		{"listen on IPv6 and ephemeral port", withMinimal("listen:", `  smtp: "[::1]:0"`, `  metrics: "localhost:9464"`)},
		{"target by IP", yamlLines("hostname: relay.example.nl", "state_dir: /x", "target: {host: 127.0.0.1, port: 2525, tls: none}")},
		{"opportunistic tls and bounce", withMinimal("  tls: opportunistic", "delivery: {on_permanent_failure: bounce}")},
		{"durations in compound syntax", withMinimal("delivery:", "  retry_initial: 1m30s", "  retry_max: 1.5h", "  give_up_after: 1h30m")},
		{"allowed_networks null", withMinimal("inbound:", "  allowed_networks:")},
		{"quoted keys, target with trailing dot", yamlLines(`"hostname": relay.example.nl`, `'state_dir': /x`, "target: {host: mx.example.net.}")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := tc.yaml
			if data == "" {
				cert, key := selfSigned(t)
				writeFile(t, filepath.Join(dir, "cert.pem"), cert, 0o644)
				writeFile(t, filepath.Join(dir, "key.pem"), key, 0o600)
				data = withMinimal("inbound:", "  tls_cert_file: cert.pem", "  tls_key_file: key.pem")
			}
			if _, err := Parse(filepath.Join(dir, "ok.yaml"), []byte(data)); err != nil {
				t.Fatalf("refused:\n%v", err)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string // fragments, one per warning, in order
	}{
		{
			name: "locked down",
			yaml: withMinimal("listen: {smtp: \"127.0.0.1:25\"}"),
		},
		{
			name: "private listener needs no allowlist",
			yaml: withMinimal("listen: {smtp: \"10.1.2.3:25\"}"),
		},
		{
			name: "public listener without allowlist",
			yaml: withMinimal("listen:", "  smtp: 0.0.0.0:25", "inbound:", "  allowed_networks: []"),
			want: []string{"x.yaml:8: inbound.allowed_networks: no allowed_networks while listening on 0.0.0.0:25"},
		},
		{
			name: "default listener without allowlist points at listen.smtp",
			yaml: withMinimal("  port: 25"),
			want: []string{"x.yaml: listen.smtp: no allowed_networks while listening on 0.0.0.0:25"},
		},
		{
			name: "tls none with ca_file, metrics exposed, short hostname",
			yaml: yamlLines(
				"hostname: relay",
				"state_dir: /x",
				"listen: {smtp: \"127.0.0.1:25\", metrics: \":9464\"}",
				"target:",
				"  host: mx.example.net",
				"  tls: none",
				"  ca_file: ca.pem",
			),
			want: []string{
				"x.yaml:6: target.tls: TLS to the target is off",
				"x.yaml:7: target.ca_file: ignored because target.tls is none",
				"x.yaml:3: listen.metrics: metrics and /healthz are served without TLS or authentication on :9464; see docs/install.md for a safe scrape set-up",
				`x.yaml:1: hostname: "relay" is not fully qualified`,
			},
		},
		{
			name: "DSNs to loopback, for tests",
			yaml: withMinimal("listen: {smtp: \"127.0.0.1:25\"}", "delivery:", "  mx_allow_loopback: true"),
			want: []string{"x.yaml:7: delivery.mx_allow_loopback: DSNs and returned bounces may go to a sender's MX on a loopback address (meant for tests)"},
		},
		{
			name: "dane with ca_file",
			yaml: withMinimal("  tls: dane", "  ca_file: ca.pem", "listen: {smtp: \"127.0.0.1:25\"}"),
			want: []string{"x.yaml:6: target.ca_file: ignored because target.tls is dane"},
		},
		{
			name: "trust anchors without dane",
			yaml: withMinimal("  dane_trust_anchor_file: root.ds", "listen: {smtp: \"127.0.0.1:25\"}"),
			want: []string{"x.yaml:5: target.dane_trust_anchor_file: ignored because target.tls is require, not dane"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cert, _ := selfSigned(t)
			writeFile(t, filepath.Join(dir, "ca.pem"), cert, 0o644)
			writeFile(t, filepath.Join(dir, "root.ds"), ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n", 0o644)
			c, err := Parse(filepath.Join(dir, "x.yaml"), []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			ws := c.Warnings()
			if len(ws) != len(tc.want) {
				t.Fatalf("got %d warnings, want %d: %v", len(ws), len(tc.want), ws)
			}
			for i, w := range ws {
				if !w.Warning || !strings.Contains(w.String(), tc.want[i]) {
					t.Errorf("warning %d = %v (Warning=%v), want %q", i, w, w.Warning, tc.want[i])
				}
			}
		})
	}
}

// Flags are applied after the file; Validate must catch what they break and
// must not invent a line number for them.
func TestValidateAfterFlags(t *testing.T) {
	c, err := Parse("/etc/dualmx.yaml", []byte(withMinimal("delivery:", "  retry_initial: 1m")))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	c.StateDir = "relative/dir"
	c.Delivery.RetryMax = 30 * time.Second
	c.Listen.Metrics = "nope"
	err = c.Validate()
	// retry_initial still holds the file's value, so the cross-field problem
	// points at its line; the values from flags have no line.
	want := strings.Join([]string{
		"/etc/dualmx.yaml:6: delivery.retry_initial: retry_max (30s) must be at least retry_initial (1m)",
		`/etc/dualmx.yaml: state_dir: "relative/dir" must be an absolute path`,
		`/etc/dualmx.yaml: listen.metrics: "nope" is not host:port (e.g. 0.0.0.0:25 or [::1]:25)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}

	d := Default()
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "hostname: required") {
		t.Errorf("Default() must not validate without a hostname; got %v", err)
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Key: "target.tls", Msg: "bad"}, "a.yaml:3: target.tls: bad"},
		{Problem{File: "a.yaml", Key: "hostname", Msg: "required"}, "a.yaml: hostname: required"},
		{Problem{File: "a.yaml", Line: 2, Msg: "invalid YAML"}, "a.yaml:2: invalid YAML"},
		{Problem{Key: "hostname", Msg: "required"}, "hostname: required"},
		{Problem{Line: 4, Key: "k", Msg: "m"}, "line 4: k: m"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

// logToken is one key=value of slog's text format: a bare value, or a
// quoted one.
var logToken = regexp.MustCompile(`^[a-z0-9_.]+=("(?:[^"\\]|\\.)*"|[^\s"=]*)$`)

func logTokens(t *testing.T, line string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for rest := strings.TrimSpace(line); rest != ""; {
		m := regexp.MustCompile(`^[a-z0-9_.]+=("(?:[^"\\]|\\.)*"|[^\s"]*)`).FindString(rest)
		if m == "" || !logToken.MatchString(m) {
			t.Fatalf("not key=value at %q in\n%s", rest, line)
		}
		k, v, _ := strings.Cut(m, "=")
		out[k] = v
		rest = strings.TrimSpace(rest[len(m):])
	}
	return out
}

// TestLogValue: the effective config logs as key=value pairs on one line,
// lists as one token, an absent optional section as off, and no secret: a
// password in a URL is masked, a secret file's contents are never read.
func TestLogValue(t *testing.T) {
	c, err := parse("x.yaml", []byte(withMinimal(
		"inbound: {allowed_networks: [192.0.2.7, 2001:db8::/32]}",
		"m365:",
		"  tenant_id: t",
		"  client_id: c",
		"  client_secret_file: /etc/dualmx/m365.secret",
		"  graph_url: https://admin:hunter2@graph.example.nl/",
	)), false)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("starting dualmx", "config", c)
	line := buf.String()
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line:\n%s", line)
	}
	kv := logTokens(t, line)
	for k, want := range map[string]string{
		"msg":                             `"starting dualmx"`,
		"config.file":                     "x.yaml",
		"config.hostname":                 "relay.example.nl",
		"config.inbound.max_recipients":   "100",
		"config.inbound.allowed_networks": "192.0.2.7/32,2001:db8::/32",
		"config.delivery.retry_max":       "1h",
		"config.arc":                      "off",
		"config.srs":                      "off",
		"config.m365.client_secret_file":  "/etc/dualmx/m365.secret",
		"config.m365.graph_url":           "https://admin:xxxxx@graph.example.nl/",
		"config.resolver":                 `""`,
	} {
		if kv[k] != want {
			t.Errorf("%s=%s, want %s", k, kv[k], want)
		}
	}
	if strings.Contains(line, "hunter2") || strings.Contains(line, "map[") || strings.Contains(line, "config.arc.") {
		t.Errorf("a secret, a Go map or an absent section's keys in:\n%s", line)
	}

	buf.Reset()
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting dualmx", "config", c)
	var js struct {
		Config struct {
			Inbound struct {
				MaxRecipients int `json:"max_recipients"`
			} `json:"inbound"`
			ARC string `json:"arc"`
		} `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &js); err != nil || js.Config.Inbound.MaxRecipients != 100 || js.Config.ARC != "off" {
		t.Errorf("JSON: %+v %v\n%s", js, err, buf.String())
	}

	// One line a section: the top-level keys, then each section.
	var firsts []string
	for _, l := range c.LogSections() {
		firsts = append(firsts, l[0].Key)
	}
	if want := []string{"hostname", "listen", "inbound", "target", "delivery", "arc", "srs", "m365", "cutover"}; !slices.Equal(firsts, want) {
		t.Errorf("lines start with %v, want %v", firsts, want)
	}
}

func TestRedacted(t *testing.T) {
	c, err := Parse("x.yaml", []byte(withMinimal("inbound: {allowed_networks: [192.0.2.7]}")))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	if len(r) != len(schema) {
		t.Errorf("Redacted has %d keys, schema %d", len(r), len(schema))
	}
	for k, want := range map[string]any{
		"hostname":                  "relay.example.nl",
		"delivery.retry_max":        "1h",
		"inbound.read_timeout":      "5m",
		"inbound.max_message_bytes": int64(52428800),
		"target.port":               25,
		"inbound.allowed_networks":  []string{"192.0.2.7/32"},
	} {
		if !reflect.DeepEqual(r[k], want) {
			t.Errorf("%s = %#v, want %#v", k, r[k], want)
		}
	}

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	if out := buf.String(); !strings.Contains(out, `"delivery":{"retry_initial":"1m","retry_max":"1h"`) || !strings.Contains(out, `"file":"x.yaml"`) {
		t.Errorf("log line lacks the config: %s", out)
	}
}

// No key holds a secret today; this pins the masking rule for the first one
// that will, since Redacted is the only place that applies it.
func TestRedactMasksSecretLookingKeys(t *testing.T) {
	for _, tc := range []struct {
		key  string
		val  any
		want any
	}{
		{"target.smtp_password", "hunter2", "(set, hidden)"},
		{"graph.client_secret", "s3cr3t", "(set, hidden)"},
		{"graph.token", "", "(unset)"},
		{"inbound.tls_key_file", "/etc/dualmx/key.pem", "/etc/dualmx/key.pem"},
		{"hostname", "relay.example.nl", "relay.example.nl"},
	} {
		if got := redact(tc.key, tc.val); got != tc.want {
			t.Errorf("redact(%s, %v) = %v, want %v", tc.key, tc.val, got, tc.want)
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "1h30m", 5 * time.Minute: "5m", 90 * time.Second: "1m30s",
		120 * time.Hour: "120h", 0: "0s", -time.Hour: "-1h", time.Hour + time.Second: "1h0m1s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestOptionalSections(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "arc.key")
	secret := filepath.Join(dir, "srs.secret")
	old := filepath.Join(dir, "srs.old")
	writeFile(t, key, "not parsed here", 0o600)
	writeFile(t, secret, "s3cret", 0o600)
	writeFile(t, old, "older", 0o600)
	good := withMinimal(
		"resolver: 127.0.0.1:53",
		"arc:",
		"  domain: relay.example.nl",
		"  selector: arc2026",
		"  key_file: arc.key",
		"  headers: [from, to, subject]",
		"srs:",
		"  domain: fwd.example.nl",
		"  secret_file: "+secret,
		"  previous_secret_files: [srs.old]",
		"cutover:",
		"  domain: example.nl",
		"  old_mx: [mx1.solcon.nl, mx2.solcon.nl]",
		"  tenant_mx: example-nl.mail.protection.outlook.com",
	)
	c, err := Parse(filepath.Join(dir, "ok.yaml"), []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ARC.Enabled || c.ARC.KeyFile != key || !c.SRS.Enabled || c.SRS.PreviousSecretFiles[0] != old ||
		c.SRS.MaxAge != 21*24*time.Hour || c.M365.Enabled || !c.Cutover.Enabled || c.Cutover.QuietPeriod != 72*time.Hour {
		t.Errorf("optional sections not decoded: %+v %+v %+v", c.ARC, c.SRS, c.Cutover)
	}
	if c2, err := Parse("x.yaml", []byte(withMinimal())); err != nil || c2.ARC.Enabled || c2.SRS.Enabled {
		t.Errorf("absent sections must be off: %v", err)
	}

	writeFile(t, key, "k", 0o640)
	bad := withMinimal(
		"arc:",
		"  domain: relay.example.nl",
		"  key_file: "+key,
		"  headers: [to]",
		"srs:",
		"  max_age: 0s",
		"  dsn_per_client_per_hour: 0",
		"  dsn_per_destination_per_hour: -1",
		"m365:",
		"  tenant_id: t",
		"resolver: nonsense",
	)
	_, err = Parse(filepath.Join(dir, "bad.yaml"), []byte(bad))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want problems, got %v", err)
	}
	text := ps.Error()
	for _, want := range []string{"arc.selector: required", "arc.key_file: " + key + " is accessible by group or others",
		"arc.headers: must include From", "srs.domain: required", "srs.secret_file: required", "srs.max_age",
		"srs.dsn_per_client_per_hour: 0 must be greater than 0", "srs.dsn_per_destination_per_hour: -1 must be greater than 0",
		"m365.client_id: required", "set exactly one of client_secret_file and certificate_file", ":15: resolver:"} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q:\n%s", want, text)
		}
	}
}

// TestExampleOptionalSectionsParse uncomments the example's optional sections
// ("#key:" lines) and checks that only the missing secret files are refused,
// so the documented keys stay in step with the schema.
func TestExampleOptionalSectionsParse(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "dualmx.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		// "#key:" starts a section, "#  key:" is a key in it; "# text" is prose.
		if strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "##") {
			l = l[1:]
		} else if strings.HasPrefix(l, "#  ") && len(l) > 3 && l[3] != ' ' {
			l = l[1:]
		}
		lines = append(lines, l)
	}
	_, err = Parse("example.yaml", []byte(strings.Join(lines, "\n")))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want only missing-file problems, got %v", err)
	}
	for _, p := range ps {
		if !strings.Contains(p.Msg, "does not exist") && !strings.Contains(p.Msg, "set exactly one") {
			t.Errorf("uncommented example: %s", p)
		}
	}
	for _, key := range []string{"arc.key_file", "srs.secret_file", "m365.client_secret_file"} {
		if !ps.hasKey(key) {
			t.Errorf("expected the missing %s to be reported", key)
		}
	}
}

// TestSenderConcurrencyRead: the DSN workers' count is read from the file,
// not left at its default.
func TestSenderConcurrencyRead(t *testing.T) {
	c, err := Parse("x.yaml", []byte(withMinimal("delivery:", "  sender_concurrency: 5")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Delivery.SenderConcurrency != 5 {
		t.Errorf("delivery.sender_concurrency = %d, want 5", c.Delivery.SenderConcurrency)
	}
}
