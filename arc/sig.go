// SPDX-License-Identifier: MIT

package arc

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dualmx/dualmx/internal/taglist"
)

// ChainValidation is the chain validation status of RFC 8617 §4.4.
type ChainValidation string

const (
	CVNone ChainValidation = "none"
	CVPass ChainValidation = "pass"
	CVFail ChainValidation = "fail"
)

// maxInstance is the highest instance RFC 8617 §4.2.1 allows.
const maxInstance = 50

const (
	nameAAR = "arc-authentication-results"
	nameAMS = "arc-message-signature"
	nameAS  = "arc-seal"
)

type algorithm int

const (
	algRSASHA256 algorithm = iota + 1
	algEd25519SHA256
)

func (a algorithm) String() string {
	switch a {
	case algRSASHA256:
		return "rsa-sha256"
	case algEd25519SHA256:
		return "ed25519-sha256"
	}
	return "unknown"
}

func parseAlgorithm(s string) (algorithm, error) {
	switch s {
	case "rsa-sha256":
		return algRSASHA256, nil
	case "ed25519-sha256":
		return algEd25519SHA256, nil
	case "rsa-sha1":
		return 0, errors.New("a=rsa-sha1 is refused (RFC 8301 §3.1)")
	case "":
		return 0, errors.New("a= is empty")
	}
	return 0, fmt.Errorf("unknown algorithm a=%s", truncate(s))
}

// arcSig is a parsed ARC-Seal or ARC-Message-Signature. Parsing the instance
// and the rest are separate: a broken older AMS must only lower oldest-pass,
// not fail the chain, so its error is kept in err until someone needs it.
type arcSig struct {
	f    field
	inst int
	err  error // why this signature can never validate, if known at parse time

	alg           algorithm
	b, bh         []byte
	d, s          string
	h             []string // AMS only
	relaxedHeader bool     // AMS only; AS is always relaxed
	relaxedBody   bool
	limit         int64 // l=, -1 when absent
	cv            ChainValidation
}

