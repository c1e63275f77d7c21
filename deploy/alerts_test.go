// SPDX-License-Identifier: MIT

package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			EvalTime  string           `yaml:"eval_time"`
			AlertName string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func loadYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Not strict: the structs hold only what these tests read; promtool checks the schema.
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// The alerts issue 7 asks for, each by the name it has in alerts.yml.
var requiredAlerts = map[string]string{
	"queue not draining":                  "DualmxQueueNotDraining",
	"deliveries failing":                  "DualmxDeliveriesFailing",
	"any message held":                    "DualmxMessageHeld",
	"DSNs going out":                      "DualmxDSNGenerated",
	"bounces returned via SRS":            "DualmxBounceReturned",
	"forwarding address silent for days":  "DualmxForwardingAddressSilent",
	"loops detected":                      "DualmxLoopDetected",
	"spool disk nearly full":              "DualmxSpoolDiskNearlyFull",
	"TLS certificate near expiry":         "DualmxTLSCertificateExpiresSoon",
	"relay down":                          "DualmxDown",
	"relay not scraped at all (absent())": "DualmxAbsent",
}

// TestAlertRules: the alerts the issue asks for exist, query only exported
// metrics, and carry a summary, a description and a runbook.
func TestAlertRules(t *testing.T) {
	var rf ruleFile
	loadYAML(t, "prometheus/alerts.yml", &rf)
	exp := exported(t)
	var names []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if slices.Contains(names, r.Alert) {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names = append(names, r.Alert)
			checkExpr(t, exp, "alert "+r.Alert, r.Expr)
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
		}
	}
	for what, name := range requiredAlerts {
		if !slices.Contains(names, name) {
			t.Errorf("no alert for %s (%s)", what, name)
		}
	}
}

// TestEveryAlertFiresAndStaysQuiet: alerts_test.yml has, for every alert, a
// case where it fires and a case where it must not.
func TestEveryAlertFiresAndStaysQuiet(t *testing.T) {
	var rf ruleFile
	loadYAML(t, "prometheus/alerts.yml", &rf)
	var rt ruleTests
	loadYAML(t, "prometheus/alerts_test.yml", &rt)
	if !slices.Equal(rt.RuleFiles, []string{"alerts.yml"}) {
		t.Errorf("alerts_test.yml tests %v, want [alerts.yml]", rt.RuleFiles)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.AlertName]++
			} else {
				quiet[a.AlertName]++
			}
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if fires[r.Alert] == 0 {
				t.Errorf("no promtool test fires %s", r.Alert)
			}
			if quiet[r.Alert] == 0 {
				t.Errorf("no promtool test checks that %s stays quiet", r.Alert)
			}
		}
	}
}

// TestPromtool runs Debian's promtool over the rules and their unit tests.
func TestPromtool(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
