// SPDX-License-Identifier: MIT

package dnscheck

import (
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// dnssec judges whether the zone is signed and whether each answer
// validates against the zone's DNSKEYs, and those against the parent's DS.
// What is not done: the chain above the parent (the parent's DS is taken as
// the parent's servers give it) and denial-of-existence proofs for
// negative answers (NSEC/NSEC3).
func (e *eval) dnssec() {
	dom := e.o.Domain
	keySet := e.o.set(dom, dns.TypeDNSKEY)
	var ds []*dns.DS
	if e.o.Delegation != nil {
		ds = e.o.Delegation.DS
	}
	keysAns, ok := consensus(keySet)
	if !ok {
		if keySet != nil {
			e.add(Finding{Check: CheckDNSSEC, Level: Error, Name: dom, Type: "DNSKEY", Message: "the servers disagree on the DNSKEY set or none answered; validation would depend on which one a resolver asks"})
		}
		return
	}
	var keys []*dns.DNSKEY
	for _, rr := range keysAns.rrs(dom, dns.TypeDNSKEY) {
		keys = append(keys, rr.(*dns.DNSKEY))
	}
	if len(keys) == 0 {
		f := Finding{Check: CheckDNSSEC, Level: OK, Name: dom, Type: "DNSKEY", Message: "the zone is not signed (no DNSKEY); answers cannot be validated, which is allowed"}
		if len(ds) > 0 {
			f.Level, f.Message = Error, "the parent publishes a DS but the zone has no DNSKEY: validating resolvers answer SERVFAIL for the whole domain"
		}
		e.add(f)
		return
	}
	errs := 0
	// The DNSKEY set must be signed by a key the parent's DS names.
	switch {
	case e.o.Delegation == nil:
		e.add(Finding{Check: CheckDNSSEC, Level: Warning, Name: dom, Type: "DS", Message: "the parent was not asked, so the link from the parent's DS to the zone's keys was not checked"})
	case len(ds) == 0:
		e.add(Finding{Check: CheckDNSSEC, Level: Warning, Name: dom, Type: "DS", Message: "the zone is signed but the parent has no DS for it: resolvers treat it as unsigned (publish the DS at the registrar)",
			Publish: keysToDS(keys)})
	default:
		if err := dsMatches(ds, keys, keysAns, dom, e.o); err != nil {
			errs++
			e.add(Finding{Check: CheckDNSSEC, Level: Error, Name: dom, Type: "DS", Message: "chain of trust broken: " + err.Error() + "; validating resolvers answer SERVFAIL for the whole domain"})
		}
	}
	signed := 0
	for _, set := range e.o.Sets {
		failing := map[string][]string{}
		var order []string
		for _, a := range set.Answers {
			if !a.ok() || len(a.Msg.Answer) == 0 {
				continue
			}
			msg, ok := validateAnswer(a, set, keys, e.o)
			if ok {
				signed++
				continue
			}
			if _, seen := failing[msg]; !seen {
				order = append(order, msg)
			}
			failing[msg] = append(failing[msg], a.Server)
		}
		for _, msg := range order {
			errs++
			f := Finding{Check: CheckDNSSEC, Level: Error, Name: set.Name, Type: set.Type, Message: msg + "; validating resolvers answer SERVFAIL"}
			if len(failing[msg]) < countOK(set) {
				f.Server = strings.Join(failing[msg], ", ")
			}
			e.add(f)
		}
	}
	if errs == 0 {
		link := "the parent's DS matches a key that signs the DNSKEY set"
		if e.o.Delegation == nil || len(ds) == 0 {
			link = "the parent's DS was not checked"
		}
		e.add(Finding{Check: CheckDNSSEC, Level: OK, Name: dom, Type: "DNSKEY", Message: fmt.Sprintf("the zone is signed (%s); %s; all %d positive answers validate (negative answers are not checked)",
			keyNames(keys), link, signed)})
	}
}

func countOK(set *RRSetObs) int {
	n := 0
	for _, a := range set.Answers {
		if a.ok() && len(a.Msg.Answer) > 0 {
			n++
		}
	}
	return n
}

func keyNames(keys []*dns.DNSKEY) string {
	var parts []string
	for _, k := range keys {
		role := "ZSK"
		if k.Flags&dns.SEP != 0 {
			role = "KSK"
		}
		parts = append(parts, fmt.Sprintf("%s %d %s", role, k.KeyTag(), dns.AlgorithmToString[k.Algorithm]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func keysToDS(keys []*dns.DNSKEY) string {
	for _, k := range keys {
		if k.Flags&dns.SEP != 0 {
			return k.ToDS(dns.SHA256).String()
		}
	}
	return ""
}

// dsMatches checks that a DS names a DNSKEY and that key signs the DNSKEY set.
func dsMatches(ds []*dns.DS, keys []*dns.DNSKEY, keysAns Answer, dom string, o *Observation) error {
	var named []*dns.DNSKEY
	for _, d := range ds {
		for _, k := range keys {
			if k.KeyTag() != d.KeyTag || k.Algorithm != d.Algorithm {
				continue
			}
			if x := k.ToDS(d.DigestType); x != nil && strings.EqualFold(x.Digest, d.Digest) {
				named = append(named, k)
			}
		}
	}
	if len(named) == 0 {
		return fmt.Errorf("no DNSKEY matches the parent's DS (key tag %d)", ds[0].KeyTag)
	}
	rrset := keysAns.rrs(dom, dns.TypeDNSKEY)
	var last error
	for _, sig := range sigsFor(keysAns, dom, dns.TypeDNSKEY) {
		for _, k := range named {
			if sig.KeyTag != k.KeyTag() || sig.Algorithm != k.Algorithm {
				continue
			}
			if err := sig.Verify(k, rrset); err != nil {
				last = err
				continue
			}
			if !sig.ValidityPeriod(o.Now) {
				last = fmt.Errorf("the DNSKEY signature by key %d is outside its validity period", k.KeyTag())
				continue
			}
			return nil
		}
	}
	if last != nil {
		return fmt.Errorf("the key the parent's DS names does not sign the DNSKEY set (%v)", last)
	}
	return fmt.Errorf("the key the parent's DS names (%d) does not sign the DNSKEY set", named[0].KeyTag())
}

func sigsFor(a Answer, name string, t uint16) []*dns.RRSIG {
	var out []*dns.RRSIG
	for _, rr := range a.rrs(name, dns.TypeRRSIG) {
		if s := rr.(*dns.RRSIG); s.TypeCovered == t {
			out = append(out, s)
		}
	}
	return out
}

// validateAnswer checks the answer's RRset (of the asked type, or the CNAME
// in its place) against the zone keys. It returns why it fails.
func validateAnswer(a Answer, set *RRSetObs, keys []*dns.DNSKEY, o *Observation) (string, bool) {
	t := set.qtype()
	rrset := a.rrs(set.Name, t)
	if len(rrset) == 0 {
		t = dns.TypeCNAME
		rrset = a.rrs(set.Name, t)
	}
	if len(rrset) == 0 {
		return "", true
	}
	sigs := sigsFor(a, set.Name, t)
	if len(sigs) == 0 {
		return "the answer has no RRSIG although the zone is signed", false
	}
	why := ""
	for _, sig := range sigs {
		for _, k := range keys {
			if k.KeyTag() != sig.KeyTag || k.Algorithm != sig.Algorithm {
				continue
			}
			if err := sig.Verify(k, rrset); err != nil {
				why = fmt.Sprintf("the RRSIG by key %d does not verify (%v)", k.KeyTag(), err)
				continue
			}
			if !sig.ValidityPeriod(o.Now) {
				why = fmt.Sprintf("the RRSIG by key %d is outside its validity period (%s to %s)", k.KeyTag(),
					dns.TimeToString(sig.Inception), dns.TimeToString(sig.Expiration))
				continue
			}
			return "", true
		}
	}
	if why == "" {
		why = fmt.Sprintf("no DNSKEY of the zone matches the RRSIG's key tag %d", sigs[0].KeyTag)
	}
	return why, false
}
