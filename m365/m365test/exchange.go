// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/dualmx/dualmx/m365"
)

const anchorPrefix = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"

// exoError answers as Exchange does: the reason as "code|exception|text"
// inside error.details.
func exoError(w http.ResponseWriter, status int, code, exception, text string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": "BadRequest", "message": "Error executing cmdlet",
		"details":    []map[string]string{{"code": "Context", "target": "", "message": code + "|" + exception + "|" + text}},
		"innerError": map[string]any{"message": "Error executing cmdlet", "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"},
	}})
}

func notFoundExo(w http.ResponseWriter, id string) {
	exoError(w, 404, "Ex6F9304", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
		"The operation couldn't be performed because object '"+id+"' couldn't be found on 'AM0PR01A001DC01.EURPR01A001.prod.outlook.com'.")
}

func (tn *Tenant) exoViolate(w http.ResponseWriter, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	tn.exoViolations = append(tn.exoViolations, msg)
	tn.t.Logf("m365test exchange: %s", msg)
	exoError(w, 400, "Ex000000", "System.Management.Automation.ParameterBindingException", msg)
}

func (tn *Tenant) serveExchange(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	var in struct {
		CmdletInput *struct {
			CmdletName string         `json:"CmdletName"`
			Parameters map[string]any `json:"Parameters"`
		} `json:"CmdletInput"`
	}
	jerr := json.Unmarshal(body, &in)
	tn.mu.Lock()
	defer tn.mu.Unlock()
	req := Request{Service: "exchange", Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body, Auth: r.Header.Get("Authorization")}
	if jerr == nil && in.CmdletInput != nil {
		req.Cmdlet = in.CmdletInput.CmdletName
	}
	tn.requests = append(tn.requests, req)
	switch {
	case err != nil || jerr != nil || in.CmdletInput == nil:
		tn.exoViolate(w, "body is not a CmdletInput envelope: %s", body)
		return
	case r.Header.Get("Authorization") != "Bearer "+ExchangeToken:
		writeJSON(w, 401, map[string]any{"error": map[string]any{"code": "invalid_token", "message": "token not for Exchange Online"}})
		return
	case r.Method != http.MethodPost || r.URL.Path != "/adminapi/beta/"+TenantID+"/InvokeCommand":
		tn.exoViolate(w, "%s %s, want POST /adminapi/beta/%s/InvokeCommand", r.Method, r.URL.Path, TenantID)
		return
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		tn.exoViolate(w, "Content-Type %q", r.Header.Get("Content-Type"))
		return
	case r.Header.Get("X-CmdletName") != in.CmdletInput.CmdletName:
		tn.exoViolate(w, "X-CmdletName %q does not match body cmdlet %q", r.Header.Get("X-CmdletName"), in.CmdletInput.CmdletName)
		return
	case r.Header.Get("X-AnchorMailbox") != anchorPrefix+TenantID:
		tn.exoViolate(w, "X-AnchorMailbox %q", r.Header.Get("X-AnchorMailbox"))
		return
	}
	cmd, p := in.CmdletInput.CmdletName, in.CmdletInput.Parameters
	if p == nil {
		p = map[string]any{}
	}
	if f := tn.fault(cmd); f != nil {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.Exception == "" && f.Code == "" {
			w.WriteHeader(f.Status)
			fmt.Fprint(w, f.Message)
			return
		}
		exoError(w, f.Status, f.Code, f.Exception, f.Message)
		return
	}
	skip, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
	switch cmd {
	case "Get-Mailbox":
		tn.exoGetMailbox(w, r, p, skip)
	case "New-Mailbox":
		tn.exoNewMailbox(w, p)
	case "Get-MailboxPermission", "Get-RecipientPermission":
		tn.exoGetPerms(w, r, cmd, p, skip)
	case "Add-MailboxPermission", "Add-RecipientPermission", "Remove-MailboxPermission", "Remove-RecipientPermission":
		tn.exoChangePerm(w, cmd, p)
	case "Get-DkimSigningConfig":
		tn.exoDkim(w, r, p)
	case "Get-ArcConfig":
		tn.page(w, r, []any{map[string]any{"Identity": "Default", "ArcTrustedSealers": tn.arcSealers}}, 0)
	case "Set-ArcConfig":
		v, ok := p["ArcTrustedSealers"].(string)
		if !ok || str(p, "Identity") != "Default" {
			tn.exoViolate(w, "Set-ArcConfig wants Identity Default and ArcTrustedSealers as one comma-separated string, got %v", p)
			return
		}
		tn.arcSealers = v
		w.WriteHeader(204)
	case "Get-MigrationEndpoint", "New-MigrationEndpoint", "Remove-MigrationEndpoint", "New-MigrationBatch", "Get-MigrationBatch",
		"Complete-MigrationBatch", "Start-MigrationBatch", "Remove-MigrationBatch", "Get-MigrationUser", "Get-MigrationUserStatistics":
		tn.exoMigration(w, r, cmd, p)
	case "Get-InboundConnector", "New-InboundConnector", "Set-InboundConnector":
		tn.exoConnector(w, r, cmd, p)
	default:
		exoError(w, 400, "Ex000001", "System.Management.Automation.CommandNotFoundException", "The term '"+cmd+"' is not recognized.")
	}
}

