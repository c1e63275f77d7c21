// SPDX-License-Identifier: MIT

package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrChainTooLong means the message already carries 50 ARC sets, the
	// most RFC 8617 §4.2.1 allows: the caller forwards it unsealed.
	ErrChainTooLong = errors.New("arc: chain already holds 50 ARC sets (RFC 8617 §4.2.1), not sealing")
	// ErrChainFailedUpstream means the newest ARC-Seal already says
	// cv=fail, after which RFC 8617 §5.1 step 2 adds nothing: the caller
	// forwards the message unsealed.
	ErrChainFailedUpstream = errors.New("arc: newest ARC-Seal already says cv=fail (RFC 8617 §5.1), not sealing")
)

// DefaultHeaders are the fields the ARC-Message-Signature covers when
// Sealer.Headers is nil: those a reader sees and trusts (originator,
// recipients, subject, date, threading), those that change how the body is
// rendered (MIME), list fields that mail clients act on, and DKIM-Signature
// so the AMS vouches for the author signatures it saw (RFC 8617 §4.1.2 says
// SHOULD). Authentication-Results and the ARC fields are left out because
// RFC 8617 §4.1.2 forbids them. Received is left out: hops after dualmx add
// their own, and covering ours protects nothing a reader relies on.
var DefaultHeaders = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-Disposition", "List-Id", "List-Unsubscribe",
	"List-Unsubscribe-Post", "DKIM-Signature",
}

// DefaultOversign are the fields covered once more than they occur when
// Sealer.Oversign is nil. A field added later (a second From, a forged
// Subject) then breaks the AMS instead of being shown as if it had been
// sealed. These fields may occur at most once (RFC 5322 §3.6), so this never
// breaks a legitimate message; DKIM-Signature and References are not
// over-signed because a later hop may legitimately add a signature.
var DefaultOversign = []string{"From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID"}

// Sealer adds ARC sets (RFC 8617 §5.1) for one sealing domain.
type Sealer struct {
	Domain   string // d=
	Selector string // s=; the key is published at Selector._domainkey.Domain
	// Key signs: its public key is an *rsa.PublicKey (rsa-sha256; at least
	// 1024 bits, 2048 recommended) or an ed25519.PublicKey (ed25519-sha256,
	// RFC 8463). LoadKey's RSA keys sign through OpenSSL where they can.
	Key crypto.Signer
	// Headers names the fields the AMS covers (h=); every occurrence in the
	// message is covered. nil means DefaultHeaders; an empty slice covers
	// none (only Oversign's).
	Headers []string
	// Oversign names fields covered once more than they occur, so that
	// adding one breaks the AMS. nil means DefaultOversign; empty means none.
	Oversign []string
	// Now gives t=; nil means time.Now.
	Now func() time.Time
}

// tagLayout is the order of tags in the fields Seal writes. RFC 8617's ABNF
// (§4.1.2, §4.1.3) puts the instance first; the rest follows dkimpy and the
// large providers so that the fields read familiarly in a header dump.
type tagLayout struct{ ams, as []string }

var rfcLayout = tagLayout{
	ams: []string{"i", "a", "c", "d", "s", "t", "h", "bh", "b"},
	as:  []string{"i", "cv", "a", "d", "s", "t", "b"},
}

// Seal returns the ARC-Seal, ARC-Message-Signature and
// ARC-Authentication-Results fields, in that order and each ending in CRLF,
// to prepend to msg. msg must be the message exactly as it will be sent
// after them; Seal only reads it. authServID is dualmx's authserv-id and
// results the AAR payload after "authserv-id;" (may be folded; empty means
// "none"). prior is Verify's verdict on msg's chain.
//
// Following RFC 8617: a chain that failed is sealed with cv=fail and a seal
// that covers only the new set (§5.1.2); a chain whose newest seal already
// says cv=fail is not sealed again (ErrChainFailedUpstream, §5.1 step 2);
// nor is one that already has 50 sets (ErrChainTooLong, §4.2.1).
func (s *Sealer) Seal(msg io.Reader, authServID, results string, prior Result) ([]byte, error) {
	return s.seal(msg, authServID, results, prior, rfcLayout)
}

