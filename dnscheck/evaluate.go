// SPDX-License-Identifier: MIT

package dnscheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// Report judges the observation for phase.
func (o *Observation) Report(phase Phase) *Report {
	e := &eval{o: o, phase: phase, r: &Report{Domain: strings.TrimSuffix(o.Domain, "."), Phase: phase,
		Source: o.Expected.Source, Explicit: o.Explicit}}
	if e.r.Source == "" {
		e.r.Source = "nowhere (no expected values)"
	}
	e.servers()
	e.delegation()
	e.consistency()
	e.serial()
	e.mx()
	e.mxTTL()
	e.spf()
	e.dkim()
	e.autodiscover()
	e.verification()
	e.dmarc()
	e.negativeTTL()
	e.dnssec()
	e.relayMX()
	e.relayFCrDNS()
	e.relayARC()
	e.r.Counts = map[string]int{}
	for _, l := range []Level{OK, Warning, Error} {
		e.r.Counts[l.String()] = e.r.Count(l)
	}
	return e.r
}

type eval struct {
	o     *Observation
	phase Phase
	r     *Report
	// missing collects names the domain should have and does not, for the
	// negative-caching advice.
	missing []string
}

func (e *eval) add(f Finding) {
	f.Name = strings.TrimSuffix(f.Name, ".")
	e.r.Findings = append(e.r.Findings, f)
}

func fqdn(n string) string { return strings.ToLower(dns.Fqdn(n)) }
func bare(n string) string { return strings.TrimSuffix(strings.ToLower(n), ".") }

// answerKey is what two servers must agree on: the rcode and the records
// of the asked type (or the CNAME in their place), without TTLs or RRSIGs.
func answerKey(a Answer, set *RRSetObs) string {
	if !a.ok() {
		return ""
	}
	var parts []string
	for _, rr := range a.Msg.Answer {
		h := rr.Header()
		if h.Rrtype == dns.TypeRRSIG || !strings.EqualFold(h.Name, set.Name) {
			continue
		}
		c := dns.Copy(rr)
		c.Header().Ttl = 0
		parts = append(parts, strings.ToLower(c.String()))
	}
	sort.Strings(parts)
	return dns.RcodeToString[a.Msg.Rcode] + "|" + strings.Join(parts, "|")
}

// consensus returns the answer every server that answered agrees on.
func consensus(set *RRSetObs) (Answer, bool) {
	var first Answer
	key, n := "", 0
	for _, a := range set.Answers {
		if !a.ok() {
			continue
		}
		k := answerKey(a, set)
		if n == 0 {
			first, key = a, k
		} else if k != key {
			return Answer{}, false
		}
		n++
	}
	return first, n > 0
}

// each calls f with the shared answer (server "") or, when the servers
// disagree, with each server's own answer, so a finding says which server
// is wrong. It reports whether any server answered.
func (e *eval) each(set *RRSetObs, f func(a Answer, server string)) bool {
	if set == nil {
		return false
	}
	if a, ok := consensus(set); ok {
		f(a, "")
		return true
	}
	any := false
	for _, a := range set.Answers {
		if a.ok() {
			f(a, a.Server)
			any = true
		}
	}
	return any
}

func (e *eval) noAnswer(check, name, typ string) {
	e.add(Finding{Check: check, Level: Error, Name: name, Type: typ, Message: "no server answered this question"})
}

