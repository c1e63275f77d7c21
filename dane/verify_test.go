// SPDX-License-Identifier: MIT

package dane

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Certificate checks, each through a real TLS handshake on loopback with
// certificates from the test CA.
func TestVerifyHandshake(t *testing.T) {
	t.Parallel()
	const name = "contoso-com.j-v1.mx.microsoft"
	ca := newCA(t)
	other := newCA(t)
	leaf, err := ca.Leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	wrongName, err := ca.Leaf("mx.example.net")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.LeafWith(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), name)
	if err != nil {
		t.Fatal(err)
	}
	otherLeaf, err := other.Leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	caDER := ca.Certificate().Raw
	rec := func(u, s, m uint8, der []byte) string { return tlsaFor(t, tlsaAt, u, s, m, der) }
	const wrong512 = "3 1 2 " + someDigest + someDigest

	tests := []struct {
		name    string
		cert    tls.Certificate // what the server presents
		records []string
		want    string // "" for success, else in the error
	}{
		{"DANE-EE SPKI SHA-256", leaf, []string{rec(3, 1, 1, leaf.Certificate[0])}, ""},
		{"DANE-EE certificate SHA-256", leaf, []string{rec(3, 0, 1, leaf.Certificate[0])}, ""},
		{"DANE-EE SPKI SHA-512", leaf, []string{rec(3, 1, 2, leaf.Certificate[0])}, ""},
		{"DANE-EE full certificate", leaf, []string{rec(3, 0, 0, leaf.Certificate[0])}, ""},
		{"DANE-EE ignores the name", wrongName, []string{rec(3, 1, 1, wrongName.Certificate[0])}, ""},
		{"DANE-EE ignores expiry", expired, []string{rec(3, 1, 1, expired.Certificate[0])}, ""},
		{"DANE-EE for another key", otherLeaf, []string{rec(3, 1, 1, leaf.Certificate[0])}, "no TLSA record matches"},
		{"DANE-TA certificate SHA-256", leaf, []string{rec(2, 0, 1, caDER)}, ""},
		{"DANE-TA SPKI SHA-256", leaf, []string{rec(2, 1, 1, caDER)}, ""},
		{"DANE-TA, certificate for another name", wrongName, []string{rec(2, 0, 1, caDER)}, "certificate is valid for mx.example.net"},
		{"DANE-TA, expired certificate", expired, []string{rec(2, 0, 1, caDER)}, "expired"},
		{"DANE-TA of another CA", otherLeaf, []string{rec(2, 0, 1, caDER)}, "no TLSA record matches"},
		{"DANE-TA matching only the leaf", leaf, []string{rec(2, 0, 1, leaf.Certificate[0])}, "no TLSA record matches"},
		{"a matching record among others", leaf, []string{rec(3, 1, 1, otherLeaf.Certificate[0]), rec(2, 0, 1, caDER)}, ""},
		// RFC 7671 §9: a SHA-512 record for the same usage and selector
		// makes the SHA-256 one unusable.
		{"digest agility", leaf, []string{rec(3, 1, 1, leaf.Certificate[0]), tlsaAt + " 300 IN TLSA " + wrong512}, "no TLSA record matches"},
		{"agility is per usage and selector", leaf, []string{rec(3, 1, 1, leaf.Certificate[0]), tlsaAt + " 300 IN TLSA 3 0 2 " + someDigest + someDigest}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var all []*dns.TLSA
			for _, s := range tc.records {
				all = append(all, rr(t, s).(*dns.TLSA))
			}
			res := &Result{Host: name, Port: 25, Verdict: Secure, BaseDomain: name, Names: []string{name}, Records: usable(all)}
			err := handshake(tlsServer(t, tc.cert), res.TLSConfig())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("handshake: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("handshake: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// The whole path: a signed zone publishes the record, the lookup validates
// it, and the handshake with the host's server succeeds only for the
// certificate the record names.
func TestLookupThenHandshake(t *testing.T) {
	t.Parallel()
	const name = "contoso-com.j-v1.mx.microsoft"
	ca := newCA(t)
	leaf, err := ca.Leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := newCA(t).Leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		record  []byte // certificate the TLSA record names (3 1 1)
		present tls.Certificate
		ok      bool
	}{
		{"record names the presented certificate", leaf.Certificate[0], leaf, true},
		{"record names another certificate", leaf.Certificate[0], impostor, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.add(tlsaFor(t, tlsaAt, 3, 1, 1, tc.record))
			r, _ := w.serve()
			res, err := r.Lookup(context.Background(), host, 25)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			err = handshake(tlsServer(t, tc.present), res.TLSConfig())
			if tc.ok && err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrNoMatch) {
				t.Fatalf("handshake: %v, want ErrNoMatch", err)
			}
		})
	}
}

// A result that is not Secure with a usable record refuses every
// certificate, so a caller that forgets to check Err still cannot deliver.
func TestVerifyConnectionRefusesUnusableResult(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf, err := ca.Leaf("mx.example")
	if err != nil {
		t.Fatal(err)
	}
	ee := rr(t, tlsaFor(t, "_25._tcp.mx.example.", 3, 1, 1, leaf.Certificate[0])).(*dns.TLSA)
	for _, res := range []*Result{
		{Host: "mx.example", Verdict: Insecure, Reason: "no TLSA records", Records: []*dns.TLSA{ee}},
		{Host: "mx.example", Verdict: Bogus, Reason: "bad signature", Records: []*dns.TLSA{ee}},
		{Host: "mx.example", Records: []*dns.TLSA{ee}},
		{Host: "mx.example", Verdict: Secure},
	} {
		if err := handshake(tlsServer(t, leaf), res.TLSConfig()); err == nil {
			t.Errorf("%s result (%q) let the handshake through", res.Verdict, res.Reason)
		}
	}
}
