// SPDX-License-Identifier: MIT

package queue

import (
	"errors"
	"fmt"
	"net/textproto"
	"strconv"

	"github.com/emersion/go-smtp"
)

// DeliveryError is a failure classified once: the SMTP reply (or a local
// reason) and whether trying again may help. Errors that were never
// classified count as temporary: losing mail to an unknown error is worse
// than retrying it.
type DeliveryError struct {
	Code      int    // SMTP reply code, 0 for a local or network failure
	Status    string // enhanced status code, e.g. "5.1.1"
	Message   string
	Temporary bool
	Err       error // the underlying error, if any
}

func (e *DeliveryError) Error() string { return e.Reply() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// Reply renders the failure the way it is stored in the item and shown to
// admins: "550 5.1.1 text", or the status and a local reason.
func (e *DeliveryError) Reply() string {
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

// tempErr and permErr build local decisions (policy, capability checks).
func tempErr(status, format string, args ...any) *DeliveryError {
	return &DeliveryError{Status: status, Message: fmt.Sprintf(format, args...), Temporary: true}
}

func permErr(status, format string, args ...any) *DeliveryError {
	return &DeliveryError{Status: status, Message: fmt.Sprintf(format, args...)}
}

// classify turns anything an SMTP exchange can return into a DeliveryError.
func classify(err error) *DeliveryError {
	if err == nil {
		return nil
	}
	var de *DeliveryError
	if errors.As(err, &de) {
		return de
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fromReply(se.Code, enhanced(se.EnhancedCode), se.Message, err)
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return fromReply(te.Code, "", te.Msg, err)
	}
	return &DeliveryError{Status: "4.4.2", Message: err.Error(), Temporary: true, Err: err}
}

// isReply reports whether err is an answer from the server, after which the
// connection is still in a known state and can be reused.
func isReply(err error) bool {
	var se *smtp.SMTPError
	var te *textproto.Error
	return errors.As(err, &se) || errors.As(err, &te)
}

func fromReply(code int, status, msg string, err error) *DeliveryError {
	// Only 5xx is permanent; a 421 or any unexpected code is worth a retry.
	return &DeliveryError{Code: code, Status: status, Message: msg, Temporary: code/100 != 5, Err: err}
}

func enhanced(c smtp.EnhancedCode) string {
	if c == smtp.NoEnhancedCode || c == smtp.EnhancedCodeNotSet || c[0] == 0 {
		return ""
	}
	return strconv.Itoa(c[0]) + "." + strconv.Itoa(c[1]) + "." + strconv.Itoa(c[2])
}
