// SPDX-License-Identifier: MIT

package authcheck

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// orgDomain is the organisational domain of RFC 7489 §3.2: one label below the
// public suffix. go-msgauth has no public-suffix list; x/net's is compiled in.
func orgDomain(d string) string {
	if o, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return o
	}
	return d // d is itself a public suffix, or not a domain at all
}

func aligned(d, from string, mode dmarc.AlignmentMode) bool {
	if d == "" || from == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return d == from
	}
	return orgDomain(d) == orgDomain(from)
}

// policy is the DMARC record that governs a From domain.
type policy struct {
	result            string // "" when a record was found
	err               error
	dkimMode, spfMode dmarc.AlignmentMode
	policyName        string // p=, or sp= for a subdomain when the record has one
}

// lookupPolicy finds the record at the From domain, then at its organisational
// domain (RFC 7489 §6.6.3).
func lookupPolicy(ctx context.Context, r rooted, from string) policy {
	p := policy{dkimMode: dmarc.AlignmentRelaxed, spfMode: dmarc.AlignmentRelaxed}
	subdomain := false
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(from, opts)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(from); org != from {
			rec, err = dmarc.LookupWithOptions(org, opts)
			subdomain = true
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, dmarc.ErrNoPolicy):
		p.result = "none"
		return p
	case dmarc.IsTempFail(err):
		p.result, p.err = "temperror", err
		return p
	default:
		p.result, p.err = "permerror", err
		return p
	}
	p.dkimMode, p.spfMode = rec.DKIMAlignment, rec.SPFAlignment
	p.policyName = string(rec.Policy)
	if subdomain && rec.SubdomainPolicy != "" {
		p.policyName = string(rec.SubdomainPolicy)
	}
	return p
}

// evaluateDMARC fills in the DMARC verdict, the per-signature alignment and
// the author-DKIM state from results already in res.
func evaluateDMARC(ctx context.Context, r rooted, res *Result, fromErr error) {
	var p policy
	switch {
	case errors.Is(fromErr, errUnreadable):
		p = policy{result: "temperror", err: fromErr, dkimMode: dmarc.AlignmentRelaxed}
	case fromErr != nil:
		p = policy{result: "permerror", err: fromErr, dkimMode: dmarc.AlignmentRelaxed}
	default:
		p = lookupPolicy(ctx, r, res.FromDomain)
	}
	res.DMARCPolicy, res.DMARCErr = p.policyName, p.err

	var dkimPass, dkimTemp, alignedSeen bool
	for i := range res.DKIM {
		s := &res.DKIM[i]
		s.Aligned = aligned(s.Domain, res.FromDomain, p.dkimMode)
		if !s.Aligned {
			continue
		}
		alignedSeen = true
		switch s.Result {
		case "pass":
			dkimPass = true
		case "temperror":
			dkimTemp = true
		}
	}
	switch {
	case dkimPass:
		res.AuthorDKIM = "intact"
	case !alignedSeen:
		res.AuthorDKIM = "absent"
	case allTemp(res.DKIM):
		res.AuthorDKIM = "unknown"
	default:
		res.AuthorDKIM = "broken"
	}
	spfPass := res.SPF == "pass" && aligned(res.SPFDomain, res.FromDomain, p.spfMode)

	switch {
	case p.result != "":
		res.DMARC = p.result
	case dkimPass || spfPass:
		res.DMARC = "pass"
	case dkimTemp || res.SPF == "temperror" && aligned(res.SPFDomain, res.FromDomain, p.spfMode):
		// Not a fail: the DNS trouble may have hidden a pass.
		res.DMARC = "temperror"
		res.DMARCErr = fmt.Errorf("an aligned identifier had a temporary error")
	default:
		res.DMARC = "fail"
	}
	res.DMARCSPFOnly = res.DMARC == "pass" && !dkimPass
}

// allTemp reports whether every aligned signature ended in temperror.
func allTemp(sigs []DKIMResult) bool {
	for _, s := range sigs {
		if s.Aligned && s.Result != "temperror" {
			return false
		}
	}
	return true
}
