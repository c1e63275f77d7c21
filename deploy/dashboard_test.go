// SPDX-License-Identifier: MIT

package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row keeps its panels here
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/dualmx.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana/dualmx.json: %v", err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// TestDashboardQueriesExportedMetrics: every query of every panel and
// variable names only metrics dualmx exports, and every data panel queries at
// least one metric dualmx exports (or up).
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	d := loadDashboard(t)
	exp := exported(t)
	for _, p := range allPanels(d.Panels) {
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if len(p.Targets) == 0 {
			t.Errorf("%s has no query", where)
		}
		n := 0
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: query %s is empty", where, tg.RefID)
				continue
			}
			n += checkExpr(t, exp, where, tg.Expr)
			if slices.Contains(metricNames(tg.Expr), "up") {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s queries no metric dualmx exports", where)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if err := json.Unmarshal(v.Query, &s); err != nil {
				t.Fatalf("variable %s: %v", v.Name, err)
			}
			q.Query = s
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(q.Query, "label_values("), ")")
		if i := strings.LastIndex(inner, ","); i > 0 {
			inner = inner[:i] // the label name
		}
		checkExpr(t, exp, "variable "+v.Name, inner)
	}
}

// TestDashboardCoversTheIssue: the views issue 7 asks for each have a panel.
func TestDashboardCoversTheIssue(t *testing.T) {
	d := loadDashboard(t)
	used := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			for _, n := range metricNames(tg.Expr) {
				used[n] = true
			}
		}
	}
	for view, names := range map[string][]string{
		"message flow":                  {"dualmx_smtp_messages_accepted_total", "dualmx_delivery_recipients_total"},
		"queue size and oldest age":     {"dualmx_queue_messages", "dualmx_queue_oldest_message_age_seconds"},
		"delivery latency":              {"dualmx_delivery_latency_seconds_bucket"},
		"per-address traffic and state": {"dualmx_address_delivered_total", "dualmx_address_state", "dualmx_address_last_delivery_timestamp_seconds"},
		"authentication results":        {"dualmx_auth_author_dkim_total", "dualmx_auth_spf_total", "dualmx_auth_dmarc_total", "dualmx_auth_arc_total"},
		"SRS and loop refusals":         {"dualmx_srs_refusals_total", "dualmx_smtp_refusals_total"},
		"cutover state":                 {"dualmx_cutover_state", "dualmx_cutover_check"},
	} {
		for _, n := range names {
			if !used[n] {
				t.Errorf("no panel for %s queries %s", view, n)
			}
		}
	}
}

// TestDashboardWellFormed: unique panel ids, every panel on the 24-column
// grid, every query through the ${datasource} variable, and a stable uid.
func TestDashboardWellFormed(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title, so re-imports replace it")
	}
	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v off the grid", p.Title, p.GridPos)
		}
		if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}") {
			t.Errorf("panel %q does not use the ${datasource} variable", p.Title)
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	for _, want := range []string{"datasource", "job", "instance"} {
		if !slices.Contains(vars, want) {
			t.Errorf("no $%s variable", want)
		}
	}
}

// TestREADMEListsEveryMetric: every metric dualmx exports is in the README's
// metrics table, so an admin can look up what a panel or an alert shows.
func TestREADMEListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for name := range exported(t) {
		if strings.HasPrefix(name, "dualmx_") && !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("README.md does not list %s", name)
		}
	}
}
