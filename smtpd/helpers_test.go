// SPDX-License-Identifier: MIT

package smtpd

import (
	"net/netip"
	"time"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
