// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DomainDNS is what the fake tenant says a domain must publish.
type DomainDNS struct {
	MX              string // the Email MX target, e.g. example-nl.mail.protection.outlook.com
	VerificationTXT string // MS=ms…
	DKIM1, DKIM2    string // Selector1CNAME, Selector2CNAME of Get-DkimSigningConfig
}

// SetDomainDNS sets the records the fake answers for domain; DKIM
// selectors make a signing config that signs.
func (tn *Tenant) SetDomainDNS(domain string, d DomainDNS) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.domainDNS == nil {
		tn.domainDNS = map[string]DomainDNS{}
	}
	tn.domainDNS[strings.ToLower(domain)] = d
	if d.DKIM1 != "" || d.DKIM2 != "" {
		tn.dkim[strings.ToLower(domain)] = &dkimConfig{Domain: domain, Enabled: true, DKIM1: d.DKIM1, DKIM2: d.DKIM2, seen: true}
	}
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

// dkimConfig is one DKIM signing config (Get-DkimSigningConfig's Name,
// Enabled, Status, Selector1CNAME, Selector2CNAME).
type dkimConfig struct {
	Domain       string
	Enabled      bool
	DKIM1, DKIM2 string
	KeySize      int
	// seen: Microsoft 365 has found the two CNAMEs in the domain's DNS.
	seen bool
}

// out is the config as Get-DkimSigningConfig shows it. The DKIM page's
// PowerShell steps name two states: Enabled False with Status CnameMissing
// (created, not signing), and Enabled True with Status Valid.
func (d *dkimConfig) out() map[string]any {
	status := "CnameMissing"
	if d.Enabled {
		status = "Valid"
	}
	size := d.KeySize
	if size == 0 {
		size = 1024
	}
	return map[string]any{"Identity": d.Domain, "Name": d.Domain, "Domain": d.Domain, "Enabled": d.Enabled, "Status": status,
		"Selector1CNAME": d.DKIM1, "Selector2CNAME": d.DKIM2, "Selector1KeySize": size, "Selector2KeySize": size}
}

// DKIMKeySize is the key length of a domain's signing config, 0 without one.
func (tn *Tenant) DKIMKeySize(domain string) int {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if d, ok := tn.dkim[strings.ToLower(domain)]; ok {
		return d.KeySize
	}
	return 0
}

// AddDKIMConfig adds a signing config as one made in the Defender portal.
func (tn *Tenant) AddDKIMConfig(domain string, enabled bool, sel1, sel2 string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.dkim[strings.ToLower(domain)] = &dkimConfig{Domain: domain, Enabled: enabled, DKIM1: sel1, DKIM2: sel2, seen: enabled}
}

// DKIM returns a domain's signing config: its selectors and whether it signs.
func (tn *Tenant) DKIM(domain string) (sel1, sel2 string, enabled, ok bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	d, ok := tn.dkim[strings.ToLower(domain)]
	if !ok {
		return "", "", false, false
	}
	return d.DKIM1, d.DKIM2, d.Enabled, true
}

// LookUpDKIMAt makes the fake look the two CNAMEs up at a name server
// (HOST:PORT) when asked to turn signing on, as Microsoft 365 looks them up
// in the domain's DNS.
func (tn *Tenant) LookUpDKIMAt(nameserver string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.dkimNS = nameserver
}

