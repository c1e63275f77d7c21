// SPDX-License-Identifier: MIT

package deploy

import (
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up{job="dualmx"} == 0`, []string{"up"}},
		{`sum by (result) (rate(dualmx_delivery_recipients_total{job=~"$job", result=~"a|b"}[$__rate_interval]))`, []string{"dualmx_delivery_recipients_total"}},
		{`histogram_quantile(0.9, sum by (le) (rate(dualmx_delivery_latency_seconds_bucket[5m])))`, []string{"dualmx_delivery_latency_seconds_bucket"}},
		{`a_total > b_seconds or on (address) c{x="y"} * 1e9 - time()`, []string{"a_total", "b_seconds", "c"}},
		{`sum(x) by (le) / ignoring(state) group_left y offset 5m`, []string{"x", "y"}},
		{`label_values(dualmx_smtp_sessions_total{job=~"$job"}, instance)`, []string{"dualmx_smtp_sessions_total", "instance"}},
		{`{__name__=~"dualmx_.*"}`, []string{"__name__"}},
		{`count(dualmx_address_state == 1) > 7 * 86400`, []string{"dualmx_address_state"}},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

func TestKnown(t *testing.T) {
	exp := map[string]dto.MetricType{"h_seconds": dto.MetricType_HISTOGRAM, "c_total": dto.MetricType_COUNTER}
	for name, want := range map[string]bool{
		"h_seconds": true, "h_seconds_bucket": true, "h_seconds_sum": true, "h_seconds_count": true,
		"c_total": true, "c_total_count": false, "nope": false, "h_seconds_max": false,
	} {
		if got := known(exp, name); got != want {
			t.Errorf("known(%s) = %v", name, got)
		}
	}
}

// TestExportedIncludesEveryCollector: the registry the tests compare against
// has the scrape-time collectors and the vectors without series.
func TestExportedIncludesEveryCollector(t *testing.T) {
	exp := exported(t)
	for _, n := range []string{
		"dualmx_queue_messages", "dualmx_address_state", "dualmx_cutover_state", "dualmx_cutover_check",
		"dualmx_address_last_delivery_timestamp_seconds", "dualmx_address_state_since_timestamp_seconds",
		"dualmx_spool_free_bytes", "dualmx_spool_size_bytes", "dualmx_tls_certificate_expiry_timestamp_seconds",
		"dualmx_address_delivered_total", "process_resident_memory_bytes", "go_goroutines",
		"dualmx_target_up", "dualmx_target_suspended_seconds_total", "dualmx_target_concurrency", "dualmx_target_connections_total",
	} {
		if _, ok := exp[n]; !ok {
			t.Errorf("%s missing from the exported set", n)
		}
	}
	if exp["dualmx_delivery_latency_seconds"] != dto.MetricType_HISTOGRAM {
		t.Errorf("dualmx_delivery_latency_seconds is %v, want a histogram", exp["dualmx_delivery_latency_seconds"])
	}
}