func (s *Sealer) seal(msg io.Reader, authServID, results string, prior Result, layout tagLayout) ([]byte, error) {
	alg, err := s.check()
	if err != nil {
		return nil, err
	}
	if err := checkAuthServID(authServID); err != nil {
		return nil, err
	}
	if prior.UpstreamFail {
		return nil, ErrChainFailedUpstream
	}
	inst := prior.Instance + 1
	if inst > maxInstance {
		return nil, ErrChainTooLong
	}
	switch {
	case prior.CV == CVNone && prior.Instance == 0:
	case prior.CV == CVPass && prior.Instance > 0:
	case prior.CV == CVFail:
	default:
		return nil, fmt.Errorf("arc: seal: inconsistent prior verdict cv=%q at instance %d", prior.CV, prior.Instance)
	}

	br := getReader(msg)
	defer putReader(br)
	fields, err := readHeader(br)
	if err != nil {
		return nil, fmt.Errorf("arc: seal: %w", err)
	}
	var sets []arcSet
	if prior.CV == CVPass {
		var done bool
		sets, _, done = chainStructure(fields)
		if done || len(sets)-1 != prior.Instance {
			return nil, errors.New("arc: seal: the message's ARC chain is not the one Verify passed")
		}
	} else {
		// RFC 8617 §5.1.2: a failed chain is sealed as if the new set
		// were the only one.
		sets = make([]arcSet, inst)
	}

	bh := sha256.New()
	bc := newBodyCanon(bh, true, -1)
	if _, err := io.Copy(bc, br); err != nil {
		return nil, fmt.Errorf("arc: seal: reading body: %w", err)
	}
	if _, err := bc.Close(); err != nil {
		return nil, fmt.Errorf("arc: seal: hashing body: %w", err)
	}

	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	vals := map[string]string{
		"i":  strconv.Itoa(inst),
		"a":  alg.String(),
		"c":  "relaxed/relaxed",
		"d":  s.Domain,
		"s":  s.Selector,
		"t":  strconv.FormatInt(now().Unix(), 10),
		"cv": string(prior.CV),
		"bh": base64.StdEncoding.EncodeToString(bh.Sum(nil)),
	}

	aar := field{raw: formatAAR(inst, authServID, results), name: nameAAR}

	names := s.signedNames(fields)
	vals["h"] = strings.Join(names, ":")
	ams := &arcSig{inst: inst, h: names, relaxedHeader: true}
	ams.f = field{raw: formatSig("ARC-Message-Signature", layout.ams, vals), name: nameAMS}
	sig, err := signDigest(s.Key, alg, amsDigest(fields, ams))
	if err != nil {
		return nil, fmt.Errorf("arc: seal: signing ARC-Message-Signature: %w", err)
	}
	vals["b"] = base64.StdEncoding.EncodeToString(sig)
	ams.f.raw = formatSig("ARC-Message-Signature", layout.ams, vals)
	delete(vals, "b")

	as := &arcSig{inst: inst}
	as.f = field{raw: formatSig("ARC-Seal", layout.as, vals), name: nameAS}
	if prior.CV == CVFail {
		sets = []arcSet{{}, {aar: aar, ams: ams, as: as}}
	} else {
		sets = append(sets[:inst], arcSet{aar: aar, ams: ams, as: as})
	}
	if sig, err = signDigest(s.Key, alg, asDigest(sets, len(sets)-1)); err != nil {
		return nil, fmt.Errorf("arc: seal: signing ARC-Seal: %w", err)
	}
	vals["b"] = base64.StdEncoding.EncodeToString(sig)
	as.f.raw = formatSig("ARC-Seal", layout.as, vals)

	out := make([]byte, 0, len(as.f.raw)+len(ams.f.raw)+len(aar.raw))
	out = append(out, as.f.raw...)
	out = append(out, ams.f.raw...)
	return append(out, aar.raw...), nil
}

// check validates the sealer's configuration and picks the algorithm.
func (s *Sealer) check() (algorithm, error) {
	if !validDomain(s.Domain) {
		return 0, fmt.Errorf("arc: sealer domain %q is not a valid domain name", s.Domain)
	}
	if !validDomain(s.Selector) {
		return 0, fmt.Errorf("arc: sealer selector %q is not valid", s.Selector)
	}
	for _, h := range append(slices.Clone(s.headers()), s.oversign()...) {
		switch strings.ToLower(h) {
		case nameAAR, nameAMS, nameAS, "authentication-results":
			return 0, fmt.Errorf("arc: sealer header list names %s, which RFC 8617 §4.1.2 forbids", h)
		case "":
			return 0, errors.New("arc: sealer header list has an empty name")
		}
	}
	if s.Key == nil {
		return 0, errors.New("arc: sealer has no key")
	}
	return keyAlgorithm(s.Key.Public())
}

func keyAlgorithm(pub crypto.PublicKey) (algorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return 0, fmt.Errorf("arc: %d-bit RSA key is too short, verifiers reject it (RFC 8301 §3.2)", k.N.BitLen())
		}
		return algRSASHA256, nil
	case ed25519.PublicKey:
		return algEd25519SHA256, nil
	}
	return 0, fmt.Errorf("arc: unsupported key type %T", pub)
}

