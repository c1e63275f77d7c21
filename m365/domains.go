// SPDX-License-Identifier: Apache-2.0

package m365

import (
	"context"
	"fmt"
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
	return out, err
}

// dkimConfig is the part of Get-DkimSigningConfig the DNS gate needs.
type dkimConfig struct {
	Selector1CNAME string `json:"Selector1CNAME"`
	Selector2CNAME string `json:"Selector2CNAME"`
}

// DKIMSelectors reads the CNAME targets Microsoft 365 signs with for domain
// (Get-DkimSigningConfig). A domain without a signing config yet answers
// empty strings, not an error: the gate then reports the records as unknown.
func (x *Exchange) DKIMSelectors(ctx context.Context, domain string) (string, string, error) {
	raw, err := x.Cmd.Invoke(ctx, "Get-DkimSigningConfig", map[string]any{"Identity": domain})
	if err != nil {
		if IsNotFound(err) {
			return "", "", nil
		}
		return "", "", err
	}
	cfgs, err := decodeAll[dkimConfig](raw)
	if err != nil {
		return "", "", fmt.Errorf("m365: Get-DkimSigningConfig %s: %w", domain, err)
	}
	if len(cfgs) == 0 {
		return "", "", nil
	}
	return strings.TrimSuffix(cfgs[0].Selector1CNAME, "."), strings.TrimSuffix(cfgs[0].Selector2CNAME, "."), nil
}
