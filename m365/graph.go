// SPDX-License-Identifier: MIT

// Package m365 talks to Microsoft 365 for dualmx: Microsoft Graph (users,
// licences, mail) through msgraph-sdk-go, and Exchange Online (shared
// mailboxes, mailbox permissions, connectors, ARC) through the admin API's
// command endpoint. Both clients take an azcore.TokenCredential, retry
// throttling and transient failures in one loop (retry.go), and return
// *GraphError or *ExchangeError carrying Microsoft's own codes.
package m365

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/uuid"
	abs "github.com/microsoft/kiota-abstractions-go"
	absser "github.com/microsoft/kiota-abstractions-go/serialization"
	khttp "github.com/microsoft/kiota-http-go"
	jsonser "github.com/microsoft/kiota-serialization-json-go"
	textser "github.com/microsoft/kiota-serialization-text-go"
	core "github.com/microsoftgraph/msgraph-sdk-go-core"
	coreauth "github.com/microsoftgraph/msgraph-sdk-go-core/authentication"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/rolemanagement"
	"github.com/microsoftgraph/msgraph-sdk-go/subscribedskus"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
)

// GraphScope is the app-only scope for Microsoft Graph in the global cloud.
const GraphScope = "https://graph.microsoft.com/.default"

// DefaultGraphURL is Graph's v1.0 endpoint.
const DefaultGraphURL = "https://graph.microsoft.com/v1.0"

// User is the part of a Graph user dualmx reads.
type User struct {
	ID, UPN, DisplayName string
	GivenName, Surname   string
	Mail                 string
	UsageLocation        string
	AccountEnabled       bool
	// SKUs are the IDs of the licences assigned to the user.
	SKUs []string
}

// NewUser is what CreateUser needs. Password is used once, in the request
// body, and never kept.
type NewUser struct {
	UPN, MailNickname, DisplayName, GivenName, Surname string
	UsageLocation                                      string
	Password                                           string
}

// SKU is one of the tenant's subscribed licences.
type SKU struct {
	ID, PartNumber string
	Status         string // Enabled, Warning, Suspended, ...
	AppliesTo      string // User or Company; only User SKUs can be assigned
	Enabled        int    // prepaid units
	Consumed       int
}

// Free is how many more users the SKU can be assigned to.
func (s SKU) Free() int { return s.Enabled - s.Consumed }

// Mail is a message sent through Graph's sendMail.
type Mail struct {
	To      string
	Subject string
	Body    string
	HTML    bool
}

// GraphOptions configures NewGraph.
type GraphOptions struct {
	// BaseURL is the Graph endpoint including the version path; "" is
	// DefaultGraphURL. A URL without a path gets /v1.0. Only https.
	BaseURL string
	// Scope is the token scope, the real resource's /.default whatever
	// BaseURL says; "" is GraphScope.
	Scope string
	// Transport carries the requests under the SDK's middleware; nil is
	// http.DefaultTransport. Tests pass their TLS test server's transport.
	Transport http.RoundTripper
	Retry     Retry
}

// Graph is a Microsoft Graph client for the calls provisioning makes.
type Graph struct {
	adapter abs.RequestAdapter
	retry   Retry
	// hc carries what must not go through the SDK's pipeline: the PUTs to
	// an upload session's pre-authenticated URL, which get no bearer token.
	hc *http.Client
}

