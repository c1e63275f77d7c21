// SPDX-License-Identifier: MIT

package arc

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/dualmx/dualmx/internal/taglist"
)

// LookupTXT returns the TXT records at name, each record's strings already
// joined (as net.Resolver.LookupTXT does). It is injected so that dualmx asks
// its configured resolver and tests answer from fixed records.
type LookupTXT func(ctx context.Context, name string) ([]string, error)

// minRSABits is the smallest RSA key RFC 8301 §3.2 lets a verifier accept.
const minRSABits = 1024

// lookupKey fetches and parses the key for selector s at domain d.
func lookupKey(ctx context.Context, lookup LookupTXT, s, d string) (crypto.PublicKey, error) {
	name := s + "._domainkey." + d
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	txts, err := lookup(ctx, name)
	if err != nil {
		// RFC 8617 §5.2.1: every error, DNS included, is a permanent fail.
		return nil, fmt.Errorf("key %s: DNS lookup: %w", name, err)
	}
	if len(txts) == 0 {
		return nil, fmt.Errorf("key %s: no TXT record", name)
	}
	var firstErr error
	for _, txt := range txts {
		pub, err := parseKeyRecord(txt)
		if err == nil {
			return pub, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("key %s: %w", name, firstErr)
}

// parseKeyRecord parses a DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4).
func parseKeyRecord(txt string) (crypto.PublicKey, error) {
	tags, err := taglist.Parse(txt)
	if err != nil {
		return nil, fmt.Errorf("key record: %w", err)
	}
	if v, ok := tags.Get("v"); ok && (v != "DKIM1" || tags[0].Name != "v") {
		return nil, errors.New("key record: v= must be DKIM1 and come first")
	}
	if h, ok := tags.Get("h"); ok && !listHas(h, "sha256") {
		return nil, errors.New("key record: h= does not allow sha256")
	}
	if s, ok := tags.Get("s"); ok && !listHas(s, "email") && !listHas(s, "*") {
		return nil, errors.New("key record: s= excludes email")
	}
	p, ok := tags.Get("p")
	if !ok {
		return nil, errors.New("key record: no p= tag")
	}
	p = taglist.StripFWS(p)
	if p == "" {
		return nil, errors.New("key record: key revoked (empty p=)")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, errors.New("key record: p= is not base64")
	}
	k, _ := tags.Get("k")
	switch k {
	case "", "rsa":
		pub, err := parseRSAPublic(der)
		if err != nil {
			return nil, err
		}
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("key record: %d-bit RSA key is too short (RFC 8301 §3.2)", pub.N.BitLen())
		}
		return pub, nil
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key record: Ed25519 key is %d bytes, want %d", len(der), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(der), nil
	}
	return nil, fmt.Errorf("key record: unknown key type k=%s", truncate(k))
}

// parseRSAPublic accepts SubjectPublicKeyInfo, which RFC 6376 specifies, and
// bare PKCS#1, which some publishers use and most verifiers accept.
func parseRSAPublic(der []byte) (*rsa.PublicKey, error) {
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		if k, ok := pub.(*rsa.PublicKey); ok {
			return k, nil
		}
		return nil, errors.New("key record: k=rsa but p= holds another key type")
	}
	k, err := x509.ParsePKCS1PublicKey(der)
	if err != nil {
		return nil, errors.New("key record: p= is not an RSA public key")
	}
	return k, nil
}

func listHas(list, want string) bool {
	for _, item := range strings.Split(list, ":") {
		if taglist.TrimFWS(item) == want {
			return true
		}
	}
	return false
}
