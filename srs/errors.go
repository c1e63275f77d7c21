// SPDX-License-Identifier: MIT

package srs

import "errors"

// The sentinels below are what callers match with errors.Is. Their text is
// generic on purpose: it may go into a 550 reply, while the wrapping error
// (with the address and the precise defect) is for the log.
var (
	// ErrNotSRS: the address is not an SRS address at our domain, so it is
	// an ordinary recipient (or no recipient at all), not a forged bounce.
	ErrNotSRS = errors.New("not an SRS address")
	// ErrMalformed: it claims to be SRS (SRS0/SRS1 at our domain) but a
	// field is missing or unparsable.
	ErrMalformed = errors.New("malformed SRS address")
	// ErrBadHash: well-formed, but no secret we hold signed it: forged or
	// altered in transit.
	ErrBadHash = errors.New("SRS address signature invalid")
	// ErrExpired: signed by us, but older than MaxAge.
	ErrExpired = errors.New("SRS address expired")
)

// Reason maps an error from this package to a short, bounded label for a
// metric ("not_srs", "malformed", "bad_hash", "expired"); nil gives "" and any
// other error "error", so the label set stays closed whatever is passed in.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotSRS):
		return "not_srs"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrBadHash):
		return "bad_hash"
	case errors.Is(err, ErrExpired):
		return "expired"
	}
	return "error"
}

// ReplyText is the text of the sentinel err wraps, free of addresses and
// secrets, for an SMTP reply such as "550 5.1.1 SRS address expired". It is ""
// for nil and for errors that are not about the address.
func ReplyText(err error) string {
	for _, s := range []error{ErrNotSRS, ErrMalformed, ErrBadHash, ErrExpired} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return ""
}
