// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/dualmx/dualmx/checklist"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/status"
)

// watchOperations exports what the alerts need beyond the core collectors:
// each address's last delivery and state age (read from the state database at
// scrape time) and the spool's free disk space.
func watchOperations(m *metrics.Metrics, store *router.Store, spoolDir string) {
	m.WatchAddressActivity(func() []metrics.AddressActivity {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list, err := store.List(ctx)
		if err != nil {
			return nil // dualmx_router_reload_errors_total tells
		}
		out := make([]metrics.AddressActivity, 0, len(list))
		for _, a := range list {
			out = append(out, metrics.AddressActivity{Address: a.Address, LastDelivery: a.LastDelivery, StateSince: a.UpdatedAt})
		}
		return out
	})
	m.WatchSpoolDisk(spoolDir)
}

// exportCertificate exports the inbound certificate's expiry.
func exportCertificate(m *metrics.Metrics, cert tls.Certificate) {
	if cert.Leaf != nil {
		m.ExportTLSCertificate("smtp", cert.Leaf.NotAfter)
	}
}

// statusPage is the read-only page served at / and /status on the metrics listener.
func (d *daemon) statusPage(m *metrics.Metrics) *status.Handler {
	// The page asks only local evidence; steps that need Microsoft 365 show
	// as not known there (the checklist command asks the tenant).
	src := checklist.Sources{Store: d.store, Spool: d.spool}
	return status.New(status.Options{Hostname: d.cfg.Hostname, Addresses: d.store, Spool: d.spool, Cutover: m, Target: m,
		Logger: d.log.With("component", "status"),
		Checklist: func(ctx context.Context, addr string) (status.Progress, error) {
			c, err := checklist.For(ctx, src, addr)
			if err != nil {
				return status.Progress{}, err
			}
			// The page has room for the step, not the reason it is open.
			pr := status.Progress{Total: len(c.Steps)}
			if c.Next != nil {
				pr.Next = c.Next.Step
			}
			for _, st := range c.Steps {
				if st.Status == checklist.Done {
					pr.Done++
				}
			}
			return pr, nil
		}})
}
