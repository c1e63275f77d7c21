// SPDX-License-Identifier: MIT

package courier

import "context"

// RewriteSender is a stage before next that gives it the envelope sender
// rewrite returns: dualmx's SRS (srs.Rewriter.Forward), so that SPF passes
// at the tenant and bounces come back to dualmx. The null sender stays
// null. A sender that cannot be rewritten defers the message (4.3.0): it is
// our failure, not the sender's.
func RewriteSender(next Target, rewrite func(from string) (string, error)) Target {
	return senderRewrite{next: next, rewrite: rewrite}
}

type senderRewrite struct {
	next    Target
	rewrite func(string) (string, error)
}

func (s senderRewrite) Start(ctx context.Context, msg Message) (Delivery, error) {
	if msg.From == "" {
		return s.next.Start(ctx, msg)
	}
	from, err := s.rewrite(msg.From)
	if err != nil {
		return nil, TempError("4.3.0", "rewrite sender %q: %v", msg.From, err)
	}
	msg.From = from
	return s.next.Start(ctx, msg)
}
