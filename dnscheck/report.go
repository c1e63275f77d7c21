// SPDX-License-Identifier: MIT

package dnscheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dualmx/dualmx/internal/visible"
)

// Level is how serious a finding is. Only errors make the check fail.
type Level int

// Levels, in increasing order of seriousness.
const (
	OK Level = iota
	Warning
	Error
)

// Levels lists the level names, for metrics.
var Levels = []string{"ok", "warning", "error"}

func (l Level) String() string {
	if l < OK || l > Error {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return Levels[l]
}

// MarshalText makes levels readable in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a level name.
func (l *Level) UnmarshalText(b []byte) error {
	for i, n := range Levels {
		if n == string(b) {
			*l = Level(i)
			return nil
		}
	}
	return fmt.Errorf("dnscheck: unknown level %q", b)
}

// Phase is the side of the MX cutover a check judges for.
type Phase string

// Phases.
const (
	Before Phase = "before" // MX at the old host, Microsoft 365 records in place
	After  Phase = "after"  // MX at Microsoft 365 only
)

// ParsePhase accepts "before" or "after".
func ParsePhase(s string) (Phase, error) {
	switch p := Phase(strings.ToLower(strings.TrimSpace(s))); p {
	case Before, After:
		return p, nil
	}
	return "", fmt.Errorf("dnscheck: phase %q is not before or after", s)
}

// Check names; each finding belongs to one, and metrics export the worst
// level per check.
const (
	CheckServers      = "servers"
	CheckDelegation   = "delegation"
	CheckConsistency  = "consistency"
	CheckSerial       = "serial"
	CheckMX           = "mx"
	CheckMXTTL        = "mx_ttl"
	CheckSPF          = "spf"
	CheckDKIM         = "dkim"
	CheckAutodiscover = "autodiscover"
	CheckVerification = "verification"
	CheckDMARC        = "dmarc"
	CheckNegativeTTL  = "negative_ttl"
	CheckDNSSEC       = "dnssec"
	CheckRelayMX      = "relay_mx"
	CheckRelayFCrDNS  = "relay_fcrdns"
	CheckRelayARC     = "relay_arc"
)

// Checks lists every check name in report order.
var Checks = []string{CheckServers, CheckDelegation, CheckConsistency, CheckSerial, CheckMX, CheckMXTTL,
	CheckSPF, CheckDKIM, CheckAutodiscover, CheckVerification, CheckDMARC, CheckNegativeTTL, CheckDNSSEC,
	CheckRelayMX, CheckRelayFCrDNS, CheckRelayARC}

// Finding is one result: a level, a one-line explanation and, where there is
// one, the record to publish.
type Finding struct {
	Check string `json:"check"`
	Level Level  `json:"level"`
	// Name and Type are the record the finding is about.
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
	// Server is set when the finding holds for one server only.
	Server  string `json:"server,omitempty"`
	Message string `json:"message"`
	Publish string `json:"publish,omitempty"`
}

// ServerStatus sums up how one server answered.
type ServerStatus struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Status string `json:"status"`
	Serial uint32 `json:"serial,omitempty"`
}

// Report is a judged check.
type Report struct {
	Domain   string         `json:"domain"`
	Phase    Phase          `json:"phase"`
	Source   string         `json:"expected_from"`
	Explicit bool           `json:"explicit_servers"`
	Servers  []ServerStatus `json:"servers"`
	Findings []Finding      `json:"findings"`
	Counts   map[string]int `json:"counts"`
}

// Count returns how many findings have level l.
func (r *Report) Count(l Level) int {
	n := 0
	for _, f := range r.Findings {
		if f.Level == l {
			n++
		}
	}
	return n
}

// HasErrors reports whether any finding is an error.
func (r *Report) HasErrors() bool { return r.Count(Error) > 0 }

// Worst returns the worst level per check; checks without findings are
// absent (not applicable, e.g. ARC without an arc section).
func (r *Report) Worst() map[string]Level {
	m := map[string]Level{}
	for _, f := range r.Findings {
		if l, ok := m[f.Check]; !ok || f.Level > l {
			m[f.Check] = f.Level
		}
	}
	return m
}

// Passed reports whether a check found something and all of it OK; when
// not, why names the first finding that was not.
func (r *Report) Passed(check string) (ok bool, why string) {
	n := 0
	for _, f := range r.Findings {
		if f.Check != check {
			continue
		}
		n++
		if f.Level != OK {
			return false, strings.TrimSpace(f.Name + " " + f.Type + ": " + f.Message)
		}
	}
	if n == 0 {
		return false, "no " + check + " findings"
	}
	return true, ""
}

// Errors returns the error findings.
func (r *Report) Errors() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Level == Error {
			out = append(out, f)
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: servers, then one line per
// finding with the record to publish under it.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	how := "discovered authoritative servers"
	if r.Explicit {
		how = "servers given with --nameserver"
	}
	fmt.Fprintf(&b, "DNS check of %s, phase %s (expected values from %s; %s)\n\n", r.Domain, r.Phase, r.Source, how)
	b.WriteString("Servers:\n")
	for _, s := range r.Servers {
		serial := ""
		if s.Serial != 0 {
			serial = fmt.Sprintf("  serial %d", s.Serial)
		}
		fmt.Fprintf(&b, "  %-24s %-22s %s%s\n", visible.String(s.Name), s.Addr, visible.String(s.Status), serial)
	}
	b.WriteString("\nFindings:\n")
	for _, f := range r.Findings {
		what := f.Name + " " + f.Type
		if f.Server != "" {
			what += " @" + f.Server
		}
		if what = strings.TrimSpace(what); what != "" {
			what += ": "
		}
		fmt.Fprintf(&b, "  %-7s %-13s %s%s\n", strings.ToUpper(f.Level.String()), f.Check, visible.String(what), visible.String(f.Message))
		if f.Publish != "" {
			fmt.Fprintf(&b, "  %-7s %-13s publish: %s\n", "", "", visible.String(f.Publish))
		}
	}
	fmt.Fprintf(&b, "\nResult: %d error(s), %d warning(s), %d ok\n", r.Count(Error), r.Count(Warning), r.Count(OK))
	_, err := io.WriteString(w, b.String())
	return err
}
