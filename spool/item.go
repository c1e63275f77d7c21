// SPDX-License-Identifier: MIT

// Package spool is the durable store of accepted mail. A message is
// <id>.msg in the spool directory: the bytes exactly as they will be sent,
// followed by the envelope as committed (see trailer.go). Once its delivery
// state changes (a deferral, a hold, an admin's action) the versioned
// envelope and state are kept beside it in <id>.json. Both are readable with
// cat; the JSON is what an admin reads to see why mail waits.
//
// The spool knows where each message stands, not how it is delivered: the
// queue claims an item for an attempt (Claim), records the outcome through
// the claim, and an admin command in another process changes or removes an
// item under the same lock.
package spool

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// FormatVersion is written into every new item. Version 1 items (body file
// without a trailer, <id>.json written at commit), left by an older dualmx,
// are still read and delivered; an item of any other version is quarantined
// rather than guessed at.
const FormatVersion = 2

// State is where a message stands as a whole.
type State string

// Message states. A message that is delivered, dropped or bounced leaves the
// spool, so it has no state here.
const (
	StatePending  State = "pending"  // waiting for its first attempt
	StateDeferred State = "deferred" // a temporary failure; NextAttempt says when
	StateHeld     State = "held"     // waiting for an admin (permanent failure with the hold policy)
)

// States lists every state, in the order a message may pass them.
var States = []State{StatePending, StateDeferred, StateHeld}

// RcptState is where one recipient stands.
type RcptState string

// Recipient states.
const (
	RcptPending   RcptState = "pending"   // still to be delivered
	RcptDelivered RcptState = "delivered" // the next hop accepted it
	RcptFailed    RcptState = "failed"    // permanent failure, or gave up; awaits the policy or an admin
)

// Envelope is what the SMTP session knows about a message when it is spooled.
type Envelope struct {
	From       string // the reverse path; "" for the null sender
	Recipients []Recipient
	ReceivedAt time.Time
	ClientIP   string
	Helo       string
	EightBit   bool // BODY=8BITMIME, or 8-bit bytes seen in the body
	SMTPUTF8   bool // the envelope needed SMTPUTF8
	// Returned marks a bounce that arrived for an SRS address: it goes to the
	// original sender recovered from the address, by MX, like a DSN of our own,
	// and is never bounced again.
	Returned bool
	// Report marks a message that is itself a delivery report
	// (multipart/report): like one from the null sender, it is never bounced.
	Report bool
}

