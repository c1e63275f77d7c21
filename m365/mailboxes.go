// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Mailbox is the part of Get-Mailbox's output dualmx reads.
type Mailbox struct {
	Identity             string `json:"Identity"`
	Name                 string `json:"Name"`
	Alias                string `json:"Alias"`
	DisplayName          string `json:"DisplayName"`
	PrimarySmtpAddress   string `json:"PrimarySmtpAddress"`
	UserPrincipalName    string `json:"UserPrincipalName"`
	RecipientTypeDetails string `json:"RecipientTypeDetails"` // UserMailbox, SharedMailbox, ...
	// ExternalDirectoryObjectID is the Entra object ID of the user behind
	// the mailbox, the ID Graph knows it by.
	ExternalDirectoryObjectID string `json:"ExternalDirectoryObjectId"`
}

// Grant is one access right of one user on one mailbox, as read back.
type Grant struct {
	Mailbox string
	User    string // as Exchange names the trustee; compare with SamePrincipal
	Right   Right
}

// Right is FullAccess (Add-MailboxPermission) or SendAs (Add-RecipientPermission).
type Right string

// The two rights a function holder gets.
const (
	FullAccess Right = "FullAccess"
	SendAs     Right = "SendAs"
)

// Exchange is the typed face of the cmdlets dualmx runs. It reads before it
// writes wherever Exchange's behaviour on a repeated write is unknown.
type Exchange struct {
	Cmd   Commander
	Retry Retry
}

// NewExchangeOps wraps a Commander.
func NewExchangeOps(c Commander, r Retry) *Exchange {
	return &Exchange{Cmd: c, Retry: r.withDefaults()}
}