// NewGraph builds the client on msgraph-sdk-go's request adapter. It uses
// the users and subscribedSkus request builders directly rather than the
// root GraphServiceClient, which drags every Graph API into the binary.
func NewGraph(cred azcore.TokenCredential, o GraphOptions) (*Graph, error) {
	base, err := graphBase(o.BaseURL)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(base)
	scope := o.Scope
	if scope == "" {
		scope = GraphScope
	}
	// The SDK sends a token only to hosts on this list, and silently sends
	// none elsewhere; naming exactly the configured host makes a test
	// endpoint work and keeps the token from ever going anywhere else.
	auth, err := coreauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{scope}, []string{u.Hostname()})
	if err != nil {
		return nil, fmt.Errorf("m365: graph auth: %w", err)
	}
	// Our retry loop owns all retrying (one policy for Graph and Exchange,
	// an injectable sleep); the SDK's own retry handler would multiply it.
	mw, err := khttp.GetDefaultMiddlewaresWithOptions(&khttp.RetryHandlerOptions{
		ShouldRetry: func(time.Duration, int, *http.Request, *http.Response) bool { return false },
	})
	if err != nil {
		return nil, err
	}
	opts := graphClientOptions
	mw = append([]khttp.Middleware{core.NewGraphTelemetryHandler(&opts)}, mw...)
	hc := &http.Client{
		Transport: khttp.NewCustomTransportWithParentTransport(o.Transport, mw...),
		// Graph answers what we ask; a redirect would carry the bearer
		// token to wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       100 * time.Second,
	}
	adapter, err := core.NewGraphRequestAdapterBaseWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, opts, nil, nil, hc)
	if err != nil {
		return nil, fmt.Errorf("m365: graph adapter: %w", err)
	}
	adapter.SetBaseUrl(base)
	registerSerializers()
	plain := o.Transport
	if plain == nil {
		plain = http.DefaultTransport
	}
	return &Graph{adapter: adapter, retry: o.Retry.withDefaults(), hc: &http.Client{Transport: plain, Timeout: 10 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

var graphClientOptions = core.GraphClientOptions{GraphServiceLibraryVersion: "dualmx"}

// registerSerializers does what the SDK's root client constructor does: the
// request builders find JSON and text (de)serialisers through this registry.
func registerSerializers() { serializersOnce.Do(registerSerializersOnce) }

// serializersOnce guards the SDK's global registry, a plain map.
var serializersOnce sync.Once

func registerSerializersOnce() {
	abs.RegisterDefaultSerializer(func() absser.SerializationWriterFactory { return jsonser.NewJsonSerializationWriterFactory() })
	abs.RegisterDefaultSerializer(func() absser.SerializationWriterFactory { return textser.NewTextSerializationWriterFactory() })
	abs.RegisterDefaultDeserializer(func() absser.ParseNodeFactory { return jsonser.NewJsonParseNodeFactory() })
	abs.RegisterDefaultDeserializer(func() absser.ParseNodeFactory { return textser.NewTextParseNodeFactory() })
}

func graphBase(s string) (string, error) {
	if s == "" {
		return DefaultGraphURL, nil
	}
	u, err := checkHTTPS("graph url", s)
	if err != nil {
		return "", err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1.0"
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

func (g *Graph) users() *users.UsersRequestBuilder {
	return users.NewUsersRequestBuilderInternal(map[string]string{"baseurl": g.adapter.GetBaseUrl()}, g.adapter)
}

var userSelect = []string{"id", "userPrincipalName", "displayName", "givenName", "surname", "mail", "usageLocation", "accountEnabled", "assignedLicenses"}

// GetUser reads a user by UPN or object ID; a missing user is ErrNotFound.
// usageLocation is only returned when selected, so the select is explicit.
func (g *Graph) GetUser(ctx context.Context, upnOrID string) (User, error) {
	var out User
	err := g.retry.do(ctx, func() error {
		u, err := g.users().ByUserId(upnOrID).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: userSelect},
		})
		if err != nil {
			return graphErr("get user "+upnOrID, err)
		}
		out = userOf(u)
		return nil
	})
	return out, withNeed(err, NeedReadUsers)
}

// WaitUser reads a user that was just created, by the ID the create call
// returned. Graph's directory replicas may answer 404 for a while after the
// 201, so not-found is retried for Retry.NotFoundWait.
func (g *Graph) WaitUser(ctx context.Context, id string) (User, error) {
	var out User
	err := g.retry.waitFound(ctx, g.retry.NotFoundWait, func() error {
		var err error
		out, err = g.GetUser(ctx, id)
		return err
	})
	return out, err
}

// CreateUser creates an enabled account that must change its password at
// the first sign-in. usageLocation is set here so that the licence that
// follows cannot fail on it. A duplicate UPN is ErrConflict.
func (g *Graph) CreateUser(ctx context.Context, n NewUser) (User, error) {
	body := models.NewUser()
	body.SetAccountEnabled(ptr(true))
	body.SetDisplayName(ptr(n.DisplayName))
	body.SetGivenName(ptr(n.GivenName))
	body.SetSurname(ptr(n.Surname))
	body.SetMailNickname(ptr(n.MailNickname))
	body.SetUserPrincipalName(ptr(n.UPN))
	body.SetUsageLocation(ptr(n.UsageLocation))
	pp := models.NewPasswordProfile()
	pp.SetPassword(ptr(n.Password))
	pp.SetForceChangePasswordNextSignIn(ptr(true))
	body.SetPasswordProfile(pp)
	var out User
	retried := false
	err := g.retry.do(ctx, func() error {
		u, err := g.users().Post(ctx, body, nil)
		if err != nil {
			err = graphErr("create user "+n.UPN, err)
			// A create that was retried after a 5xx or a lost reply may
			// have been carried out the first time: Graph then answers
			// ObjectConflict for the account this very call made. Look it
			// up rather than fail (review finding 12).
			if retried && errors.Is(err, ErrConflict) {
				got, gerr := g.GetUser(ctx, n.UPN)
				if gerr == nil {
					out = got
					return nil
				}
			}
			retried = true
			return err
		}
		out = userOf(u)
		return nil
	})
	return out, withNeed(err, NeedWriteUsers)
}

// ResetPassword gives the user a new temporary password that must be
// changed at the next sign-in.
func (g *Graph) ResetPassword(ctx context.Context, id, password string) error {
	body := models.NewUser()
	pp := models.NewPasswordProfile()
	pp.SetPassword(ptr(password))
	pp.SetForceChangePasswordNextSignIn(ptr(true))
	body.SetPasswordProfile(pp)
	// user-update, passwordProfile: app-only, User.ReadWrite.All is not
	// enough; the app must hold the User Administrator role as well.
	return withNeed(g.patch(ctx, id, "reset password", body), NeedWriteUsers, NeedUserAdministrator)
}

// BlockSignIn disables sign-in for a user, as Microsoft says to do for the
// account behind a shared mailbox (create-a-shared-mailbox: "Block sign-in
// for the shared mailbox account"): PATCH accountEnabled false. The user of
// a mailbox just created may not be in Graph yet; not-found is retried for
// Retry.NotFoundWait.
func (g *Graph) BlockSignIn(ctx context.Context, id string) error {
	body := models.NewUser()
	body.SetAccountEnabled(ptr(false))
	err := g.retry.waitFound(ctx, g.retry.NotFoundWait, func() error { return g.patch(ctx, id, "block sign-in", body) })
	return withNeed(err, NeedWriteUsers)
}

// SetUsageLocation sets the ISO country code a licence needs.
func (g *Graph) SetUsageLocation(ctx context.Context, id, country string) error {
	body := models.NewUser()
	body.SetUsageLocation(ptr(country))
	return withNeed(g.patch(ctx, id, "set usage location", body), NeedWriteUsers)
}

func (g *Graph) patch(ctx context.Context, id, what string, body models.Userable) error {
	return g.retry.do(ctx, func() error {
		if _, err := g.users().ByUserId(id).Patch(ctx, body, nil); err != nil {
			return graphErr(what+" of "+id, err)
		}
		return nil
	})
}

// AssignLicense adds one SKU. Graph refuses the call unless removeLicenses
// is present, even empty, so it always is.
func (g *Graph) AssignLicense(ctx context.Context, id, skuID string) error {
	sku, err := uuid.Parse(skuID)
	if err != nil {
		return fmt.Errorf("m365: licence sku id %q: %w", skuID, err)
	}
	lic := models.NewAssignedLicense()
	lic.SetSkuId(&sku)
	lic.SetDisabledPlans([]uuid.UUID{})
	body := users.NewItemAssignLicensePostRequestBody()
	body.SetAddLicenses([]models.AssignedLicenseable{lic})
	body.SetRemoveLicenses([]uuid.UUID{})
	return withNeed(g.retry.do(ctx, func() error {
		if _, err := g.users().ByUserId(id).AssignLicense().Post(ctx, body, nil); err != nil {
			return graphErr("assign licence to "+id, err)
		}
		return nil
	}), NeedAssignLicence)
}

// SubscribedSKUs lists the tenant's licences. Graph cannot filter them, so
// callers pick by part number.
func (g *Graph) SubscribedSKUs(ctx context.Context) ([]SKU, error) {
	var out []SKU
	err := g.retry.do(ctx, func() error {
		b := subscribedskus.NewSubscribedSkusRequestBuilderInternal(map[string]string{"baseurl": g.adapter.GetBaseUrl()}, g.adapter)
		res, err := b.Get(ctx, nil)
		if err != nil {
			return graphErr("list subscribed skus", err)
		}
		out = out[:0]
		for _, s := range res.GetValue() {
			k := SKU{PartNumber: deref(s.GetSkuPartNumber()), Status: deref(s.GetCapabilityStatus()), AppliesTo: deref(s.GetAppliesTo())}
			if id := s.GetSkuId(); id != nil {
				k.ID = id.String()
			}
			if c := s.GetConsumedUnits(); c != nil {
				k.Consumed = int(*c)
			}
			if p := s.GetPrepaidUnits(); p != nil && p.GetEnabled() != nil {
				k.Enabled = int(*p.GetEnabled())
			}
			out = append(out, k)
		}
		return nil
	})
	return out, withNeed(err, NeedReadSKUs)
}

// SendMail sends m from the mailbox from (UPN or ID) without keeping a copy
// in Sent Items: a welcome mail holds a password. Graph answers 202 with an
// empty body: accepted for delivery, not delivered.
func (g *Graph) SendMail(ctx context.Context, from string, m Mail) error {
	msg := models.NewMessage()
	msg.SetSubject(ptr(m.Subject))
	body := models.NewItemBody()
	ct := models.TEXT_BODYTYPE
	if m.HTML {
		ct = models.HTML_BODYTYPE
	}
	body.SetContentType(&ct)
	body.SetContent(ptr(m.Body))
	msg.SetBody(body)
	addr := models.NewEmailAddress()
	addr.SetAddress(ptr(m.To))
	rcpt := models.NewRecipient()
	rcpt.SetEmailAddress(addr)
	msg.SetToRecipients([]models.Recipientable{rcpt})
	req := users.NewItemSendMailPostRequestBody()
	req.SetMessage(msg)
	req.SetSaveToSentItems(ptr(false))
	return withNeed(g.retry.do(ctx, func() error {
		if err := g.users().ByUserId(from).SendMail().Post(ctx, req, nil); err != nil {
			return graphErr("send mail from "+from+" to "+m.To, err)
		}
		return nil
	}), NeedSendMail)
}

func userOf(u models.Userable) User {
	out := User{ID: deref(u.GetId()), UPN: deref(u.GetUserPrincipalName()), DisplayName: deref(u.GetDisplayName()),
		GivenName: deref(u.GetGivenName()), Surname: deref(u.GetSurname()), Mail: deref(u.GetMail()),
		UsageLocation: deref(u.GetUsageLocation())}
	if e := u.GetAccountEnabled(); e != nil {
		out.AccountEnabled = *e
	}
	for _, l := range u.GetAssignedLicenses() {
		if id := l.GetSkuId(); id != nil {
			out.SKUs = append(out.SKUs, id.String())
		}
	}
	return out
}

// graphErr turns what the SDK returned into a *GraphError, reading the
// details Graph hides the real reason in.
func graphErr(op string, err error) error {
	ge := &GraphError{Op: op}
	var oe *odataerrors.ODataError
	var ae *abs.ApiError
	switch {
	case errors.As(err, &oe):
		ge.Status = oe.ResponseStatusCode
		ge.RetryAfter = headerRetryAfter(oe.ResponseHeaders)
		if m := oe.GetErrorEscaped(); m != nil {
			ge.Code, ge.Message = deref(m.GetCode()), deref(m.GetMessage())
			for _, d := range m.GetDetails() {
				if c := deref(d.GetCode()); c != "" {
					ge.Details = append(ge.Details, c)
				}
			}
		}
	case errors.As(err, &ae):
		ge.Status = ae.ResponseStatusCode
		ge.RetryAfter = headerRetryAfter(ae.ResponseHeaders)
		ge.Message = ae.Message
	default:
		// A cancelled run is the caller's decision, not a transport
		// failure to retry; a refused sign-in (a wrong secret, an unknown
		// app) does not fix itself either.
		var af *azidentity.AuthenticationFailedError
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if errors.As(err, &af) {
			return fmt.Errorf("m365: sign-in for Microsoft Graph: %w", err)
		}
		ge.Err = err
	}
	return ge
}

func headerRetryAfter(h *abs.ResponseHeaders) time.Duration {
	if h == nil {
		return 0
	}
	for _, k := range []string{"Retry-After", "retry-after"} {
		if v := h.Get(k); len(v) > 0 {
			return parseRetryAfter(v[0], time.Now())
		}
	}
	return 0
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// ErrSignInUnknown means the tenant cannot tell when a user last signed
// in: Graph reports sign-in activity only for a tenant with Microsoft
// Entra ID P1 (resources/signinactivity; Graph answers 403
// Authentication_RequestFromNonPremiumTenantOrB2CTenant without it).
var ErrSignInUnknown = errors.New("sign-in activity not available for this tenant (it needs Microsoft Entra ID P1)")

// LastSignIn reports when a user last signed in successfully; zero time
// means never. It reads lastSuccessfulSignInDateTime: lastSignInDateTime
// counts failed attempts too ("Failed attempts are also logged, so this
// value may not accurately reflect actual system usage", signInActivity).
// ErrSignInUnknown means the tenant cannot tell; a missing AuditLog.Read.All
// is ErrNotPermitted, naming the permission.
func (g *Graph) LastSignIn(ctx context.Context, upnOrID string) (time.Time, error) {
	var out time.Time
	err := g.retry.do(ctx, func() error {
		u, err := g.users().ByUserId(upnOrID).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: []string{"id", "signInActivity"}},
		})
		if err != nil {
			return signInErr(graphErr("get sign-in activity of "+upnOrID, err))
		}
		if a := u.GetSignInActivity(); a != nil && a.GetLastSuccessfulSignInDateTime() != nil {
			out = *a.GetLastSuccessfulSignInDateTime()
		}
		return nil
	})
	return out, err
}

