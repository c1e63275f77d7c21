// SPDX-License-Identifier: MIT

package dnstest

import (
	"crypto"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Key is a DNSSEC key pair for one zone, used as both key-signing and
// zone-signing key (flags 257, a "combined signing key"), which is how small
// zones are often signed and all a validator test needs.
type Key struct {
	DNSKEY *dns.DNSKEY
	signer crypto.Signer
}

// NewKey generates a key for zone with algorithm alg (dns.RSASHA256,
// dns.ECDSAP256SHA256, dns.ED25519, dns.RSASHA1, ...). RSA keys are 2048
// bits, except RSASHA1 keys, which tests only use to be refused: 1024 bits,
// to keep them quick to make.
func NewKey(zone string, alg uint8) (*Key, error) {
	k := &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: dns.CanonicalName(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags:     dns.ZONE | dns.SEP,
		Protocol:  3,
		Algorithm: alg,
	}
	bits := 256
	switch alg {
	case dns.RSASHA256, dns.RSASHA512:
		bits = 2048
	case dns.RSASHA1, dns.RSASHA1NSEC3SHA1:
		bits = 1024
	case dns.ECDSAP384SHA384:
		bits = 384
	}
	priv, err := k.Generate(bits)
	if err != nil {
		return nil, fmt.Errorf("dnstest: key for %s: %w", zone, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dnstest: key for %s: %T is no crypto.Signer", zone, priv)
	}
	return &Key{DNSKEY: k, signer: signer}, nil
}

// DS is the key's delegation signer record (SHA-256), for the parent zone.
func (k *Key) DS() *dns.DS { return k.DNSKEY.ToDS(dns.SHA256) }

// Sign signs one RRset with the key, valid from inception to expiration.
// The signer name is the key's zone.
func (k *Key) Sign(rrset []dns.RR, inception, expiration time.Time) (*dns.RRSIG, error) {
	if len(rrset) == 0 {
		return nil, fmt.Errorf("dnstest: sign: empty RRset")
	}
	sig := &dns.RRSIG{
		Hdr:        dns.RR_Header{Ttl: rrset[0].Header().Ttl},
		Algorithm:  k.DNSKEY.Algorithm,
		Inception:  uint32(inception.Unix()),
		Expiration: uint32(expiration.Unix()),
		KeyTag:     k.DNSKEY.KeyTag(),
		SignerName: k.DNSKEY.Hdr.Name,
	}
	if err := sig.Sign(k.signer, rrset); err != nil {
		return nil, fmt.Errorf("dnstest: sign %s %s: %w", rrset[0].Header().Name, dns.TypeToString[rrset[0].Header().Rrtype], err)
	}
	return sig, nil
}

// SignAll signs every RRset in rrs (records grouped by owner name and type;
// RRSIGs already there are left alone) and returns rrs followed by the new
// signatures, in a stable order.
func (k *Key) SignAll(rrs []dns.RR, inception, expiration time.Time) ([]dns.RR, error) {
	type set struct {
		name  string
		rtype uint16
	}
	groups := map[set][]dns.RR{}
	var order []set
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeRRSIG {
			continue
		}
		s := set{strings.ToLower(h.Name), h.Rrtype}
		if _, ok := groups[s]; !ok {
			order = append(order, s)
		}
		groups[s] = append(groups[s], rr)
	}
	out := slices.Clone(rrs)
	for _, s := range order {
		sig, err := k.Sign(groups[s], inception, expiration)
		if err != nil {
			return nil, err
		}
		out = append(out, sig)
	}
	return out, nil
}

// Text renders records as master-file text for Start.
func Text(rrs []dns.RR) string {
	var b strings.Builder
	for _, rr := range rrs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	return b.String()
}
