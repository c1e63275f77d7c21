// SPDX-License-Identifier: MIT

package dane

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The validator checks answers from a recursive resolver itself, from a
// trust anchor down (RFC 4033-4035): it asks with the CD bit so that the
// resolver hands over what it has unchecked, and with the DO bit so that
// the signatures come along. The resolver is not trusted; only the anchor is.
//
// It walks the name top-down: for every label below the anchor it asks for
// DS records. A DS RRset signed by the zone above, and a DNSKEY RRset that
// one of those DS records names and that is signed by that key, make the
// child a secure zone. An answer is Secure when an RRSIG by a key of the
// deepest secure zone above its owner verifies over it, within the
// signature's validity window; the signer must be that zone.
//
// Denial of existence (NSEC, NSEC3) is not validated: a missing DS is taken
// as "no zone cut here", a missing TLSA RRset as "no TLSA". That can make
// the validator call something Insecure that a full validator would call
// Bogus (an attacker who strips a DS record), never the other way round:
// nothing unproven is ever Secure, and the dane policy refuses both. For
// the same reason a wildcard-expanded answer, whose proof is an NSEC record,
// is never Secure.

// maxQueries bounds the questions one lookup may ask: a name has at most
// 127 labels and a CNAME chain could be long, and neither should turn one
// delivery into hundreds of queries.
const maxQueries = 64

// maxCNAMEs bounds a CNAME chain, as resolvers do.
const maxCNAMEs = 8

// zoneInfo is a zone proven secure, with its validated zone keys.
type zoneInfo struct {
	name string
	keys []*dns.DNSKEY
}

type stepKind int

const (
	stepNoDS     stepKind = iota // no DS: not a zone cut, or an unsigned one
	stepCut                      // a secure delegation to a signed zone
	stepNXDomain                 // the name does not exist, nor anything below it
	stepInsecure                 // an unsigned zone, or one signed only with refused algorithms
	stepBogus                    // validation failed
)

type step struct {
	kind   stepKind
	zone   *zoneInfo
	reason string
}

type qkey struct {
	name  string
	qtype uint16
}

// exchangeFunc asks the resolver one question and returns its answer, with
// RcodeSuccess or RcodeNameError; anything else is an error.
type exchangeFunc func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)

// validator holds the state of one lookup: answers and steps are remembered
// so that the A, AAAA and TLSA lookups of one host share the walk.
type validator struct {
	exchange exchangeFunc
	anchors  *TrustAnchors
	now      time.Time

	answers map[qkey]*dns.Msg
	steps   map[string]step // by child name; anchor zones by "anchor:" + zone
	queries int

	// ttl and expire bound how long the verdict may be reused: the smallest
	// TTL (capped by the signatures' original TTLs) and the earliest
	// signature expiry of everything it rests on.
	ttl    uint32
	expire time.Time
}

func newValidator(ex exchangeFunc, anchors *TrustAnchors, now time.Time) *validator {
	return &validator{
		exchange: ex,
		anchors:  anchors,
		now:      now,
		answers:  map[qkey]*dns.Msg{},
		steps:    map[string]step{},
		ttl:      ^uint32(0),
	}
}

var errTooManyQueries = errors.New("too many DNS queries for one lookup")

func (v *validator) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	k := qkey{dns.CanonicalName(name), qtype}
	if m, ok := v.answers[k]; ok {
		return m, nil
	}
	if v.queries >= maxQueries {
		return nil, fmt.Errorf("%s %s: %w (%d)", name, dns.TypeToString[qtype], errTooManyQueries, maxQueries)
	}
	v.queries++
	m, err := v.exchange(ctx, k.name, qtype)
	if err != nil {
		return nil, err
	}
	v.answers[k] = m
	return m, nil
}

// rrsetOf picks the records of one owner and type from a section, and the
// RRSIGs that cover them.
func rrsetOf(section []dns.RR, name string, rtype uint16) ([]dns.RR, []*dns.RRSIG) {
	var rrs []dns.RR
	var sigs []*dns.RRSIG
	for _, rr := range section {
		h := rr.Header()
		if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, name) {
			continue
		}
		if sig, ok := rr.(*dns.RRSIG); ok {
			if sig.TypeCovered == rtype {
				sigs = append(sigs, sig)
			}
		} else if h.Rrtype == rtype {
			rrs = append(rrs, rr)
		}
	}
	return rrs, sigs
}

