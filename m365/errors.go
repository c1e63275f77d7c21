// SPDX-License-Identifier: MIT

package m365

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors callers branch on with errors.Is. Both services' errors wrap one of
// them when the case is recognised.
var (
	// ErrNotFound: the user, mailbox or object does not exist (yet).
	ErrNotFound = errors.New("not found")
	// ErrConflict: an object with the same unique value already exists.
	ErrConflict = errors.New("already exists")
)

// GraphError is a failed Microsoft Graph call, with what Microsoft said.
type GraphError struct {
	Op      string // what we tried, e.g. "create user anna.devries@example.nl"
	Status  int    // HTTP status, 0 when the request never got an answer
	Code    string // error.code, e.g. Request_BadRequest
	Message string // error.message
	// Details are the codes inside error.details; Graph puts the specific
	// reason there (ObjectConflict) while the top-level code stays generic.
	Details    []string
	RetryAfter time.Duration // from the Retry-After header, 0 if absent
	Err        error         // transport error, when Status is 0
}

func (e *GraphError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("microsoft graph: %s: %v", e.Op, e.Err)
	}
	s := fmt.Sprintf("microsoft graph: %s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if len(e.Details) > 0 {
		s += " (" + strings.Join(e.Details, ", ") + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *GraphError) Unwrap() error { return e.Err }

// Is maps Graph's codes onto the package's sentinel errors.
func (e *GraphError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == 404 || e.Code == "Request_ResourceNotFound"
	case ErrConflict:
		for _, d := range e.Details {
			if d == "ObjectConflict" {
				return true
			}
		}
		return e.Code == "ObjectConflict"
	}
	return false
}

func (e *GraphError) retryAfter() time.Duration { return e.RetryAfter }

// temporary reports whether trying again later may succeed: throttling,
// server trouble, and a transport error with no answer at all.
func (e *GraphError) temporary() bool { return e.Status == 0 || retryableStatus(e.Status) }

// ExchangeError is a failed Exchange Online command. Exchange reports the
// reason as "code|exception type|text" inside error.details; the three parts
// are kept apart so the admin sees Exchange's own words.
type ExchangeError struct {
	Cmdlet     string
	Status     int
	Code       string // first part of the details message, or error.code
	Exception  string // e.g. Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException
	Text       string // Exchange's sentence for the admin
	RetryAfter time.Duration
	Err        error // transport error, when Status is 0
}

func (e *ExchangeError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("exchange online: %s: %v", e.Cmdlet, e.Err)
	}
	parts := []string{}
	for _, p := range []string{e.Code, e.Exception, e.Text} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return fmt.Sprintf("exchange online: %s: HTTP %d: %s", e.Cmdlet, e.Status, strings.Join(parts, " | "))
}

func (e *ExchangeError) Unwrap() error { return e.Err }

// Is maps Exchange exception types onto the package's sentinel errors.
// The exception names are the ones seen in the EXO PowerShell module's
// output; which one New-Mailbox and Add-*Permission raise on a real tenant is
// not documented [unverified], so this is the one place that guesses.
func (e *ExchangeError) Is(target error) bool {
	x := e.Exception
	switch target {
	case ErrNotFound:
		return strings.HasSuffix(x, "ManagementObjectNotFoundException") || strings.HasSuffix(x, "RecipientNotFoundException") ||
			strings.HasSuffix(x, "ObjectNotFoundException")
	case ErrConflict:
		return strings.HasSuffix(x, "ADObjectAlreadyExistsException") || strings.HasSuffix(x, "ProxyAddressExistsException") ||
			strings.HasSuffix(x, "ObjectAlreadyExistsException")
	}
	return false
}

func (e *ExchangeError) retryAfter() time.Duration { return e.RetryAfter }

// maxConcurrentText is how Exchange says it throttled the tenant inside an
// otherwise ordinary error body.
const maxConcurrentText = "maximum number of concurrent requests"

func (e *ExchangeError) temporary() bool {
	return e.Status == 0 || retryableStatus(e.Status) || e.Status == 408 || strings.Contains(e.Text, maxConcurrentText)
}

func retryableStatus(s int) bool {
	return s == 429 || s == 500 || s == 502 || s == 503 || s == 504
}

// parseExchangeDetail splits "code|exception|text"; the text may itself hold
// pipes, and a message without any is all text.
func parseExchangeDetail(msg string) (code, exception, text string) {
	parts := strings.SplitN(msg, "|", 3)
	switch len(parts) {
	case 3:
		return strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1]), strings.TrimSpace(parts[2])
	case 2:
		return strings.TrimSpace(parts[0]), "", strings.TrimSpace(parts[1])
	}
	return "", "", strings.TrimSpace(msg)
}

// parseRetryAfter reads the header as seconds or an HTTP date; anything else
// counts as absent so backoff applies.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := time.Parse(time.RFC1123, v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
