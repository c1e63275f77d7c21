// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"errors"
	"testing"
)

// senders is a next hop that keeps the envelope sender of each transaction.
type senders struct{ got []string }

func (s *senders) Start(_ context.Context, msg Message) (Delivery, error) {
	s.got = append(s.got, msg.From)
	return nil, nil
}

// TestRewriteSender: the next hop sees the sender rewritten, the null
// sender never is, and a sender that cannot be rewritten defers the
// message without reaching the next hop.
func TestRewriteSender(t *testing.T) {
	next := &senders{}
	st := RewriteSender(next, func(from string) (string, error) {
		if from == "bad" {
			return "", errors.New("no domain")
		}
		return "SRS0=x=" + from, nil
	})
	for _, from := range []string{"alice@sender.test", ""} {
		if _, err := st.Start(context.Background(), Message{From: from}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := st.Start(context.Background(), Message{From: "bad"})
	var e *Error
	if !errors.As(err, &e) || !e.Temporary || e.Status != "4.3.0" {
		t.Errorf("a sender that cannot be rewritten: %v", err)
	}
	if len(next.got) != 2 || next.got[0] != "SRS0=x=alice@sender.test" || next.got[1] != "" {
		t.Errorf("envelope senders %q", next.got)
	}
}
