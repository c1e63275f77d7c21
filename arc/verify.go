// SPDX-License-Identifier: MIT

package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Result is the verdict on the ARC chain a message arrived with.
type Result struct {
	// CV is the chain validation status (RFC 8617 §5.2), and so the cv= the
	// next ARC-Seal carries. DNS errors are "fail" too: RFC 8617 §5.2.1
	// makes every validation error permanent, and a seal has no temperror.
	CV ChainValidation
	// Instance is the highest valid i= found on any ARC field, 0 without
	// a chain. The next seal is Instance+1.
	Instance int
	// OldestPass is the oldest instance whose AMS still validates (RFC 8617
	// §5.2 step 5): 0 when every AMS validates, and 0 unless CV is pass.
	OldestPass int
	// Domains holds the d= of each ARC-Seal, Domains[0] for i=1, once the
	// chain's structure is sound; for logs and metrics.
	Domains []string
	// Reason says why CV is fail; never empty then.
	Reason string
	// UpstreamFail reports that the newest ARC-Seal already says cv=fail:
	// RFC 8617 §5.1 step 2 says a sealer stops there, so Seal refuses.
	UpstreamFail bool
}

func failf(res Result, format string, args ...any) Result {
	res.CV = CVFail
	res.OldestPass = 0
	res.Reason = fmt.Sprintf(format, args...)
	return res
}

// arcSet is one instance's three fields.
type arcSet struct {
	aar field
	ams *arcSig
	as  *arcSig
}

// Verify validates the ARC chain of msg (RFC 8617 §5.2). It reads msg to
// the end, holding only the header block in memory. It never fails and
// never panics: a message it cannot parse gets a fail verdict with a reason,
// because the message is still forwarded and the verdict is recorded.
func Verify(ctx context.Context, msg io.Reader, lookup LookupTXT) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			res = failf(res, "internal error validating ARC chain: %v", r)
		}
	}()
	br := getReader(msg)
	defer putReader(br)
	fields, err := readHeader(br)
	if err != nil {
		return failf(res, "%v", err)
	}
	sets, res, done := chainStructure(fields)
	if done {
		return res
	}
	n := len(sets) - 1 // sets[0] is unused: instances start at 1

	// Hash the body once for every AMS that could validate, sharing one
	// canonicaliser between AMSs with the same body parameters.
	type bodyKey struct {
		relaxed bool
		limit   int64
	}
	type bodyHash struct {
		h     hash.Hash
		canon *bodyCanon
		sum   []byte
		n     int64
	}
	bodies := map[bodyKey]*bodyHash{}
	var writers []io.Writer
	for i := 1; i <= n; i++ {
		ams := sets[i].ams
		if ams.err != nil {
			continue
		}
		k := bodyKey{ams.relaxedBody, ams.limit}
		if bodies[k] == nil {
			h := sha256.New()
			c := newBodyCanon(h, k.relaxed, k.limit)
			bodies[k] = &bodyHash{h: h, canon: c}
			writers = append(writers, c)
		}
	}
	if _, err := io.Copy(io.MultiWriter(append(writers, io.Discard)...), br); err != nil {
		return failf(res, "reading body: %v", err)
	}
	for _, b := range bodies {
		if b.n, err = b.canon.Close(); err != nil {
			return failf(res, "hashing body: %v", err)
		}
		b.sum = b.h.Sum(nil)
	}
	bodyOf := func(s *arcSig) *bodyHash { return bodies[bodyKey{s.relaxedBody, s.limit}] }

	keys := map[string]keyResult{}
	key := func(s *arcSig) (crypto.PublicKey, error) {
		id := s.s + "._domainkey." + s.d
		if kr, ok := keys[id]; ok {
			return kr.pub, kr.err
		}
		pub, err := lookupKey(ctx, lookup, s.s, s.d)
		keys[id] = keyResult{pub, err}
		return pub, err
	}
	checkAMS := func(i int) error {
		ams := sets[i].ams
		if ams.err != nil {
			return ams.err
		}
		b := bodyOf(ams)
		if ams.limit >= 0 && b.n < ams.limit {
			return errBodyTooShort
		}
		if !bytes.Equal(b.sum, ams.bh) {
			return errors.New("body hash does not match bh=")
		}
		pub, err := key(ams)
		if err != nil {
			return err
		}
		return verifySignature(ams.alg, pub, amsDigest(fields, ams), ams.b)
	}

	// Step 4: the newest AMS must validate.
	if err := checkAMS(n); err != nil {
		return failf(res, "ARC-Message-Signature i=%d: %v", n, err)
	}
	// Step 6 (before the optional step 5, so that a broken chain costs no
	// lookups for oldest-pass): every AS, newest first.
	for i := n; i >= 1; i-- {
		as := sets[i].as
		if as.err != nil {
			return failf(res, "ARC-Seal i=%d: %v", i, as.err)
		}
		pub, err := key(as)
		if err != nil {
			return failf(res, "ARC-Seal i=%d: %v", i, err)
		}
		if err := verifySignature(as.alg, pub, asDigest(sets, i), as.b); err != nil {
			return failf(res, "ARC-Seal i=%d: %v", i, err)
		}
	}
	// Step 5: oldest-pass.
	for i := n - 1; i >= 1; i-- {
		if checkAMS(i) != nil {
			res.OldestPass = i + 1
			break
		}
	}
	res.CV = CVPass
	return res
}

