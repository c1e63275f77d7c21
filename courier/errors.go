// SPDX-License-Identifier: MIT

package courier

import (
	"errors"
	"fmt"
	"net/textproto"
	"strconv"

	"github.com/emersion/go-smtp"
)

// Error is a delivery failure classified once: the SMTP reply (or a local
// reason) and whether trying again may help. Errors that were never
// classified count as temporary: losing mail to an unknown error is worse
// than retrying it.
type Error struct {
	Code      int    // SMTP reply code, 0 for a local or network failure
	Status    string // enhanced status code, e.g. "5.1.1"
	Message   string
	Temporary bool
	// Signal is what the reply says about the target as a whole
	// (replies.go); SignalNone for most.
	Signal Signal
	Err    error // the underlying error, if any
}

func (e *Error) Error() string { return e.Reply() }
func (e *Error) Unwrap() error { return e.Err }

// Reply renders the failure the way the queue stores it and admins read
// it: "550 5.1.1 text", or the status and a local reason.
func (e *Error) Reply() string {
	switch {
	case e.Code != 0 && e.Status != "":
		return fmt.Sprintf("%d %s %s", e.Code, e.Status, e.Message)
	case e.Code != 0:
		return fmt.Sprintf("%d %s", e.Code, e.Message)
	case e.Status != "":
		return e.Status + " " + e.Message
	}
	return e.Message
}

// TempError builds a local decision that trying later may change (a
// capability the next hop lacks, a policy).
func TempError(status, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...), Temporary: true}
}

// PermError builds a local decision that trying again will not change.
func PermError(status, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Classify turns anything an SMTP exchange can return into an Error; an
// error it cannot place counts as temporary.
func Classify(err error) *Error {
	if err == nil {
		return nil
	}
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fromReply(se.Code, enhanced(se.EnhancedCode), se.Message, err)
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		// A reply read outside go-smtp (the greeting, EHLO, STARTTLS):
		// its enhanced status counts as much.
		se := smtpError(te)
		return fromReply(se.Code, enhanced(se.EnhancedCode), se.Message, err)
	}
	return &Error{Status: "4.4.2", Message: err.Error(), Temporary: true, Err: err}
}

// isReply reports whether err is an answer from the server, after which the
// connection is still in a known state and can be reused.
func isReply(err error) bool {
	var se *smtp.SMTPError
	var te *textproto.Error
	return errors.As(err, &se) || errors.As(err, &te)
}

func fromReply(code int, status, msg string, err error) *Error {
	// Only 5xx is permanent, and not even that when the reply is about the
	// target rather than the message (replies.go); a 421 or any unexpected
	// code is worth a retry.
	sig, temp := replySignal(code, status, msg)
	return &Error{Code: code, Status: status, Message: msg, Temporary: temp, Signal: sig, Err: err}
}

func enhanced(c smtp.EnhancedCode) string {
	if c == smtp.NoEnhancedCode || c == smtp.EnhancedCodeNotSet || c[0] == 0 {
		return ""
	}
	return strconv.Itoa(c[0]) + "." + strconv.Itoa(c[1]) + "." + strconv.Itoa(c[2])
}
