// SPDX-License-Identifier: MIT

package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// TLSA certificate usages, selectors and matching types (RFC 6698, names
// from RFC 7218).
const (
	UsagePKIXTA = 0
	UsagePKIXEE = 1
	UsageDANETA = 2
	UsageDANEEE = 3

	SelectorCert = 0
	SelectorSPKI = 1

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// ErrNoMatch is wrapped by Verify's error when no record matches the chain.
var ErrNoMatch = errors.New("no TLSA record matches the server's certificate chain")

// usable keeps the records SMTP can use. PKIX-TA(0) and PKIX-EE(1) are
// unusable for SMTP (RFC 7672 §3.1.3: there is no agreed set of public CAs
// for MTAs), as are unknown selectors and matching types and records whose
// data is not a digest of the right length. Of the digests for one usage
// and selector only the strongest kind present is kept (digest algorithm
// agility, RFC 7671 §9): SHA2-512 records, where there are any, replace
// SHA2-256 ones, so a server cannot be held to the weaker digest.
func usable(records []*dns.TLSA) []*dns.TLSA {
	type us struct{ usage, selector uint8 }
	strongest := map[us]uint8{}
	var ok []*dns.TLSA
	for _, t := range records {
		if t.Usage != UsageDANETA && t.Usage != UsageDANEEE {
			continue
		}
		if t.Selector != SelectorCert && t.Selector != SelectorSPKI {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil || len(data) == 0 {
			continue
		}
		switch t.MatchingType {
		case MatchFull:
		case MatchSHA256:
			if len(data) != sha256.Size {
				continue
			}
		case MatchSHA512:
			if len(data) != sha512.Size {
				continue
			}
		default:
			continue
		}
		ok = append(ok, t)
		k := us{t.Usage, t.Selector}
		if t.MatchingType != MatchFull && t.MatchingType > strongest[k] {
			strongest[k] = t.MatchingType
		}
	}
	out := ok[:0]
	for _, t := range ok {
		if t.MatchingType == MatchFull || t.MatchingType == strongest[us{t.Usage, t.Selector}] {
			out = append(out, t)
		}
	}
	return out
}

// matches reports whether cert is the one a record describes.
func matches(t *dns.TLSA, cert *x509.Certificate) bool {
	want, err := hex.DecodeString(t.Certificate)
	if err != nil {
		return false
	}
	var data []byte
	switch t.Selector {
	case SelectorCert:
		data = cert.Raw
	case SelectorSPKI:
		data = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch t.MatchingType {
	case MatchFull:
	case MatchSHA256:
		s := sha256.Sum256(data)
		data = s[:]
	case MatchSHA512:
		s := sha512.Sum512(data)
		data = s[:]
	default:
		return false
	}
	return string(data) == string(want)
}

// Verify checks a server's certificate chain, as presented in the handshake
// (leaf first), against usable TLSA records (see Result.Records):
//
//   - DANE-EE(3): the leaf matches the record. Its names and dates are not
//     checked (RFC 7672 §3.1.1): the signed record is the binding.
//   - DANE-TA(2): a certificate the server presented after the leaf matches
//     the record, and the leaf chains up to it, is valid at now and carries
//     one of names (RFC 7672 §3.1.2, §3.2.3). The trust anchor must be in
//     the presented chain, as RFC 7671 §5.2.2 asks servers to do.
func Verify(records []*dns.TLSA, names []string, chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("the server presented no certificate")
	}
	leaf := chain[0]
	for _, t := range records {
		if t.Usage == UsageDANEEE && matches(t, leaf) {
			return nil
		}
	}
	var taErr error
	for _, t := range records {
		if t.Usage != UsageDANETA {
			continue
		}
		for i, ta := range chain[1:] {
			if !matches(t, ta) {
				continue
			}
			err := verifyToAnchor(leaf, chain[1:i+1], ta, names, now)
			if err == nil {
				return nil
			}
			taErr = err
		}
	}
	if taErr != nil {
		return fmt.Errorf("%w: the DANE-TA trust anchor is in the chain, but %v", ErrNoMatch, taErr)
	}
	return ErrNoMatch
}

// verifyToAnchor checks leaf up to the trust anchor ta through intermediates,
// for one of names.
func verifyToAnchor(leaf *x509.Certificate, intermediates []*x509.Certificate, ta *x509.Certificate, names []string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	if len(names) == 0 {
		return errors.New("no name to check the certificate for")
	}
	var err error
	for _, name := range names {
		_, err = leaf.Verify(x509.VerifyOptions{
			DNSName:       name,
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   now,
			// RFC 7672 asks for no particular extended key usage, and mail
			// servers' certificates are not always issued for serverAuth.
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err == nil {
			return nil
		}
	}
	return err
}

// VerifyConnection checks the server's certificate chain against the
// result's records; it is meant for tls.Config.VerifyConnection, with
// InsecureSkipVerify set so that Go's own PKIX verification (which knows
// nothing of TLSA) does not run first. Use TLSConfig to get both right.
func (r *Result) VerifyConnection(cs tls.ConnectionState) error {
	if err := r.Err(); err != nil {
		return err
	}
	now := time.Now
	if r.now != nil {
		now = r.now
	}
	if err := Verify(r.Records, r.Names, cs.PeerCertificates, now()); err != nil {
		return fmt.Errorf("DANE for %s: %w", r.Host, err)
	}
	return nil
}

// TLSConfig returns the client configuration for a STARTTLS handshake with
// the host: SNI is the TLSA base domain (RFC 7672 §8.1), and the
// certificate is verified against the TLSA records by VerifyConnection
// instead of the system's CAs. A caller may set further fields (such as
// MinVersion higher) but must not clear VerifyConnection.
func (r *Result) TLSConfig() *tls.Config {
	return &tls.Config{
		ServerName:         r.BaseDomain,
		InsecureSkipVerify: true, // VerifyConnection does the verifying, against the TLSA records
		VerifyConnection:   r.VerifyConnection,
		MinVersion:         tls.VersionTLS12,
	}
}