func (e *eval) servers() {
	for i, s := range e.o.Servers {
		st := ServerStatus{Name: s.Name, Addr: s.Addr}
		var timeout, servfail, refused, other, notAA []string
		tcp := false
		for _, set := range e.o.Sets {
			a := set.Answers[i]
			q := bare(set.Name) + " " + set.Type
			switch a.Outcome {
			case OutcomeOK:
				tcp = tcp || a.TCP
				if !a.AA {
					notAA = append(notAA, q)
				}
				if set.Type == "SOA" {
					for _, rr := range a.rrs(set.Name, dns.TypeSOA) {
						st.Serial = rr.(*dns.SOA).Serial
					}
				}
			case OutcomeTimeout:
				timeout = append(timeout, a.Err)
			case OutcomeServFail:
				servfail = append(servfail, q)
			case OutcomeRefused:
				refused = append(refused, q)
			case OutcomeError:
				other = append(other, q+": "+a.Err)
			}
		}
		f := Finding{Check: CheckServers, Server: s.Name, Level: Error}
		switch {
		case len(timeout) > 0:
			st.Status = "timeout"
			f.Message = fmt.Sprintf("did not answer: %s; a dead server delays or loses lookups of the domain", timeout[0])
		case len(servfail) > 0:
			st.Status = "servfail"
			f.Message = fmt.Sprintf("answered SERVFAIL to %d of %d questions (%s)", len(servfail), len(e.o.Sets), strings.Join(servfail, ", "))
		case len(refused) > 0:
			st.Status = "refused"
			f.Message = fmt.Sprintf("REFUSED %d of %d questions: it does not serve the zone", len(refused), len(e.o.Sets))
		case len(other) > 0:
			st.Status = "error"
			f.Message = "failed: " + other[0]
			if strings.Contains(other[0], "network is unreachable") {
				f.Level = Warning
				f.Message = "unreachable from this host (" + other[0] + "); check it from a host with that address family"
			}
		case len(notAA) > 0:
			st.Status = "not authoritative"
			f.Message = fmt.Sprintf("answered without the AA bit (%s): the server is lame for the zone", strings.Join(notAA, ", "))
		default:
			st.Status = "ok"
			f.Level = OK
			f.Message = "answered every question authoritatively"
			if tcp {
				st.Status = "ok (tcp)"
				f.Message += ", over TCP after truncated UDP replies"
			}
		}
		e.r.Servers = append(e.r.Servers, st)
		e.add(f)
	}
}

func (e *eval) zoneNS() ([]string, bool) {
	set := e.o.set(e.o.Domain, dns.TypeNS)
	a, ok := consensus(set)
	if !ok {
		return nil, false
	}
	var ns []string
	for _, rr := range a.rrs(e.o.Domain, dns.TypeNS) {
		ns = append(ns, fqdn(rr.(*dns.NS).Ns))
	}
	sort.Strings(ns)
	return ns, true
}

func (e *eval) delegation() {
	f := Finding{Check: CheckDelegation, Name: e.o.Domain, Type: "NS"}
	zone, ok := e.zoneNS()
	d := e.o.Delegation
	switch {
	case e.o.Explicit:
		f.Level, f.Message = Warning, "not checked: the servers were given with --nameserver, so the parent's delegation was not asked"
	case d == nil:
		f.Level, f.Message = Warning, "not checked: "+e.o.DelegationErr
	case !ok:
		f.Level, f.Message = Error, "the servers do not agree on the zone's own NS set, so it cannot be compared with the delegation"
	case slices.Equal(d.NS, zone):
		f.Level, f.Message = OK, fmt.Sprintf("the parent (%s) delegates to the same NS set the zone lists: %s", bare(d.Parent), bareList(zone))
	default:
		f.Level = Warning
		f.Message = fmt.Sprintf("the parent (%s) delegates to %s but the zone lists %s; resolvers may use either, so every one of them must serve the same data",
			bare(d.Parent), bareList(d.NS), bareList(zone))
	}
	e.add(f)
}

func bareList(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = bare(n)
	}
	if len(out) == 0 {
		return "(none)"
	}
	return strings.Join(out, ", ")
}

func (e *eval) consistency() {
	var bad int
	for _, set := range e.o.Sets {
		if set.Type == "SOA" {
			continue // the serial check covers it
		}
		groups := map[string][]string{}
		var keys []string
		for _, a := range set.Answers {
			if !a.ok() {
				continue
			}
			k := answerKey(a, set)
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], a.Server)
		}
		if len(keys) < 2 {
			continue
		}
		bad++
		var parts []string
		for _, k := range keys {
			parts = append(parts, strings.Join(groups[k], ", ")+" say "+describeKey(k))
		}
		e.add(Finding{Check: CheckConsistency, Level: Error, Name: set.Name, Type: set.Type,
			Message: "the servers disagree: " + strings.Join(parts, "; ")})
	}
	if bad == 0 {
		e.add(Finding{Check: CheckConsistency, Level: OK, Message: fmt.Sprintf("every server that answered gave the same answers to all %d questions", len(e.o.Sets)-1)})
	}
}

