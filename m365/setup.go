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
	// DKIMDomain is the custom domain that should sign with DKIM; "" leaves
	// DKIM alone.
	DKIMDomain string
	// DKIMPublished reports whether the domain's two DKIM CNAMEs resolve
	// to the given targets (the DNS gate asks every authoritative server);
	// signing is turned on only then. nil never turns it on.
	DKIMPublished func(ctx context.Context, domain, sel1, sel2 string) (ok bool, why string, err error)
}

// SetupChange is one command the setup runs.
type SetupChange struct {
	What   string         `json:"what"`
	Cmdlet string         `json:"cmdlet,omitempty"`
	Params map[string]any `json:"parameters,omitempty"`
	// Do makes a change that is more than one cmdlet with its parameters
	// (a teardown step of another package); Cmdlet is then empty.
	Do func(ctx context.Context) error `json:"-"`
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
		// False, and written so: a tenant set up by an earlier dualmx,
		// which asked for true, converges on the next --apply. With
		// SenderDomains * and no RestrictDomainsToIPAddresses (which would
		// refuse everyone else's mail) this connector matches every
		// partner sender, not only the relay, so RequireTls $true could
		// reject plaintext mail from all of them: the tenant's other
		// domains already on Microsoft 365 during the migration, and
		// everybody once the MX has moved (teardown keeps the connector).
		// It would buy nothing for the relay's own mail: the relay's
		// delivery insists on verified TLS itself (target.tls: require,
		// the default, or dane).
		"RequireTls": false,
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
	// Without a pilot the list is empty: "The default value is blank
	// ($null), which means Enhanced Filtering for Connectors is applied to
	// all recipients" (enhanced-filtering-for-connectors). Kept in the
	// wanted settings, so a setup after a --pilot run widens it again.
	want["EFUsers"] = nil
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

// normValue renders a parameter value for comparison, whatever form
// Exchange gave it (an array or a comma-separated string [unverified]):
// lists sorted and lower case, SenderDomains as bare domains
// (addressSpaceDomain), addresses in one canonical form. Every reading of
// Get-InboundConnector's output goes through here.
func normValue(key string, v any) string {
	var l []string
	switch x := v.(type) {
	case nil:
		return ""
	case bool:
		return fmt.Sprint(x)
	case string:
		l = strings.Split(x, ",")
	case []string:
		l = x
	case []any:
		for _, e := range x {
			l = append(l, fmt.Sprint(e))
		}
	default:
		return strings.ToLower(fmt.Sprint(v))
	}
	for i, e := range l {
		switch key {
		case "SenderDomains":
			l[i] = addressSpaceDomain(e)
		case "EFSkipIPs", "SenderIPAddresses":
			l[i] = canonicalIP(e)
		}
	}
	return strings.Join(union(l), ",")
}

// canonicalIP writes an address or range as Exchange's IPRange shows it:
// a single address without its /32.
func canonicalIP(s string) string {
	p, err := parsePrefix(strings.TrimSpace(s))
	if err != nil {
		return strings.TrimSpace(s)
	}
	p = p.Masked()
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// connector reads dualmx's inbound connector, by name; the reply is
// filtered on the name because Get-InboundConnector answers every
// connector for a name it does not know (identity.go).
func (x *Exchange) connector(ctx context.Context, name string) (map[string]any, error) {
	raw, err := x.Cmd.Invoke(ctx, "Get-InboundConnector", map[string]any{"Identity": name})
	if err != nil {
		return nil, withNeed(err, NeedManageAsApp, NeedExchangeAdministrator)
	}
	return pick("Get-InboundConnector", name, raw, func(c map[string]any) bool {
		n, _ := c["Name"].(string)
		id, _ := c["Identity"].(string)
		return anyEqual(name, n, id)
	})
}

// ArcTrustedSealers reads the tenant's trusted ARC sealers. Get-ArcConfig
// shows them as one comma-separated string (Set-ArcConfig's examples split
// it on commas); an array is read as well.
func (x *Exchange) ArcTrustedSealers(ctx context.Context) ([]string, error) {
	raw, err := x.Cmd.Invoke(ctx, "Get-ArcConfig", nil)
	if err != nil {
		return nil, withNeed(err, NeedManageAsApp, NeedExchangeAdministrator)
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

// setSealers is Set-ArcConfig with the whole list, as its page says:
// ArcTrustedSealers is a String[] that replaces the list, and " " (one
// space) empties it.
func setSealers(what string, list []string) SetupChange {
	if len(list) == 0 {
		list = []string{" "}
	}
	return SetupChange{What: what, Cmdlet: "Set-ArcConfig", Params: map[string]any{"Identity": "Default", "ArcTrustedSealers": list}}
}

func hasDomain(list []string, d string) bool {
	for _, v := range list {
		if strings.EqualFold(strings.TrimSpace(v), d) {
			return true
		}
	}
	return false
}

// SetupPlan is what setup would do: the commands, and where DKIM stands.
type SetupPlan struct {
	Changes []SetupChange `json:"changes"`
	// DKIM is the custom domain's signing config before the changes; nil
	// when no domain was given.
	DKIM *DKIMState `json:"dkim,omitempty"`
}

// PlanRelaySetup reads the tenant and returns the commands that would
// bring it to s; none when it is there already.
func (x *Exchange) PlanRelaySetup(ctx context.Context, s RelaySetup) (*SetupPlan, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	p := &SetupPlan{}
	want := s.connectorWant()
	have, err := x.connector(ctx, s.ConnectorName)
	switch {
	case errors.Is(err, ErrNotFound):
		params := map[string]any{"Name": s.ConnectorName, "Comment": "Mail forwarded by the dualmx relay during the migration"}
		for k, v := range want {
			if v != nil {
				params[k] = v
			}
		}
		p.Changes = append(p.Changes, SetupChange{What: "create Partner inbound connector " + s.ConnectorName +
			" (Enhanced Filtering skips relay and old host)", Cmdlet: "New-InboundConnector", Params: params})
	case err != nil:
		return nil, err
	default:
		params := map[string]any{"Identity": s.ConnectorName}
		var diff []string
		for _, k := range sortedKeys(want) {
			if normValue(k, want[k]) != normValue(k, have[k]) {
				params[k] = want[k]
				diff = append(diff, k)
			}
		}
		if len(diff) > 0 {
			p.Changes = append(p.Changes, SetupChange{What: "update inbound connector " + s.ConnectorName + ": " + strings.Join(diff, ", "),
				Cmdlet: "Set-InboundConnector", Params: params})
		}
	}
	sealers, err := x.ArcTrustedSealers(ctx)
	if err != nil {
		return nil, err
	}
	if !hasDomain(sealers, s.ArcDomain) {
		// Set-ArcConfig replaces the whole list: send the old entries too.
		p.Changes = append(p.Changes, setSealers("add "+s.ArcDomain+" to the trusted ARC sealers (keeping "+orNone(sealers)+")",
			append(append([]string{}, sealers...), s.ArcDomain)))
	}
	if s.DKIMDomain != "" {
		st, err := x.planDKIM(ctx, s)
		if err != nil {
			return nil, err
		}
		p.DKIM = &st
		if c := st.change(); c != nil {
			p.Changes = append(p.Changes, *c)
		}
	}
	return p, nil
}

func orAll(users string) string {
	if users == "" {
		return "(all recipients)"
	}
	return users
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

// ApplyChanges runs the changes in order, stopping at the first error:
// they build on each other (the connector before its filtering).
func (x *Exchange) ApplyChanges(ctx context.Context, changes []SetupChange) error {
	for _, c := range changes {
		if c.Do != nil {
			if err := c.Do(ctx); err != nil {
				return fmt.Errorf("%s: %w", c.What, err)
			}
			continue
		}
		if _, err := x.Cmd.Invoke(ctx, c.Cmdlet, c.Params); err != nil {
			return fmt.Errorf("%s: %w", c.What, withNeed(err, NeedManageAsApp, NeedExchangeAdministrator))
		}
	}
	return nil
}

// ApplyRelaySetup runs the plan. A DKIM config created in this run is read
// again afterwards (its CNAME values exist only now) and signing is turned
// on at once when the records are already published. It returns where DKIM
// stands after the run.
func (x *Exchange) ApplyRelaySetup(ctx context.Context, s RelaySetup, p *SetupPlan) (*DKIMState, error) {
	var enable *SetupChange
	var changes []SetupChange
	for i, c := range p.Changes {
		if c.Cmdlet == "Set-DkimSigningConfig" {
			enable = &p.Changes[i]
			continue
		}
		changes = append(changes, c)
	}
	if err := x.ApplyChanges(ctx, changes); err != nil {
		return nil, err
	}
	if s.DKIMDomain == "" {
		return nil, nil
	}
	st, err := x.planDKIM(ctx, s)
	if err != nil {
		return nil, err
	}
	if enable == nil {
		enable = st.change()
	}
	if enable == nil || enable.Cmdlet != "Set-DkimSigningConfig" {
		return &st, nil
	}
	_, err = x.Cmd.Invoke(ctx, enable.Cmdlet, enable.Params)
	var xe *ExchangeError
	if errors.As(err, &xe) && strings.HasSuffix(xe.Exception, "ValidationException") {
		// Published, but Microsoft 365 has not seen the records yet ("a
		// few minutes (or possibly longer)"): not a failure of the run.
		st.Pending = "the CNAMEs are published, but Microsoft 365 has not found them yet (" + xe.Text + "); run `dualmx m365 setup --apply` again later"
		return &st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", enable.What, withNeed(err, NeedManageAsApp, NeedExchangeAdministrator))
	}
	after, err := x.planDKIM(ctx, s)
	if err != nil {
		return nil, err
	}
	return &after, nil
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
			got = normValue(k, have[k])
		}
		c := SetupCheck{Setting: "connector " + s.ConnectorName + " " + k, Want: normValue(k, want[k]), Got: got,
			OK: have != nil && got == normValue(k, want[k])}
		if k == "EFUsers" && have != nil {
			// Blank is Enhanced Filtering for every recipient.
			c.Want, c.Got = orAll(c.Want), orAll(c.Got)
		}
		out = append(out, c)
	}
	sealers, err := x.ArcTrustedSealers(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, SetupCheck{Setting: "ArcTrustedSealers", Want: "includes " + s.ArcDomain, Got: strings.Join(sealers, ","),
		OK: hasDomain(sealers, s.ArcDomain)})
	return out, nil
}
