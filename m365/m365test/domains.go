// SPDX-License-Identifier: Apache-2.0

package m365test

import (
	"encoding/json"
	"net/http"
	"strings"
)

// DomainDNS is what the fake tenant says a domain must publish.
type DomainDNS struct {
	MX              string // the Email MX target, e.g. example-nl.mail.protection.outlook.com
	VerificationTXT string // MS=ms…
	DKIM1, DKIM2    string // Selector1CNAME, Selector2CNAME of Get-DkimSigningConfig
}

// SetDomainDNS sets the records the fake answers for domain.
func (tn *Tenant) SetDomainDNS(domain string, d DomainDNS) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.domainDNS == nil {
		tn.domainDNS = map[string]DomainDNS{}
	}
	tn.domainDNS[strings.ToLower(domain)] = d
}

// serveDomain answers GET /domains/{d}/serviceConfigurationRecords and
// /verificationDnsRecords in Graph's shape: a derived type per record,
// told apart by @odata.type. The caller holds tn.mu.
func (tn *Tenant) serveDomain(w http.ResponseWriter, domain, kind string) {
	d, ok := tn.domainDNS[strings.ToLower(domain)]
	if !ok {
		graphError(w, 404, "Request_ResourceNotFound", "Resource '"+domain+"' does not exist or one of its queried reference-property objects are not present.")
		return
	}
	var vals []map[string]any
	switch kind {
	case "serviceConfigurationRecords":
		vals = append(vals,
			map[string]any{"@odata.type": "#microsoft.graph.domainDnsMxRecord", "id": "mx", "isOptional": false, "label": domain,
				"recordType": "Mx", "supportedService": "Email", "ttl": 3600, "mailExchange": d.MX, "preference": 0},
			map[string]any{"@odata.type": "#microsoft.graph.domainDnsTxtRecord", "id": "spf", "isOptional": false, "label": domain,
				"recordType": "Txt", "supportedService": "Email", "ttl": 3600, "text": "v=spf1 include:spf.protection.outlook.com -all"},
			map[string]any{"@odata.type": "#microsoft.graph.domainDnsCnameRecord", "id": "ad", "isOptional": false, "label": "autodiscover." + domain,
				"recordType": "CName", "supportedService": "Email", "ttl": 3600, "canonicalName": "autodiscover.outlook.com"})
	case "verificationDnsRecords":
		vals = append(vals,
			map[string]any{"@odata.type": "#microsoft.graph.domainDnsTxtRecord", "id": "v1", "isOptional": false, "label": domain,
				"recordType": "Txt", "supportedService": "None", "ttl": 3600, "text": d.VerificationTXT},
			map[string]any{"@odata.type": "#microsoft.graph.domainDnsMxRecord", "id": "v2", "isOptional": false, "label": domain,
				"recordType": "Mx", "supportedService": "None", "ttl": 3600, "mailExchange": "ms00000000.msv1.invalid", "preference": 32767})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#domainDnsRecords", "value": vals})
}

// exoDkim answers Get-DkimSigningConfig. The caller holds tn.mu.
func (tn *Tenant) exoDkim(w http.ResponseWriter, r *http.Request, p map[string]any) {
	d, ok := tn.domainDNS[strings.ToLower(str(p, "Identity"))]
	if !ok {
		exoError(w, 404, "Ex6F9304", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
			"The operation couldn't be performed because object '"+str(p, "Identity")+"' couldn't be found.")
		return
	}
	tn.page(w, r, []any{map[string]any{"Domain": str(p, "Identity"), "Enabled": true,
		"Selector1CNAME": d.DKIM1, "Selector2CNAME": d.DKIM2}}, 0)
}
