// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dualmx/dualmx/m365"
)

const anchorPrefix = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"

// exoError answers as Exchange does: the reason as "code|exception|text"
// inside error.details (the shape ExoHelper's Get-ExoException.ps1 and
// CIPP's New-ExoRequest.ps1 parse; the same "|Type|text" form appears in
// Microsoft's DKIM page). InvokeCommand itself is not documented.
func exoError(w http.ResponseWriter, status int, code, exception, text string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": "BadRequest", "message": "Error executing cmdlet",
		"details":    []map[string]string{{"code": "Context", "target": "", "message": code + "|" + exception + "|" + text}},
		"innerError": map[string]any{"message": "Error executing cmdlet", "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"},
	}})
}

// notFoundExo is the not-found shape: ManagementObjectNotFoundException,
// the text the EXO module prints for a missing object.
func notFoundExo(w http.ResponseWriter, id string) {
	exoError(w, 404, "Ex6F9304", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
		"The operation couldn't be performed because object '"+id+"' couldn't be found on 'AM0PR01A001DC01.EURPR01A001.prod.outlook.com'.")
}

// notRecognized is how a session answers a cmdlet its roles do not
// include: it is not in the session at all (Exchange's RBAC, "Find the
// permissions required to run any Exchange cmdlet").
func notRecognized(w http.ResponseWriter, cmd string) {
	exoError(w, 400, "Ex000001", "System.Management.Automation.CommandNotFoundException",
		"The term '"+cmd+"' is not recognized as a name of a cmdlet, function, script file, or executable program.")
}

func (tn *Tenant) exoViolate(w http.ResponseWriter, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	tn.exoViolations = append(tn.exoViolations, msg)
	tn.t.Logf("m365test exchange: %s", msg)
	exoError(w, 400, "Ex000000", "System.Management.Automation.ParameterBindingException", msg)
}

// orgCmdlets need the Exchange Administrator role (Organization
// Management): connectors, ARC and DKIM are organisation settings, and the
// migration cmdlets are taken to need it too, as dualmx assumes (whether
// Recipient Management's Migration role suffices app-only is not
// verified). The Exchange Recipient Administrator role runs the rest.
var orgCmdlets = map[string]bool{"Get-InboundConnector": true, "New-InboundConnector": true, "Set-InboundConnector": true,
	"Get-ArcConfig": true, "Set-ArcConfig": true, "Get-DkimSigningConfig": true, "New-DkimSigningConfig": true, "Set-DkimSigningConfig": true,
	"Get-MigrationEndpoint": true, "New-MigrationEndpoint": true, "Remove-MigrationEndpoint": true, "New-MigrationBatch": true,
	"Get-MigrationBatch": true, "Complete-MigrationBatch": true, "Remove-MigrationBatch": true, "Get-MigrationUser": true,
	"Get-MigrationUserStatistics": true}