func decodeAll[T any](raw []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(raw))
	for _, r := range raw {
		var v T
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// GetMailbox reads one mailbox; a missing one is ErrNotFound. The reply is
// filtered on the identity asked for: for an identity that does not exist
// Get-Mailbox may answer every mailbox (identity.go).
func (x *Exchange) GetMailbox(ctx context.Context, identity string) (Mailbox, error) {
	raw, err := x.Cmd.Invoke(ctx, "Get-Mailbox", map[string]any{"Identity": identity})
	if err != nil {
		return Mailbox{}, withNeed(err, NeedManageAsApp, NeedRecipientAdministrator)
	}
	return pick("Get-Mailbox", identity, raw, func(m Mailbox) bool { return m.Matches(identity) })
}

// WaitMailbox waits for a mailbox to exist: a newly licensed user's
// mailbox, or a shared mailbox just created, appears only after a while,
// and permission cmdlets fail until it does.
func (x *Exchange) WaitMailbox(ctx context.Context, identity string) (Mailbox, error) {
	var mb Mailbox
	err := x.Retry.waitFound(ctx, x.Retry.MailboxWait, func() error {
		var err error
		mb, err = x.GetMailbox(ctx, identity)
		return err
	})
	return mb, err
}

// SharedMailboxes lists every shared mailbox of the tenant (paged).
func (x *Exchange) SharedMailboxes(ctx context.Context) ([]Mailbox, error) {
	raw, err := x.Cmd.Invoke(ctx, "Get-Mailbox", map[string]any{"RecipientTypeDetails": "SharedMailbox", "ResultSize": "Unlimited"})
	if err != nil {
		return nil, withNeed(err, NeedManageAsApp, NeedRecipientAdministrator)
	}
	return decodeAll[Mailbox](raw)
}

// NewSharedMailbox creates a shared mailbox. The display name is kept as
// given; Name, which Exchange Online limits to 64 characters without
// letters such as ö, is its ASCII fold (MailboxName).
//
// A create that Exchange carried out but whose reply was lost (a 5xx, a
// timeout) is retried by the client and then meets its own mailbox as
// "already exists"; a conflict is therefore looked up, and a shared mailbox
// with this very address is what was asked for.
//
// Name is "the unique name of the mailbox" (New-Mailbox): another recipient
// may already carry it (a function named like a person, or two display
// names that fold alike). A conflict that is not this mailbox is therefore
// tried once more with the alias added to the Name, which the address
// keeps unique.
func (x *Exchange) NewSharedMailbox(ctx context.Context, address, displayName string) (Mailbox, error) {
	alias := strings.SplitN(address, "@", 2)[0]
	create := func(name string) ([]json.RawMessage, error) {
		return x.Cmd.Invoke(ctx, "New-Mailbox", map[string]any{
			"Shared": true, "Name": name, "DisplayName": displayName, "Alias": alias, "PrimarySmtpAddress": address,
		})
	}
	name := MailboxName(displayName, alias)
	raw, err := create(name)
	if errors.Is(err, ErrConflict) {
		mb, gerr := x.GetMailbox(ctx, address)
		switch {
		case gerr == nil && strings.EqualFold(mb.RecipientTypeDetails, "SharedMailbox") && strings.EqualFold(mb.PrimarySmtpAddress, address):
			return mb, nil
		case errors.Is(gerr, ErrNotFound):
			if other := uniqueMailboxName(name, alias); other != name {
				raw, err = create(other)
			}
		}
	}
	if err != nil {
		return Mailbox{}, withNeed(err, NeedManageAsApp, NeedRecipientAdministrator)
	}
	if mb, err := pick("New-Mailbox", address, raw, func(m Mailbox) bool { return m.Matches(address) }); err == nil {
		return mb, nil
	}
	return Mailbox{PrimarySmtpAddress: address, DisplayName: displayName, RecipientTypeDetails: "SharedMailbox"}, nil
}

// stringList reads a value Exchange serialises either as an array or as
// one comma-separated string; which one a given cmdlet uses over this
// endpoint is not documented [unverified], so both are accepted here.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var arr []string
	if err := json.Unmarshal(b, &arr); err == nil {
		*s = arr
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err != nil {
		if string(b) == "null" {
			*s = nil
			return nil
		}
		return err
	}
	*s = nil
	for _, p := range strings.Split(one, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func (s stringList) has(v string) bool {
	for _, x := range s {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

type mailboxPermission struct {
	Identity     string     `json:"Identity"`
	User         string     `json:"User"`
	AccessRights stringList `json:"AccessRights"`
	IsInherited  bool       `json:"IsInherited"`
	Deny         bool       `json:"Deny"`
}

type recipientPermission struct {
	Identity          string     `json:"Identity"`
	Trustee           string     `json:"Trustee"`
	AccessControlType string     `json:"AccessControlType"`
	AccessRights      stringList `json:"AccessRights"`
	IsInherited       bool       `json:"IsInherited"`
}

// systemPrincipal reports trustees that every mailbox has and that nobody
// granted: reporting them as unexpected access would be noise.
func systemPrincipal(user string) bool {
	u := strings.ToUpper(user)
	return strings.HasPrefix(u, "NT AUTHORITY\\") || strings.HasPrefix(u, "S-1-5-") || u == "SELF"
}

// Grants reads who has FullAccess and SendAs on a mailbox: explicit,
// allowing grants only, without inherited and system entries. The mailbox
// is read first, so that rows about other mailboxes (Get-*Permission answers
// every mailbox's for an identity it does not find) are told apart.
func (x *Exchange) Grants(ctx context.Context, mailbox string) ([]Grant, error) {
	mb, err := x.GetMailbox(ctx, mailbox)
	if err != nil {
		return nil, err
	}
	raw, err := x.Cmd.Invoke(ctx, "Get-MailboxPermission", map[string]any{"Identity": mailbox})
	if err != nil {
		return nil, withNeed(err, NeedManageAsApp, NeedRecipientAdministrator)
	}
	mps, err := rowsFor[mailboxPermission]("Get-MailboxPermission", mb, raw, func(p mailboxPermission) string { return p.Identity })
	if err != nil {
		return nil, err
	}
	var out []Grant
	for _, p := range mps {
		if p.IsInherited || p.Deny || systemPrincipal(p.User) || !p.AccessRights.has(string(FullAccess)) {
			continue
		}
		out = append(out, Grant{Mailbox: mailbox, User: p.User, Right: FullAccess})
	}
	raw, err = x.Cmd.Invoke(ctx, "Get-RecipientPermission", map[string]any{"Identity": mailbox})
	if err != nil {
		return nil, withNeed(err, NeedManageAsApp, NeedRecipientAdministrator)
	}
	rps, err := rowsFor[recipientPermission]("Get-RecipientPermission", mb, raw, func(p recipientPermission) string { return p.Identity })
	if err != nil {
		return nil, err
	}
	for _, p := range rps {
		if p.IsInherited || strings.EqualFold(p.AccessControlType, "Deny") || systemPrincipal(p.Trustee) || !p.AccessRights.has(string(SendAs)) {
			continue
		}
		out = append(out, Grant{Mailbox: mailbox, User: p.Trustee, Right: SendAs})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Right != out[j].Right {
			return out[i].Right < out[j].Right
		}
		return strings.ToLower(out[i].User) < strings.ToLower(out[j].User)
	})
	return out, nil
}

// rowsFor keeps the permission rows about mb. Every mailbox lists at least
// its own SELF row, so a reply with rows of which none is about mb means
// dualmx does not recognise how the rows name their mailbox: that is an
// error, not "no grants", or the next plan would grant everything again.
func rowsFor[T any](cmdlet string, mb Mailbox, raw []json.RawMessage, identity func(T) string) ([]T, error) {
	all, err := decodeAll[T](raw)
	if err != nil {
		return nil, fmt.Errorf("m365: %s %s: %w", cmdlet, mb.PrimarySmtpAddress, err)
	}
	var out []T
	for _, r := range all {
		if permissionRowFor(mb, identity(r)) {
			out = append(out, r)
		}
	}
	if len(all) > 0 && len(out) == 0 {
		return nil, fmt.Errorf("m365: %s %s: none of the %d rows names the mailbox as Get-Mailbox does (%q); m365/identity.go must learn how they name it",
			cmdlet, mb.PrimarySmtpAddress, len(all), identity(all[0]))
	}
	return out, nil
}

// SamePrincipal reports whether a trustee as Exchange names it is the user
// with this UPN. Over REST Exchange names trustees by UPN; older output used
// the alias. Matching lives here, in one place, because it is a guess
// about the endpoint's output [unverified].
func SamePrincipal(trustee, upn string) bool {
	if strings.EqualFold(trustee, upn) {
		return true
	}
	local := strings.SplitN(upn, "@", 2)[0]
	return !strings.Contains(trustee, "@") && strings.EqualFold(trustee, local)
}

// HasGrant reads before it writes: whether Add-* on an existing grant is a
// no-op or an error is not documented, so dualmx never asks.
func (x *Exchange) HasGrant(ctx context.Context, mailbox, user string, r Right) (bool, error) {
	gs, err := x.Grants(ctx, mailbox)
	if err != nil {
		return false, err
	}
	for _, g := range gs {
		if g.Right == r && SamePrincipal(g.User, user) {
			return true, nil
		}
	}
	return false, nil
}

// Grant gives user the right on mailbox unless it already holds it. The
// user's own mailbox must exist first (it appears some time after the
// licence), so Grant waits for it. It reports whether it changed anything.
func (x *Exchange) Grant(ctx context.Context, mailbox, user string, r Right) (bool, error) {
	has, err := x.HasGrant(ctx, mailbox, user, r)
	if err != nil || has {
		return false, err
	}
	if _, err := x.WaitMailbox(ctx, user); err != nil {
		return false, fmt.Errorf("m365: waiting for the mailbox of %s: %w", user, err)
	}
	switch r {
	case FullAccess:
		_, err = x.Cmd.Invoke(ctx, "Add-MailboxPermission", map[string]any{
			"Identity": mailbox, "User": user, "AccessRights": []string{"FullAccess"}, "InheritanceType": "All", "AutoMapping": true})
	case SendAs:
		_, err = x.Cmd.Invoke(ctx, "Add-RecipientPermission", map[string]any{
			"Identity": mailbox, "Trustee": user, "AccessRights": []string{"SendAs"}, "Confirm": false})
	default:
		return false, fmt.Errorf("m365: unknown right %q", r)
	}
	return err == nil, withNeed(err, NeedManageAsApp, NeedRecipientAdministrator)
}

// Revoke removes the right unless it is already gone; Remove-* cmdlets
// would otherwise prompt, hence Confirm false.
func (x *Exchange) Revoke(ctx context.Context, mailbox, user string, r Right) (bool, error) {
	gs, err := x.Grants(ctx, mailbox)
	if err != nil {
		return false, err
	}
	trustee := ""
	for _, g := range gs {
		if g.Right == r && SamePrincipal(g.User, user) {
			trustee = g.User
		}
	}
	if trustee == "" {
		return false, nil
	}
	switch r {
	case FullAccess:
		_, err = x.Cmd.Invoke(ctx, "Remove-MailboxPermission", map[string]any{
			"Identity": mailbox, "User": trustee, "AccessRights": []string{"FullAccess"}, "InheritanceType": "All", "Confirm": false})
	case SendAs:
		_, err = x.Cmd.Invoke(ctx, "Remove-RecipientPermission", map[string]any{
			"Identity": mailbox, "Trustee": trustee, "AccessRights": []string{"SendAs"}, "Confirm": false})
	default:
		return false, fmt.Errorf("m365: unknown right %q", r)
	}
	return err == nil, withNeed(err, NeedManageAsApp, NeedRecipientAdministrator)
}

// IsNotFound is errors.Is(err, ErrNotFound), for callers that read better so.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