// verifyWith reports whether one of sigs, made by one of keys of zone,
// verifies over rrset now; if none does, why says what was wrong.
func (v *validator) verifyWith(zone string, keys []*dns.DNSKEY, rrset []dns.RR, sigs []*dns.RRSIG) (ok bool, why string) {
	if len(sigs) == 0 {
		return false, "no RRSIG, though the zone " + zone + " is signed"
	}
	owner := rrset[0].Header().Name
	for _, sig := range sigs {
		switch {
		case !strings.EqualFold(dns.CanonicalName(sig.SignerName), zone):
			why = fmt.Sprintf("RRSIG by %s, not by the zone %s", sig.SignerName, zone)
			continue
		case int(sig.Labels) != dns.CountLabel(owner):
			why = "a wildcard-expanded answer, whose proof (NSEC) is not validated"
			continue
		case !algSupported(sig.Algorithm):
			why = "RRSIG algorithm " + algName(sig.Algorithm) + " is refused"
			continue
		case !sig.ValidityPeriod(v.now):
			why = fmt.Sprintf("RRSIG valid from %s to %s, not now (%s)",
				dns.TimeToString(sig.Inception), dns.TimeToString(sig.Expiration), v.now.UTC().Format("20060102150405"))
			continue
		}
		why = fmt.Sprintf("no DNSKEY of %s with key tag %d and algorithm %s", zone, sig.KeyTag, algName(sig.Algorithm))
		for _, k := range keys {
			if k.KeyTag() != sig.KeyTag || k.Algorithm != sig.Algorithm {
				continue
			}
			if err := sig.Verify(k, rrset); err != nil {
				why = fmt.Sprintf("RRSIG (key tag %d) does not verify: %v", sig.KeyTag, err)
				continue
			}
			v.rests(rrset, sig)
			return true, ""
		}
	}
	return false, why
}

// rests notes that the verdict rests on rrset, signed by sig.
func (v *validator) rests(rrset []dns.RR, sig *dns.RRSIG) {
	ttl := sig.OrigTtl
	for _, rr := range rrset {
		ttl = min(ttl, rr.Header().Ttl)
	}
	v.ttl = min(v.ttl, ttl)
	if exp := time.Unix(int64(sig.Expiration), 0); v.expire.IsZero() || exp.Before(v.expire) {
		v.expire = exp
	}
}

// zoneKeys fetches zone's DNSKEY RRset and validates it: a zone key that
// matches one of ds (or equals one of anchorKeys) must have signed it. The
// zone's keys are then every zone key in the set (verifyWith refuses
// signatures of algorithms we do not validate).
func (v *validator) zoneKeys(ctx context.Context, zone string, ds []*dns.DS, anchorKeys []*dns.DNSKEY) (*zoneInfo, string, error) {
	m, err := v.query(ctx, zone, dns.TypeDNSKEY)
	if err != nil {
		return nil, "", err
	}
	rrs, sigs := rrsetOf(m.Answer, zone, dns.TypeDNSKEY)
	if len(rrs) == 0 {
		return nil, "no DNSKEY records for " + zone + ", though its parent says it is signed", nil
	}
	if len(sigs) == 0 {
		return nil, "the DNSKEY records of " + zone + " came without RRSIGs; does the resolver pass DNSSEC records (DO bit)?", nil
	}
	var entry, keys []*dns.DNSKEY
	for _, rr := range rrs {
		k, ok := rr.(*dns.DNSKEY)
		if !ok || k.Flags&dns.ZONE == 0 || k.Flags&dns.REVOKE != 0 || k.Protocol != 3 {
			continue
		}
		keys = append(keys, k)
		if matchesDS(k, ds) || matchesKey(k, anchorKeys) {
			entry = append(entry, k)
		}
	}
	if len(entry) == 0 {
		return nil, fmt.Sprintf("no DNSKEY of %s matches %s", zone, describeDS(ds, anchorKeys)), nil
	}
	if ok, why := v.verifyWith(zone, entry, rrs, sigs); !ok {
		return nil, "DNSKEY records of " + zone + ": " + why, nil
	}
	return &zoneInfo{name: zone, keys: keys}, "", nil
}

func matchesDS(k *dns.DNSKEY, ds []*dns.DS) bool {
	for _, d := range ds {
		if d.KeyTag != k.KeyTag() || d.Algorithm != k.Algorithm || digestSize(d.DigestType) == 0 {
			continue
		}
		got := k.ToDS(d.DigestType)
		if got == nil {
			continue
		}
		a, err1 := hex.DecodeString(got.Digest)
		b, err2 := hex.DecodeString(d.Digest)
		if err1 == nil && err2 == nil && string(a) == string(b) {
			return true
		}
	}
	return false
}

