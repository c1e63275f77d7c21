// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/domains"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
)

// DomainRecords are the DNS records the tenant asks a domain to publish, as
// Microsoft 365 itself computes them: the DNS gate checks against these
// rather than against values typed into the config.
type DomainRecords struct {
	// MX holds the mail exchangers for the Email service, in either the
	// mail.protection.outlook.com or the mx.microsoft form, as given.
	MX []string
	// VerificationTXT is the MS=ms… value proving the domain to the tenant.
	VerificationTXT string
	// DKIM1 and DKIM2 are the CNAME targets for selector1 and selector2.
	DKIM1, DKIM2 string
}

// DomainRecords reads serviceConfigurationRecords and verificationDnsRecords
// for domain (Graph, permission Domain.Read.All).
func (g *Graph) DomainRecords(ctx context.Context, domain string) (DomainRecords, error) {
	var out DomainRecords
	err := g.retry.do(ctx, func() error {
		out = DomainRecords{}
		item := domains.NewDomainsRequestBuilderInternal(map[string]string{"baseurl": g.adapter.GetBaseUrl()}, g.adapter).ByDomainId(domain)
		svc, err := item.ServiceConfigurationRecords().Get(ctx, nil)
		if err != nil {
			return graphErr("service configuration records of "+domain, err)
		}
		for _, r := range svc.GetValue() {
			mx, ok := r.(models.DomainDnsMxRecordable)
			if !ok || !strings.EqualFold(deref(r.GetSupportedService()), "Email") {
				continue
			}
			if h := strings.TrimSuffix(deref(mx.GetMailExchange()), "."); h != "" {
				out.MX = append(out.MX, h)
			}
		}
		ver, err := item.VerificationDnsRecords().Get(ctx, nil)
		if err != nil {
			return graphErr("verification records of "+domain, err)
		}
		for _, r := range ver.GetValue() {
			if txt, ok := r.(models.DomainDnsTxtRecordable); ok && strings.HasPrefix(deref(txt.GetText()), "MS=") {
				out.VerificationTXT = deref(txt.GetText())
			}
		}
		return nil
	})
	return out, withNeed(err, NeedReadDomains)
}
