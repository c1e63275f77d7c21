// SPDX-License-Identifier: MIT

package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAddressActivity(t *testing.T) {
	m := New()
	last := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	since := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	m.WatchAddressActivity(func() []AddressActivity {
		return []AddressActivity{
			{Address: "scriba@example.nl", LastDelivery: last, StateSince: since},
			{Address: "koster@example.nl", StateSince: since}, // never delivered
		}
	})
	want := `
# HELP dualmx_address_last_delivery_timestamp_seconds When the target last accepted mail for the address; absent until the first delivery.
# TYPE dualmx_address_last_delivery_timestamp_seconds gauge
dualmx_address_last_delivery_timestamp_seconds{address="scriba@example.nl"} 1.7951616e+09
# HELP dualmx_address_state_since_timestamp_seconds When the address entered its current state.
# TYPE dualmx_address_state_since_timestamp_seconds gauge
dualmx_address_state_since_timestamp_seconds{address="koster@example.nl"} 1.7934912e+09
dualmx_address_state_since_timestamp_seconds{address="scriba@example.nl"} 1.7934912e+09
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"dualmx_address_last_delivery_timestamp_seconds", "dualmx_address_state_since_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

func TestSpoolDisk(t *testing.T) {
	m := New()
	m.WatchSpoolDisk(t.TempDir())
	free := gatherValue(t, m, "dualmx_spool_free_bytes")
	size := gatherValue(t, m, "dualmx_spool_size_bytes")
	if free <= 0 || size <= 0 || free > size {
		t.Errorf("free %v, size %v", free, size)
	}

	// A spool that cannot be stat'ed exports nothing rather than a false 0.
	m = New()
	m.WatchSpoolDisk("/nonexistent/dualmx/spool")
	if n, err := testutil.GatherAndCount(m.Registry, "dualmx_spool_free_bytes", "dualmx_spool_size_bytes"); err != nil || n != 0 {
		t.Errorf("missing dir: %d series, err %v", n, err)
	}
}

func TestTLSCertificate(t *testing.T) {
	m := New()
	if n, _ := testutil.GatherAndCount(m.Registry, "dualmx_tls_certificate_expiry_timestamp_seconds"); n != 0 {
		t.Errorf("exported without a certificate: %d series", n)
	}
	m.ExportTLSCertificate("smtp", time.Unix(1800000000, 0))
	want := `
# HELP dualmx_tls_certificate_expiry_timestamp_seconds When the certificate a listener presents expires.
# TYPE dualmx_tls_certificate_expiry_timestamp_seconds gauge
dualmx_tls_certificate_expiry_timestamp_seconds{listener="smtp"} 1.8e+09
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "dualmx_tls_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

func TestCutoverAccessor(t *testing.T) {
	m := New()
	if _, ok := m.Cutover(); ok {
		t.Error("Cutover reports a watcher before WatchCutover")
	}
	m.WatchCutover([]string{"ready"}, []string{"ok"}, func() CutoverStatus { return CutoverStatus{State: "ready", Up: true} })
	if s, ok := m.Cutover(); !ok || s.State != "ready" {
		t.Errorf("Cutover() = %+v, %v", s, ok)
	}
}

func gatherValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
}

func TestARCSignerFallbacks(t *testing.T) {
	m := New()
	var n int64 = 2
	m.WatchARCSignerFallbacks(func() int64 { return n })
	want := `
# HELP dualmx_arc_signer_fallbacks_total ARC signatures made by Go because OpenSSL failed or made one that did not verify.
# TYPE dualmx_arc_signer_fallbacks_total counter
dualmx_arc_signer_fallbacks_total 2
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "dualmx_arc_signer_fallbacks_total"); err != nil {
		t.Error(err)
	}
}