// describeKey turns an answerKey back into something short to read.
func describeKey(k string) string {
	rcode, rest, _ := strings.Cut(k, "|")
	if rest == "" {
		if rcode == "NXDOMAIN" {
			return "NXDOMAIN"
		}
		return "no record"
	}
	var out []string
	for _, rr := range strings.Split(rest, "|") {
		f := strings.Fields(rr)
		if len(f) > 4 {
			out = append(out, strings.Join(f[4:], " "))
		}
	}
	return strings.Join(out, ", ")
}

func (e *eval) serial() {
	byServer := map[uint32][]string{}
	var serials []uint32
	for _, s := range e.r.Servers {
		if s.Serial == 0 {
			continue
		}
		if _, ok := byServer[s.Serial]; !ok {
			serials = append(serials, s.Serial)
		}
		byServer[s.Serial] = append(byServer[s.Serial], s.Name)
	}
	f := Finding{Check: CheckSerial, Name: e.o.Domain, Type: "SOA"}
	switch len(serials) {
	case 0:
		f.Level, f.Message = Error, "no server gave a SOA record"
	case 1:
		f.Level, f.Message = OK, fmt.Sprintf("serial %d on every server that answered", serials[0])
	default:
		slices.Sort(serials)
		var parts []string
		for _, s := range serials {
			parts = append(parts, fmt.Sprintf("%d on %s", s, strings.Join(byServer[s], ", ")))
		}
		f.Level = Error
		f.Message = "serials differ (" + strings.Join(parts, "; ") + "): a secondary that has not transferred the zone still serves old records"
	}
	e.add(f)
}

type mxRecord struct {
	pref   uint16
	target string
}

func mxRecords(a Answer, name string) []mxRecord {
	var out []mxRecord
	for _, rr := range a.rrs(name, dns.TypeMX) {
		mx := rr.(*dns.MX)
		out = append(out, mxRecord{mx.Preference, bare(mx.Mx)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].pref != out[j].pref {
			return out[i].pref < out[j].pref
		}
		return out[i].target < out[j].target
	})
	return out
}

func mxString(mxs []mxRecord) string {
	var parts []string
	for _, m := range mxs {
		parts = append(parts, fmt.Sprintf("%d %s", m.pref, m.target))
	}
	if len(parts) == 0 {
		return "no MX"
	}
	return strings.Join(parts, ", ")
}

func targets(mxs []mxRecord) []string {
	var t []string
	for _, m := range mxs {
		t = append(t, m.target)
	}
	sort.Strings(t)
	return slices.Compact(t)
}

func normSet(names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, bare(n))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// MXSwitched reports how many servers answer exactly the tenant's MX set
// and how many answered at all. It is what "switched" means.
func (o *Observation) MXSwitched() (switched, answered int) {
	want := normSet(o.Expected.TenantMX)
	set := o.set(o.Domain, dns.TypeMX)
	if set == nil || len(want) == 0 {
		return 0, 0
	}
	for _, a := range set.Answers {
		if !a.ok() {
			continue
		}
		answered++
		if slices.Equal(targets(mxRecords(a, o.Domain)), want) {
			switched++
		}
	}
	return switched, answered
}

// MXTTL returns the largest MX TTL any server gave, 0 when none did.
func (o *Observation) MXTTL() uint32 {
	var ttl uint32
	if set := o.set(o.Domain, dns.TypeMX); set != nil {
		for _, a := range set.Answers {
			for _, rr := range a.rrs(o.Domain, dns.TypeMX) {
				ttl = max(ttl, rr.Header().Ttl)
			}
		}
	}
	return ttl
}

