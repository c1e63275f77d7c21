// SPDX-License-Identifier: MIT

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestWebConfig: a web config file for the metrics or status listener is
// checked when the config loads: its format and hashes (by the toolkit), and
// the key file rule for the TLS key; the warnings say what a listener off
// loopback lacks.
func TestWebConfig(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := "basic_auth_users:\n  prometheus: " + string(hash) + "\n"
	tlsFiles := "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
	for _, tc := range []struct {
		name    string
		web     string // the web config; "" means none given
		webMode uint32
		keyMode uint32
		listen  string // the listen section
		problem string // a fragment of the one problem expected
		warning string // a fragment of the one warning expected
	}{
		{name: "TLS and basic auth on a public address", web: tlsFiles + users, listen: `{smtp: "127.0.0.1:25", metrics: "0.0.0.0:9464", metrics_web_config: web.yml}`},
		{name: "no web config on a public address", listen: `{smtp: "127.0.0.1:25", metrics: "0.0.0.0:9464"}`,
			warning: "listen.metrics: metrics and /healthz are served without TLS or authentication on 0.0.0.0:9464"},
		{name: "basic auth without TLS", web: users, listen: `{smtp: "127.0.0.1:25", metrics: "0.0.0.0:9464", metrics_web_config: web.yml}`,
			warning: "listen.metrics_web_config: metrics and /healthz are served with basic auth but without TLS"},
		{name: "TLS without authentication", web: tlsFiles, listen: `{smtp: "127.0.0.1:25", metrics: "0.0.0.0:9464", metrics_web_config: web.yml}`,
			warning: "served without authentication"},
		{name: "status page off loopback", listen: `{smtp: "127.0.0.1:25", status: "10.0.0.5:9465"}`,
			warning: "listen.status: the status page (senders, recipients and replies of queued mail, the address list) is served without TLS or authentication on 10.0.0.5:9465"},
		{name: "status page protected off loopback", web: tlsFiles + users, listen: `{smtp: "127.0.0.1:25", status: "0.0.0.0:9465", status_web_config: web.yml}`},
		{name: "web config missing", listen: `{smtp: "127.0.0.1:25", metrics_web_config: nope.yml}`,
			problem: "listen.metrics_web_config: " + "DIR/nope.yml does not exist"},
		{name: "unknown key", web: "basic_auth_user:\n  prometheus: x\n", listen: `{smtp: "127.0.0.1:25", metrics_web_config: web.yml}`,
			problem: "listen.metrics_web_config: DIR/web.yml: yaml: unmarshal errors:\n  line 1: field basic_auth_user not found"},
		{name: "a password instead of a bcrypt hash", web: "basic_auth_users:\n  prometheus: s3cret\n", listen: `{smtp: "127.0.0.1:25", metrics_web_config: web.yml}`,
			problem: "listen.metrics_web_config: DIR/web.yml: crypto/bcrypt: hashedSecret too short"},
		{name: "key file readable by others", web: tlsFiles + users, keyMode: 0o644, listen: `{smtp: "127.0.0.1:25", metrics_web_config: web.yml}`,
			problem: "listen.metrics_web_config: tls_server_config.key_file: DIR/tls.key is accessible by group or others (mode 0644)"},
		{name: "inline key in a file others can read", web: "inline", webMode: 0o644, listen: `{smtp: "127.0.0.1:25", metrics_web_config: web.yml}`,
			problem: "DIR/web.yml is accessible by group or others (mode 0644); chmod 600 it (it holds the TLS private key"},
		{name: "inline key in a private file", web: "inline", webMode: 0o600, listen: `{smtp: "127.0.0.1:25", metrics_web_config: web.yml}`},
		{name: "hashes alone may be readable", web: users, webMode: 0o644, listen: `{smtp: "127.0.0.1:25", metrics_web_config: web.yml}`},
		{name: "certificate missing", web: "tls_server_config:\n  cert_file: none.crt\n  key_file: tls.key\n", listen: `{smtp: "127.0.0.1:25", metrics_web_config: web.yml}`,
			problem: "failed to read cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cert, key := selfSigned(t)
			writeFile(t, filepath.Join(dir, "tls.crt"), cert, 0o644)
			keyMode := tc.keyMode
			if keyMode == 0 {
				keyMode = 0o600
			}
			writeFile(t, filepath.Join(dir, "tls.key"), key, keyModeOf(keyMode))
			if tc.web != "" {
				web := tc.web
				if web == "inline" {
					web = "tls_server_config:\n  cert: |\n" + indent(cert) + "  key: |\n" + indent(key) + users
				}
				mode := tc.webMode
				if mode == 0 {
					mode = 0o640
				}
				writeFile(t, filepath.Join(dir, "web.yml"), web, keyModeOf(mode))
			}
			c, err := Parse(filepath.Join(dir, "x.yaml"), []byte(withMinimal("listen: "+tc.listen)))
			if tc.problem != "" {
				want := strings.ReplaceAll(tc.problem, "DIR", dir)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v, want a problem with %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkOneWarning(t, c, tc.warning)
		})
	}
}