// parseInstance reads position = 1*2DIGIT in 1..50 (RFC 8617 §3.9).
func parseInstance(s string) (int, error) {
	if len(s) == 0 || len(s) > 2 {
		return 0, fmt.Errorf("invalid instance i=%s", truncate(s))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxInstance {
		return 0, fmt.Errorf("invalid instance i=%s", truncate(s))
	}
	return n, nil
}

// parseSig parses an AS (seal=true) or AMS field. A non-nil error means the
// instance itself is unknown, which breaks the chain's structure.
func parseSig(f field, seal bool) (*arcSig, error) {
	tags, err := taglist.Parse(string(f.value()))
	if err != nil {
		return nil, err
	}
	i, ok := tags.Get("i")
	if !ok {
		return nil, errors.New("no i= tag")
	}
	inst, err := parseInstance(i)
	if err != nil {
		return nil, err
	}
	s := &arcSig{f: f, inst: inst, limit: -1}
	s.err = s.fill(tags, seal)
	return s, nil
}

func (s *arcSig) fill(tags taglist.List, seal bool) error {
	var err error
	a, ok := tags.Get("a")
	if !ok {
		return errors.New("no a= tag")
	}
	if s.alg, err = parseAlgorithm(a); err != nil {
		return err
	}
	if s.b, err = base64Tag(tags, "b"); err != nil {
		return err
	}
	if s.d, err = domainTag(tags, "d"); err != nil {
		return err
	}
	if s.s, err = domainTag(tags, "s"); err != nil {
		return err
	}
	if t, ok := tags.Get("t"); ok {
		if _, err := parseDigits(t); err != nil {
			return fmt.Errorf("t=: %w", err)
		}
	}
	if seal {
		// RFC 8617 §4.1.3: h= in an ARC-Seal MUST make the chain fail.
		if _, ok := tags.Get("h"); ok {
			return errors.New("h= is not allowed in ARC-Seal (RFC 8617 §4.1.3)")
		}
		cv, ok := tags.Get("cv")
		if !ok {
			return errors.New("no cv= tag")
		}
		switch ChainValidation(cv) {
		case CVNone, CVPass, CVFail:
			s.cv = ChainValidation(cv)
		default:
			return fmt.Errorf("invalid cv=%s", truncate(cv))
		}
		return nil
	}
	if s.bh, err = base64Tag(tags, "bh"); err != nil {
		return err
	}
	h, ok := tags.Get("h")
	if !ok {
		return errors.New("no h= tag")
	}
	for _, name := range strings.Split(h, ":") {
		if name = strings.ToLower(taglist.TrimFWS(name)); name != "" {
			s.h = append(s.h, name)
		}
		// RFC 8617 §4.1.2 keeps all ARC fields out of h=. Validators in
		// the field (dkimpy, and the test suite written with it) enforce
		// it for ARC-Seal only, and real AMSs do name the AAR; a sealed
		// ARC-Seal could only be a forger's reuse of an older one.
		if name == nameAS {
			return errors.New("h= names ARC-Seal (RFC 8617 §4.1.2)")
		}
	}
	c, ok := tags.Get("c")
	if !ok {
		c = "simple/simple"
	}
	hc, bc, _ := strings.Cut(c, "/")
	if s.relaxedHeader, err = parseCanon(hc); err != nil {
		return err
	}
	if bc == "" && !strings.Contains(c, "/") {
		bc = "simple" // RFC 6376 §3.5: "relaxed" alone is relaxed/simple
	}
	if s.relaxedBody, err = parseCanon(bc); err != nil {
		return err
	}
	if l, ok := tags.Get("l"); ok {
		if s.limit, err = parseDigits(l); err != nil {
			return fmt.Errorf("l=: %w", err)
		}
	}
	return nil
}

func parseCanon(s string) (relaxed bool, err error) {
	switch s {
	case "simple":
		return false, nil
	case "relaxed":
		return true, nil
	}
	return false, fmt.Errorf("invalid canonicalisation c=%s", truncate(s))
}

func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("invalid number %q", truncate(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid number %q", truncate(s))
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func base64Tag(tags taglist.List, name string) ([]byte, error) {
	v, ok := tags.Get(name)
	if !ok {
		return nil, fmt.Errorf("no %s= tag", name)
	}
	v = taglist.StripFWS(v)
	if v == "" {
		return nil, fmt.Errorf("%s= is empty", name)
	}
	out, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%s= is not base64", name)
	}
	return out, nil
}

// domainTag reads d= or s=: dot-separated labels of letters, digits, '-' and
// '_' (selectors use it), or 8-bit bytes for U-labels (RFC 8616).
func domainTag(tags taglist.List, name string) (string, error) {
	v, ok := tags.Get(name)
	if !ok {
		return "", fmt.Errorf("no %s= tag", name)
	}
	if v == "" {
		return "", fmt.Errorf("%s= is empty", name)
	}
	if !validDomain(v) {
		return "", fmt.Errorf("%s=%s is not a valid domain name", name, truncate(v))
	}
	return v, nil
}

func validDomain(v string) bool {
	if len(v) > 253 {
		return false
	}
	for _, label := range strings.Split(v, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c < 0x80 {
				return false
			}
		}
	}
	return true
}

// parseAARInstance reads "i=N;" at the start of an AAR value
// (arc-info = instance [CFWS] ";" authres-payload, RFC 8617 §4.1.1).
func parseAARInstance(v []byte) (int, error) {
	s := taglist.TrimFWS(string(v))
	if !strings.HasPrefix(s, "i") {
		return 0, errors.New("does not start with i=")
	}
	s = taglist.TrimFWS(s[1:])
	if !strings.HasPrefix(s, "=") {
		return 0, errors.New("does not start with i=")
	}
	num, _, ok := strings.Cut(s[1:], ";")
	if !ok {
		return 0, errors.New("no ';' after i=")
	}
	return parseInstance(taglist.TrimFWS(num))
}

// stripB returns the raw field with the value of its b= tag removed,
// surrounding whitespace included (RFC 6376 §3.7), leaving every other byte
// as it was so that simple canonicalisation still sees the original text.
func stripB(raw []byte) []byte {
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	end := len(raw)
	if bytes.HasSuffix(raw, crlf) {
		end -= 2
	}
	start := colon + 1
	for start <= end {
		semi := bytes.IndexByte(raw[start:end], ';')
		specEnd := end
		if semi >= 0 {
			specEnd = start + semi
		}
		spec := raw[start:specEnd]
		if eq := bytes.IndexByte(spec, '='); eq >= 0 && taglist.TrimFWS(string(spec[:eq])) == "b" {
			out := make([]byte, 0, len(raw))
			out = append(out, raw[:start+eq+1]...)
			return append(out, raw[specEnd:]...)
		}
		if semi < 0 {
			break
		}
		start = specEnd + 1
	}
	return raw
}

// verifySignature checks sig over the SHA-256 digest with the published key.
func verifySignature(alg algorithm, pub crypto.PublicKey, digest, sig []byte) error {
	switch alg {
	case algRSASHA256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return errors.New("key record is not an RSA key")
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig); err != nil {
			return errors.New("signature does not verify")
		}
		return nil
	case algEd25519SHA256:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return errors.New("key record is not an Ed25519 key")
		}
		// RFC 8463 §3: Ed25519 signs the SHA-256 hash, not the raw data.
		if !ed25519.Verify(k, digest, sig) {
			return errors.New("signature does not verify")
		}
		return nil
	}
	return errors.New("unknown algorithm")
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// truncate keeps error messages (which end up in logs and Result.Reason)
// short when the input is hostile.
func truncate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
