// SPDX-License-Identifier: MIT

// Package vouch computes what dualmx prepends to a forwarded message before
// delivery: an Authentication-Results field recording what it saw on arrival
// and, when sealing is configured, an ARC set vouching for it (RFC 8617).
// It never changes the message itself, so the author's DKIM signature keeps
// verifying; it only puts header fields in front.
//
// A Voucher is a stage of the tenant's delivery: Target wraps the courier's
// target, and each transaction's body gets the fields before it, unless it
// comes with fields already (the verdict an earlier attempt stored with the
// message, which stands).
package vouch

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/dualmx/dualmx/arc"
	"github.com/dualmx/dualmx/authcheck"
	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/metrics"
)

// Voucher turns a spooled message into the fields to prepend.
type Voucher struct {
	// Check verifies DKIM, SPF and DMARC on arrival; its AuthServID is ours.
	Check authcheck.Checker
	// Sealer adds the ARC set; nil turns sealing off.
	Sealer  *arc.Sealer
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// Target returns next with the voucher's fields put before every message:
// the stage between the queue and the courier.
func (v *Voucher) Target(next courier.Target) courier.Target { return &stage{v: v, next: next} }

type stage struct {
	v    *Voucher
	next courier.Target
}

func (s *stage) Start(ctx context.Context, msg courier.Message) (courier.Delivery, error) {
	d, err := s.next.Start(ctx, msg)
	if err != nil {
		return nil, err
	}
	return &vouched{Delivery: d, v: s.v, msg: msg}, nil
}

// vouched is a transaction whose body gets the voucher's fields.
type vouched struct {
	courier.Delivery
	v   *Voucher
	msg courier.Message
}

// Body judges the message, unless header says it was judged before. A
// failure is logged and the message goes on without the fields:
// authentication results and the seal help the tenant trust the message,
// but never decide whether it is delivered.
func (d *vouched) Body(ctx context.Context, header []byte, body courier.Body) error {
	if len(header) == 0 {
		var err error
		if header, err = d.v.Fields(ctx, &d.msg, body); err != nil {
			d.v.log().Warn("vouch: delivering without added authentication fields", "id", d.msg.ID, "err", err)
		}
	}
	return d.Delivery.Body(ctx, header, body)
}

// Fields runs the arrival checks on msg, whose body is the spooled message
// (dualmx's Received field and the original bytes), and returns the
// Authentication-Results field with, when sealing is on, the ARC set before
// it. The checks read body in parallel passes, never holding it in memory.
func (v *Voucher) Fields(ctx context.Context, msg *courier.Message, body courier.Body) ([]byte, error) {
	ra, size := body, body.Size()
	open := func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(ra, 0, size)), nil }

	// The ARC verdict is taken inside the checks, once; the seal needs the
	// whole verdict (instance, cv), so it is kept from that one pass.
	// The checks may give up on a slow pass at their deadline, so the verdict
	// is handed over under a lock and only a finished one is used.
	var mu sync.Mutex
	var prior arc.Result
	var verified bool
	ck := v.Check
	lookup := ck.DNS()
	ck.ARC = func(ctx context.Context, msg io.Reader) (string, int, string) {
		r := arc.Verify(ctx, msg, lookup.LookupTXT)
		mu.Lock()
		prior, verified = r, true
		mu.Unlock()
		return string(r.CV), r.Instance, r.Reason
	}
	res := ck.Check(ctx, authcheck.Input{ClientIP: net.ParseIP(msg.ClientIP), Helo: msg.Helo, MailFrom: msg.From, Message: open})
	mu.Lock()
	prior, done := prior, verified
	mu.Unlock()
	log := v.log().With("id", msg.ID)
	log.Info("vouch: arrival checks", "dkim_author", res.AuthorDKIM, "spf", res.SPF, "dmarc", res.DMARC, "arc", res.ARC, "arc_instance", res.ARCInstance)

	fields := []byte(res.Field)
	if v.Sealer == nil {
		return fields, nil
	}
	if !done {
		v.count("skipped")
		log.Warn("vouch: not sealed, the chain could not be verified in time; forwarding with Authentication-Results only")
		return fields, nil
	}
	// The seal covers exactly what follows it on the wire: our
	// Authentication-Results field, then the spooled bytes.
	sealed := io.MultiReader(strings.NewReader(res.Field), io.NewSectionReader(ra, 0, size))
	set, err := v.Sealer.Seal(sealed, ck.AuthServID, res.AARPayload, prior)
	if err != nil {
		v.count("skipped")
		log.Warn("vouch: not sealed; forwarding with Authentication-Results only", "err", err)
		return fields, nil
	}
	v.count("sealed")
	return append(set, fields...), nil
}

func (v *Voucher) count(result string) {
	if v.Metrics != nil {
		v.Metrics.ARCSeals.WithLabelValues(result).Inc()
	}
}

func (v *Voucher) log() *slog.Logger {
	if v.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return v.Logger
}
