// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSRSGuardKeys: the guard's limits and the return sources are keys with
// the former built-in values as defaults; the sources default to Microsoft
// 365's outbound ranges, [] means every client (and is warned about), a
// custom list is what the allowed_networks warning checks; bad values are
// refused naming the key.
func TestSRSGuardKeys(t *testing.T) {
	parse := func(t *testing.T, allowed string, srs ...string) (*Config, error) {
		t.Helper()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "srs.secret"), "a long random secret for the tests\n", 0o600)
		lines := append([]string{"inbound:", "  allowed_networks: " + allowed, "srs:", "  domain: fwd.example.nl", "  secret_file: srs.secret"}, srs...)
		return Parse(filepath.Join(dir, "x.yaml"), []byte(withMinimal(lines...)))
	}
	warnings := func(c *Config) string {
		var ws []string
		for _, w := range c.Warnings() {
			ws = append(ws, w.String())
		}
		return strings.Join(ws, "\n")
	}

	c, err := parse(t, "[]")
	if err != nil {
		t.Fatal(err)
	}
	s := c.SRS
	if s.GuessesPerClient != 3 || s.GuessPenalty != time.Hour || s.GuessesPerHour != 30 || s.ReturnSourcePenalty != 10*time.Minute ||
		!slices.Equal(s.ReturnSources, M365Outbound) {
		t.Errorf("defaults: %+v", s)
	}
	if w := warnings(c); strings.Contains(w, "return_sources") {
		t.Errorf("default sources warned about: %s", w)
	}

	c, err = parse(t, "[]", "  return_sources: []", "  guesses_per_client: 5", "  guess_penalty: 2h", "  guesses_per_hour: 10", "  return_source_penalty: 5m")
	if err != nil {
		t.Fatal(err)
	}
	s = c.SRS
	if len(s.ReturnSources) != 0 || s.GuessesPerClient != 5 || s.GuessPenalty != 2*time.Hour || s.GuessesPerHour != 10 || s.ReturnSourcePenalty != 5*time.Minute {
		t.Errorf("set values: %+v", s)
	}
	if w := warnings(c); !strings.Contains(w, "x.yaml:10: srs.return_sources: empty: every client is exempt from srs.guesses_per_hour") {
		t.Errorf("empty sources not warned about: %q", w)
	}

	// A custom list is what allowed_networks must admit.
	c, err = parse(t, `["198.51.100.7", 192.0.2.0/24]`, "  return_sources: [192.0.2.0/25, \"2001:db8::/32\"]")
	if err != nil {
		t.Fatal(err)
	}
	if w := warnings(c); !strings.Contains(w, "does not admit the networks in srs.return_sources (2001:db8::/32)") {
		t.Errorf("allowed_networks against custom sources: %q", w)
	}

	_, err = parse(t, "[]", "  return_sources: [nonsense, 192.0.2.1/24]", "  guesses_per_client: 0", "  guess_penalty: 30s",
		"  guesses_per_hour: -1", "  return_source_penalty: 0s")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want problems, got %v", err)
	}
	text := ps.Error()
	for _, want := range []string{
		`x.yaml:10: srs.return_sources[0]: "nonsense" is not an IP address or CIDR network`,
		`srs.return_sources[1]: "192.0.2.1/24" has host bits set`,
		"x.yaml:11: srs.guesses_per_client: 0 must be greater than 0",
		"x.yaml:12: srs.guess_penalty: 30s must be at least 1m",
		"x.yaml:13: srs.guesses_per_hour: -1 must be greater than 0",
		"x.yaml:14: srs.return_source_penalty: 0s must be at least 1m",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q:\n%s", want, text)
		}
	}
}
