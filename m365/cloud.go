// SPDX-License-Identifier: MIT

package m365

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

// Cloud is one of Microsoft's clouds: where its sign-in, Graph and Exchange
// Online live, and the resources tokens are asked for.
type Cloud struct {
	Name string
	// Authority is the Microsoft Entra sign-in host (azcore's cloud package).
	Authority string
	// GraphURL is Graph's v1.0 root; GraphResource is what its scope names.
	GraphURL, GraphResource string
	// ExchangeURL is Exchange Online's host; its resource is the same URL.
	ExchangeURL string
}

// GraphScope is the app-only scope for this cloud's Graph.
func (c Cloud) GraphScope() string { return c.GraphResource + "/.default" }

// ExchangeScope is the app-only scope for this cloud's Exchange Online.
func (c Cloud) ExchangeScope() string { return c.ExchangeURL + "/.default" }

// The clouds, from Microsoft Graph's "National cloud deployments" page
// (learn.microsoft.com/graph/deployments: Graph and Entra endpoints) and
// Connect-ExchangeOnline's ConnectionUri and AzureADAuthorizationEndpointUri
// (the Exchange hosts). GCC ("usgov") runs on the global endpoints; only
// GCC High ("usgovhigh", US Government L4) and DoD (L5) have their own.
var clouds = map[string]Cloud{
	"global": {Name: "global", Authority: cloud.AzurePublic.ActiveDirectoryAuthorityHost,
		GraphURL: "https://graph.microsoft.com/v1.0", GraphResource: "https://graph.microsoft.com", ExchangeURL: "https://outlook.office365.com"},
	"usgov": {Name: "usgov", Authority: cloud.AzurePublic.ActiveDirectoryAuthorityHost,
		GraphURL: "https://graph.microsoft.com/v1.0", GraphResource: "https://graph.microsoft.com", ExchangeURL: "https://outlook.office365.com"},
	"usgovhigh": {Name: "usgovhigh", Authority: cloud.AzureGovernment.ActiveDirectoryAuthorityHost,
		GraphURL: "https://graph.microsoft.us/v1.0", GraphResource: "https://graph.microsoft.us", ExchangeURL: "https://outlook.office365.us"},
	"dod": {Name: "dod", Authority: cloud.AzureGovernment.ActiveDirectoryAuthorityHost,
		GraphURL: "https://dod-graph.microsoft.us/v1.0", GraphResource: "https://dod-graph.microsoft.us", ExchangeURL: "https://webmail.apps.mil"},
	"china": {Name: "china", Authority: cloud.AzureChina.ActiveDirectoryAuthorityHost,
		GraphURL: "https://microsoftgraph.chinacloudapi.cn/v1.0", GraphResource: "https://microsoftgraph.chinacloudapi.cn", ExchangeURL: "https://partner.outlook.cn"},
}

// CloudNames lists the accepted values of the config's m365.cloud.
func CloudNames() []string {
	out := make([]string, 0, len(clouds))
	for n := range clouds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CloudByName returns a cloud; "" is global.
func CloudByName(name string) (Cloud, error) {
	if name == "" {
		name = "global"
	}
	c, ok := clouds[strings.ToLower(name)]
	if !ok {
		return Cloud{}, fmt.Errorf("m365: unknown cloud %q (want one of %s)", name, strings.Join(CloudNames(), ", "))
	}
	return c, nil
}

// Endpoints are the three services dualmx talks to. The URLs may be
// replaced (tests point them at a local stand-in); the scopes never are:
// a token is always asked for the real resource.
type Endpoints struct {
	Cloud Cloud
	// AuthorityURL, GraphURL and ExchangeURL override the cloud's hosts
	// when set; all must be https.
	AuthorityURL, GraphURL, ExchangeURL string
}

// Authority is the sign-in host in use.
func (e Endpoints) Authority() string { return orDefault(e.AuthorityURL, e.Cloud.Authority) }

// Graph is the Graph v1.0 root in use.
func (e Endpoints) Graph() string { return orDefault(e.GraphURL, e.Cloud.GraphURL) }

// Exchange is the Exchange Online host in use.
func (e Endpoints) Exchange() string { return orDefault(e.ExchangeURL, e.Cloud.ExchangeURL) }

// CustomAuthority reports whether sign-in goes to a host that is not the
// cloud's own: MSAL would then ask login.microsoftonline.com to vouch for
// it (instance discovery), which a stand-in or a private host cannot pass.
func (e Endpoints) CustomAuthority() bool {
	return e.AuthorityURL != "" && e.AuthorityURL != e.Cloud.Authority
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkHTTPS refuses anything but an https URL with a host: every endpoint
// gets a bearer token or a client secret, and TLS is always verified.
func checkHTTPS(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("m365: %s %q: want https://host", what, s)
	}
	return u, nil
}
