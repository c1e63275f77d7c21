package main

import (
	"context"

	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/srs"
)

// srsStage is the tenant target's SRS stage: the tenant sees the envelope
// sender rewritten to an address of the SRS domain, so that SPF passes there
// and bounces come back to dualmx. The null sender stays null.
type srsStage struct {
	rw   *srs.Rewriter
	next courier.Target
}

func (s srsStage) Start(ctx context.Context, msg courier.Message) (courier.Delivery, error) {
	if msg.From == "" {
		return s.next.Start(ctx, msg)
	}
	from, err := s.rw.Forward(msg.From)
	if err != nil {
		return nil, courier.TempError("4.3.0", "rewrite sender %q: %v", msg.From, err)
	}
	msg.From = from
	return s.next.Start(ctx, msg)
}
