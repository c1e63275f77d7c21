// SPDX-License-Identifier: MIT

package vouch

import (
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/metrics"
)

func testutilCount(m *metrics.Metrics, result string) float64 {
	return testutil.ToFloat64(m.ARCSeals.WithLabelValues(result))
}
