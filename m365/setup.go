// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// RelaySetup is how the tenant should treat mail from the dualmx relay.
type RelaySetup struct {
	// ConnectorName names the Partner inbound connector dualmx manages.
	ConnectorName string
	// RelayIPs are the relay's public IPv4 addresses or CIDR ranges
	// (Exchange takes /24 to /32 here, IPv4 only).
	RelayIPs []string
	// CertificateName identifies the relay by its TLS certificate instead
	// (or as well); it must be a CA-signed name in an accepted domain.
	CertificateName string
	// OldHostIPs are the addresses the old host forwards from. They go into
	// the skip list with the relay's: skipping only the relay would leave
	// the old host as the apparent source and SPF would still fail.
	OldHostIPs []string
	// PilotUsers limits Enhanced Filtering to these recipients; empty
	// applies it to all.
	PilotUsers []string
	// ArcDomain is the d= of dualmx's ARC seal, to be a trusted sealer.
	ArcDomain string
}

// SetupChange is one command the setup runs.
type SetupChange struct {
	What   string         `json:"what"`
	Cmdlet string         `json:"cmdlet"`
	Params map[string]any `json:"parameters"`
}

// SetupCheck is one setting read back from the tenant.
type SetupCheck struct {
	Setting string `json:"setting"`
	Want    string `json:"want"`
	Got     string `json:"got"`
	OK      bool   `json:"ok"`
}