func signInErr(err error) error {
	var ge *GraphError
	if errors.As(err, &ge) && ge.Code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant" {
		return ErrSignInUnknown
	}
	return withNeed(err, NeedReadUsers, NeedAuditLog)
}

// SignInReadable reads one user's sign-in activity, to learn whether the
// tenant reports it (m365 check): nil, ErrSignInUnknown (no Entra ID P1) or
// ErrNotPermitted (no AuditLog.Read.All).
func (g *Graph) SignInReadable(ctx context.Context) error {
	return g.retry.do(ctx, func() error {
		top := int32(1)
		_, err := g.users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Top: &top, Select: []string{"id", "signInActivity"}},
		})
		if err != nil {
			return signInErr(graphErr("list sign-in activity", err))
		}
		return nil
	})
}

// DirectoryRoles lists the Entra roles (role definition IDs) assigned to a
// principal: GET /roleManagement/directory/roleAssignments with
// $filter=principalId eq '…' (rbacapplication-list-roleassignments,
// permission RoleManagement.Read.Directory). Only m365 check asks.
func (g *Graph) DirectoryRoles(ctx context.Context, principalID string) ([]string, error) {
	filter := "principalId eq " + odataQuote(principalID)
	var out []string
	err := g.retry.do(ctx, func() error {
		b := rolemanagement.NewRoleManagementRequestBuilderInternal(map[string]string{"baseurl": g.adapter.GetBaseUrl()}, g.adapter)
		res, err := b.Directory().RoleAssignments().Get(ctx, &rolemanagement.DirectoryRoleAssignmentsRequestBuilderGetRequestConfiguration{
			QueryParameters: &rolemanagement.DirectoryRoleAssignmentsRequestBuilderGetQueryParameters{Filter: &filter}})
		if err != nil {
			return withNeed(graphErr("list role assignments of "+principalID, err), NeedReadRoles)
		}
		out = out[:0]
		for _, a := range res.GetValue() {
			if id := deref(a.GetRoleDefinitionId()); id != "" {
				out = append(out, strings.ToLower(id))
			}
		}
		return nil
	})
	return out, err
}
