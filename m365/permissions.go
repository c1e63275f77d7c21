// SPDX-License-Identifier: MIT

package m365

import (
	"errors"
	"strings"
)

// Microsoft Entra built-in role template IDs, from the "Microsoft Entra
// built-in roles" page (learn.microsoft.com/entra/identity/
// role-based-access-control/permissions-reference). A role assignment's
// roleDefinitionId is the template ID for built-in roles.
const (
	RoleGlobalAdministrator            = "62e90394-69f5-4237-9190-012177145e10"
	RoleUserAdministrator              = "fe930be7-5e62-47db-91af-98c3a49a38b1"
	RoleExchangeAdministrator          = "29232cdf-9323-42fd-ade2-1d097af3e4de"
	RoleExchangeRecipientAdministrator = "31392ffb-586c-42d1-9346-e59415a2cc4e"
)

var roleNames = map[string]string{
	RoleGlobalAdministrator:            "Global Administrator",
	RoleUserAdministrator:              "User Administrator",
	RoleExchangeAdministrator:          "Exchange Administrator",
	RoleExchangeRecipientAdministrator: "Exchange Recipient Administrator",
}

// RoleName is a role's display name, or its ID when dualmx does not know it.
func RoleName(id string) string {
	if n, ok := roleNames[strings.ToLower(id)]; ok {
		return n
	}
	return id
}

// NeedKind is what sort of grant a Requirement is.
type NeedKind string

// The grants dualmx can need.
const (
	GraphPermission    NeedKind = "graph"    // an application permission of Microsoft Graph
	ExchangePermission NeedKind = "exchange" // an application permission of Office 365 Exchange Online
	EntraRole          NeedKind = "role"     // a Microsoft Entra role on the app's service principal
	TenantLicence      NeedKind = "licence"  // a licence the tenant must have
)

// Requirement is one grant: any one of AnyOf satisfies it, least privileged
// first (the one dualmx asks for).
type Requirement struct {
	Kind  NeedKind
	AnyOf []string
	Why   string
	// Unverified says what Microsoft does not document about this grant,
	// when dualmx asks for it on other evidence; m365 check and a refusal
	// say so beside it.
	Unverified string
}

// Name says what is needed, e.g. "Graph application permission Mail.Send".
func (r Requirement) Name() string {
	switch r.Kind {
	case GraphPermission:
		return "Microsoft Graph application permission " + r.AnyOf[0]
	case ExchangePermission:
		return "Office 365 Exchange Online application permission " + r.AnyOf[0]
	case EntraRole:
		return "Entra role " + RoleName(r.AnyOf[0])
	}
	return r.AnyOf[0]
}

// Grant is the admin-center step that gives the app the requirement.
func (r Requirement) Grant() string {
	switch r.Kind {
	case GraphPermission:
		return "Entra admin center › App registrations › dualmx › API permissions › Add a permission › Microsoft Graph › " +
			"Application permissions › " + r.AnyOf[0] + "; then Grant admin consent"
	case ExchangePermission:
		return "Entra admin center › App registrations › dualmx › API permissions › Add a permission › APIs my organization uses › " +
			"Office 365 Exchange Online › Application permissions › " + r.AnyOf[0] + "; then Grant admin consent"
	case EntraRole:
		return "Entra admin center › Roles & admins › " + RoleName(r.AnyOf[0]) + " › Add assignments › select the dualmx app " +
			"(a new assignment can take up to an hour to work)"
	}
	return "Microsoft 365 admin center › Billing › Purchase services › " + r.AnyOf[0] + " (or a plan that includes it)"
}

// satisfiedBy reports whether any of the held grants satisfies r.
func (r Requirement) satisfiedBy(held []string) bool {
	for _, a := range r.AnyOf {
		for _, h := range held {
			if strings.EqualFold(a, h) {
				return true
			}
		}
	}
	return false
}