func (e *eval) mx() {
	dom := e.o.Domain
	set := e.o.set(dom, dns.TypeMX)
	old, tenant := normSet(e.o.Expected.OldMX), normSet(e.o.Expected.TenantMX)
	answered := e.each(set, func(a Answer, server string) {
		mxs := mxRecords(a, dom)
		got := targets(mxs)
		f := Finding{Check: CheckMX, Name: dom, Type: "MX", Server: server}
		where := "on every server"
		if server != "" {
			where = "here"
		}
		if len(mxs) == 0 {
			f.Level, f.Message = Error, "no MX record: mail to the domain would go to its A record or bounce"
			if e.phase == After && len(tenant) > 0 {
				f.Publish = fmt.Sprintf("%s 3600 IN MX 0 %s.", dom, tenant[0])
			}
			e.add(f)
			return
		}
		var m365 []string
		for _, t := range got {
			if ClassifyMX(t) != MXOther {
				m365 = append(m365, t)
			}
		}
		switch e.phase {
		case Before:
			switch {
			case len(old) == 0:
				f.Level, f.Message = Warning, fmt.Sprintf("MX is %s %s; no old host configured (cutover.old_mx) to compare with", mxString(mxs), where)
			case slices.Equal(got, old):
				f.Level, f.Message = OK, fmt.Sprintf("MX is %s %s: the old host, as expected before the cutover", mxString(mxs), where)
			case len(m365) > 0:
				f.Level, f.Message = Error, fmt.Sprintf("MX is %s %s: it already points to Microsoft 365 (%s)", mxString(mxs), where, strings.Join(m365, ", "))
			default:
				f.Level, f.Message = Error, fmt.Sprintf("MX is %s %s; expected the old host %s", mxString(mxs), where, strings.Join(old, ", "))
			}
		case After:
			extra, missing := diff(got, tenant)
			switch {
			case len(tenant) == 0 && len(m365) == len(got):
				f.Level, f.Message = Warning, fmt.Sprintf("MX is %s %s, a Microsoft 365 endpoint, but no expected value is configured (cutover.tenant_mx) to compare with", mxString(mxs), where)
			case len(tenant) == 0:
				f.Level, f.Message = Error, fmt.Sprintf("MX is %s %s; after the cutover it must be the tenant's Microsoft 365 endpoint only", mxString(mxs), where)
			case len(extra) == 0 && len(missing) == 0:
				f.Level, f.Message = OK, fmt.Sprintf("MX is %s %s: exactly the tenant's endpoint (%s form)", mxString(mxs), where, ClassifyMX(tenant[0]))
			default:
				var why []string
				if len(missing) > 0 {
					why = append(why, "missing the tenant's "+strings.Join(missing, ", "))
					f.Publish = fmt.Sprintf("%s 3600 IN MX 0 %s.", dom, missing[0])
				}
				for _, x := range extra {
					switch ClassifyMX(x) {
					case MXOther:
						why = append(why, "still lists "+x+", which must go")
					default:
						why = append(why, fmt.Sprintf("lists %s (the %s form), which is not what the tenant expects", x, ClassifyMX(x)))
					}
				}
				f.Level, f.Message = Error, fmt.Sprintf("MX is %s %s: %s", mxString(mxs), where, strings.Join(why, "; "))
			}
		}
		e.add(f)
	})
	if !answered {
		e.noAnswer(CheckMX, dom, "MX")
		return
	}
	if e.phase == After {
		for _, t := range tenant {
			a, ok := e.o.lookupAnswer(t, dns.TypeA)
			if ok && a.ok() && len(a.rrs(t, dns.TypeA)) == 0 && a.Msg.Rcode == dns.RcodeNameError {
				e.add(Finding{Check: CheckMX, Level: Error, Name: t, Type: "A", Message: "the tenant's MX target does not exist (NXDOMAIN): check the value in the tenant"})
			}
		}
	}
}

// diff returns what got has beyond want, and what want has that got lacks.
func diff(got, want []string) (extra, missing []string) {
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	return extra, missing
}

