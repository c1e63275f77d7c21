// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/internal/dnstest"
)

// TestArrivalLookupsCached: the daemon's arrival checks keep DNS answers for
// their TTL, so a run of messages from one sender domain costs one SPF and
// one DMARC lookup, not one per message.
func TestArrivalLookupsCached(t *testing.T) {
	ns := dnstest.Start(t, "author.test. 300 IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n"+
		"_dmarc.author.test. 300 IN TXT \"v=DMARC1; p=reject\"\n")
	e := newEnv(t, envOptions{extraConfig: fmt.Sprintf("resolver: %q\n", ns.Addr())})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()
	const n = 4
	for i := 0; i < n; i++ {
		msg := bytes.Replace(testMessage(fmt.Sprintf("cached-%d", i)), []byte("author@example.org"), []byte("a@author.test"), 1)
		if err := send(e.smtpAddr(), "a@author.test", []string{"scriba@fwd.hervormdputten.nl"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitTenant(t, e.tenant, n)
	for _, name := range []string{"author.test", "_dmarc.author.test"} {
		if got := ns.Count(name, dns.TypeTXT); got != 1 {
			t.Errorf("TXT %s asked %d times for %d messages, want 1 (cached for its TTL)", name, got, n)
		}
	}
}
