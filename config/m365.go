// SPDX-License-Identifier: MIT

package config

import (
	"net/netip"
	"slices"
	"strings"
)

// M365Outbound are the address ranges Microsoft publishes for Exchange
// Online Protection's mail servers (Microsoft 365 "URLs and IP address
// ranges", Exchange Online, ID 10: *.mail.protection.outlook.com, TCP 25;
// the same ranges spf.protection.outlook.com lists). Bounces and other mail
// the tenant sends to the SRS domain come from these: they are the default
// of srs.return_sources and what the allowed_networks warning checks. This
// is the one copy in the code; docs/install.md and docs/security.md list it
// for the reader. Microsoft changes the list now and then; its web service
// (https://endpoints.office.com/endpoints/worldwide?clientrequestid=<uuid>,
// serviceAreas "Exchange", the entry with id 10) has the current one.
var M365Outbound = []netip.Prefix{
	netip.MustParsePrefix("40.92.0.0/15"),
	netip.MustParsePrefix("40.107.0.0/16"),
	netip.MustParsePrefix("52.100.0.0/14"),
	netip.MustParsePrefix("104.47.0.0/17"),
	netip.MustParsePrefix("2a01:111:f400::/48"),
	netip.MustParsePrefix("2a01:111:f403::/48"),
}

// uncovered returns the prefixes of want that allowed does not wholly admit.
func uncovered(allowed, want []netip.Prefix) []string {
	var out []string
	for _, w := range want {
		ok := false
		for _, a := range allowed {
			if a.Addr().Is4() == w.Addr().Is4() && a.Bits() <= w.Bits() && a.Contains(w.Addr()) {
				ok = true
				break
			}
		}
		if !ok {
			out = append(out, w.String())
		}
	}
	return out
}

// srsWarning explains what a restricted listener does to SRS bounces, or "".
// The bounces come from srs.return_sources, Microsoft 365's outbound
// servers unless the admin named others.
func (c *Config) srsWarning() string {
	if !c.SRS.Enabled || len(c.Inbound.AllowedNetworks) == 0 {
		return ""
	}
	sources, who := c.SRS.ReturnSources, "the networks in srs.return_sources"
	if len(sources) == 0 || slices.Equal(sources, M365Outbound) {
		sources, who = M365Outbound, "Microsoft 365's outbound mail servers"
	}
	missing := uncovered(c.Inbound.AllowedNetworks, sources)
	if len(missing) == 0 {
		return ""
	}
	return "srs is on, but allowed_networks does not admit " + who + " (" + strings.Join(missing, ", ") +
		"): bounces the tenant sends to " + c.SRS.Domain + " addresses would be refused and never reach the author; add those ranges (docs/install.md)"
}