func (e *eval) mxTTL() {
	ttl := e.o.MXTTL()
	if ttl == 0 {
		return
	}
	f := Finding{Check: CheckMXTTL, Name: e.o.Domain, Type: "MX", Level: OK}
	switch {
	case e.phase == Before && ttl > 300:
		f.Level = Warning
		f.Message = fmt.Sprintf("MX TTL is %d s: lower it to 300 s at least %d s (one old TTL) before the cutover, so the change reaches every resolver within 5 minutes", ttl, ttl)
	case e.phase == Before:
		f.Message = fmt.Sprintf("MX TTL is %d s: resolvers will see the change within %d s; raise it back to 3600 s once mail flows to Microsoft 365", ttl, ttl)
	default:
		f.Message = fmt.Sprintf("MX TTL is %d s", ttl)
		if ttl <= 300 {
			f.Message += "; raise it back to 3600 s once mail flows to Microsoft 365"
		}
	}
	e.add(f)
}

const m365SPF = "include:spf.protection.outlook.com"

func (e *eval) spf() {
	dom := e.o.Domain
	set := e.o.set(dom, dns.TypeTXT)
	suggest := "v=spf1 " + m365SPF + " -all"
	if e.phase == Before && e.o.Expected.OldSPF != "" {
		suggest = "v=spf1 " + e.o.Expected.OldSPF + " " + m365SPF + " -all"
	}
	publish := TXTLine(dom, 3600, suggest)
	answered := e.each(set, func(a Answer, server string) {
		add := func(l Level, msg, pub string) {
			e.add(Finding{Check: CheckSPF, Level: l, Name: dom, Type: "TXT", Server: server, Message: msg, Publish: pub})
		}
		var recs []string
		for _, s := range txtStrings(a.rrs(dom, dns.TypeTXT)) {
			if IsSPF(s) {
				recs = append(recs, s)
			}
		}
		switch len(recs) {
		case 0:
			add(Error, "no SPF record: receivers cannot tell which hosts may send for the domain", publish)
			e.missing = append(e.missing, bare(dom)+" TXT (SPF)")
			return
		case 1:
		default:
			add(Error, fmt.Sprintf("%d SPF records; receivers treat more than one as permerror (RFC 7208 section 3.2): merge them into one", len(recs)), publish)
			return
		}
		rec, err := ParseSPF(recs[0])
		if err != nil {
			add(Error, fmt.Sprintf("%q does not parse (%v); receivers return permerror", recs[0], err), publish)
			return
		}
		problems := 0
		if !rec.Has(m365SPF) {
			problems++
			add(Error, "does not include spf.protection.outlook.com: mail sent from Microsoft 365 fails SPF", publish)
		}
		if old := e.o.Expected.OldSPF; old != "" {
			switch {
			case e.phase == Before && !rec.Has(old):
				problems++
				add(Error, fmt.Sprintf("does not authorise the old host (%s): mail it still sends during the migration fails SPF", old), publish)
			case e.phase == After && rec.Has(old):
				problems++
				add(Warning, fmt.Sprintf("still authorises the old host (%s); remove it once the old host no longer sends for the domain", old), "")
			}
		}
		switch rec.All() {
		case '+':
			problems++
			add(Error, "ends in +all, which authorises every host on the internet", publish)
		case '?', 0:
			if rec.Redirect() == "" {
				problems++
				add(Warning, "has no -all or ~all, so it does not say which hosts may not send", "")
			}
		}
		if c := e.o.SPFCount; c != nil && server == "" {
			for _, p := range c.Problems {
				problems++
				add(Error, "an include is broken: "+p, "")
			}
			for _, u := range c.Unresolved {
				problems++
				add(Warning, u+" uses macros and was counted as one lookup without following it", "")
			}
			if c.Lookups > SPFLookupLimit {
				problems++
				add(Error, fmt.Sprintf("needs %d DNS lookups, more than SPF's limit of %d: receivers return permerror; flatten includes or drop unused ones", c.Lookups, SPFLookupLimit), "")
			} else if problems == 0 {
				add(OK, fmt.Sprintf("one SPF record, %q, needing %d of %d DNS lookups", recs[0], c.Lookups, SPFLookupLimit), "")
				return
			}
		}
		if problems == 0 {
			add(OK, fmt.Sprintf("one SPF record, %q", recs[0]), "")
		}
	})
	if !answered {
		e.noAnswer(CheckSPF, dom, "TXT")
	}
}

