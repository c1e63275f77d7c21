// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/metrics"
)

// TestHealthzReportsBrokenSpool: /healthz fails while the spool is broken
// (a directory fsync failed), though the directory still takes a write.
func TestHealthzReportsBrokenSpool(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broken error
		code   int
	}{
		{"sound", nil, http.StatusOK},
		{"a directory fsync failed", errors.New("directory fsync failed: input/output error"), http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New()
			h := healthzHandler(m, func() error { return tc.broken })
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.broken != nil && !strings.Contains(rec.Body.String(), "input/output error") {
				t.Errorf("body %q does not say why", rec.Body)
			}
			want := 1.0
			if tc.broken != nil {
				want = 0
			}
			if got := testutil.ToFloat64(m.SpoolWritable); got != want {
				t.Errorf("dualmx_spool_writable = %v, want %v", got, want)
			}
		})
	}
}
