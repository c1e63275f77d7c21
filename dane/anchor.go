// SPDX-License-Identifier: MIT

package dane

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// rootAnchorsText holds the root zone's key-signing keys as DS records,
// copied from IANA's trust anchor file
// https://data.iana.org/root-anchors/root-anchors.xml:
// KSK-2017 (key tag 20326, signing since 2018) and KSK-2024 (key tag 38696,
// published for the rollover). Both are trusted so that the rollover needs
// no new release.
const rootAnchorsText = `
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
`

// maxAnchorFile bounds what LoadTrustAnchorFile reads: a real file holds a
// few records, and the parser should not be handed a disk's worth.
const maxAnchorFile = 64 << 10

// maxAnchors bounds the records in one anchor file ($GENERATE could make many).
const maxAnchors = 64

// TrustAnchors are the keys validation starts from, by zone: DS records (as
// IANA publishes the root's) or DNSKEY records. A name is validated from the
// closest anchor zone that encloses it.
type TrustAnchors struct {
	ds   map[string][]*dns.DS
	keys map[string][]*dns.DNSKEY
}

// RootAnchors returns the IANA root trust anchors (KSK-2017 and KSK-2024).
func RootAnchors() *TrustAnchors {
	a, err := ParseTrustAnchors("root anchors", []byte(rootAnchorsText))
	if err != nil {
		panic("dane: built-in root anchors: " + err.Error()) // a typo in the constant above
	}
	return a
}

// LoadTrustAnchorFile reads a trust anchor file; see ParseTrustAnchors.
func LoadTrustAnchorFile(path string) (*TrustAnchors, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAnchorFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxAnchorFile {
		return nil, fmt.Errorf("%s: larger than %d KiB; a trust anchor file holds a few DS or DNSKEY records", path, maxAnchorFile>>10)
	}
	return ParseTrustAnchors(path, data)
}

// ParseTrustAnchors reads DS and DNSKEY records in master-file format (one
// record per line or in parentheses; ";" starts a comment; owner names are
// absolute, relative ones are taken as below the root), as unbound's
// trust-anchor-file and IANA's root DS records are written. name labels
// errors. Every record must be one this package can validate with: an
// algorithm of RSASHA256, RSASHA512, ECDSAP256SHA256, ECDSAP384SHA384 or
// ED25519, and for DS a SHA-256 or SHA-384 digest; anything else (SHA-1
// above all) is an error rather than an anchor silently never used.
func ParseTrustAnchors(name string, data []byte) (*TrustAnchors, error) {
	a := &TrustAnchors{ds: map[string][]*dns.DS{}, keys: map[string][]*dns.DNSKEY{}}
	zp := dns.NewZoneParser(strings.NewReader(string(data)), ".", name)
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		n++
		if n > maxAnchors {
			return nil, fmt.Errorf("%s: more than %d records; a trust anchor file holds a few", name, maxAnchors)
		}
		if err := a.add(rr); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no DS or DNSKEY records", name)
	}
	return a, nil
}

func (a *TrustAnchors) add(rr dns.RR) error {
	h := rr.Header()
	zone := dns.CanonicalName(h.Name)
	if h.Class != dns.ClassINET {
		return fmt.Errorf("%s: class %s; trust anchors are IN records", describe(rr), dns.ClassToString[h.Class])
	}
	switch r := rr.(type) {
	case *dns.DS:
		if !algSupported(r.Algorithm) {
			return fmt.Errorf("%s: algorithm %s is refused", describe(rr), algName(r.Algorithm))
		}
		size := digestSize(r.DigestType)
		if size == 0 {
			return fmt.Errorf("%s: digest type %d is refused (SHA-256 and SHA-384 are used)", describe(rr), r.DigestType)
		}
		if d, err := hex.DecodeString(r.Digest); err != nil || len(d) != size {
			return fmt.Errorf("%s: the digest is not %d bytes of hex", describe(rr), size)
		}
		a.ds[zone] = append(a.ds[zone], r)
	case *dns.DNSKEY:
		if !algSupported(r.Algorithm) {
			return fmt.Errorf("%s: algorithm %s is refused", describe(rr), algName(r.Algorithm))
		}
		if r.Flags&dns.ZONE == 0 || r.Flags&dns.REVOKE != 0 || r.Protocol != 3 {
			return fmt.Errorf("%s: not a usable zone key (flags %d, protocol %d)", describe(rr), r.Flags, r.Protocol)
		}
		a.keys[zone] = append(a.keys[zone], r)
	default:
		return fmt.Errorf("%s: a %s record; trust anchors are DS or DNSKEY records", describe(rr), dns.TypeToString[h.Rrtype])
	}
	return nil
}

// Zones lists the zones that have anchors, sorted.
func (a *TrustAnchors) Zones() []string {
	var zs []string
	for z := range a.ds {
		zs = append(zs, z)
	}
	for z := range a.keys {
		if _, ok := a.ds[z]; !ok {
			zs = append(zs, z)
		}
	}
	slices.Sort(zs)
	return zs
}

// closest returns the deepest anchor zone that encloses name.
func (a *TrustAnchors) closest(name string) (string, bool) {
	best, found := "", false
	for _, z := range a.Zones() {
		if dns.IsSubDomain(z, name) && (!found || dns.CountLabel(z) > dns.CountLabel(best)) {
			best, found = z, true
		}
	}
	return best, found
}

// algSupported reports whether signatures of DNSKEY algorithm alg are
// validated. The SHA-1 algorithms (RSASHA1, RSASHA1-NSEC3-SHA1), RSAMD5, DSA
// and GOST are refused, as RFC 8624 says validators should no longer rely on
// them; Ed448 is missing from miekg/dns.
func algSupported(alg uint8) bool {
	switch alg {
	case dns.RSASHA256, dns.RSASHA512, dns.ECDSAP256SHA256, dns.ECDSAP384SHA384, dns.ED25519:
		return true
	}
	return false
}

// digestSize is the length of a DS digest of the given type, 0 for the types
// not used: SHA-1 (refused, RFC 8624) and GOST.
func digestSize(t uint8) int {
	switch t {
	case dns.SHA256:
		return 32
	case dns.SHA384:
		return 48
	}
	return 0
}

func algName(alg uint8) string {
	if s, ok := dns.AlgorithmToString[alg]; ok {
		return fmt.Sprintf("%s (%d)", s, alg)
	}
	return fmt.Sprintf("%d", alg)
}

// describe names a record for an error message by its owner (quoted: a
// name from master-file text may hold any byte), type and key tag; the rest
// of the record is not repeated, since its text may hold anything too.
func describe(rr dns.RR) string {
	h := rr.Header()
	owner := strconv.QuoteToASCII(h.Name)
	switch r := rr.(type) {
	case *dns.DS:
		return fmt.Sprintf("%s DS %d", owner, r.KeyTag)
	case *dns.DNSKEY:
		return fmt.Sprintf("%s DNSKEY (key tag %d)", owner, r.KeyTag())
	}
	return fmt.Sprintf("%s type %d", owner, h.Rrtype)
}
