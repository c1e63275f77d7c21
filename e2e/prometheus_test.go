// SPDX-License-Identifier: MIT

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestPrometheusScrapesOverTLSWithBasicAuth: Debian's Prometheus scrapes
// dualmx with the documented set-up (deploy/prometheus/web-config.yml on the
// relay, deploy/prometheus/scrape.yml on Prometheus) over TLS with the test
// CA and basic auth, and a job with a wrong password gets nothing.
func TestPrometheusScrapesOverTLSWithBasicAuth(t *testing.T) {
	prom := requireTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	e := newEnvWithWebConfig(t, dir, "scrape secret")

	// Prometheus's side: the documented job, pointed at this relay, plus
	// the same job with a wrong password.
	scrape, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "scrape.yml"))
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := e.ca.WriteCAFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := filepath.Join(dir, "good.password"), filepath.Join(dir, "bad.password")
	writeFile(t, good, "scrape secret\n", 0o600)
	writeFile(t, bad, "wrong secret\n", 0o600)
	job := replaceAll(t, string(scrape),
		"/etc/prometheus/dualmx-ca.pem", caFile,
		"/etc/prometheus/dualmx.password", good,
		"relay.example.nl:9464", e.httpAddr())
	wrong := strings.ReplaceAll(job[strings.Index(job, "  - job_name: dualmx"):], good, bad)
	wrong = strings.Replace(wrong, "job_name: dualmx", "job_name: dualmx-wrong-password", 1)
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"+job+wrong, 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0")
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	api := prometheusAddr(t, logs)

	// Both jobs have been scraped at least once when up has a sample for each.
	var ups map[string]string
	waitFor(t, 60*time.Second, "Prometheus to scrape both jobs", func() bool {
		ups = query(t, api, "up")
		return len(ups) == 2
	})
	if ups["dualmx"] != "1" || ups["dualmx-wrong-password"] != "0" {
		t.Errorf("up = %v, want dualmx 1 and dualmx-wrong-password 0", ups)
	}
	if got := query(t, api, `count by (job) ({job="dualmx", __name__=~"dualmx_.+"})`); got["dualmx"] == "" || got["dualmx"] == "0" {
		t.Errorf("no dualmx_ series scraped: %v", got)
	}
}

// newEnvWithWebConfig starts a relay whose metrics listener has the example
// web config, with a certificate from the env's CA and password's hash.
func newEnvWithWebConfig(t *testing.T, dir, password string) *env {
	t.Helper()
	example, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "web-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web-config.yml")
	e := newEnv(t, envOptions{listen: fmt.Sprintf("  metrics_web_config: %q\n", webConfig)})
	certFile, keyFile, err := e.ca.WriteLeafFiles(dir, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	text := replaceAll(t, string(example), "/etc/dualmx/tls.crt", certFile, "/etc/dualmx/tls.key", keyFile)
	text = regexp.MustCompile(`(?m)^(  prometheus: ).*$`).ReplaceAllLiteralString(text, "  prometheus: "+string(hash))
	writeFile(t, webConfig, text, 0o640)
	e.start()
	return e
}

func replaceAll(t *testing.T, s string, oldNew ...string) string {
	t.Helper()
	for i := 0; i < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("the example no longer holds %q", oldNew[i])
		}
		s = strings.ReplaceAll(s, oldNew[i], oldNew[i+1])
	}
	return s
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// prometheusAddr reads the address Prometheus bound from its log ("Listening
// on" address=127.0.0.1:NNNNN); the rest of the log is drained.
func prometheusAddr(t *testing.T, logs io.Reader) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg="Listening on" address=(\S+)`)
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-found:
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("Prometheus did not say where it listens")
	}
	return ""
}

// query asks Prometheus for an instant vector and returns job -> value;
// nil while Prometheus is still starting (503).
func query(t *testing.T, addr, q string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return nil
	}
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range r.Data.Result {
		if len(s.Value) == 2 {
			out[s.Metric["job"]] = fmt.Sprint(s.Value[1])
		}
	}
	return out
}
