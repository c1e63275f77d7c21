// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dualmx/dualmx/m365"
)

// graphError answers in Graph's error shape (learn.microsoft.com/graph/errors:
// "Error resource type": code, message, innerError, details).
func graphError(w http.ResponseWriter, status int, code, msg string, details ...string) {
	body := map[string]any{"code": code, "message": msg,
		"innerError": map[string]any{"request-id": "00000000-0000-0000-0000-000000000000", "date": "2026-01-01T00:00:00"}}
	if len(details) > 0 {
		var ds []map[string]string
		for _, d := range details {
			ds = append(ds, map[string]string{"target": "userPrincipalName", "code": d})
		}
		body["details"] = ds
	}
	writeJSON(w, status, map[string]any{"error": body})
}

// violation answers a request whose shape is wrong and remembers it.
func (tn *Tenant) graphViolate(w http.ResponseWriter, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	tn.graphViolation = append(tn.graphViolation, msg)
	tn.t.Logf("m365test graph: %s", msg)
	graphError(w, 400, "Request_BadRequest", msg)
}

// graphPermission is the application permissions a call accepts, from the
// Permissions table of the Graph API reference page named with each; any
// one of them in the token's roles claim lets the call through.
func graphPermission(method string, parts []string) []string {
	switch {
	case len(parts) >= 3 && parts[0] == "users" && (parts[2] == "mailFolders" || parts[2] == "messages"):
		if method == http.MethodGet { // mailfolder-list, mailfolder-list-childfolders, user-list-messages, message-get
			return []string{"Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite"}
		}
		// mailfolder-post-childfolders, user-post-messages, attachment-createuploadsession, message-delete
		return []string{"Mail.ReadWrite"}
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "sendMail": // user-sendmail
		return []string{"Mail.Send"}
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "assignLicense": // user-assignlicense
		return []string{"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
	case parts[0] == "users" && method == http.MethodGet: // user-get, user-list
		return []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	case parts[0] == "users": // user-post-users, user-update
		return []string{"User.ReadWrite.All", "Directory.ReadWrite.All"}
	case parts[0] == "subscribedSkus": // subscribedsku-list
		return []string{"LicenseAssignment.Read.All", "Organization.Read.All", "Directory.Read.All", "LicenseAssignment.ReadWrite.All",
			"Organization.ReadWrite.All", "Directory.ReadWrite.All"}
	case parts[0] == "domains": // domain-list-serviceconfigurationrecords, domain-list-verificationdnsrecords
		return []string{"Domain.Read.All", "Directory.Read.All", "Domain.ReadWrite.All", "Directory.ReadWrite.All"}
	case parts[0] == "roleManagement": // rbacapplication-list-roleassignments
		return []string{"RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All",
			"RoleManagement.ReadWrite.Directory", "Directory.ReadWrite.All"}
	}
	return nil
}

func holds(c Claims, any []string) bool {
	for _, p := range any {
		if slices.Contains(c.Roles, p) {
			return true
		}
	}
	return false
}

// denied is Graph's answer to a call the token's permissions do not cover
// (learn.microsoft.com/graph/errors: 403 Forbidden, Authorization_RequestDenied).
// The mail calls (mail folders, messages, sendMail) are answered by
// Exchange behind Graph, which says ErrorAccessDenied instead (seen in
// microsoftgraph/microsoft-graph-docs issue 9429 and the SDKs' issue
// trackers; the errors page lists only the generic codes).
func denied(w http.ResponseWriter, parts []string) {
	if len(parts) >= 3 && parts[0] == "users" && (parts[2] == "mailFolders" || parts[2] == "messages" || parts[2] == "sendMail") {
		graphError(w, 403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
		return
	}
	graphError(w, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

// discard takes a reply nobody reads: a call that takes effect before a
// fault answers in its place.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func (tn *Tenant) serveGraph(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.requests = append(tn.requests, Request{Service: "graph", Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body,
		Auth: r.Header.Get("Authorization")})
	if err != nil {
		tn.graphViolate(w, "unreadable body: %v", err)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/upload/") {
		// An upload session's URL, pre-authenticated by its own token.
		tn.serveUpload(w, r, body)
		return
	}
	claims, err := tn.verify(r.Header.Get("Authorization"), GraphAudience)
	if err != nil {
		// learn.microsoft.com/graph/errors: 401 InvalidAuthenticationToken.
		graphError(w, 401, "InvalidAuthenticationToken", "Access token validation failure: "+err.Error())
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1.0")
	if path == r.URL.Path {
		tn.graphViolate(w, "path %s is not under /v1.0", r.URL.Path)
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if need := graphPermission(r.Method, parts); need != nil && !holds(claims, need) {
		denied(w, parts)
		return
	}
	if f := tn.fault(r.Method + " " + path); f != nil {
		if f.Effect {
			tn.routeGraph(&discard{h: http.Header{}}, r, path, parts, body, claims)
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		code := f.Code
		if code == "" {
			code = map[int]string{429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable", 504: "GatewayTimeout"}[f.Status]
		}
		graphError(w, f.Status, code, f.Message, f.Details...)
		return
	}
	tn.routeGraph(w, r, path, parts, body, claims)
}

func (tn *Tenant) routeGraph(w http.ResponseWriter, r *http.Request, path string, parts []string, body []byte, claims Claims) {
	if len(parts) >= 3 && parts[0] == "users" && parts[2] == "mailFolders" {
		tn.serveMailFolders(w, r, parts, body)
		return
	}
	if len(parts) >= 3 && parts[0] == "users" && parts[2] == "messages" {
		tn.serveMessages(w, r, parts, body)
		return
	}
	if len(body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		tn.graphViolate(w, "%s %s: Content-Type %q, want application/json", r.Method, path, r.Header.Get("Content-Type"))
		return
	}
	switch {
	case len(parts) == 3 && parts[0] == "domains" && r.Method == "GET":
		tn.serveDomain(w, parts[1], parts[2])
	case r.Method == "GET" && path == "/subscribedSkus":
		tn.listSKUs(w)
	case r.Method == "GET" && path == "/roleManagement/directory/roleAssignments":
		tn.listRoleAssignments(w, r)
	case r.Method == "POST" && path == "/users":
		tn.createUser(w, body)
	case r.Method == "GET" && path == "/users":
		tn.listUsers(w, r, claims)
	case len(parts) == 2 && parts[0] == "users" && r.Method == "GET":
		tn.getUser(w, r, parts[1], claims)
	case len(parts) == 2 && parts[0] == "users" && r.Method == "PATCH":
		tn.patchUser(w, parts[1], body)
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "assignLicense" && r.Method == "POST":
		tn.assignLicense(w, parts[1], body)
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "sendMail" && r.Method == "POST":
		tn.sendMail(w, parts[1], body)
	default:
		graphError(w, 400, "BadRequest", "Resource not found for the segment '"+path+"'.")
	}
}

// listRoleAssignments answers GET /roleManagement/directory/roleAssignments
// with $filter=principalId eq '…' (rbacapplication-list-roleassignments).
func (tn *Tenant) listRoleAssignments(w http.ResponseWriter, r *http.Request) {
	f := r.URL.Query().Get("$filter")
	id, ok := strings.CutPrefix(f, "principalId eq '")
	if !ok || !strings.HasSuffix(id, "'") {
		tn.graphViolate(w, "roleAssignments: unsupported $filter %q", f)
		return
	}
	id = strings.TrimSuffix(id, "'")
	vals := []any{}
	if id == ServicePrincipalID {
		for i, role := range tn.dirRoles {
			vals = append(vals, map[string]any{"id": fmt.Sprintf("assignment-%d", i), "principalId": id, "roleDefinitionId": role,
				"directoryScopeId": "/"})
		}
	}
	writeJSON(w, 200, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#roleManagement/directory/roleAssignments",
		"value": vals})
}

// lookup finds a user by ID or UPN; a user still lagging answers nil.
func (tn *Tenant) lookup(key string) *user {
	if u, ok := tn.users[key]; ok {
		if tn.lag[key] > 0 {
			tn.lag[key]--
			return nil
		}
		return u
	}
	for _, u := range tn.users {
		if strings.EqualFold(u.UPN, key) {
			return u
		}
	}
	return nil
}

// notFound is Graph's 404 for a user it does not have (user-get; the
// Request_ResourceNotFound shape of learn.microsoft.com/graph/errors).
func notFound(w http.ResponseWriter, key string) {
	graphError(w, 404, "Request_ResourceNotFound",
		"Resource '"+key+"' does not exist or one of its queried reference-property objects are not present.")
}

// userJSON is a user resource (resources/user): the default properties, and
// usageLocation, accountEnabled and assignedLicenses only when selected.
func (tn *Tenant) userJSON(u *user, sel []string) map[string]any {
	all := map[string]any{"id": u.ID, "userPrincipalName": u.UPN, "displayName": u.DisplayName, "givenName": u.GivenName,
		"surname": u.Surname, "mail": u.UPN, "accountEnabled": u.Enabled}
	lic := []map[string]any{}
	for _, s := range u.SKUs {
		lic = append(lic, map[string]any{"skuId": s, "disabledPlans": []string{}})
	}
	// As in Graph: usageLocation, accountEnabled and assignedLicenses come
	// only when selected.
	extra := map[string]any{"usageLocation": nilIfEmpty(u.UsageLocation), "assignedLicenses": lic}
	if len(sel) == 0 {
		delete(all, "accountEnabled")
		return all
	}
	out := map[string]any{}
	for _, k := range sel {
		if v, ok := all[k]; ok {
			out[k] = v
		} else if v, ok := extra[k]; ok {
			out[k] = v
		}
	}
	return out
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// getUser answers GET /users/{id | userPrincipalName} (user-get).
func (tn *Tenant) getUser(w http.ResponseWriter, r *http.Request, key string, claims Claims) {
	u := tn.lookup(key)
	if u == nil {
		notFound(w, key)
		return
	}
	sel := selected(r)
	if slices.Contains(sel, "signInActivity") {
		act, ok := tn.signInActivity(w, u, claims)
		if !ok {
			return
		}
		out := tn.userJSON(u, slices.DeleteFunc(slices.Clone(sel), func(s string) bool { return s == "signInActivity" }))
		out["signInActivity"] = act
		writeJSON(w, 200, out)
		return
	}
	writeJSON(w, 200, tn.userJSON(u, sel))
}

func selected(r *http.Request) []string {
	if s := r.URL.Query().Get("$select"); s != "" {
		return strings.Split(s, ",")
	}
	return nil
}

// signInActivity is a user's signInActivity (resources/signinactivity):
// lastSignInDateTime counts failed interactive attempts too,
// lastSuccessfulSignInDateTime only successes. Reading it needs
// AuditLog.Read.All and a tenant with Entra ID P1 (user-get, "Optional query
// parameters"; the 403 codes are those Graph answers without either).
func (tn *Tenant) signInActivity(w http.ResponseWriter, u *user, claims Claims) (map[string]any, bool) {
	if !holds(claims, []string{"AuditLog.Read.All"}) {
		graphError(w, 403, "Authorization_RequestDenied", "Calling principal does not have required MSGraph permissions AuditLog.Read.All")
		return nil, false
	}
	if !tn.premium {
		graphError(w, 403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "Neither tenant is B2C or tenant doesn't have premium license")
		return nil, false
	}
	s := tn.signIns[strings.ToLower(u.UPN)]
	stamp := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.UTC().Format(time.RFC3339)
	}
	return map[string]any{"lastSignInDateTime": stamp(s.attempt), "lastSuccessfulSignInDateTime": stamp(s.success),
		"lastNonInteractiveSignInDateTime": nil}, true
}

// listUsers answers GET /users with $top and $select (user-list).
func (tn *Tenant) listUsers(w http.ResponseWriter, r *http.Request, claims Claims) {
	top := len(tn.users)
	if v := r.URL.Query().Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 999 {
			graphError(w, 400, "Request_UnsupportedQuery", "Invalid page size specified: '"+v+"'. Must be between 1 and 999 inclusive.")
			return
		}
		top = min(top, n)
	}
	ids := make([]string, 0, len(tn.users))
	for id := range tn.users {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	sel := selected(r)
	vals := []any{}
	for _, id := range ids[:top] {
		u := tn.users[id]
		out := tn.userJSON(u, slices.DeleteFunc(slices.Clone(sel), func(s string) bool { return s == "signInActivity" }))
		if slices.Contains(sel, "signInActivity") {
			act, ok := tn.signInActivity(w, u, claims)
			if !ok {
				return
			}
			out["signInActivity"] = act
		}
		vals = append(vals, out)
	}
	writeJSON(w, 200, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": vals})
}

type passwordProfile struct {
	Password    *string `json:"password"`
	ForceChange *bool   `json:"forceChangePasswordNextSignIn"`
}

type userBody struct {
	AccountEnabled    *bool            `json:"accountEnabled"`
	DisplayName       *string          `json:"displayName"`
	GivenName         *string          `json:"givenName"`
	Surname           *string          `json:"surname"`
	MailNickname      *string          `json:"mailNickname"`
	UserPrincipalName *string          `json:"userPrincipalName"`
	UsageLocation     *string          `json:"usageLocation"`
	PasswordProfile   *passwordProfile `json:"passwordProfile"`
}

// upnChars are the characters Entra allows in a UPN's local part.
const upnChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'.-_!#^~"

// createUser answers POST /users (user-post-users): 201 with the user; the
// required properties; a UPN in a verified domain with the allowed
// characters; a duplicate UPN as 400 Request_BadRequest with
// details[].code ObjectConflict.
func (tn *Tenant) createUser(w http.ResponseWriter, body []byte) {
	var b userBody
	if err := json.Unmarshal(body, &b); err != nil {
		tn.graphViolate(w, "POST /users: body is not JSON: %v", err)
		return
	}
	switch {
	case b.AccountEnabled == nil || b.DisplayName == nil || b.MailNickname == nil || b.UserPrincipalName == nil || b.PasswordProfile == nil:
		tn.graphViolate(w, "POST /users: accountEnabled, displayName, mailNickname, userPrincipalName and passwordProfile are required")
		return
	case b.PasswordProfile.Password == nil || *b.PasswordProfile.Password == "":
		tn.graphViolate(w, "POST /users: passwordProfile.password is required")
		return
	}
	local, dom, ok := strings.Cut(*b.UserPrincipalName, "@")
	if !ok || !strings.EqualFold(dom, tn.Domain) {
		graphError(w, 400, "Request_BadRequest", "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.")
		return
	}
	for _, c := range local {
		if !strings.ContainsRune(upnChars, c) {
			graphError(w, 400, "Request_BadRequest", "Property userPrincipalName is invalid.")
			return
		}
	}
	for _, u := range tn.users {
		if strings.EqualFold(u.UPN, *b.UserPrincipalName) {
			graphError(w, 400, "Request_BadRequest", "Another object with the same value for property userPrincipalName already exists.", "ObjectConflict")
			return
		}
	}
	u := &user{ID: tn.newID(), UPN: *b.UserPrincipalName, DisplayName: *b.DisplayName, MailNickname: *b.MailNickname,
		Enabled: *b.AccountEnabled, Password: *b.PasswordProfile.Password}
	if b.PasswordProfile.ForceChange != nil {
		u.ForceChange = *b.PasswordProfile.ForceChange
	}
	if b.GivenName != nil {
		u.GivenName = *b.GivenName
	}
	if b.Surname != nil {
		u.Surname = *b.Surname
	}
	if b.UsageLocation != nil {
		u.UsageLocation = *b.UsageLocation
	}
	tn.users[u.ID] = u
	tn.lag[u.ID] = tn.lagAfterCreate
	writeJSON(w, 201, tn.userJSON(u, []string{"id", "userPrincipalName", "displayName", "givenName", "surname", "mail"}))
}

// patchUser answers PATCH /users/{id} (user-update).
func (tn *Tenant) patchUser(w http.ResponseWriter, key string, body []byte) {
	u := tn.lookup(key)
	if u == nil {
		notFound(w, key)
		return
	}
	var b userBody
	if err := json.Unmarshal(body, &b); err != nil {
		tn.graphViolate(w, "PATCH /users: body is not JSON: %v", err)
		return
	}
	if p := b.PasswordProfile; p != nil {
		if p.Password == nil || *p.Password == "" {
			tn.graphViolate(w, "PATCH /users: passwordProfile without password")
			return
		}
		// user-update, passwordProfile: "In application-only access, the
		// calling app must be assigned the User.ReadWrite.All application
		// permission and at least the User Administrator Microsoft Entra role."
		if !tn.hasDirRole(m365.RoleUserAdministrator, m365.RoleGlobalAdministrator) {
			denied(w, nil)
			return
		}
		u.Password = *p.Password
		u.ForceChange = p.ForceChange != nil && *p.ForceChange
	}
	if b.UsageLocation != nil {
		u.UsageLocation = *b.UsageLocation
	}
	if b.AccountEnabled != nil {
		u.Enabled = *b.AccountEnabled
	}
	// user-update: 204 No Content.
	w.WriteHeader(204)
}

// listSKUs answers GET /subscribedSkus (subscribedsku-list).
func (tn *Tenant) listSKUs(w http.ResponseWriter) {
	var out []map[string]any
	for _, s := range tn.skus {
		out = append(out, map[string]any{"skuId": s.ID, "skuPartNumber": s.PartNumber, "capabilityStatus": "Enabled",
			"appliesTo": "User", "consumedUnits": s.Used, "prepaidUnits": map[string]any{"enabled": s.Enabled, "suspended": 0, "warning": 0}})
	}
	writeJSON(w, 200, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus", "value": out})
}

// assignLicense answers POST /users/{id}/assignLicense (user-assignlicense):
// both addLicenses and removeLicenses are required; a user without a usage
// location cannot be licensed.
func (tn *Tenant) assignLicense(w http.ResponseWriter, key string, body []byte) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		tn.graphViolate(w, "assignLicense: body is not JSON: %v", err)
		return
	}
	if _, ok := raw["removeLicenses"]; !ok {
		graphError(w, 400, "Request_BadRequest", "One or more parameters of the operation 'assignLicense' are missing from the request payload. The missing parameters are: removeLicenses.")
		return
	}
	if _, ok := raw["addLicenses"]; !ok {
		graphError(w, 400, "Request_BadRequest", "One or more parameters of the operation 'assignLicense' are missing from the request payload. The missing parameters are: addLicenses.")
		return
	}
	var b struct {
		Add []struct {
			SkuID string `json:"skuId"`
		} `json:"addLicenses"`
		Remove []string `json:"removeLicenses"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		tn.graphViolate(w, "assignLicense: %v", err)
		return
	}
	u := tn.lookup(key)
	if u == nil {
		notFound(w, key)
		return
	}
	if u.UsageLocation == "" {
		graphError(w, 400, "Request_BadRequest", "License assignment cannot be done for user with invalid usage location.")
		return
	}
	for _, a := range b.Add {
		found := false
		for i := range tn.skus {
			if strings.EqualFold(tn.skus[i].ID, a.SkuID) {
				found = true
				if tn.skus[i].Used >= tn.skus[i].Enabled {
					graphError(w, 400, "Request_BadRequest", "License assignment failed because no more licenses are available.")
					return
				}
				tn.skus[i].Used++
			}
		}
		if !found {
			graphError(w, 400, "Request_BadRequest", "License "+a.SkuID+" does not correspond to a valid company License.")
			return
		}
		u.SKUs = append(u.SKUs, strings.ToLower(a.SkuID))
	}
	if _, ok := tn.mailboxes[strings.ToLower(u.UPN)]; !ok {
		tn.mailboxes[strings.ToLower(u.UPN)] = &mailbox{pendingPolls: tn.mailboxDelay}
		mb := tn.mailboxes[strings.ToLower(u.UPN)]
		mb.Identity, mb.PrimarySmtpAddress, mb.UserPrincipalName = u.UPN, u.UPN, u.UPN
		mb.DisplayName, mb.Alias, mb.RecipientTypeDetails = u.DisplayName, u.MailNickname, "UserMailbox"
	}
	writeJSON(w, 200, tn.userJSON(u, []string{"id", "userPrincipalName"}))
}

// sendMail answers POST /users/{id}/sendMail (user-sendmail): 202 Accepted
// with no body.
func (tn *Tenant) sendMail(w http.ResponseWriter, key string, body []byte) {
	from, _ := url.PathUnescape(key)
	var b struct {
		Message *struct {
			Subject string `json:"subject"`
			Body    struct {
				ContentType string `json:"contentType"`
				Content     string `json:"content"`
			} `json:"body"`
			To []struct {
				EmailAddress struct {
					Address string `json:"address"`
				} `json:"emailAddress"`
			} `json:"toRecipients"`
		} `json:"message"`
		SaveToSentItems *bool `json:"saveToSentItems"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Message == nil || len(b.Message.To) == 0 {
		tn.graphViolate(w, "sendMail: want message with toRecipients (%v)", err)
		return
	}
	ct := strings.ToLower(b.Message.Body.ContentType)
	if ct != "text" && ct != "html" {
		tn.graphViolate(w, "sendMail: body.contentType %q", b.Message.Body.ContentType)
		return
	}
	if tn.lookup(from) == nil {
		if _, ok := tn.mailboxes[strings.ToLower(from)]; !ok {
			graphError(w, 404, "ErrorInvalidUser", "The requested user '"+from+"' is invalid.")
			return
		}
	}
	m := SentMail{From: from, To: b.Message.To[0].EmailAddress.Address, Subject: b.Message.Subject, ContentType: ct,
		Body: b.Message.Body.Content, SaveToSentItems: b.SaveToSentItems == nil || *b.SaveToSentItems}
	tn.mails = append(tn.mails, m)
	w.WriteHeader(http.StatusAccepted)
}
