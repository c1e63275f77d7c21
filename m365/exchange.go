// SPDX-License-Identifier: MIT

package m365

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"
)

// ExchangeScope is the app-only scope for Exchange Online's admin API in
// the global cloud.
const ExchangeScope = "https://outlook.office365.com/.default"

// DefaultExchangeURL is Exchange Online's admin API host.
const DefaultExchangeURL = "https://outlook.office365.com"

// Commander runs one Exchange Online cmdlet and returns its output objects.
// It is the whole surface dualmx needs from Exchange, kept this small so the
// undocumented InvokeCommand endpoint behind it can be replaced by an
// official API once Microsoft offers one for mailboxes and permissions.
type Commander interface {
	Invoke(ctx context.Context, cmdlet string, params map[string]any) ([]json.RawMessage, error)
}

// ExchangeOptions configures NewExchange.
type ExchangeOptions struct {
	BaseURL string // "" is DefaultExchangeURL; only https
	// Scope is the token scope, the real resource's /.default whatever
	// BaseURL says; "" is ExchangeScope.
	Scope     string
	TenantID  string // directory ID or the tenant's .onmicrosoft.com domain
	Transport http.RoundTripper
	Retry     Retry
	// PageSize asks for this many objects per page (Prefer:
	// odata.maxpagesize); 0 leaves it to the server.
	PageSize int
	// Warn receives each text of a reply's @adminapi.warnings: Exchange
	// reports there what a cmdlet did not do ("no settings ... have been
	// modified"), which an admin must see; nil drops them.
	Warn func(cmdlet, text string)
}

// InvokeCommandClient runs cmdlets through
// POST {base}/adminapi/beta/{tenant}/InvokeCommand, the REST endpoint of the
// EXO V3 PowerShell module. It is not documented by Microsoft; what is known
// of its shape is in docs/microsoft-365.md.
type InvokeCommandClient struct {
	endpoint *url.URL
	tenant   string
	cred     azcore.TokenCredential
	hc       *http.Client
	retry    Retry
	pageSize int
	session  string
	scope    string
	warn     func(cmdlet, text string)
}