// exoUnauthorized is the answer to a token Exchange does not take: no
// Exchange.ManageAsApp in its roles, or no Exchange role on the app
// (app-only-auth-powershell-v2; the 401 is what clients see until a new
// role assignment has propagated).
func exoUnauthorized(w http.ResponseWriter, why string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeJSON(w, 401, map[string]any{"error": map[string]any{"code": "invalid_token", "message": why}})
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
	claims, terr := tn.verify(r.Header.Get("Authorization"), ExchangeAudience)
	switch {
	case err != nil || jerr != nil || in.CmdletInput == nil:
		tn.exoViolate(w, "body is not a CmdletInput envelope: %s", body)
		return
	case terr != nil:
		exoUnauthorized(w, terr.Error())
		return
	case !holds(claims, []string{"Exchange.ManageAsApp"}):
		exoUnauthorized(w, "the token's roles claim lacks Exchange.ManageAsApp")
		return
	case !tn.hasDirRole(m365.RoleExchangeRecipientAdministrator, m365.RoleExchangeAdministrator, m365.RoleGlobalAdministrator):
		exoUnauthorized(w, "the app holds no Exchange role")
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
	if orgCmdlets[cmd] && !tn.hasDirRole(m365.RoleExchangeAdministrator, m365.RoleGlobalAdministrator) {
		notRecognized(w, cmd)
		return
	}
	if f := tn.fault(cmd); f != nil {
		if f.Effect {
			tn.routeExchange(&discard{h: http.Header{}}, r, cmd, p)
		}
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
	tn.routeExchange(w, r, cmd, p)
}

func (tn *Tenant) routeExchange(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any) {
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
	case "Get-DkimSigningConfig", "New-DkimSigningConfig", "Set-DkimSigningConfig":
		tn.exoDkim(w, r, cmd, p, skip)
	case "Get-ArcConfig":
		// Get-ArcConfig shows ArcTrustedSealers as one comma-separated
		// string: Set-ArcConfig's examples 3 and 4 Split(",") it.
		tn.page(w, r, []any{map[string]any{"Identity": "Default", "ArcTrustedSealers": tn.arcSealers}}, 0)
	case "Set-ArcConfig":
		tn.exoSetArc(w, p)
	case "Get-MigrationEndpoint", "New-MigrationEndpoint", "Remove-MigrationEndpoint", "New-MigrationBatch", "Get-MigrationBatch",
		"Complete-MigrationBatch", "Start-MigrationBatch", "Remove-MigrationBatch", "Get-MigrationUser", "Get-MigrationUserStatistics":
		tn.exoMigration(w, r, cmd, p)
	case "Get-InboundConnector", "New-InboundConnector", "Set-InboundConnector":
		tn.exoConnector(w, r, cmd, p, skip)
	default:
		notRecognized(w, cmd)
	}
}

// exoSetArc follows Set-ArcConfig: Identity Default, ArcTrustedSealers a
// String[] that replaces the list, " " (one space) to empty it.
func (tn *Tenant) exoSetArc(w http.ResponseWriter, p map[string]any) {
	list, ok := p["ArcTrustedSealers"].([]any)
	if !ok || len(list) == 0 || str(p, "Identity") != "Default" {
		tn.exoViolate(w, "Set-ArcConfig wants Identity Default and ArcTrustedSealers as a String[], got %v", p)
		return
	}
	var out []string
	for _, v := range list {
		s, ok := v.(string)
		if !ok || strings.Contains(s, ",") {
			tn.exoViolate(w, "Set-ArcConfig: ArcTrustedSealers element %v is not one domain", v)
			return
		}
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	tn.arcSealers = strings.Join(out, ",")
	w.WriteHeader(204)
}

// warn answers 200 with an empty value and Exchange's warnings, which the
// REST endpoint carries in @adminapi.warnings (an array of strings, as
// ExoHelper's Invoke-ExoCommand.ps1 and CIPP's New-ExoRequest.ps1 read it).
func warn(w http.ResponseWriter, warnings ...string) {
	writeJSON(w, 200, map[string]any{"value": []any{}, "adminapi.warnings@odata.type": "#Collection(String)", "@adminapi.warnings": warnings})
}

func str(p map[string]any, k string) string {
	s, _ := p[k].(string)
	return s
}

// page answers a list, cut into pages with @odata.nextLink when a page size
// is set; the client must POST the same body to the link (the paging
// ExoHelper's Invoke-ExoCommand.ps1 and CIPP's New-ExoRequest.ps1 follow).
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

// missing answers a Get-* for an identity that does not exist: every
// object, as the Caution on the Identity parameter of the Get-* pages says
// (Get-Mailbox, Get-MailboxPermission, Get-RecipientPermission,
// Get-InboundConnector, Get-DkimSigningConfig: "a non-existent value for
// the Identity parameter returns *all* objects"), or the not-found error.
func (tn *Tenant) missing(w http.ResponseWriter, r *http.Request, id string, all []any, skip int) {
	if tn.getsAll {
		tn.page(w, r, all, skip)
		return
	}
	notFoundExo(w, id)
}

func (tn *Tenant) findMailbox(id string) *mailbox {
	id = strings.ToLower(id)
	if mb, ok := tn.mailboxes[id]; ok {
		return mb
	}
	for _, mb := range tn.mailboxes {
		if strings.EqualFold(mb.Alias, id) || strings.EqualFold(mb.UserPrincipalName, id) || strings.EqualFold(mb.Name, id) ||
			strings.EqualFold(mb.ExternalDirectoryObjectID, id) {
			return mb
		}
	}
	return nil
}

func (tn *Tenant) visibleMailboxes(kind string) []any {
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
	return all
}

// exoGetMailbox answers Get-Mailbox (Get-Mailbox page): by Identity, or a
// list filtered by RecipientTypeDetails, cut to ResultSize.
func (tn *Tenant) exoGetMailbox(w http.ResponseWriter, r *http.Request, p map[string]any, skip int) {
	if id := str(p, "Identity"); id != "" {
		mb := tn.findMailbox(id)
		if mb == nil {
			tn.missing(w, r, id, tn.visibleMailboxes(""), skip)
			return
		}
		if mb.pendingPolls > 0 {
			all := tn.visibleMailboxes("") // without this one, which is not there yet
			mb.pendingPolls--
			tn.missing(w, r, id, all, skip)
			return
		}
		tn.page(w, r, []any{mb.Mailbox}, 0)
		return
	}
	all := tn.visibleMailboxes(str(p, "RecipientTypeDetails"))
	if n, err := strconv.Atoi(fmt.Sprint(p["ResultSize"])); err == nil && n < len(all) {
		all = all[:n]
	}
	tn.page(w, r, all, skip)
}

// exoNewMailbox follows New-Mailbox -Shared: Name is required, "The maximum
// length is 64 characters" and "In the cloud-based service, many special
// characters aren't allowed in the Name value (for example, ö, ü, or ä)".
// The user object behind the mailbox is created enabled. (The error
// exception for a bad Name is not documented; DataValidationException is
// what Exchange uses for property constraints.)
func (tn *Tenant) exoNewMailbox(w http.ResponseWriter, p map[string]any) {
	if p["Shared"] != true {
		tn.exoViolate(w, "New-Mailbox without Shared: true would create a user mailbox: %v", p)
		return
	}
	addr, name := str(p, "PrimarySmtpAddress"), str(p, "Name")
	if addr == "" || name == "" {
		tn.exoViolate(w, "New-Mailbox wants Name and PrimarySmtpAddress: %v", p)
		return
	}
	if n := utf8.RuneCountInString(name); n > 64 {
		exoError(w, 400, "Ex2B1D7E", "Microsoft.Exchange.Data.DataValidationException",
			fmt.Sprintf("The length of the property is too long. The maximum length is 64 and the length of the value provided is %d.", n))
		return
	}
	for _, c := range name {
		if c > 0x7e || c < 0x20 {
			exoError(w, 400, "Ex2B1D7F", "Microsoft.Exchange.Data.DataValidationException",
				"The Name \""+name+"\" contains a character that isn't allowed in the cloud-based service.")
			return
		}
	}
	if tn.findMailbox(addr) != nil {
		exoError(w, 400, "Ex3A8F71", "Microsoft.Exchange.Data.Directory.ProxyAddressExistsException",
			"The proxy address \"SMTP:"+addr+"\" is already being used by the proxy addresses or LegacyExchangeDN.")
		return
	}
	// "The Name parameter specifies the unique name of the mailbox"
	// (New-Mailbox). Which exception Exchange Online raises for a Name in
	// use is not documented; an existing directory object is what it is.
	for _, mb := range tn.mailboxes {
		if strings.EqualFold(mb.Name, name) {
			exoError(w, 400, "Ex9C4E02", "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
				"The object '"+name+"' already exists.")
			return
		}
	}
	tn.addShared(addr, name, str(p, "DisplayName"), str(p, "Alias"))
	writeJSON(w, 200, map[string]any{"value": []any{tn.mailboxes[strings.ToLower(addr)].Mailbox}})
}

// permRows are the explicit rows of Get-MailboxPermission or
// Get-RecipientPermission for one mailbox, SELF included as every mailbox
// lists it.
func (tn *Tenant) permRows(cmd string, mb *mailbox) []any {
	key := strings.ToLower(mb.PrimarySmtpAddress)
	var all []any
	if cmd == "Get-MailboxPermission" {
		all = append(all, map[string]any{"Identity": mb.Identity, "User": "NT AUTHORITY\\SELF",
			"AccessRights": []string{"FullAccess", "ReadPermission"}, "IsInherited": false, "Deny": false})
		for _, pm := range tn.perms {
			if pm.mailbox == key && pm.right == m365.FullAccess {
				all = append(all, map[string]any{"Identity": mb.Identity, "User": pm.user, "AccessRights": []string{"FullAccess"},
					"IsInherited": false, "Deny": false})
			}
		}
		return all
	}
	all = append(all, map[string]any{"Identity": mb.Identity, "Trustee": "NT AUTHORITY\\SELF", "AccessControlType": "Allow",
		"AccessRights": []string{"SendAs"}, "IsInherited": false})
	for _, pm := range tn.perms {
		if pm.mailbox == key && pm.right == m365.SendAs {
			all = append(all, map[string]any{"Identity": mb.Identity, "Trustee": pm.user, "AccessControlType": "Allow",
				"AccessRights": []string{"SendAs"}, "IsInherited": false})
		}
	}
	return all
}

// exoGetPerms answers Get-MailboxPermission and Get-RecipientPermission
// (their pages): one row per trustee with Identity, User or Trustee,
// AccessRights, IsInherited, Deny or AccessControlType.
func (tn *Tenant) exoGetPerms(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any, skip int) {
	id := str(p, "Identity")
	mb := tn.findMailbox(id)
	if mb == nil || mb.pendingPolls > 0 {
		var all []any
		for _, m := range tn.visibleMailboxes("") {
			mbx := tn.findMailbox(m.(m365.Mailbox).PrimarySmtpAddress)
			all = append(all, tn.permRows(cmd, mbx)...)
		}
		tn.missing(w, r, id, all, skip)
		return
	}
	tn.page(w, r, tn.permRows(cmd, mb), skip)
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

// exoChangePerm answers Add-/Remove-MailboxPermission and
// Add-/Remove-RecipientPermission (their pages): AccessRights FullAccess with
// InheritanceType All, or SendAs; Remove-* with Confirm false.
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

// connectorOut is a connector as Get-InboundConnector shows it:
// SenderDomains are address spaces, "smtp:*;1" for *, in the
// AddressSpaceType:AddressSpace;AddressSpaceCost form New-SendConnector's
// AddressSpaces parameter documents (type and cost filled in).
//
// Every property shows, set or not, as Get-* output does: multi-valued ones
// (MultiValuedProperty on the New-InboundConnector page) as a list, empty
// when unset, the others with the defaults that page gives. RequireTls
// among them is true: "$true: Reject messages if they aren't sent over
// TLS. This is the default value" (New-InboundConnector, -RequireTls).
func connectorOut(c map[string]any) map[string]any {
	out := map[string]any{"Enabled": true, "ConnectorSource": "Default", "Comment": nil, "RequireTls": true,
		"RestrictDomainsToCertificate": false, "RestrictDomainsToIPAddresses": false, "TlsSenderCertificateName": nil,
		"EFSkipLastIP": false, "EFTestMode": false, "TreatMessagesAsInternal": false, "CloudServicesMailEnabled": false}
	for _, k := range []string{"SenderIPAddresses", "AssociatedAcceptedDomains", "ClientHostNames", "EFSkipIPs", "EFSkipMailGateway",
		"EFUsers", "ScanAndDropRecipients", "TrustedOrganizations"} {
		out[k] = []any{}
	}
	for k, v := range c {
		if v != nil {
			out[k] = v
		}
	}
	var spaces []string
	for _, d := range anyStrings(c["SenderDomains"]) {
		spaces = append(spaces, "smtp:"+d+";1")
	}
	out["SenderDomains"] = spaces
	return out
}

func anyStrings(v any) []string {
	switch x := v.(type) {
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case []string:
		return x
	case string:
		return []string{x}
	}
	return nil
}

func (tn *Tenant) allConnectors() []any {
	var all []any
	for _, k := range sortedKeys(tn.connectors) {
		all = append(all, connectorOut(tn.connectors[k]))
	}
	return all
}

// exoConnector answers Get-, New- and Set-InboundConnector (their pages);
// Set-* of values a connector already has answers with the warning Exchange
// gives for a no-op.
func (tn *Tenant) exoConnector(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any, skip int) {
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
		switch {
		case name == "":
			tn.page(w, r, tn.allConnectors(), skip)
		case c == nil:
			tn.missing(w, r, name, tn.allConnectors(), skip)
		default:
			tn.page(w, r, []any{connectorOut(c)}, 0)
		}
	case "New-InboundConnector":
		if c != nil {
			exoError(w, 400, "Ex5A2B11", "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException", "An inbound connector named "+name+" already exists.")
			return
		}
		if ct := str(p, "ConnectorType"); ct != "Partner" && ct != "OnPremises" {
			tn.exoViolate(w, "New-InboundConnector ConnectorType %q", ct)
			return
		}
		if len(anyStrings(p["SenderDomains"])) == 0 {
			tn.exoViolate(w, "New-InboundConnector: SenderDomains is required")
			return
		}
		c = map[string]any{"Identity": name, "Name": name, "Enabled": true, "EFSkipLastIP": false}
		for k, v := range p {
			if k != "Name" {
				c[k] = v
			}
		}
		tn.connectors[key] = c
		writeJSON(w, 200, map[string]any{"value": []any{connectorOut(c)}})
	case "Set-InboundConnector":
		if c == nil {
			notFoundExo(w, name)
			return
		}
		changed := false
		for k, v := range p {
			if k != "Identity" && !reflect.DeepEqual(c[k], v) {
				c[k], changed = v, true
			}
		}
		if !changed {
			// The warning every Set-* cmdlet gives for a no-op.
			warn(w, "The command completed successfully but no settings of '"+name+"' have been modified.")
			return
		}
		w.WriteHeader(204)
	}
}