// What each operation needs. The Graph lists are the permission tables of
// the Graph API reference page named with each, least privileged first;
// the Exchange roles are the Entra roles that app-only Exchange Online
// accepts (app-only-auth-powershell-v2: Exchange Administrator for
// everything, Exchange Recipient Administrator for recipients). Everything dualmx knows about permissions is
// here: a guess that turns out wrong is corrected in this one table, and
// both `dualmx m365 check` and the error of a refused call quote it.
var (
	// user-get
	NeedReadUsers = Requirement{Kind: GraphPermission, AnyOf: []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"},
		Why: "read accounts"}
	// user-post-users, user-update
	NeedWriteUsers = Requirement{Kind: GraphPermission, AnyOf: []string{"User.ReadWrite.All", "Directory.ReadWrite.All"},
		Why: "create accounts, set usage location, block sign-in of shared mailboxes"}
	// user-assignlicense
	NeedAssignLicence = Requirement{Kind: GraphPermission, AnyOf: []string{"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"},
		Why: "assign licences"}
	// subscribedsku-list
	NeedReadSKUs = Requirement{Kind: GraphPermission, AnyOf: []string{"LicenseAssignment.Read.All", "Organization.Read.All", "Directory.Read.All",
		"LicenseAssignment.ReadWrite.All", "Organization.ReadWrite.All", "Directory.ReadWrite.All"},
		Why: "read the tenant's licences"}
	// user-sendmail
	NeedSendMail = Requirement{Kind: GraphPermission, AnyOf: []string{"Mail.Send"},
		Why: "send welcome mails"}
	// user-post-messages, mailfolder-post-childfolders
	NeedWriteMail = Requirement{Kind: GraphPermission, AnyOf: []string{"Mail.ReadWrite"},
		Why: "copy old mail into a mailbox"}
	// domain-list-serviceconfigurationrecords
	NeedReadDomains = Requirement{Kind: GraphPermission, AnyOf: []string{"Domain.Read.All", "Directory.Read.All", "Domain.ReadWrite.All", "Directory.ReadWrite.All"},
		Why: "read the DNS records the tenant expects"}
	// user-get with $select=signInActivity (resources/signinactivity)
	NeedAuditLog = Requirement{Kind: GraphPermission, AnyOf: []string{"AuditLog.Read.All"},
		Why: "read when a holder last signed in"}
	// rbacapplication-list-roleassignments; only m365 check uses it
	NeedReadRoles = Requirement{Kind: GraphPermission, AnyOf: []string{"RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All",
		"RoleManagement.ReadWrite.Directory", "Directory.ReadWrite.All"},
		Why: "let m365 check see the app's Entra roles (optional)"}
	// user-update, passwordProfile: app-only also needs this role
	NeedUserAdministrator = Requirement{Kind: EntraRole, AnyOf: []string{RoleUserAdministrator, RoleGlobalAdministrator},
		Why: "reset a temporary password to send a new welcome mail"}
	// app-only-auth-powershell-v2
	NeedManageAsApp = Requirement{Kind: ExchangePermission, AnyOf: []string{"Exchange.ManageAsApp"},
		Why: "run Exchange Online cmdlets"}
	NeedRecipientAdministrator = Requirement{Kind: EntraRole, AnyOf: []string{RoleExchangeRecipientAdministrator, RoleExchangeAdministrator, RoleGlobalAdministrator},
		Why: "shared mailboxes, FullAccess and SendAs"}
	NeedExchangeAdministrator = Requirement{Kind: EntraRole, AnyOf: []string{RoleExchangeAdministrator, RoleGlobalAdministrator},
		Why: "inbound connector, trusted ARC sealers, DKIM signing"}
	// The migration cmdlets (New-/Get-/Remove-MigrationEndpoint,
	// New-/Get-/Start-/Complete-/Remove-MigrationBatch, Get-MigrationUser*)
	// with Exchange Administrator, as Microsoft365DSC's migration resources
	// ask. Exchange Recipient Administrator may be enough: its role group,
	// Recipient Management, holds the Migration role; whether that holds
	// app-only is not verified, so it is not accepted here.
	NeedMigrationAdministrator = Requirement{Kind: EntraRole, AnyOf: []string{RoleExchangeAdministrator, RoleGlobalAdministrator},
		Why: "Microsoft's IMAP migration: migration endpoints and batches",
		Unverified: "whether Exchange Recipient Administrator (whose role group holds the Migration role) is enough app-only is not verified; " +
			"Exchange Administrator is what Microsoft365DSC's migration resources ask for"}
	// resources/signinactivity: sign-in activity needs a premium tenant
	NeedEntraP1 = Requirement{Kind: TenantLicence, AnyOf: []string{"Microsoft Entra ID P1"},
		Why: "Microsoft 365 reports sign-in activity only with it"}
)