func cnameTarget(a Answer, name string) string {
	for _, rr := range a.rrs(name, dns.TypeCNAME) {
		return bare(rr.(*dns.CNAME).Target)
	}
	return ""
}

func (e *eval) dkim() {
	forms := map[string]DKIMForm{}
	for i, sel := range []string{"selector1", "selector2"} {
		want := bare([]string{e.o.Expected.DKIM1, e.o.Expected.DKIM2}[i])
		name := sel + "._domainkey." + e.o.Domain
		answered := e.each(e.o.set(name, dns.TypeCNAME), func(a Answer, server string) {
			f := Finding{Check: CheckDKIM, Name: name, Type: "CNAME", Server: server}
			got := cnameTarget(a, name)
			form := ClassifyDKIM(sel, got)
			switch {
			case got == "":
				f.Level = Error
				f.Message = "not published: Microsoft 365 cannot sign mail for the domain with DKIM"
				if want != "" {
					f.Publish = fmt.Sprintf("%s 3600 IN CNAME %s.", name, want)
				} else {
					f.Message += "; the tenant has no DKIM signing config for the domain yet: `dualmx m365 setup --apply` creates one and prints both records " +
						"(Get-DkimSigningConfig's Selector" + sel[len(sel)-1:] + "CNAME)"
				}
				e.missing = append(e.missing, bare(name)+" CNAME")
			case want != "" && got == want:
				f.Level, f.Message = OK, fmt.Sprintf("points to %s (%s form), as the tenant expects", got, form)
			case want != "":
				f.Level, f.Message = Error, fmt.Sprintf("points to %s; the tenant expects %s", got, want)
				f.Publish = fmt.Sprintf("%s 3600 IN CNAME %s.", name, want)
			case form == DKIMOther:
				f.Level, f.Message = Error, fmt.Sprintf("points to %s, which is not a Microsoft 365 DKIM target (…onmicrosoft.com or …dkim.mail.microsoft)", got)
			default:
				f.Level, f.Message = OK, fmt.Sprintf("points to %s (%s form; no expected value configured to compare with)", got, form)
			}
			if server == "" {
				forms[sel] = form
			}
			e.add(f)
		})
		if !answered {
			e.noAnswer(CheckDKIM, name, "CNAME")
		}
	}
	if f1, f2 := forms["selector1"], forms["selector2"]; f1 != "" && f2 != "" && f1 != DKIMOther && f2 != DKIMOther && f1 != f2 {
		e.add(Finding{Check: CheckDKIM, Level: Warning, Message: fmt.Sprintf("selector1 uses the %s form and selector2 the %s form; Microsoft 365 gives both selectors the same form", f1, f2)})
	}
}

func (e *eval) autodiscover() {
	name := "autodiscover." + e.o.Domain
	const want = "autodiscover.outlook.com"
	answered := e.each(e.o.set(name, dns.TypeCNAME), func(a Answer, server string) {
		f := Finding{Check: CheckAutodiscover, Name: name, Type: "CNAME", Server: server}
		switch got := cnameTarget(a, name); got {
		case want:
			f.Level, f.Message = OK, "points to "+want
		case "":
			f.Level, f.Message = Warning, "not published: Outlook cannot find the mailbox settings by itself"
			f.Publish = fmt.Sprintf("%s 3600 IN CNAME %s.", name, want)
			e.missing = append(e.missing, bare(name)+" CNAME")
		default:
			f.Level, f.Message = Error, fmt.Sprintf("points to %s, not %s: Outlook would be sent elsewhere", got, want)
			f.Publish = fmt.Sprintf("%s 3600 IN CNAME %s.", name, want)
		}
		e.add(f)
	})
	if !answered {
		e.noAnswer(CheckAutodiscover, name, "CNAME")
	}
}

