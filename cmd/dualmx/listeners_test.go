// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/testca"
	"github.com/dualmx/dualmx/standin"
)

// startTestDaemon runs the daemon in process on loopback ports with the
// given extra lines in its listen section.
func startTestDaemon(t *testing.T, listen string) *daemon {
	t.Helper()
	dir := t.TempDir()
	tenant, err := standin.Start(standin.Options{Keep: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tenant.Close() })
	text := fmt.Sprintf("hostname: relay.test.localhost\nstate_dir: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: 127.0.0.1:0\n  status: 127.0.0.1:0\n%s"+
		"target:\n  host: 127.0.0.1\n  port: %d\n  tls: none\n", filepath.Join(dir, "state"), listen, tenant.Port())
	p := filepath.Join(dir, "dualmx.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := startDaemon(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); d.wait() })
	return d
}

func fetch(t *testing.T, c *http.Client, url, user, pass string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStatusPageHasItsOwnListener: the page is served on the status
// listener only; the metrics listener has /metrics and /healthz and nothing
// else; /healthz answers on both.
func TestStatusPageHasItsOwnListener(t *testing.T) {
	d := startTestDaemon(t, "")
	c := &http.Client{Timeout: 30 * time.Second}
	metricsURL, statusURL := "http://"+d.httpAddr.String(), "http://"+d.statusAddr.String()
	for _, tc := range []struct {
		url  string
		code int
		body string
	}{
		{metricsURL + "/metrics", 200, "dualmx_"},
		{metricsURL + "/healthz", 200, "ok"},
		{metricsURL + "/", 404, ""},
		{metricsURL + "/status", 404, ""},
		{statusURL + "/", 200, "relay.test.localhost"},
		{statusURL + "/status", 200, "relay.test.localhost"},
		{statusURL + "/healthz", 200, "ok"},
		{statusURL + "/metrics", 404, ""},
	} {
		code, body := fetch(t, c, tc.url, "", "")
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %d, want %d with %q", tc.url, code, tc.code, tc.body)
		}
	}
}

// TestStatusListenerDefaultsToLoopback: a config that does not name the
// status listener gets it on loopback.
func TestStatusListenerDefaultsToLoopback(t *testing.T) {
	cfg, err := config.Parse("/etc/dualmx/dualmx.yaml", []byte("hostname: relay.example.nl\nstate_dir: /var/lib/dualmx\ntarget:\n  host: mx.example.net\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.Status != "127.0.0.1:9465" {
		t.Errorf("listen.status defaults to %q, want 127.0.0.1:9465", cfg.Listen.Status)
	}
}

// TestMetricsWithTLSAndBasicAuth: with a web config file the metrics
// listener speaks TLS with the configured certificate and answers only a
// client with a right user and password; /healthz is behind the same door.
func TestMetricsWithTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WriteLeafFiles(dir, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("right horse battery"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n",
		certFile, keyFile, hash), 0o640); err != nil {
		t.Fatal(err)
	}
	d := startTestDaemon(t, fmt.Sprintf("  metrics_web_config: %q\n", webConfig))
	url := "https://" + d.httpAddr.String()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}}}
	for _, tc := range []struct {
		name, path, user, pass string
		code                   int
	}{
		{"no credentials", "/metrics", "", "", 401},
		{"wrong password", "/metrics", "prometheus", "wrong horse", 401},
		{"unknown user", "/metrics", "mallory", "right horse battery", 401},
		{"right credentials", "/metrics", "prometheus", "right horse battery", 200},
		{"healthz without credentials", "/healthz", "", "", 401},
		{"healthz with credentials", "/healthz", "prometheus", "right horse battery", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := fetch(t, c, url+tc.path, tc.user, tc.pass)
			if code != tc.code {
				t.Errorf("GET %s as %q: %d, want %d", tc.path, tc.user, code, tc.code)
			}
			if code == 200 && tc.path == "/metrics" && !strings.Contains(body, "dualmx_") {
				t.Errorf("no dualmx metrics in the answer")
			}
		})
	}
	// Plain HTTP is not answered with data, and a client that does not
	// trust the test CA does not get through the handshake.
	if code, body := fetch(t, &http.Client{Timeout: 30 * time.Second}, "http://"+d.httpAddr.String()+"/metrics", "prometheus", "right horse battery"); code != 400 || strings.Contains(body, "dualmx_") {
		t.Errorf("plain HTTP: %d %q", code, body)
	}
	if _, err := (&http.Client{Timeout: 30 * time.Second}).Get(url + "/metrics"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}
}

// TestBadWebConfigStopsTheStart: a web config that breaks after the config
// was checked (its certificate removed) stops the daemon's start with the
// key and the reason, instead of failing each scrape later.
func TestBadWebConfigStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: gone.crt\n  key_file: gone.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tenant, err := standin.Start(standin.Options{Keep: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer tenant.Close()
	cfg, err := config.Parse(filepath.Join(dir, "dualmx.yaml"), fmt.Appendf(nil, "hostname: relay.test.localhost\nstate_dir: %q\nlisten:\n  smtp: 127.0.0.1:0\n  metrics: 127.0.0.1:0\ntarget:\n  host: 127.0.0.1\n  port: %d\n  tls: none\n", filepath.Join(dir, "state"), tenant.Port()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen.MetricsWebConfig = webConfig
	d, err := startDaemon(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil {
		d.stop()
		t.Fatal("the daemon started with a web config whose certificate does not exist")
	}
	if !strings.Contains(err.Error(), "listen.metrics_web_config") || !strings.Contains(err.Error(), "gone.crt") {
		t.Errorf("error %q does not name the key and the file", err)
	}
}

// TestHTTPListenersRefuseForeignHosts: both listeners answer only requests
// for their own names (IP literals, localhost, the hostname, listen.
// http_hosts); a page that points its own name at 127.0.0.1 (DNS
// rebinding against an admin's ssh -L) gets 421 Misdirected Request.
func TestHTTPListenersRefuseForeignHosts(t *testing.T) {
	d := startTestDaemon(t, "  http_hosts: [prometheus-target.example]\n")
	c := &http.Client{Timeout: 30 * time.Second}
	for _, l := range []struct{ name, url string }{
		{"metrics", "http://" + d.httpAddr.String() + "/metrics"},
		{"status", "http://" + d.statusAddr.String() + "/"},
	} {
		for _, tc := range []struct {
			host string
			code int
		}{
			{"", 200}, // the URL's own 127.0.0.1:port
			{"localhost", 200},
			{"LOCALHOST:9465", 200},
			{"relay.test.localhost", 200}, // the hostname
			{"Relay.Test.Localhost.:9464", 200},
			{"prometheus-target.example:9464", 200},
			{"[::1]:9465", 200},
			{"10.0.0.5", 200},
			{"attacker.example", 421},
			{"attacker.example:9465", 421},
			{"relay.test.localhost.attacker.example", 421},
			{"localhost.attacker.example", 421},
		} {
			req, err := http.NewRequest(http.MethodGet, l.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s with Host %q: %v", l.name, tc.host, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%s with Host %q: %d, want %d", l.name, tc.host, resp.StatusCode, tc.code)
			}
			if tc.code == 421 && strings.Contains(string(body), "dualmx") {
				t.Errorf("%s with Host %q: the refusal shows content: %.80s", l.name, tc.host, body)
			}
		}
	}
}