// CommandNeeds is what one dualmx command needs of the tenant.
type CommandNeeds struct {
	Command string
	Needs   []Requirement
}

// Commands lists the requirements of every command that talks to
// Microsoft 365; docs/microsoft-365.md shows the same table.
var Commands = []CommandNeeds{
	{"provision plan|apply, access report", []Requirement{NeedWriteUsers, NeedAssignLicence, NeedReadSKUs, NeedSendMail, NeedUserAdministrator,
		NeedManageAsApp, NeedRecipientAdministrator}},
	{"m365 setup|teardown", []Requirement{NeedManageAsApp, NeedExchangeAdministrator}},
	{"dns check, cutover (expected records from the tenant)", []Requirement{NeedReadDomains, NeedManageAsApp, NeedExchangeAdministrator}},
	{"import", []Requirement{NeedManageAsApp, NeedMigrationAdministrator, NeedWriteMail}},
	{"address checklist (sign-in evidence)", []Requirement{NeedReadUsers, NeedAuditLog, NeedEntraP1}},
}

// needError names what a refused call lacks.
type needError struct {
	err  error
	need []Requirement
}

func (e *needError) Error() string {
	var b strings.Builder
	b.WriteString(e.err.Error())
	for _, n := range e.need {
		why := n.Why
		if n.Unverified != "" {
			why += "; unverified: " + n.Unverified
		}
		b.WriteString("\n  needs " + n.Name() + " (" + why + "): " + n.Grant())
	}
	return b.String()
}

func (e *needError) Unwrap() error { return e.err }

// ErrNotPermitted means the tenant refused a call for want of a permission
// or role; the error names which and how to grant it.
var ErrNotPermitted = errors.New("not permitted")

func (e *needError) Is(target error) bool { return target == ErrNotPermitted }

// WithNeed adds the requirements to err when Microsoft refused the call as
// not permitted, so the admin reads what to grant instead of "Insufficient
// privileges"; other errors pass unchanged. For callers of the cmdlets
// outside this package (the import's migration cmdlets).
func WithNeed(err error, need ...Requirement) error { return withNeed(err, need...) }

func withNeed(err error, need ...Requirement) error {
	var named *needError
	if err == nil || !refused(err) || errors.As(err, &named) {
		return err
	}
	return &needError{err: err, need: need}
}

// refused reports a call denied for want of rights: Graph's 403
// Authorization_RequestDenied (directory calls) or ErrorAccessDenied (the
// mail calls, which Exchange serves behind Graph: "Access is denied. Check
// credentials and try again."), Exchange's 401/403, and a cmdlet that the
// app's Exchange roles do not include, which Exchange reports as a term
// that "is not recognized".
func refused(err error) bool {
	var ge *GraphError
	if errors.As(err, &ge) {
		return ge.Status == 403 && (ge.Code == "Authorization_RequestDenied" || ge.Code == "ErrorAccessDenied" || ge.Code == "")
	}
	var xe *ExchangeError
	if errors.As(err, &xe) {
		return xe.Status == 401 || xe.Status == 403 || strings.HasSuffix(xe.Exception, "CommandNotFoundException")
	}
	return false
}