func (e *eval) verification() {
	dom := e.o.Domain
	want := e.o.Expected.VerificationTXT
	answered := e.each(e.o.set(dom, dns.TypeTXT), func(a Answer, server string) {
		f := Finding{Check: CheckVerification, Name: dom, Type: "TXT", Server: server}
		var ms []string
		for _, s := range txtStrings(a.rrs(dom, dns.TypeTXT)) {
			if strings.HasPrefix(s, "MS=") {
				ms = append(ms, s)
			}
		}
		switch {
		case want != "" && slices.Contains(ms, want):
			f.Level, f.Message = OK, want+" is published"
		case want != "" && len(ms) > 0:
			f.Level, f.Message = Error, fmt.Sprintf("%s is published, but the tenant's value is %s", strings.Join(ms, ", "), want)
			f.Publish = TXTLine(dom, 3600, want)
		case want != "":
			f.Level, f.Message = Warning, want+" is not published; it is needed until the tenant has verified the domain"
			f.Publish = TXTLine(dom, 3600, want)
		case len(ms) > 0:
			f.Level, f.Message = OK, strings.Join(ms, ", ")+" is published (no expected value configured to compare with)"
		default:
			f.Level, f.Message = Warning, "no MS=ms… verification record; it is needed until the tenant has verified the domain"
		}
		e.add(f)
	})
	if !answered {
		e.noAnswer(CheckVerification, dom, "TXT")
	}
}

func (e *eval) dmarc() {
	name := "_dmarc." + e.o.Domain
	publish := TXTLine(name, 3600, "v=DMARC1; p=none; pct=100; rua=mailto:dmarc-reports@"+bare(e.o.Domain))
	answered := e.each(e.o.set(name, dns.TypeTXT), func(a Answer, server string) {
		f := Finding{Check: CheckDMARC, Name: name, Type: "TXT", Server: server}
		var recs []string
		for _, s := range txtStrings(a.rrs(name, dns.TypeTXT)) {
			if IsDMARC(s) {
				recs = append(recs, s)
			}
		}
		switch len(recs) {
		case 0:
			f.Level, f.Message, f.Publish = Warning, "no DMARC record: receivers apply no policy to mail that fails SPF and DKIM", publish
			e.missing = append(e.missing, bare(name)+" TXT")
		case 1:
			d, err := ParseDMARC(recs[0])
			if err != nil {
				f.Level, f.Message, f.Publish = Error, fmt.Sprintf("%q does not parse (%v): receivers ignore it", recs[0], err), publish
				break
			}
			f.Level = OK
			f.Message = fmt.Sprintf("policy p=%s", d.Policy)
			if d.SubdomainPolicy != "" {
				f.Message += ", sp=" + d.SubdomainPolicy
			}
			if d.Pct != 100 {
				f.Message += fmt.Sprintf(", pct=%d", d.Pct)
			}
			if d.Policy != "none" {
				f.Message += "; forwarded mail relies on the relay's ARC seal being trusted by the tenant"
			}
			if len(d.RUA) == 0 {
				f.Message += "; no rua, so no aggregate reports"
			}
		default:
			f.Level, f.Message = Error, fmt.Sprintf("%d DMARC records: receivers ignore all of them (RFC 7489 section 6.6.3)", len(recs))
		}
		e.add(f)
	})
	if !answered {
		e.noAnswer(CheckDMARC, name, "TXT")
	}
}

func (e *eval) negativeTTL() {
	a, ok := consensus(e.o.set(e.o.Domain, dns.TypeSOA))
	if !ok {
		return
	}
	soas := a.rrs(e.o.Domain, dns.TypeSOA)
	if len(soas) == 0 {
		return
	}
	soa := soas[0].(*dns.SOA)
	// RFC 2308 section 5: the negative TTL is the lower of the SOA's own
	// TTL and its MINIMUM field.
	neg := min(soa.Hdr.Ttl, soa.Minttl)
	f := Finding{Check: CheckNegativeTTL, Name: e.o.Domain, Type: "SOA", Level: OK}
	f.Message = fmt.Sprintf("resolvers cache a missing record for up to %d s (SOA minimum %d, SOA TTL %d)", neg, soa.Minttl, soa.Hdr.Ttl)
	if len(e.missing) > 0 {
		ms := slices.Compact(slices.Sorted(slices.Values(e.missing)))
		f.Message += fmt.Sprintf("; once published, %s may take that long to be seen where it was asked for before", strings.Join(ms, ", "))
		if neg > 3600 {
			f.Level = Warning
		}
	}
	e.add(f)
}
