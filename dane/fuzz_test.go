// SPDX-License-Identifier: MIT

package dane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzParseTrustAnchors: a trust anchor file is outside input (an admin's
// file, or one fetched from somewhere). Whatever it holds, parsing must not
// panic, and what it accepts must be anchors the validator can use.
func FuzzParseTrustAnchors(f *testing.F) {
	f.Add([]byte(rootAnchorsText))
	f.Add([]byte(". 172800 IN DNSKEY 257 3 13 ( mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ== ) ; KSK\n"))
	f.Add([]byte("$ORIGIN example.\n@ 3600 IN DS 1 13 2 ( 0123456789abcdef0123456789abcdef\n 0123456789abcdef0123456789abcdef )\n"))
	f.Add([]byte(". IN DS 20326 5 1 0123456789abcdef0123456789abcdef01234567\n"))
	f.Add([]byte("$GENERATE 1-100 x$ IN DS 1 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte("$INCLUDE /etc/passwd\n"))
	f.Add([]byte(". IN TXT \"not an anchor\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseTrustAnchors("fuzz", data)
		if err != nil {
			// The message reaches a terminal (check-config) and logs.
			if strings.IndexFunc(err.Error(), isControl) >= 0 {
				t.Fatalf("error %q holds a control character", err)
			}
			return
		}
		zones := a.Zones()
		if len(zones) == 0 {
			t.Fatal("accepted a file with no anchors")
		}
		n := 0
		for _, z := range zones {
			for _, d := range a.ds[z] {
				n++
				if !algSupported(d.Algorithm) || digestSize(d.DigestType) == 0 {
					t.Fatalf("accepted an unusable DS: %v", d)
				}
			}
			for _, k := range a.keys[z] {
				n++
				if !algSupported(k.Algorithm) || k.Flags&dns.ZONE == 0 {
					t.Fatalf("accepted an unusable DNSKEY: %v", k)
				}
			}
			if got, ok := a.closest(z); !ok || got != z {
				t.Fatalf("closest(%q) = %q, %v", z, got, ok)
			}
		}
		if n > maxAnchors {
			t.Fatalf("accepted %d anchors, more than %d", n, maxAnchors)
		}
	})
}

// FuzzResolve: the resolver's answers are outside input too, and it is not
// trusted. Whatever it answers (here: the same fuzzed message to every
// question), the validator must not panic, must stay within its query
// budget, and must never call anything Secure: the input cannot hold a
// signature by the root's key.
func FuzzResolve(f *testing.F) {
	for _, seed := range resolveSeeds(f) {
		f.Add(seed)
	}
	anchors := RootAnchors()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		ex := func(_ context.Context, name string, qtype uint16) (*dns.Msg, error) {
			r := m.Copy()
			r.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
			if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
				return nil, errors.New(dns.RcodeToString[r.Rcode])
			}
			return r, nil
		}
		v := newValidator(ex, anchors, now)
		res, err := resolve(context.Background(), v, "contoso-com.j-v1.mx.microsoft", 25)
		if v.queries > maxQueries {
			t.Fatalf("%d queries, budget %d", v.queries, maxQueries)
		}
		if err == nil && res.Verdict == Secure {
			t.Fatalf("Secure without the root's signature: %+v", res)
		}
		if err == nil && strings.IndexFunc(res.Reason, isControl) >= 0 {
			t.Fatalf("reason %q holds a control character", res.Reason)
		}
	})
}

// resolveSeeds are answers shaped like the real ones.
func resolveSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	for _, rrs := range [][]string{
		{},
		{tlsaAt + " 300 IN TLSA 3 1 1 " + someDigest,
			tlsaAt + " 300 IN RRSIG TLSA 13 6 300 20300101000000 20200101000000 12345 mx.microsoft. AAAA"},
		{host + " 300 IN A 127.0.0.1", host + " 300 IN CNAME " + host},
		{". 3600 IN DNSKEY 257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU=",
			". 3600 IN RRSIG DNSKEY 8 0 3600 20300101000000 20200101000000 20326 . AAAA"},
		{"microsoft. 3600 IN DS 1 15 2 " + someDigest, "mx.microsoft. 3600 IN NS ns.mx.microsoft."},
	} {
		m := new(dns.Msg)
		m.Response = true
		for _, s := range rrs {
			m.Answer = append(m.Answer, rr(tb, s))
		}
		b, err := m.Pack()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
