// SPDX-License-Identifier: MIT

package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dualmx/dualmx/cutover"
	"github.com/dualmx/dualmx/dnscheck"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
	"github.com/dualmx/dualmx/spool"
)

// requireTool returns the path of an external program. Locally a missing
// tool skips the test; in CI (CI set) it fails it, so CI cannot pass by not
// having installed what the test needs.
func requireTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				p = filepath.Join(dir, name)
				break
			}
		}
	}
	if p == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found; CI must install Debian's %s", name, debianPackage)
		}
		t.Skipf("%s not found (apt-get install %s); skipped outside CI", name, debianPackage)
	}
	return p
}

// exported returns every metric name dualmx can export, with its type where
// known. It builds the registry the daemon builds: metrics.New plus every
// scrape-time collector (queue, addresses, address activity, spool disk, TLS
// certificate, and the cutover collector that cutover.Watch registers through
// WatchCutover), fed with stub data so each has series. Vectors whose label
// values are only created by traffic are found through their descriptors.
func exported(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	m := metrics.New()
	m.WatchQueue(metrics.Labels(spool.States), func() metrics.QueueStats {
		return metrics.QueueStats{ByState: map[string]int{"held": 1}, OldestAgeSeconds: 60}
	})
	m.WatchAddresses(metrics.Labels(router.States), func() []metrics.AddressState {
		return []metrics.AddressState{{Address: "scriba@example.nl", State: "forwarding"}}
	})
	m.WatchAddressActivity(func() []metrics.AddressActivity {
		return []metrics.AddressActivity{{Address: "scriba@example.nl", LastDelivery: time.Now(), StateSince: time.Now()}}
	})
	m.WatchSpoolDisk(t.TempDir())
	m.ExportTLSCertificate("smtp", time.Now().Add(90*24*time.Hour))
	m.WatchARCSignerFallbacks(func() int64 { return 0 })
	m.WatchCutover(metrics.Labels(cutover.States), dnscheck.Levels, func() metrics.CutoverStatus {
		return metrics.CutoverStatus{State: "ready", Up: true, LastRun: time.Now(), Checks: map[string]string{"mx": "ok"}}
	})
	m.WatchTarget(func() metrics.TargetStatus {
		return metrics.TargetStatus{Up: true, Concurrency: 2, ConcurrencyLimit: 8}
	})
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dto.MetricType{}
	for _, f := range fams {
		out[f.GetName()] = f.GetType()
	}
	// Collectors in struct fields, including vectors with no series yet.
	v := reflect.ValueOf(m).Elem()
	collector := reflect.TypeFor[prometheus.Collector]()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanInterface() || !f.Type().Implements(collector) || f.IsNil() {
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() {
			f.Interface().(prometheus.Collector).Describe(ch)
			close(ch)
		}()
		for d := range ch {
			name := descName(d)
			if name == "" {
				t.Fatalf("cannot read the name of %s", d)
			}
			if _, ok := out[name]; !ok {
				out[name] = dto.MetricType_UNTYPED
			}
		}
	}
	if len(out) < 30 {
		t.Fatalf("only %d metrics found; the registry was not built", len(out))
	}
	return out
}

var descNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func descName(d *prometheus.Desc) string {
	m := descNameRE.FindStringSubmatch(d.String())
	if m == nil {
		return ""
	}
	return m[1]
}

// known reports whether a name used in a query is exported: itself, or the
// _bucket, _sum or _count series of an exported histogram (or summary).
func known(exp map[string]dto.MetricType, name string) bool {
	if _, ok := exp[name]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			switch exp[base] {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				return true
			case dto.MetricType_SUMMARY:
				return suf != "_bucket"
			}
		}
	}
	return false
}

// Series that Prometheus makes itself rather than scraping from dualmx.
var synthetic = []string{"up", "scrape_duration_seconds", "ALERTS", "ALERTS_FOR_STATE"}

var (
	stringLitRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	grafanaVar  = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?`)
	matcherRE   = regexp.MustCompile(`\{[^{}]*\}`)
	rangeRE     = regexp.MustCompile(`\[[^\[\]]*\]`)
	offsetRE    = regexp.MustCompile(`(?i)\boffset\s+-?[0-9a-z]+|@\s*[0-9.]+|@\s*(start|end)\(\)`)
	groupingRE  = regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	tokenRE     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?`)
	keywords    = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
		"group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
)

// metricNames returns the metric names a PromQL expression selects. It is a
// small lexer, not a parser: strings, label matchers, ranges and grouping
// clauses are dropped; what remains is functions (an identifier before "("),
// keywords, numbers and metric names. Selecting by {__name__=...} hides the
// name, so it is reported as the name "__name__", which nothing exports.
func metricNames(expr string) []string {
	var names []string
	if strings.Contains(expr, "__name__") {
		names = append(names, "__name__")
	}
	e := stringLitRE.ReplaceAllString(expr, `""`)
	e = grafanaVar.ReplaceAllString(e, "1")
	e = matcherRE.ReplaceAllString(e, " ")
	e = rangeRE.ReplaceAllString(e, " ")
	e = groupingRE.ReplaceAllString(e, " ")
	e = offsetRE.ReplaceAllString(e, " ")
	for _, loc := range tokenRE.FindAllStringIndex(e, -1) {
		tok := e[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || tok[0] == '.' {
			continue
		}
		if slices.Contains(keywords, strings.ToLower(tok)) {
			continue
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if !slices.Contains(names, tok) {
			names = append(names, tok)
		}
	}
	return names
}

// checkExpr reports every name in expr that dualmx does not export.
// It returns how many exported metrics expr names.
func checkExpr(t *testing.T, exp map[string]dto.MetricType, where, expr string) (n int) {
	t.Helper()
	for _, name := range metricNames(expr) {
		switch {
		case slices.Contains(synthetic, name):
		case known(exp, name):
			n++
		default:
			t.Errorf("%s queries %s, which dualmx does not export\n  expr: %s", where, name, expr)
		}
	}
	return n
}