func keyModeOf(m uint32) os.FileMode { return os.FileMode(m) }

func indent(pem string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(pem, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// TestSRSNeedsMicrosoftOutbound: with srs on, an allowed_networks that keeps
// out Microsoft 365's outbound servers is warned about, naming the ranges
// missing; the published ranges, or no list at all, are not.
func TestSRSNeedsMicrosoftOutbound(t *testing.T) {
	m365 := `["198.51.100.7", 40.92.0.0/15, 40.107.0.0/16, 52.100.0.0/14, 104.47.0.0/17, "2a01:111:f400::/48", "2a01:111:f403::/48"]`
	for _, tc := range []struct {
		name, allowed string
		srs           bool
		want          string
	}{
		{name: "only the old host, srs on", allowed: `["198.51.100.7"]`, srs: true,
			want: "x.yaml:7: inbound.allowed_networks: srs is on, but allowed_networks does not admit Microsoft 365's outbound mail servers (40.92.0.0/15, 40.107.0.0/16, 52.100.0.0/14, 104.47.0.0/17, 2a01:111:f400::/48, 2a01:111:f403::/48): bounces the tenant sends to fwd.example.nl addresses would be refused"},
		{name: "one range missing", allowed: `["198.51.100.7", 40.92.0.0/15, 40.107.0.0/16, 52.100.0.0/14, "2a01:111:f400::/48", "2a01:111:f403::/48"]`, srs: true,
			want: "outbound mail servers (104.47.0.0/17)"},
		{name: "a narrower range does not cover", allowed: `["198.51.100.7", 40.92.0.0/16, 40.107.0.0/16, 52.100.0.0/14, 104.47.0.0/17, "2a01:111:f400::/48", "2a01:111:f403::/48"]`, srs: true,
			want: "outbound mail servers (40.92.0.0/15)"},
		{name: "old host and Microsoft 365", allowed: m365, srs: true},
		{name: "no list", allowed: `[]`, srs: true},
		{name: "only the old host, srs off", allowed: `["198.51.100.7"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			lines := []string{"listen: {smtp: \"127.0.0.1:25\"}", "inbound:", "  allowed_networks: " + tc.allowed}
			if tc.srs {
				writeFile(t, filepath.Join(dir, "srs.secret"), "a long random secret for the tests\n", 0o600)
				lines = append(lines, "srs:", "  domain: fwd.example.nl", "  secret_file: srs.secret")
			}
			c, err := Parse(filepath.Join(dir, "x.yaml"), []byte(withMinimal(lines...)))
			if err != nil {
				t.Fatal(err)
			}
			checkOneWarning(t, c, tc.want)
		})
	}
}

// checkOneWarning: c warns once, with want in the text, or not at all
// when want is "".
func checkOneWarning(t *testing.T, c *Config, want string) {
	t.Helper()
	var ws []string
	for _, w := range c.Warnings() {
		ws = append(ws, w.String())
	}
	switch {
	case want == "" && len(ws) > 0:
		t.Errorf("unexpected warnings: %q", ws)
	case want != "" && (len(ws) != 1 || !strings.Contains(ws[0], want)):
		t.Errorf("warnings %q, want one with %q", ws, want)
	}
}