func str(p map[string]any, k string) string {
	s, _ := p[k].(string)
	return s
}

// page answers a list, cut into pages with @odata.nextLink when a page size
// is set; the client must POST the same body to the link.
func (tn *Tenant) page(w http.ResponseWriter, r *http.Request, all []any, skip int) {
	out := map[string]any{"@odata.context": tn.ExoSrv.URL + "/adminapi/beta/" + TenantID + "/$metadata#Collection"}
	if skip > len(all) {
		skip = len(all)
	}
	all = all[skip:]
	if tn.pageSize > 0 && len(all) > tn.pageSize {
		out["@odata.nextLink"] = fmt.Sprintf("%s%s?$skiptoken=%d", tn.ExoSrv.URL, r.URL.Path, skip+tn.pageSize)
		all = all[:tn.pageSize]
	}
	if all == nil {
		all = []any{}
	}
	out["value"] = all
	writeJSON(w, 200, out)
}

func (tn *Tenant) findMailbox(id string) *mailbox {
	id = strings.ToLower(id)
	if mb, ok := tn.mailboxes[id]; ok {
		return mb
	}
	for _, mb := range tn.mailboxes {
		if strings.EqualFold(mb.Alias, id) || strings.EqualFold(mb.UserPrincipalName, id) {
			return mb
		}
	}
	return nil
}

func (tn *Tenant) exoGetMailbox(w http.ResponseWriter, r *http.Request, p map[string]any, skip int) {
	if id := str(p, "Identity"); id != "" {
		mb := tn.findMailbox(id)
		if mb == nil {
			notFoundExo(w, id)
			return
		}
		if mb.pendingPolls > 0 {
			mb.pendingPolls--
			notFoundExo(w, id)
			return
		}
		tn.page(w, r, []any{mb.Mailbox}, 0)
		return
	}
	kind := str(p, "RecipientTypeDetails")
	var list []m365.Mailbox
	for _, mb := range tn.mailboxes {
		if mb.pendingPolls == 0 && (kind == "" || mb.RecipientTypeDetails == kind) {
			list = append(list, mb.Mailbox)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].PrimarySmtpAddress < list[j].PrimarySmtpAddress })
	all := make([]any, len(list))
	for i := range list {
		all[i] = list[i]
	}
	tn.page(w, r, all, skip)
}

func (tn *Tenant) exoNewMailbox(w http.ResponseWriter, p map[string]any) {
	if p["Shared"] != true {
		tn.exoViolate(w, "New-Mailbox without Shared: true would create a user mailbox: %v", p)
		return
	}
	addr := str(p, "PrimarySmtpAddress")
	if addr == "" || str(p, "Name") == "" {
		tn.exoViolate(w, "New-Mailbox wants Name and PrimarySmtpAddress: %v", p)
		return
	}
	if tn.findMailbox(addr) != nil {
		exoError(w, 400, "Ex3A8F71", "Microsoft.Exchange.Data.Directory.ProxyAddressExistsException",
			"The proxy address \"SMTP:"+addr+"\" is already being used by the proxy addresses or LegacyExchangeDN.")
		return
	}
	mb := &mailbox{Mailbox: m365.Mailbox{Identity: str(p, "Name"), Alias: str(p, "Alias"), DisplayName: str(p, "DisplayName"),
		PrimarySmtpAddress: addr, UserPrincipalName: addr, RecipientTypeDetails: "SharedMailbox"}}
	tn.mailboxes[strings.ToLower(addr)] = mb
	writeJSON(w, 200, map[string]any{"value": []any{mb.Mailbox}})
}

func (tn *Tenant) exoGetPerms(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any, skip int) {
	id := str(p, "Identity")
	mb := tn.findMailbox(id)
	if mb == nil || mb.pendingPolls > 0 {
		notFoundExo(w, id)
		return
	}
	key := strings.ToLower(mb.PrimarySmtpAddress)
	var all []any
	if cmd == "Get-MailboxPermission" {
		// Every mailbox lists its own SELF entry; clients must skip it.
		all = append(all, map[string]any{"Identity": mb.Identity, "User": "NT AUTHORITY\\SELF",
			"AccessRights": []string{"FullAccess", "ReadPermission"}, "IsInherited": false, "Deny": false})
		for _, pm := range tn.perms {
			if pm.mailbox == key && pm.right == m365.FullAccess {
				all = append(all, map[string]any{"Identity": mb.Identity, "User": pm.user, "AccessRights": []string{"FullAccess"},
					"IsInherited": false, "Deny": false})
			}
		}
	} else {
		all = append(all, map[string]any{"Identity": mb.Identity, "Trustee": "NT AUTHORITY\\SELF", "AccessControlType": "Allow",
			"AccessRights": []string{"SendAs"}, "IsInherited": false})
		for _, pm := range tn.perms {
			if pm.mailbox == key && pm.right == m365.SendAs {
				all = append(all, map[string]any{"Identity": mb.Identity, "Trustee": pm.user, "AccessControlType": "Allow",
					"AccessRights": []string{"SendAs"}, "IsInherited": false})
			}
		}
	}
	tn.page(w, r, all, skip)
}

