// SPDX-License-Identifier: MIT

package dnscheck

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestTXTLine: what dualmx tells an admin to publish is a zone-file line
// that a DNS server reads back as the same value: a 2048-bit key record
// cut into strings of 255 bytes, quotes and odd bytes escaped.
func TestTXTLine(t *testing.T) {
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A", 12)
	for _, tc := range []struct{ value, want string }{
		{"v=spf1 -all", `x.example.nl. 3600 IN TXT "v=spf1 -all"`},
		{`a "quoted" \ value` + "\x01é", `x.example.nl. 3600 IN TXT "a \"quoted\" \\ value\001\195\169"`},
		{long, ""},
	} {
		line := TXTLine("x.example.nl.", 3600, tc.value)
		if tc.want != "" && line != tc.want {
			t.Errorf("TXTLine(%q) = %s, want %s", tc.value, line, tc.want)
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		// The wire form: strings of a length byte and that many bytes.
		buf := make([]byte, 4096)
		off, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		rdata := buf[off-int(rr.Header().Rdlength) : off]
		var got []byte
		for len(rdata) > 0 {
			n := int(rdata[0])
			got, rdata = append(got, rdata[1:1+n]...), rdata[1+n:]
		}
		if string(got) != tc.value {
			t.Errorf("%s reads back as %q, want %q", line, got, tc.value)
		}
	}
	if line := TXTLine("x.", 60, long); !strings.HasPrefix(line, `x. 60 IN TXT ( "`) || !strings.HasSuffix(line, `" )`) {
		t.Errorf("a long value is not in parentheses: %s", line)
	}
}
