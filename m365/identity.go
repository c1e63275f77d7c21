// SPDX-License-Identifier: MIT

package m365

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The Get-* cmdlet pages warn: "a non-existent value for the Identity
// parameter returns *all* objects as if you ran the Get- command without the
// Identity parameter". So the reply of a look-up by identity is never taken
// on trust: dualmx keeps the objects that are the one asked for and treats
// "none" as not found. How each kind of object shows its identity in the
// REST output is not documented; the fields compared are here, in one
// place. A wrong guess cannot pass silently: the not-found error says how
// many objects came back and names this file, and the create that follows
// fails on the object that does exist.

// Matches reports whether the mailbox is the one identity names: its
// address, UPN, alias, name, Identity or Entra object ID.
func (m Mailbox) Matches(identity string) bool {
	return anyEqual(identity, m.PrimarySmtpAddress, m.UserPrincipalName, m.Alias, m.Name, m.Identity, m.ExternalDirectoryObjectID)
}

func anyEqual(want string, have ...string) bool {
	want = strings.TrimSpace(want)
	if want == "" {
		return false
	}
	for _, h := range have {
		if strings.EqualFold(strings.TrimSpace(h), want) {
			return true
		}
	}
	return false
}

// pick keeps the one object of a Get-* reply that match says is the one
// asked for. None is ErrNotFound; more than one is an error, as a look-up
// by identity must not be ambiguous.
func pick[T any](cmdlet, identity string, raw []json.RawMessage, match func(T) bool) (T, error) {
	var zero, found T
	n := 0
	for _, r := range raw {
		var v T
		if err := json.Unmarshal(r, &v); err != nil {
			return zero, fmt.Errorf("m365: %s %s: %w", cmdlet, identity, err)
		}
		if match(v) {
			found, n = v, n+1
		}
	}
	switch {
	case n == 1:
		return found, nil
	case n > 1:
		return zero, fmt.Errorf("m365: %s %s: %d objects answer to that identity; dualmx will not guess which", cmdlet, identity, n)
	}
	return zero, &ExchangeError{Cmdlet: cmdlet, Status: 404, Exception: "ManagementObjectNotFoundException",
		Text: fmt.Sprintf("%s is not among the %d object(s) returned (none carries it in a field m365/identity.go compares)", identity, len(raw))}
}

// permissionRowFor reports whether a permission row (Get-MailboxPermission,
// Get-RecipientPermission) is about mailbox mb: its Identity names the
// mailbox the way Get-Mailbox's Identity or Name does.
func permissionRowFor(mb Mailbox, rowIdentity string) bool {
	return anyEqual(rowIdentity, mb.Identity, mb.Name, mb.PrimarySmtpAddress, mb.UserPrincipalName, mb.Alias, mb.ExternalDirectoryObjectID)
}

// addressSpaceDomain reads one entry of a connector's SenderDomains. Get-
// InboundConnector shows them as address spaces, AddressSpaceType:
// AddressSpace;AddressSpaceCost ("smtp:*;1"), the syntax New-SendConnector's
// AddressSpaces parameter documents, where "SMTP:contoso.com;1",
// "contoso.com;1", "SMTP:contoso.com" and "contoso.com" are equivalent.
func addressSpaceDomain(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i > 0 && isTypeName(s[:i]) {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, ';'); i >= 0 && isDigits(s[i+1:]) {
		s = s[:i]
	}
	return strings.ToLower(strings.TrimSpace(s))
}

func isTypeName(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
