// SPDX-License-Identifier: MIT

// SPF record parsing and DNS-lookup counting (RFC 7208).

package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SPFLookupLimit is RFC 7208 section 4.6.4's bound on the terms that cause
// DNS lookups; beyond it receivers return permerror and SPF fails for all.
const SPFLookupLimit = 10

// SPFTerm is one mechanism or modifier of an SPF record.
type SPFTerm struct {
	// Qualifier is '+', '-', '~' or '?' for mechanisms, 0 for modifiers.
	Qualifier byte `json:"qualifier,omitempty"`
	// Name is the mechanism (all, include, a, mx, ptr, ip4, ip6, exists) or
	// the modifier name, in lower case.
	Name string `json:"name"`
	// Value is what follows ':' or '=' (with any /cidr), "" if nothing does.
	Value    string `json:"value,omitempty"`
	Modifier bool   `json:"modifier,omitempty"`
	// explicitPlus remembers a written '+', so String gives the record back.
	explicitPlus bool
}

func (t SPFTerm) String() string {
	if t.Modifier {
		return t.Name + "=" + t.Value
	}
	s := t.Name
	if t.Qualifier != '+' || t.explicitPlus {
		s = string(t.Qualifier) + s
	}
	if t.Value != "" {
		// a and mx with only a CIDR suffix have no ':'.
		if (t.Name == "a" || t.Name == "mx") && strings.HasPrefix(t.Value, "/") {
			return s + t.Value
		}
		s += ":" + t.Value
	}
	return s
}

// Lookups reports whether the term costs a DNS lookup under section 4.6.4.
func (t SPFTerm) Lookups() bool {
	switch t.Name {
	case "include", "a", "mx", "ptr", "exists":
		return !t.Modifier
	case "redirect":
		return t.Modifier
	}
	return false
}

// SPF is a parsed SPF record.
type SPF struct {
	Terms []SPFTerm `json:"terms"`
}

func (s *SPF) String() string {
	parts := []string{"v=spf1"}
	for _, t := range s.Terms {
		parts = append(parts, t.String())
	}
	return strings.Join(parts, " ")
}

// Has reports whether the record has a mechanism or modifier equal to term
// (e.g. "include:spf.protection.outlook.com"), ignoring case and a '+'.
func (s *SPF) Has(term string) bool {
	want, err := parseSPFTerm(strings.TrimSpace(term))
	if err != nil {
		return false
	}
	for _, t := range s.Terms {
		if t.Name == want.Name && t.Modifier == want.Modifier && strings.EqualFold(strings.TrimSuffix(t.Value, "."), strings.TrimSuffix(want.Value, ".")) {
			return true
		}
	}
	return false
}

// All returns the qualifier of the all mechanism, or 0 when there is none.
func (s *SPF) All() byte {
	for _, t := range s.Terms {
		if t.Name == "all" && !t.Modifier {
			return t.Qualifier
		}
	}
	return 0
}

// Redirect returns the redirect modifier's domain, "" when absent. RFC 7208
// section 6.1 ignores redirect when the record has an all mechanism.
func (s *SPF) Redirect() string {
	if s.All() != 0 {
		return ""
	}
	for _, t := range s.Terms {
		if t.Modifier && t.Name == "redirect" {
			return t.Value
		}
	}
	return ""
}

// IsSPF reports whether a TXT string is an SPF record at all: the version
// section 4.5 says receivers select on.
func IsSPF(txt string) bool {
	l := strings.ToLower(txt)
	return l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ")
}

// ParseSPF parses an SPF record. Anything receivers would answer with
// permerror is an error.
func ParseSPF(rec string) (*SPF, error) {
	if !IsSPF(rec) {
		return nil, errors.New("spf: does not start with v=spf1")
	}
	s := &SPF{}
	seen := map[string]bool{}
	for _, f := range strings.Split(rec[len("v=spf1"):], " ") {
		if f == "" {
			continue
		}
		t, err := parseSPFTerm(f)
		if err != nil {
			return nil, err
		}
		if t.Modifier && (t.Name == "redirect" || t.Name == "exp") {
			if seen[t.Name] {
				return nil, fmt.Errorf("spf: %s= appears twice", t.Name)
			}
			seen[t.Name] = true
		}
		s.Terms = append(s.Terms, t)
	}
	return s, nil
}