type keyResult struct {
	pub crypto.PublicKey
	err error
}

// chainStructure performs steps 1 to 3 of RFC 8617 §5.2. It returns the
// sets indexed by instance when the chain is sound enough to check
// signatures; otherwise done is true and res holds the verdict.
func chainStructure(fields []field) (sets []arcSet, res Result, done bool) {
	var (
		aars   = map[int][]field{}
		amss   = map[int][]*arcSig{}
		seals  = map[int][]*arcSig{}
		broken string // first structural error, reported after the cv=fail check
		found  bool
	)
	note := func(format string, args ...any) {
		if broken == "" {
			broken = fmt.Sprintf(format, args...)
		}
	}
	for _, f := range fields {
		switch f.name {
		case nameAAR:
			found = true
			i, err := parseAARInstance(f.value())
			if err != nil {
				note("ARC-Authentication-Results: %v", err)
				continue
			}
			aars[i] = append(aars[i], f)
			res.Instance = max(res.Instance, i)
		case nameAMS, nameAS:
			found = true
			s, err := parseSig(f, f.name == nameAS)
			if err != nil {
				note("%s: %v", displayName(f.name), err)
				continue
			}
			if f.name == nameAS {
				seals[s.inst] = append(seals[s.inst], s)
			} else {
				amss[s.inst] = append(amss[s.inst], s)
			}
			res.Instance = max(res.Instance, s.inst)
		}
	}
	// Step 1.
	if !found {
		res.CV = CVNone
		return nil, res, true
	}
	n := res.Instance
	// Step 2: a chain whose newest seal says fail stays failed.
	for _, as := range seals[n] {
		if as.err == nil && as.cv == CVFail {
			res.UpstreamFail = true
			return nil, failf(res, "ARC-Seal i=%d says cv=fail", n), true
		}
	}
	// Step 3.
	if broken != "" {
		return nil, failf(res, "%s", broken), true
	}
	sets = make([]arcSet, n+1)
	for i := 1; i <= n; i++ {
		switch {
		case len(aars[i]) != 1:
			return nil, failf(res, "%d ARC-Authentication-Results with i=%d, want 1", len(aars[i]), i), true
		case len(amss[i]) != 1:
			return nil, failf(res, "%d ARC-Message-Signature with i=%d, want 1", len(amss[i]), i), true
		case len(seals[i]) != 1:
			return nil, failf(res, "%d ARC-Seal with i=%d, want 1", len(seals[i]), i), true
		}
		sets[i] = arcSet{aar: aars[i][0], ams: amss[i][0], as: seals[i][0]}
	}
	for i := 1; i <= n; i++ {
		as := sets[i].as
		if as.err != nil {
			// The AS is unusable, so its cv= is unknown; step 6 would
			// fail on it anyway.
			return nil, failf(res, "ARC-Seal i=%d: %v", i, as.err), true
		}
		want := CVPass
		if i == 1 {
			want = CVNone
		}
		if as.cv != want {
			return nil, failf(res, "ARC-Seal i=%d has cv=%s, want cv=%s", i, as.cv, want), true
		}
		res.Domains = append(res.Domains, as.d)
	}
	return sets, res, false
}

func displayName(lower string) string {
	switch lower {
	case nameAAR:
		return "ARC-Authentication-Results"
	case nameAMS:
		return "ARC-Message-Signature"
	case nameAS:
		return "ARC-Seal"
	}
	return lower
}

// amsDigest hashes the fields an AMS names in h= (bottom-up, RFC 6376
// §5.4.2) and then the AMS itself without its b= value.
func amsDigest(fields []field, ams *arcSig) []byte {
	h := sha256.New()
	buf := make([]byte, 0, 1024)
	for _, raw := range selectFields(fields, ams.h) {
		buf = canonHeader(buf[:0], raw, ams.relaxedHeader)
		buf = append(buf, crlf...)
		h.Write(buf)
	}
	buf = canonHeader(buf[:0], stripB(ams.f.raw), ams.relaxedHeader)
	h.Write(buf)
	return h.Sum(nil)
}

// selectFields returns, for each name, the next instance of that field
// counting from the bottom of the header, or nothing once they run out
// (which is what makes over-signing work).
func selectFields(fields []field, names []string) [][]byte {
	used := make(map[string]int, len(names))
	out := make([][]byte, 0, len(names))
	for _, name := range names {
		name = strings.ToLower(name)
		skip := used[name]
		for j := len(fields) - 1; j >= 0; j-- {
			if fields[j].name != name {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			out = append(out, fields[j].raw)
			break
		}
		used[name]++
	}
	return out
}

// asDigest hashes sets 1..i in order (AAR, AMS, AS), the last AS without
// its b= value (RFC 8617 §5.1.1).
func asDigest(sets []arcSet, i int) []byte {
	h := sha256.New()
	buf := make([]byte, 0, 2048)
	for j := 1; j <= i; j++ {
		buf = canonHeaderRelaxed(buf[:0], sets[j].aar.raw)
		buf = append(buf, crlf...)
		buf = canonHeaderRelaxed(buf, sets[j].ams.f.raw)
		buf = append(buf, crlf...)
		if j < i {
			buf = canonHeaderRelaxed(buf, sets[j].as.f.raw)
			buf = append(buf, crlf...)
		} else {
			buf = canonHeaderRelaxed(buf, stripB(sets[j].as.f.raw))
		}
		h.Write(buf)
	}
	return h.Sum(nil)
}