// cnamesPublished asks the name server for both selectors' CNAMEs.
func cnamesPublished(ns string, d *dkimConfig) bool {
	c := &dns.Client{Timeout: 30 * time.Second} // a loopback name server answers; this only ends a hang
	for i, want := range []string{d.DKIM1, d.DKIM2} {
		m := new(dns.Msg).SetQuestion(dns.Fqdn(fmt.Sprintf("selector%d._domainkey.%s", i+1, d.Domain)), dns.TypeCNAME)
		r, _, err := c.Exchange(m, ns)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			return false
		}
		found := false
		for _, rr := range r.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(strings.TrimSuffix(cn.Target, "."), want) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// SeeDKIMCNAMEs makes Microsoft 365 find the domain's two CNAMEs, which it
// does "a few minutes (or possibly longer)" after they are published.
func (tn *Tenant) SeeDKIMCNAMEs(domain string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if d, ok := tn.dkim[strings.ToLower(domain)]; ok {
		d.seen = true
	}
}

func (tn *Tenant) allDKIM() []any {
	var all []any
	for _, k := range sortedKeys(tn.dkim) {
		all = append(all, tn.dkim[k].out())
	}
	return all
}

// exoDkim answers the DKIM cmdlets as Microsoft's "Use Exchange Online
// PowerShell to configure DKIM signing" (defender-office-365/
// email-authentication-dkim-configure) describes them: New-DkimSigningConfig
// -DomainName D -Enabled $false lists the domain with Enabled False and
// Status CnameMissing and the two Selector CNAMEs (the new
// …-v1.dkim.mail.microsoft form for domains added since May 2025);
// Set-DkimSigningConfig -Identity D -Enabled $true fails with the CNAME
// values until the records are detected. The caller holds tn.mu.
func (tn *Tenant) exoDkim(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any, skip int) {
	switch cmd {
	case "Get-DkimSigningConfig":
		id := str(p, "Identity")
		if id == "" {
			tn.page(w, r, tn.allDKIM(), skip)
			return
		}
		d, ok := tn.dkim[strings.ToLower(id)]
		if !ok {
			tn.missing(w, r, id, tn.allDKIM(), skip)
			return
		}
		tn.page(w, r, []any{d.out()}, 0)
	case "New-DkimSigningConfig":
		dom := str(p, "DomainName")
		en, ok := p["Enabled"].(bool)
		if dom == "" || !ok {
			tn.exoViolate(w, "New-DkimSigningConfig wants DomainName and Enabled: %v", p)
			return
		}
		if _, known := tn.domainDNS[strings.ToLower(dom)]; !known && !strings.EqualFold(dom, tn.Domain) {
			notFoundExo(w, dom)
			return
		}
		if _, exists := tn.dkim[strings.ToLower(dom)]; exists {
			exoError(w, 400, "Ex5C3D21", "Microsoft.Exchange.Management.Tasks.DkimSigningConfigAlreadyExistsException",
				"A DKIM signing configuration for "+dom+" already exists.")
			return
		}
		if en {
			tn.exoViolate(w, "New-DkimSigningConfig -Enabled $true before the CNAMEs exist; Microsoft's steps create it disabled")
			return
		}
		// KeySize: "1024 (this is the default value)" or 2048.
		size := 1024
		if v, has := p["KeySize"]; has {
			n, ok := v.(float64)
			if !ok || (n != 1024 && n != 2048) {
				tn.exoViolate(w, "New-DkimSigningConfig KeySize %v: 1024 or 2048", v)
				return
			}
			size = int(n)
		}
		label := strings.ReplaceAll(strings.ToLower(dom), ".", "-")
		prefix := strings.SplitN(strings.ToLower(tn.Domain), ".", 2)[0]
		d := &dkimConfig{Domain: dom, KeySize: size, DKIM1: "selector1-" + label + "._domainkey." + prefix + ".n-v1.dkim.mail.microsoft",
			DKIM2: "selector2-" + label + "._domainkey." + prefix + ".n-v1.dkim.mail.microsoft"}
		tn.dkim[strings.ToLower(dom)] = d
		writeJSON(w, 200, map[string]any{"value": []any{d.out()}})
	case "Set-DkimSigningConfig":
		d, ok := tn.dkim[strings.ToLower(str(p, "Identity"))]
		if !ok {
			notFoundExo(w, str(p, "Identity"))
			return
		}
		en, ok := p["Enabled"].(bool)
		if !ok {
			tn.exoViolate(w, "Set-DkimSigningConfig: Enabled must be a boolean: %v", p)
			return
		}
		if en && !d.seen && tn.dkimNS != "" {
			d.seen = cnamesPublished(tn.dkimNS, d)
		}
		if en && !d.seen {
			// The error Microsoft's DKIM page shows:
			// "|Microsoft.Exchange.ManagementTasks.ValidationException|CNAME record does not exist for this config…".
			exoError(w, 400, "Ex3A4E5B", "Microsoft.Exchange.ManagementTasks.ValidationException",
				"CNAME record does not exist for this config. Please publish the following two CNAME records first. Domain Name : "+d.Domain+
					" Host Name : selector1._domainkey Points to address or value: "+d.DKIM1+
					" Host Name : selector2._domainkey Points to address or value: "+d.DKIM2+" .")
			return
		}
		d.Enabled = en
		w.WriteHeader(204)
	}
}