func matchesKey(k *dns.DNSKEY, anchors []*dns.DNSKEY) bool {
	for _, a := range anchors {
		if a.Algorithm == k.Algorithm && a.Flags == k.Flags && a.Protocol == k.Protocol && a.PublicKey == k.PublicKey {
			return true
		}
	}
	return false
}

func describeDS(ds []*dns.DS, keys []*dns.DNSKEY) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("DS key tag %d", d.KeyTag))
	}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("trusted key tag %d", k.KeyTag()))
	}
	return strings.Join(parts, ", ")
}

// anchorZone validates the DNSKEY RRset of an anchor zone against its anchors.
func (v *validator) anchorZone(ctx context.Context, zone string) (step, error) {
	key := "anchor:" + zone
	if st, ok := v.steps[key]; ok {
		return st, nil
	}
	var ds []*dns.DS
	for _, d := range v.anchors.ds[zone] {
		if algSupported(d.Algorithm) && digestSize(d.DigestType) > 0 {
			ds = append(ds, d)
		}
	}
	z, reason, err := v.zoneKeys(ctx, zone, ds, v.anchors.keys[zone])
	if err != nil {
		return step{}, err
	}
	st := step{kind: stepCut, zone: z}
	if z == nil {
		st = step{kind: stepBogus, reason: "trust anchor " + zone + ": " + reason}
	}
	v.steps[key] = st
	return st, nil
}

// below lists the names from the first label under zone down to name:
// below("microsoft.", "a.mx.microsoft.") is ["mx.microsoft.", "a.mx.microsoft."].
func below(zone, name string) []string {
	labels := dns.SplitDomainName(name)
	skip := dns.CountLabel(zone)
	var out []string
	for i := len(labels) - skip - 1; i >= 0; i-- {
		out = append(out, dns.Fqdn(strings.Join(labels[i:], ".")))
	}
	return out
}

// chain walks from the closest trust anchor down to name and returns the
// deepest secure zone enclosing it, with the names below that zone where no
// DS was found (gaps: possibly unsigned zone cuts). A verdict other than
// Secure ends the walk.
func (v *validator) chain(ctx context.Context, name string) (*zoneInfo, []string, Verdict, string, error) {
	anchor, ok := v.anchors.closest(name)
	if !ok {
		return nil, nil, Insecure, "no trust anchor covers " + name, nil
	}
	st, err := v.anchorZone(ctx, anchor)
	if err != nil || st.kind != stepCut {
		return nil, nil, Bogus, st.reason, err
	}
	z := st.zone
	var gaps []string
	for _, child := range below(anchor, name) {
		st, err := v.delegation(ctx, z, child, gaps)
		if err != nil {
			return nil, nil, 0, "", err
		}
		switch st.kind {
		case stepCut:
			z, gaps = st.zone, nil
		case stepNoDS:
			gaps = append(gaps, child)
		case stepNXDomain:
			return z, gaps, Secure, "", nil
		case stepInsecure:
			return nil, nil, Insecure, st.reason, nil
		default:
			return nil, nil, Bogus, st.reason, nil
		}
	}
	return z, gaps, Secure, "", nil
}

// delegation asks whether child, under the secure zone z, is a secure zone
// of its own.
func (v *validator) delegation(ctx context.Context, z *zoneInfo, child string, gaps []string) (step, error) {
	if st, ok := v.steps[child]; ok {
		return st, nil
	}
	st, err := v.delegationUncached(ctx, z, child, gaps)
	if err != nil {
		return step{}, err
	}
	v.steps[child] = st
	return st, nil
}

func (v *validator) delegationUncached(ctx context.Context, z *zoneInfo, child string, gaps []string) (step, error) {
	m, err := v.query(ctx, child, dns.TypeDS)
	if err != nil {
		return step{}, err
	}
	if m.Rcode == dns.RcodeNameError {
		return step{kind: stepNXDomain}, nil
	}
	rrs, sigs := rrsetOf(m.Answer, child, dns.TypeDS)
	if len(rrs) == 0 {
		return step{kind: stepNoDS}, nil
	}
	if ok, why := v.verifyWith(z.name, z.keys, rrs, sigs); !ok {
		return v.unsigned(ctx, gaps, "DS records of "+child+": "+why)
	}
	var ds []*dns.DS
	var refused []string
	for _, rr := range rrs {
		d, ok := rr.(*dns.DS)
		if !ok {
			continue
		}
		if algSupported(d.Algorithm) && digestSize(d.DigestType) > 0 {
			ds = append(ds, d)
		} else {
			refused = append(refused, fmt.Sprintf("algorithm %s digest type %d", algName(d.Algorithm), d.DigestType))
		}
	}
	if len(ds) == 0 {
		// RFC 4035 §5.2: a zone signed only with algorithms the validator
		// does not do is treated as unsigned.
		return step{kind: stepInsecure, reason: fmt.Sprintf("%s is signed only with refused algorithms (%s)", child, strings.Join(refused, "; "))}, nil
	}
	zi, reason, err := v.zoneKeys(ctx, child, ds, nil)
	if err != nil {
		return step{}, err
	}
	if zi == nil {
		return step{kind: stepBogus, reason: reason}, nil
	}
	return step{kind: stepCut, zone: zi}, nil
}

