// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// startHTTP opens the metrics listener (/metrics, /healthz) and the status
// listener (the page, /healthz), each served through the Prometheus
// exporter toolkit so its web config file adds TLS and basic auth. They are
// separate because the page shows queued mail's senders, recipients and
// replies: Prometheus may need the metrics from another host, the page
// belongs on loopback. /healthz is on both: where monitors have always
// found it (behind the metrics listener's auth once it has some), and on
// the status listener for a check on the host itself.
func (d *daemon) startHTTP() error {
	m := d.m
	health := d.healthz()
	if addr := d.cfg.Listen.Metrics; addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
		mux.HandleFunc("/healthz", health)
		srv, bound, err := d.serveHTTP("metrics", addr, d.cfg.Listen.MetricsWebConfig, mux)
		if err != nil {
			return err
		}
		d.httpSrv, d.httpAddr = srv, bound
	}
	if addr := d.cfg.Listen.Status; addr != "" {
		mux := http.NewServeMux()
		page := d.statusPage(m)
		mux.Handle("GET /{$}", page)
		mux.Handle("GET /status", page)
		mux.HandleFunc("/healthz", health)
		srv, bound, err := d.serveHTTP("status", addr, d.cfg.Listen.StatusWebConfig, mux)
		if err != nil {
			d.stopHTTP()
			return err
		}
		d.statusSrv, d.statusAddr = srv, bound
	}
	return nil
}

// serveHTTP listens on addr and serves h there, with TLS and basic auth when
// webConfig names a file. The file is checked before the listener opens, so
// a broken one stops the start instead of a later request.
func (d *daemon) serveHTTP(name, addr, webConfig string, h http.Handler) (*http.Server, net.Addr, error) {
	if err := web.Validate(webConfig); err != nil {
		return nil, nil, fmt.Errorf("listen.%s_web_config %s: %w", name, webConfig, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", name, err)
	}
	srv := &http.Server{Handler: hostGuard(d.cfg.Hostname, d.cfg.Listen.HTTPHosts, h), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	flags := &web.FlagConfig{WebConfigFile: &webConfig}
	log := d.log.With("listener", name)
	go func() {
		if err := web.Serve(ln, srv, flags, log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.errs <- fmt.Errorf("%s listener: %w", name, err)
		}
	}()
	return srv, ln.Addr(), nil
}

// stopHTTP closes the HTTP listeners, giving requests in flight a second.
func (d *daemon) stopHTTP() {
	for _, srv := range []*http.Server{d.httpSrv, d.statusSrv} {
		if srv == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
}

// hostGuard answers 421 Misdirected Request to a request whose Host is not
// one of the relay's own names: an IP literal, localhost, the configured
// hostname or one of listen.http_hosts. Both listeners are plain HTTP on
// loopback by default, which an admin reaches through ssh -L; a web page the
// admin has open could otherwise read them by pointing its own name at
// 127.0.0.1 (DNS rebinding), and the browser would send that name as Host.
func hostGuard(hostname string, extra []string, h http.Handler) http.Handler {
	names := map[string]bool{"localhost": true, normalHost(hostname): true}
	for _, n := range extra {
		names[normalHost(n)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hp, _, err := net.SplitHostPort(host); err == nil {
			host = hp
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if _, err := netip.ParseAddr(host); err != nil && r.Host != "" && !names[normalHost(host)] {
			http.Error(w, "Misdirected Request: unknown host name", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// normalHost is a host name as compared: lower case, no trailing dot.
func normalHost(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