func parseSPFTerm(f string) (SPFTerm, error) {
	if name, value, ok := strings.Cut(f, "="); ok && validModifierName(name) {
		t := SPFTerm{Name: strings.ToLower(name), Value: value, Modifier: true}
		if (t.Name == "redirect" || t.Name == "exp") && !validDomainSpec(value) {
			return SPFTerm{}, fmt.Errorf("spf: %s: bad domain %q", t.Name, value)
		}
		return t, nil
	}
	t := SPFTerm{Qualifier: '+'}
	switch f[0] {
	case '+', '-', '~', '?':
		t.Qualifier, t.explicitPlus = f[0], f[0] == '+'
		f = f[1:]
	}
	name, rest := f, ""
	if i := strings.IndexAny(f, ":/"); i >= 0 {
		name, rest = f[:i], f[i:]
	}
	t.Name = strings.ToLower(name)
	switch t.Name {
	case "all":
		if rest != "" {
			return SPFTerm{}, fmt.Errorf("spf: %q: all takes no argument", f)
		}
	case "include", "exists":
		v, ok := strings.CutPrefix(rest, ":")
		if !ok || !validDomainSpec(v) {
			return SPFTerm{}, fmt.Errorf("spf: %q: %s needs :domain", f, t.Name)
		}
		t.Value = v
	case "ptr":
		if rest != "" {
			v, ok := strings.CutPrefix(rest, ":")
			if !ok || !validDomainSpec(v) {
				return SPFTerm{}, fmt.Errorf("spf: %q: bad domain", f)
			}
			t.Value = v
		}
	case "a", "mx":
		if rest == "" {
			break
		}
		dom, cidr := rest, ""
		if i := strings.Index(rest, "/"); i >= 0 {
			dom, cidr = rest[:i], rest[i:]
		}
		if dom != "" {
			v, ok := strings.CutPrefix(dom, ":")
			if !ok || !validDomainSpec(v) {
				return SPFTerm{}, fmt.Errorf("spf: %q: bad domain", f)
			}
		}
		if cidr != "" && !validDualCIDR(cidr) {
			return SPFTerm{}, fmt.Errorf("spf: %q: bad CIDR length", f)
		}
		t.Value = strings.TrimPrefix(dom, ":") + cidr
		if dom == "" {
			t.Value = cidr
		}
	case "ip4", "ip6":
		v, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return SPFTerm{}, fmt.Errorf("spf: %q: %s needs :address", f, t.Name)
		}
		if err := checkIP(t.Name, v); err != nil {
			return SPFTerm{}, fmt.Errorf("spf: %q: %w", f, err)
		}
		t.Value = v
	default:
		return SPFTerm{}, fmt.Errorf("spf: unknown mechanism %q", f)
	}
	return t, nil
}

func validModifierName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// validDomainSpec accepts a domain-spec loosely: printable ASCII without
// spaces, macros allowed, not empty.
func validDomainSpec(s string) bool {
	if s == "" || len(s) > 253+64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func validDualCIDR(c string) bool {
	v4, v6, two := strings.Cut(strings.TrimPrefix(c, "/"), "//")
	if strings.HasPrefix(c, "//") {
		v4, v6, two = "", strings.TrimPrefix(c, "//"), true
	}
	if v4 != "" && !cidrLen(v4, 32) {
		return false
	}
	if two && !cidrLen(v6, 128) {
		return false
	}
	return v4 != "" || two
}

func cidrLen(s string, max int) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= max && strconv.Itoa(n) == s
}

func checkIP(kind, v string) error {
	addr, bits, hasBits := strings.Cut(v, "/")
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		return fmt.Errorf("bad address %q", addr)
	}
	max := 32
	if kind == "ip4" && !ip.Is4() {
		return fmt.Errorf("%q is not IPv4", addr)
	}
	if kind == "ip6" {
		if !ip.Is6() {
			return fmt.Errorf("%q is not IPv6", addr)
		}
		max = 128
	}
	if hasBits && !cidrLen(bits, max) {
		return fmt.Errorf("bad prefix length %q", bits)
	}
	return nil
}

// SPFCount is the result of walking an SPF record's includes.
type SPFCount struct {
	// Lookups is the number of terms that cost a DNS lookup, counted through
	// every include and redirect, stopped at the first over the limit plus
	// one level, so a runaway tree cannot keep the check busy.
	Lookups int `json:"lookups"`
	// Problems are includes that do not resolve to exactly one SPF record,
	// which receivers turn into permerror.
	Problems []string `json:"problems,omitempty"`
	// Unresolved are macro domain-specs that cannot be followed without a
	// message; each still counts as one lookup.
	Unresolved []string `json:"unresolved,omitempty"`
}

// TXTFetcher returns the TXT strings at name (each record's strings joined).
type TXTFetcher func(ctx context.Context, name string) ([]string, error)

// CountSPFLookups counts the DNS lookups the record needs, following
// include and redirect with fetch.
func CountSPFLookups(ctx context.Context, rec *SPF, fetch TXTFetcher) SPFCount {
	var c SPFCount
	visited := map[string]bool{}
	var walk func(rec *SPF, depth int)
	walk = func(rec *SPF, depth int) {
		for _, t := range rec.Terms {
			if !t.Lookups() || (t.Name == "redirect" && rec.Redirect() == "") {
				continue
			}
			c.Lookups++
			if t.Name != "include" && t.Name != "redirect" {
				continue
			}
			// Stop following once over the limit: the verdict is made, and
			// a loop or a huge tree must not keep the check running.
			if c.Lookups > SPFLookupLimit+1 || depth > SPFLookupLimit {
				continue
			}
			if strings.Contains(t.Value, "%") {
				c.Unresolved = append(c.Unresolved, t.String())
				continue
			}
			name := strings.ToLower(strings.TrimSuffix(t.Value, "."))
			if visited[name] {
				c.Problems = append(c.Problems, fmt.Sprintf("%s is included more than once (a loop, or wasted lookups)", name))
				continue
			}
			visited[name] = true
			txts, err := fetch(ctx, name)
			if err != nil {
				c.Problems = append(c.Problems, fmt.Sprintf("%s: %v", t.String(), err))
				continue
			}
			var recs []string
			for _, s := range txts {
				if IsSPF(s) {
					recs = append(recs, s)
				}
			}
			switch len(recs) {
			case 0:
				c.Problems = append(c.Problems, fmt.Sprintf("%s: %s has no SPF record", t.String(), name))
				continue
			case 1:
			default:
				c.Problems = append(c.Problems, fmt.Sprintf("%s: %s has %d SPF records", t.String(), name, len(recs)))
				continue
			}
			sub, err := ParseSPF(recs[0])
			if err != nil {
				c.Problems = append(c.Problems, fmt.Sprintf("%s: %v", t.String(), err))
				continue
			}
			walk(sub, depth+1)
		}
	}
	walk(rec, 0)
	return c
}