// Recipient is one RCPT of a message with its delivery state.
type Recipient struct {
	Rcpt    string `json:"rcpt"`    // as received (the forwarding alias)
	Address string `json:"address"` // the public address it stands for ("" for a DSN)
	Target  string `json:"target"`  // the envelope recipient used at the next hop

	State       RcptState `json:"state"`
	Attempts    int       `json:"attempts"`
	LastReply   string    `json:"last_reply,omitempty"` // "550 5.1.1 text" or a local reason
	LastCode    int       `json:"last_code,omitempty"`
	LastStatus  string    `json:"last_status,omitempty"` // enhanced status, "5.1.1"
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// Item is the metadata of one spooled message, as stored in <id>.json.
type Item struct {
	Version     int         `json:"version"`
	ID          string      `json:"id"`
	From        string      `json:"from"`
	Recipients  []Recipient `json:"recipients"`
	ReceivedAt  time.Time   `json:"received_at"`
	ClientIP    string      `json:"client_ip,omitempty"`
	Helo        string      `json:"helo,omitempty"`
	EightBit    bool        `json:"eight_bit"`
	SMTPUTF8    bool        `json:"smtputf8"`
	Size        int64       `json:"size"`
	DSN         bool        `json:"dsn"`              // this message is a delivery status notification we generated
	Report      bool        `json:"report,omitempty"` // it arrived as a delivery report; never bounced
	State       State       `json:"state"`
	Attempts    int         `json:"attempts"`
	NextAttempt time.Time   `json:"next_attempt"`
	LastAttempt time.Time   `json:"last_attempt,omitzero"`
	LastError   string      `json:"last_error,omitempty"`
	// ReleasedAt restarts the give-up clock when an admin releases a held message.
	ReleasedAt time.Time `json:"released_at,omitzero"`
	// Prepend holds the header fields that go before the message at the
	// tenant (Authentication-Results and the ARC set): the verdict of the
	// arrival checks, taken at the first attempt and kept from the first
	// attempt that did not deliver, so that every later attempt, also after
	// a restart, sends the same verdict.
	Prepend string `json:"prepend,omitempty"`

	// hasMeta says whether <id>.json exists, as far as the holder of the
	// item's lock knows: removal then skips a pointless unlink.
	hasMeta bool
	// end is where the envelope trailer ends in the body file, as read
	// from it (0: not known); a verdict is appended there.
	end int64
}

// Envelope returns the item's envelope part.
func (it *Item) Envelope() Envelope {
	return Envelope{From: it.From, Recipients: append([]Recipient(nil), it.Recipients...), ReceivedAt: it.ReceivedAt,
		ClientIP: it.ClientIP, Helo: it.Helo, EightBit: it.EightBit, SMTPUTF8: it.SMTPUTF8}
}

// Count returns how many recipients are in state st.
func (it *Item) Count(st RcptState) int {
	n := 0
	for _, r := range it.Recipients {
		if r.State == st {
			n++
		}
	}
	return n
}

// Addresses lists the public addresses the item is for, each once, in the
// order of its recipients.
func (it *Item) Addresses() []string {
	var out []string
	for _, r := range it.Recipients {
		if r.Address != "" && !slices.Contains(out, r.Address) {
			out = append(out, r.Address)
		}
	}
	return out
}

// HeldFirst sorts items for a person to read: held mail first (it waits
// for one), then by arrival.
func HeldFirst(items []Item) { slices.SortStableFunc(items, CompareHeldFirst) }

// CompareHeldFirst orders two items as HeldFirst does.
func CompareHeldFirst(a, b Item) int {
	ah, bh := a.State == StateHeld, b.State == StateHeld
	switch {
	case ah && !bh:
		return -1
	case bh && !ah:
		return 1
	}
	if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// CountPending counts, per public address (lower case), the items that
// still hold undelivered mail for it: queued (pending or deferred) and
// held. An item counts once per address however many of its recipients
// are for it.
func CountPending(items []Item) (queued, held map[string]int) {
	queued, held = map[string]int{}, map[string]int{}
	for i := range items {
		items[i].CountPending(queued, held)
	}
	return queued, held
}

// CountPending adds the item to the counts CountPending makes, for a
// caller that reads one item at a time (Spool.Walk).
func (it *Item) CountPending(queued, held map[string]int) {
	var seen []string
	for _, r := range it.Recipients {
		a := strings.ToLower(r.Address)
		if r.State == RcptDelivered || a == "" || slices.Contains(seen, a) {
			continue
		}
		seen = append(seen, a)
		if it.State == StateHeld {
			held[a]++
		} else {
			queued[a]++
		}
	}
}

// Bounceable reports whether a DSN may be sent for the item: never to the
// null sender, never about our own DSN, and never about a message that is a
// delivery report itself (RFC 5321 6.1; such loops are how backscatter
// starts). Those are held instead.
func (it *Item) Bounceable() bool { return it.From != "" && !it.DSN && !it.Report }

func (it *Item) validate() error {
	switch {
	case it.Version != 1 && it.Version != FormatVersion:
		return fmt.Errorf("unsupported version %d", it.Version)
	case !validID(it.ID):
		return fmt.Errorf("bad id %q", it.ID)
	case len(it.Recipients) == 0:
		return fmt.Errorf("no recipients")
	case it.State != StatePending && it.State != StateDeferred && it.State != StateHeld:
		return fmt.Errorf("unknown state %q", it.State)
	case it.ReceivedAt.IsZero():
		return fmt.Errorf("no received_at")
	}
	for i, r := range it.Recipients {
		if r.Target == "" {
			return fmt.Errorf("recipient %d has no target", i)
		}
		switch r.State {
		case RcptPending, RcptDelivered, RcptFailed:
		default:
			return fmt.Errorf("recipient %d: unknown state %q", i, r.State)
		}
	}
	return nil
}

// idForm is the form of an id, 20060102T150405.000000Z-0123abcd: d a
// decimal digit, h a lower-case hex digit, anything else itself.
const idForm = "ddddddddTdddddd.ddddddZ-hhhhhhhh"

// validID also guards admin input: an id never contains a path separator.
// Written out rather than a regular expression: every name in a spool of
// 100 000 items is checked at each rescan.
func validID(id string) bool {
	if len(id) != len(idForm) {
		return false
	}
	for i := range len(idForm) {
		c := id[i]
		switch idForm[i] {
		case 'd':
			if c < '0' || c > '9' {
				return false
			}
		case 'h':
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		default:
			if c != idForm[i] {
				return false
			}
		}
	}
	return true
}

// newID returns a file-name-safe id that sorts by creation time; the random
// suffix keeps ids unique across processes without coordination.
func newID(now time.Time) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return now.UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b[:])
}