// unsigned decides what a signature failure under a secure zone means: if
// one of the gaps below that zone is a zone of its own (it has an SOA), the
// data lives in an unsigned zone, and that is Insecure; otherwise the data
// should have been signed, and that is Bogus.
func (v *validator) unsigned(ctx context.Context, gaps []string, why string) (step, error) {
	for _, g := range gaps {
		m, err := v.query(ctx, g, dns.TypeSOA)
		if err != nil {
			return step{}, err
		}
		if soa, _ := rrsetOf(m.Answer, g, dns.TypeSOA); len(soa) > 0 {
			return step{kind: stepInsecure, reason: g + " is an unsigned zone (its parent has no DS record for it)"}, nil
		}
	}
	return step{kind: stepBogus, reason: why}, nil
}

// answer is the outcome of looking up one name and type.
type answer struct {
	verdict Verdict
	reason  string
	rrs     []dns.RR // the final RRset; empty when negative
	final   string   // the owner after following CNAMEs
	neg     bool     // NXDOMAIN or NODATA, at the end of a chain secure so far
}

// lookup asks for name and qtype, follows CNAMEs (each one validated on its
// own, since each may live in another zone) and validates the final RRset.
func (v *validator) lookup(ctx context.Context, name string, qtype uint16) (answer, error) {
	cur := dns.CanonicalName(name)
	seen := map[string]bool{}
	for hops := 0; ; hops++ {
		if seen[cur] {
			return answer{verdict: Bogus, reason: "CNAME loop at " + cur, final: cur}, nil
		}
		if hops > maxCNAMEs {
			return answer{verdict: Bogus, reason: fmt.Sprintf("more than %d CNAMEs from %s", maxCNAMEs, name), final: cur}, nil
		}
		seen[cur] = true
		m, err := v.query(ctx, cur, qtype)
		if err != nil {
			return answer{}, err
		}
		if rrs, sigs := rrsetOf(m.Answer, cur, qtype); len(rrs) > 0 {
			verdict, reason, err := v.validate(ctx, cur, rrs, sigs)
			if err != nil {
				return answer{}, err
			}
			return answer{verdict: verdict, reason: reason, rrs: rrs, final: cur}, nil
		}
		cn, sigs := rrsetOf(m.Answer, cur, dns.TypeCNAME)
		if len(cn) == 0 {
			// Negative: the denial is not validated (see the top of this
			// file), but a zone whose chain is broken stays Bogus.
			_, _, verdict, reason, err := v.chain(ctx, cur)
			if err != nil {
				return answer{}, err
			}
			if verdict == Bogus {
				return answer{verdict: Bogus, reason: reason, final: cur}, nil
			}
			return answer{verdict: Insecure, reason: "no " + dns.TypeToString[qtype] + " records at " + cur, final: cur, neg: true}, nil
		}
		if len(cn) > 1 {
			return answer{verdict: Bogus, reason: "several CNAME records at " + cur, final: cur}, nil
		}
		verdict, reason, err := v.validate(ctx, cur, cn, sigs)
		if err != nil {
			return answer{}, err
		}
		if verdict != Secure {
			return answer{verdict: verdict, reason: "CNAME at " + cur + ": " + reason, final: cur}, nil
		}
		cur = dns.CanonicalName(cn[0].(*dns.CNAME).Target)
	}
}

// validate finds the zone of owner and checks rrset's signatures against it.
func (v *validator) validate(ctx context.Context, owner string, rrset []dns.RR, sigs []*dns.RRSIG) (Verdict, string, error) {
	z, gaps, verdict, reason, err := v.chain(ctx, owner)
	if err != nil || verdict != Secure {
		return verdict, reason, err
	}
	ok, why := v.verifyWith(z.name, z.keys, rrset, sigs)
	if ok {
		return Secure, "", nil
	}
	st, err := v.unsigned(ctx, gaps, dns.TypeToString[rrset[0].Header().Rrtype]+" records of "+owner+": "+why)
	if err != nil {
		return 0, "", err
	}
	if st.kind == stepInsecure {
		return Insecure, st.reason, nil
	}
	return Bogus, st.reason, nil
}