func signDigest(key crypto.Signer, alg algorithm, digest []byte) ([]byte, error) {
	if alg == algEd25519SHA256 {
		// RFC 8463 §3: PureEdDSA over the SHA-256 hash.
		return key.Sign(rand.Reader, digest, crypto.Hash(0))
	}
	return key.Sign(rand.Reader, digest, crypto.SHA256)
}

func (s *Sealer) headers() []string {
	if s.Headers == nil {
		return DefaultHeaders
	}
	return s.Headers
}

func (s *Sealer) oversign() []string {
	if s.Oversign == nil {
		return DefaultOversign
	}
	return s.Oversign
}

// signedNames builds h=: each configured name once per occurrence in the
// message, plus once more for over-signed names.
func (s *Sealer) signedNames(fields []field) []string {
	count := map[string]int{}
	for _, f := range fields {
		count[f.name]++
	}
	over := map[string]bool{}
	for _, h := range s.oversign() {
		over[strings.ToLower(h)] = true
	}
	seen := map[string]bool{}
	var names []string
	add := func(h string) {
		h = strings.ToLower(h)
		if seen[h] {
			return
		}
		seen[h] = true
		n := count[h]
		if over[h] {
			n++
		}
		for range n {
			names = append(names, h)
		}
	}
	for _, h := range s.headers() {
		add(h)
	}
	for _, h := range s.oversign() {
		add(h)
	}
	return names
}

func checkAuthServID(id string) error {
	if id == "" {
		return errors.New("arc: seal: empty authserv-id")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == ';' || c == 0x7f || c == '(' || c == '"' {
			return fmt.Errorf("arc: seal: authserv-id %q is not a single token", truncate(id))
		}
	}
	return nil
}

// lineWidth is where folding starts; RFC 5322 §2.1.1 recommends 78.
const lineWidth = 76

// formatAAR builds the AAR. The results text is refolded only at existing
// whitespace, so its relaxed form, which the seal signs, is unchanged.
func formatAAR(inst int, authServID, results string) []byte {
	words := strings.Fields(results)
	if len(words) == 0 {
		words = []string{"none"}
	}
	var b strings.Builder
	head := "ARC-Authentication-Results: i=" + strconv.Itoa(inst) + "; " + authServID + ";"
	b.WriteString(head)
	col := len(head)
	for _, w := range words {
		if col+1+len(w) > lineWidth {
			b.WriteString("\r\n ")
			col = 1
		} else {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// formatSig writes an AS or AMS field with tags in the given order, separated
// by "; " or a fold. b= starts its own line. In the ARC-Seal it is cut into
// 72-column pieces; in the ARC-Message-Signature it stays whole, because the
// seal signs the AMS including its b= value, and whitespace inside that
// value would be part of what is signed: dkimpy, and the test suite
// generated with it, sign the AMS with b= unbroken, and a seal that matches
// theirs byte for byte needs the same. Nothing else is folded inside a value
// except an h= too long for one line, which is folded after colons in the
// same places whether b= is empty or filled, so the b-less relaxed form
// that is signed is the one a verifier rebuilds.
func formatSig(name string, order []string, vals map[string]string) []byte {
	foldB := name == "ARC-Seal"
	b := make([]byte, 0, 512)
	b = append(b, name...)
	b = append(b, ':')
	col := len(name) + 1
	for idx, tag := range order {
		v := vals[tag]
		last := idx == len(order)-1
		switch {
		case tag == "b":
			b = append(b, "\r\n b="...)
			col = 3
			for len(v) > 0 {
				n := len(v)
				if foldB {
					n = min(n, 73-col)
				}
				if n <= 0 {
					b = append(b, "\r\n "...)
					col = 1
					continue
				}
				b = append(b, v[:n]...)
				v = v[n:]
				col += n
			}
		case len(tag)+1+len(v)+1 > lineWidth-1:
			// Only h= gets this long: fold after colons, always starting
			// on a fresh line so the layout does not depend on b=.
			b = append(b, "\r\n "...)
			b = append(b, tag...)
			b = append(b, '=')
			col = 2 + len(tag)
			for i, part := range strings.Split(v, ":") {
				if i > 0 {
					b = append(b, ':')
					col++
					if col+len(part) > lineWidth {
						b = append(b, "\r\n "...)
						col = 1
					}
				}
				b = append(b, part...)
				col += len(part)
			}
		default:
			piece := len(tag) + 1 + len(v) + 1
			if col+1+piece > lineWidth {
				b = append(b, "\r\n "...)
				col = 1
			} else {
				b = append(b, ' ')
				col++
			}
			b = append(b, tag...)
			b = append(b, '=')
			b = append(b, v...)
			col += piece - 1
		}
		if !last {
			b = append(b, ';')
			col++
		}
	}
	return append(b, "\r\n"...)
}
