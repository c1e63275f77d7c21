// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TokenClaims are the claims of an app-only access token dualmx reads:
// whose token it is and the application permissions it carries ("roles",
// Microsoft identity platform's access token claims reference).
type TokenClaims struct {
	Audience string   `json:"aud"`
	TenantID string   `json:"tid"`
	ObjectID string   `json:"oid"` // the app's service principal
	AppID    string   `json:"appid"`
	Roles    []string `json:"roles"`
}

// ParseTokenClaims reads the payload of a JWT access token. The signature
// is not checked: the token came straight from the sign-in endpoint over
// verified TLS, and the claims only inform the check, they grant nothing.
func ParseTokenClaims(token string) (TokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return TokenClaims{}, errors.New("the access token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return TokenClaims{}, fmt.Errorf("the access token's payload: %w", err)
	}
	var c TokenClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return TokenClaims{}, fmt.Errorf("the access token's claims: %w", err)
	}
	return c, nil
}

// Check status values.
const (
	CheckOK      = "ok"
	CheckMissing = "missing"
	CheckUnknown = "unknown" // could not be read; not counted as missing
)

// CheckRow is one requirement of one command.
type CheckRow struct {
	Command  string `json:"command"`
	Need     string `json:"need"`
	Status   string `json:"status"`
	Evidence string `json:"evidence"`
	Grant    string `json:"grant,omitempty"`
	// Unverified is what Microsoft does not document about the need
	// (Requirement.Unverified).
	Unverified string `json:"unverified,omitempty"`
}

// CheckReport is what m365 check found.
type CheckReport struct {
	TenantID   string     `json:"tenant_id"`
	AppID      string     `json:"app_id"`
	ObjectID   string     `json:"service_principal_id"`
	GraphRoles []string   `json:"graph_permissions"`
	ExoRoles   []string   `json:"exchange_permissions"`
	EntraRoles []string   `json:"entra_roles"` // nil when they could not be read
	Rows       []CheckRow `json:"requirements"`
}

// Missing counts the requirements found missing.
func (r *CheckReport) Missing() int {
	n := 0
	for _, row := range r.Rows {
		if row.Status == CheckMissing {
			n++
		}
	}
	return n
}

// CheckEnv is what RunCheck talks to.
type CheckEnv struct {
	Cred      azcore.TokenCredential
	Endpoints Endpoints
	Graph     *Graph
	Exchange  *Exchange
}

// answer is what the tenant said to one read-only question.
type answer struct {
	status, evidence string
}

// RunCheck signs in for Graph and for Exchange Online, reads the
// application permissions from each token's roles claim, reads the app's
// Entra roles (when RoleManagement.Read.Directory allows) and asks
// read-only questions that only a sufficient role answers, and lists for
// every command (Commands) what is there and what is missing. An error
// means it could not sign in at all.
func RunCheck(ctx context.Context, env CheckEnv) (*CheckReport, error) {
	gc, err := tokenClaims(ctx, env.Cred, env.Endpoints.Cloud.GraphScope())
	if err != nil {
		return nil, fmt.Errorf("signing in for Microsoft Graph: %w", err)
	}
	xc, err := tokenClaims(ctx, env.Cred, env.Endpoints.Cloud.ExchangeScope())
	if err != nil {
		return nil, fmt.Errorf("signing in for Exchange Online: %w", err)
	}
	r := &CheckReport{TenantID: gc.TenantID, AppID: gc.AppID, ObjectID: gc.ObjectID, GraphRoles: gc.Roles, ExoRoles: xc.Roles}

	rolesAnswer := answer{CheckUnknown, ""}
	if gc.ObjectID == "" {
		rolesAnswer.evidence = "the Graph token names no service principal (oid)"
	} else if roles, err := env.Graph.DirectoryRoles(ctx, gc.ObjectID); err != nil {
		rolesAnswer.evidence = "cannot read the app's Entra roles (" + firstLine(err) + "); grant " + NeedReadRoles.AnyOf[0] +
			" to let m365 check see them, or look in Entra admin center › Roles & admins"
	} else {
		r.EntraRoles = roles
		rolesAnswer.status = CheckOK
	}
	// What only an Exchange role answers: reading one mailbox needs a
	// recipient role, reading connectors the organisation role. A cmdlet
	// outside the app's roles is not even known to its session.
	recipients := exchangeAnswer(env.Exchange.Cmd.Invoke(ctx, "Get-Mailbox", map[string]any{"ResultSize": 1}))
	org := exchangeAnswer(env.Exchange.Cmd.Invoke(ctx, "Get-InboundConnector", nil))
	signIn := answer{CheckOK, "the tenant reports sign-in activity"}
	switch err := env.Graph.SignInReadable(ctx); {
	case errors.Is(err, ErrSignInUnknown):
		signIn = answer{CheckMissing, "Graph answers that the tenant has no premium licence"}
	case err != nil:
		signIn = answer{CheckUnknown, "cannot tell: " + firstLine(err)}
	}

	for _, c := range Commands {
		for _, n := range c.Needs {
			row := CheckRow{Command: c.Command, Need: n.Name(), Unverified: n.Unverified}
			var p answer
			switch n.Kind {
			case GraphPermission:
				p = claimAnswer(n, gc.Roles, "the Graph token's roles claim")
			case ExchangePermission:
				p = claimAnswer(n, xc.Roles, "the Exchange Online token's roles claim")
			case EntraRole:
				p = roleAnswer(n, r.EntraRoles, rolesAnswer, recipients, org)
			case TenantLicence:
				p = signIn
			}
			row.Status, row.Evidence = p.status, p.evidence
			if p.status != CheckOK {
				row.Grant = n.Grant()
			}
			r.Rows = append(r.Rows, row)
		}
	}
	return r, nil
}

func tokenClaims(ctx context.Context, cred azcore.TokenCredential, scope string) (TokenClaims, error) {
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return TokenClaims{}, err
	}
	return ParseTokenClaims(tok.Token)
}

func claimAnswer(n Requirement, held []string, where string) answer {
	for _, a := range n.AnyOf {
		if slices.ContainsFunc(held, func(h string) bool { return strings.EqualFold(h, a) }) {
			return answer{CheckOK, a + " in " + where}
		}
	}
	return answer{CheckMissing, "not in " + where}
}

func exchangeAnswer(_ []json.RawMessage, err error) answer {
	switch {
	case err == nil:
		return answer{CheckOK, ""}
	case refused(err):
		return answer{CheckMissing, firstLine(err)}
	}
	return answer{CheckUnknown, firstLine(err)}
}

// roleAnswer judges an Entra role by the role assignments when they could be
// read, else by what Exchange let the app do.
func roleAnswer(n Requirement, roles []string, assignments, recipients, org answer) answer {
	if assignments.status == CheckOK {
		for _, a := range n.AnyOf {
			if slices.Contains(roles, a) {
				return answer{CheckOK, RoleName(a) + " is assigned to the app"}
			}
		}
		return answer{CheckMissing, "not assigned to the app"}
	}
	switch n.AnyOf[0] {
	case RoleExchangeRecipientAdministrator:
		return evidence(recipients, "Get-Mailbox answered", "Get-Mailbox refused")
	case RoleExchangeAdministrator:
		return evidence(org, "Get-InboundConnector answered", "Get-InboundConnector refused")
	}
	return assignments
}

func evidence(p answer, ok, refused string) answer {
	switch p.status {
	case CheckOK:
		return answer{CheckOK, ok}
	case CheckMissing:
		return answer{CheckMissing, refused + ": " + p.evidence}
	}
	return p
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