// NewExchange returns the command client.
func NewExchange(cred azcore.TokenCredential, o ExchangeOptions) (*InvokeCommandClient, error) {
	base := o.BaseURL
	if base == "" {
		base = DefaultExchangeURL
	}
	u, err := checkHTTPS("exchange url", base)
	if err != nil {
		return nil, err
	}
	if o.TenantID == "" {
		return nil, errors.New("m365: exchange: tenant id is required")
	}
	u = u.JoinPath("adminapi", "beta", o.TenantID, "InvokeCommand")
	tr := o.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	scope := o.Scope
	if scope == "" {
		scope = ExchangeScope
	}
	return &InvokeCommandClient{
		endpoint: u, tenant: o.TenantID, cred: cred, retry: o.Retry.withDefaults(), pageSize: o.PageSize,
		session: uuid.NewString(), scope: scope, warn: o.Warn,
		hc: &http.Client{Transport: tr, Timeout: 120 * time.Second,
			// The bearer token must not follow a redirect to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}, nil
}

type cmdletInput struct {
	CmdletInput struct {
		CmdletName string         `json:"CmdletName"`
		Parameters map[string]any `json:"Parameters"`
	} `json:"CmdletInput"`
}

type commandPage struct {
	Value    []json.RawMessage `json:"value"`
	NextLink string            `json:"@odata.nextLink"`
	Warnings []string          `json:"@adminapi.warnings"`
}

// Invoke runs cmdlet with params, following @odata.nextLink (the same body
// POSTed again) until the last page.
func (c *InvokeCommandClient) Invoke(ctx context.Context, cmdlet string, params map[string]any) ([]json.RawMessage, error) {
	var in cmdletInput
	in.CmdletInput.CmdletName = cmdlet
	in.CmdletInput.Parameters = params
	if in.CmdletInput.Parameters == nil {
		in.CmdletInput.Parameters = map[string]any{}
	}
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("m365: %s: %w", cmdlet, err)
	}
	var out []json.RawMessage
	next := c.endpoint.String()
	for pages := 0; next != ""; pages++ {
		if pages > 10000 {
			return nil, &ExchangeError{Cmdlet: cmdlet, Err: errors.New("more than 10000 pages; stopping")}
		}
		var page commandPage
		err := c.retry.do(ctx, func() error {
			var err error
			page, err = c.post(ctx, next, cmdlet, body)
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
		if c.warn != nil {
			for _, w := range page.Warnings {
				c.warn(cmdlet, w)
			}
		}
		next = page.NextLink
		if next != "" {
			// The next link comes from the response; our token goes only to
			// the host we were configured with.
			nu, err := url.Parse(next)
			if err != nil || !strings.EqualFold(nu.Host, c.endpoint.Host) || nu.Scheme != c.endpoint.Scheme {
				return nil, &ExchangeError{Cmdlet: cmdlet, Err: fmt.Errorf("next page link %q is not on %s", next, c.endpoint.Host)}
			}
		}
	}
	return out, nil
}

// anchorMailbox routes app-only calls, as the PowerShell module does.
func (c *InvokeCommandClient) anchorMailbox() string {
	return "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@" + c.tenant
}

func (c *InvokeCommandClient) post(ctx context.Context, target, cmdlet string, body []byte) (commandPage, error) {
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		// Not temporary: a wrong secret does not fix itself.
		return commandPage{}, fmt.Errorf("m365: exchange token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return commandPage{}, &ExchangeError{Cmdlet: cmdlet, Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-CmdletName", cmdlet)
	req.Header.Set("X-AnchorMailbox", c.anchorMailbox())
	req.Header.Set("connection-id", c.session)
	req.Header.Set("client-request-id", uuid.NewString())
	if c.pageSize > 0 {
		req.Header.Set("Prefer", fmt.Sprintf("odata.maxpagesize=%d", c.pageSize))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return commandPage{}, ctx.Err()
		}
		return commandPage{}, &ExchangeError{Cmdlet: cmdlet, Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return commandPage{}, &ExchangeError{Cmdlet: cmdlet, Err: err}
	}
	if resp.StatusCode == http.StatusNoContent {
		return commandPage{}, nil
	}
	if resp.StatusCode/100 != 2 {
		return commandPage{}, exchangeErr(cmdlet, resp, raw)
	}
	var page commandPage
	if len(bytes.TrimSpace(raw)) == 0 {
		return page, nil
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return commandPage{}, &ExchangeError{Cmdlet: cmdlet, Status: resp.StatusCode, Text: "response is not JSON: " + clip(string(raw))}
	}
	return page, nil
}

type exoErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Message string `json:"message"`
		} `json:"details"`
	} `json:"error"`
}

// exchangeErr reads Exchange's error: JSON with the real reason as
// "code|exception|text" in error.details, or sometimes plain text.
func exchangeErr(cmdlet string, resp *http.Response, raw []byte) error {
	e := &ExchangeError{Cmdlet: cmdlet, Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var b exoErrorBody
	if json.Unmarshal(raw, &b) == nil && (b.Error.Code != "" || b.Error.Message != "" || len(b.Error.Details) > 0) {
		e.Code, e.Text = b.Error.Code, b.Error.Message
		for _, d := range b.Error.Details {
			if d.Message == "" {
				continue
			}
			code, exc, text := parseExchangeDetail(d.Message)
			if code != "" {
				e.Code = code
			}
			e.Exception, e.Text = exc, text
			break
		}
		return e
	}
	e.Text = clip(strings.TrimSpace(string(raw)))
	if e.Text == "" {
		e.Text = http.StatusText(resp.StatusCode)
	}
	return e
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