// Validate checks the addresses before anything is sent to Exchange.
func (s RelaySetup) Validate() error {
	var errs []error
	if s.ConnectorName == "" {
		errs = append(errs, errors.New("connector name is empty"))
	}
	if len(s.RelayIPs) == 0 && s.CertificateName == "" {
		errs = append(errs, errors.New("give the relay's IPv4 addresses or its certificate name"))
	}
	for _, ip := range s.RelayIPs {
		p, err := parsePrefix(ip)
		if err != nil || !p.Addr().Is4() || p.Bits() < 24 {
			errs = append(errs, fmt.Errorf("relay address %q: want IPv4 or an IPv4 CIDR from /24 to /32 (an Exchange connector limit)", ip))
		}
	}
	for _, ip := range s.OldHostIPs {
		if _, err := parsePrefix(ip); err != nil {
			errs = append(errs, fmt.Errorf("old host address %q: %v", ip, err))
		}
	}
	if len(s.OldHostIPs) == 0 {
		errs = append(errs, errors.New("give the old host's forwarding IPs: Enhanced Filtering must skip both hops"))
	}
	if s.ArcDomain == "" {
		errs = append(errs, errors.New("no ARC signing domain (the arc.domain of the relay's config)"))
	}
	return errors.Join(errs...)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// connectorWant is the connector's desired parameters.
func (s RelaySetup) connectorWant() map[string]any {
	want := map[string]any{
		"ConnectorType": "Partner",
		"SenderDomains": []string{"*"},
		"RequireTls":    true,
		// Both hops, so EOP evaluates SPF/DKIM/DMARC against the original
		// sender's server rather than the old host or the relay.
		"EFSkipIPs":    union(s.RelayIPs, s.OldHostIPs),
		"EFSkipLastIP": false,
	}
	if len(s.RelayIPs) > 0 {
		want["SenderIPAddresses"] = union(s.RelayIPs)
	}
	if s.CertificateName != "" {
		want["TlsSenderCertificateName"] = s.CertificateName
	}
	if len(s.PilotUsers) > 0 {
		want["EFUsers"] = union(s.PilotUsers)
	}
	return want
}

func union(lists ...[]string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, l := range lists {
		for _, v := range l {
			k := strings.ToLower(strings.TrimSpace(v))
			if k != "" && !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// norm renders a parameter value for comparison: lists sorted, lower case,
// whether Exchange sent an array or a comma-separated string [unverified].
func norm(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case bool:
		return fmt.Sprint(x)
	case string:
		return strings.Join(union(strings.Split(x, ",")), ",")
	case []string:
		return strings.Join(union(x), ",")
	case []any:
		var l []string
		for _, e := range x {
			l = append(l, fmt.Sprint(e))
		}
		return strings.Join(union(l), ",")
	}
	return strings.ToLower(fmt.Sprint(v))
}

func (x *Exchange) connector(ctx context.Context, name string) (map[string]any, error) {
	raw, err := x.Cmd.Invoke(ctx, "Get-InboundConnector", map[string]any{"Identity": name})
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, &ExchangeError{Cmdlet: "Get-InboundConnector", Status: 404, Exception: "ManagementObjectNotFoundException", Text: name}
	}
	var c map[string]any
	if err := json.Unmarshal(raw[0], &c); err != nil {
		return nil, fmt.Errorf("m365: Get-InboundConnector: %w", err)
	}
	return c, nil
}

// ArcTrustedSealers reads the tenant's trusted ARC sealers.
func (x *Exchange) ArcTrustedSealers(ctx context.Context) ([]string, error) {
	raw, err := x.Cmd.Invoke(ctx, "Get-ArcConfig", nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range raw {
		var c struct {
			ArcTrustedSealers stringList `json:"ArcTrustedSealers"`
		}
		if err := json.Unmarshal(r, &c); err != nil {
			return nil, fmt.Errorf("m365: Get-ArcConfig: %w", err)
		}
		out = append(out, c.ArcTrustedSealers...)
	}
	return out, nil
}

// PlanRelaySetup reads the tenant and returns the commands that would
// bring it to s; none when it is there already.
func (x *Exchange) PlanRelaySetup(ctx context.Context, s RelaySetup) ([]SetupChange, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var out []SetupChange
	want := s.connectorWant()
	have, err := x.connector(ctx, s.ConnectorName)
	switch {
	case errors.Is(err, ErrNotFound):
		p := map[string]any{"Name": s.ConnectorName, "Comment": "Mail forwarded by the dualmx relay during the migration"}
		for k, v := range want {
			p[k] = v
		}
		out = append(out, SetupChange{What: "create Partner inbound connector " + s.ConnectorName + " (TLS required, Enhanced Filtering skips relay and old host)",
			Cmdlet: "New-InboundConnector", Params: p})
	case err != nil:
		return nil, err
	default:
		p := map[string]any{"Identity": s.ConnectorName}
		var diff []string
		for _, k := range sortedKeys(want) {
			if norm(want[k]) != norm(have[k]) {
				p[k] = want[k]
				diff = append(diff, k)
			}
		}
		if len(diff) > 0 {
			out = append(out, SetupChange{What: "update inbound connector " + s.ConnectorName + ": " + strings.Join(diff, ", "),
				Cmdlet: "Set-InboundConnector", Params: p})
		}
	}
	sealers, err := x.ArcTrustedSealers(ctx)
	if err != nil {
		return nil, err
	}
	found := false
	for _, v := range sealers {
		if strings.EqualFold(strings.TrimSpace(v), s.ArcDomain) {
			found = true
		}
	}
	if !found {
		// Set-ArcConfig replaces the whole list: send the old entries too.
		all := append(append([]string{}, sealers...), s.ArcDomain)
		out = append(out, SetupChange{What: "add " + s.ArcDomain + " to the trusted ARC sealers (keeping " + orNone(sealers) + ")",
			Cmdlet: "Set-ArcConfig", Params: map[string]any{"Identity": "Default", "ArcTrustedSealers": strings.Join(all, ",")}})
	}
	return out, nil
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func sortedKeys(m map[string]any) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

// ApplyRelaySetup runs the changes in order, stopping at the first error:
// they build on each other (the connector before its filtering).
func (x *Exchange) ApplyRelaySetup(ctx context.Context, changes []SetupChange) error {
	for _, c := range changes {
		if _, err := x.Cmd.Invoke(ctx, c.Cmdlet, c.Params); err != nil {
			return fmt.Errorf("%s: %w", c.What, err)
		}
	}
	return nil
}

// CheckRelaySetup reads every setting back and compares it with s.
func (x *Exchange) CheckRelaySetup(ctx context.Context, s RelaySetup) ([]SetupCheck, error) {
	var out []SetupCheck
	want := s.connectorWant()
	have, err := x.connector(ctx, s.ConnectorName)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	for _, k := range sortedKeys(want) {
		got := ""
		if have != nil {
			got = norm(have[k])
		}
		out = append(out, SetupCheck{Setting: "connector " + s.ConnectorName + " " + k, Want: norm(want[k]), Got: got, OK: have != nil && got == norm(want[k])})
	}
	sealers, err := x.ArcTrustedSealers(ctx)
	if err != nil {
		return nil, err
	}
	ok := false
	for _, v := range sealers {
		ok = ok || strings.EqualFold(strings.TrimSpace(v), s.ArcDomain)
	}
	out = append(out, SetupCheck{Setting: "ArcTrustedSealers", Want: "includes " + s.ArcDomain, Got: strings.Join(sealers, ","), OK: ok})
	return out, nil
}