func rights(p map[string]any) []string {
	switch v := p["AccessRights"].(type) {
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		return []string{v}
	}
	return nil
}

func (tn *Tenant) exoChangePerm(w http.ResponseWriter, cmd string, p map[string]any) {
	right, who := m365.FullAccess, str(p, "User")
	if strings.HasSuffix(cmd, "RecipientPermission") {
		right, who = m365.SendAs, str(p, "Trustee")
	}
	rs := rights(p)
	if len(rs) != 1 || rs[0] != string(right) {
		tn.exoViolate(w, "%s wants AccessRights [%s], got %v", cmd, right, p["AccessRights"])
		return
	}
	remove := strings.HasPrefix(cmd, "Remove-")
	if remove && p["Confirm"] != false {
		tn.exoViolate(w, "%s without Confirm: false would prompt", cmd)
		return
	}
	if right == m365.FullAccess && !remove && str(p, "InheritanceType") != "All" {
		tn.exoViolate(w, "%s wants InheritanceType All", cmd)
		return
	}
	mb := tn.findMailbox(str(p, "Identity"))
	if mb == nil || mb.pendingPolls > 0 {
		notFoundExo(w, str(p, "Identity"))
		return
	}
	if u := tn.findMailbox(who); u == nil || u.pendingPolls > 0 {
		// The trustee's own mailbox appears some time after the licence.
		notFoundExo(w, who)
		return
	}
	key := strings.ToLower(mb.PrimarySmtpAddress)
	who = strings.ToLower(who)
	for i, pm := range tn.perms {
		if pm.mailbox == key && pm.user == who && pm.right == right {
			if remove {
				tn.perms = append(tn.perms[:i:i], tn.perms[i+1:]...)
			} else {
				tn.DuplicateAdds++
			}
			w.WriteHeader(204)
			return
		}
	}
	if remove {
		exoError(w, 400, "Ex9E5B00", "Microsoft.Exchange.Management.Tasks.InvalidOperationInDehydratedContextException",
			"Can't remove the access control entry on the object because the ACE doesn't exist on the object.")
		return
	}
	tn.perms = append(tn.perms, perm{key, who, right})
	w.WriteHeader(204)
}

// connectorParams are the parameters New-/Set-InboundConnector accept here.
var connectorParams = map[string]bool{"Name": true, "Identity": true, "ConnectorType": true, "SenderDomains": true, "SenderIPAddresses": true,
	"RequireTls": true, "TlsSenderCertificateName": true, "RestrictDomainsToCertificate": true, "RestrictDomainsToIPAddresses": true,
	"EFSkipIPs": true, "EFSkipLastIP": true, "EFUsers": true, "Enabled": true, "Comment": true}

func (tn *Tenant) exoConnector(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any) {
	for k := range p {
		if !connectorParams[k] {
			tn.exoViolate(w, "%s: unknown parameter %s", cmd, k)
			return
		}
	}
	name := str(p, "Identity")
	if cmd == "New-InboundConnector" {
		name = str(p, "Name")
	}
	key := strings.ToLower(name)
	c := tn.connectors[key]
	switch cmd {
	case "Get-InboundConnector":
		if c == nil {
			notFoundExo(w, name)
			return
		}
		tn.page(w, r, []any{c}, 0)
	case "New-InboundConnector":
		if c != nil {
			exoError(w, 400, "Ex5A2B11", "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException", "An inbound connector named "+name+" already exists.")
			return
		}
		if ct := str(p, "ConnectorType"); ct != "Partner" && ct != "OnPremises" {
			tn.exoViolate(w, "New-InboundConnector ConnectorType %q", ct)
			return
		}
		c = map[string]any{"Identity": name, "Name": name, "Enabled": true, "EFSkipLastIP": false}
		for k, v := range p {
			if k != "Name" {
				c[k] = v
			}
		}
		tn.connectors[key] = c
		writeJSON(w, 200, map[string]any{"value": []any{c}})
	case "Set-InboundConnector":
		if c == nil {
			notFoundExo(w, name)
			return
		}
		for k, v := range p {
			if k != "Identity" {
				c[k] = v
			}
		}
		w.WriteHeader(204)
	}
}
