// SPDX-License-Identifier: MIT

package dnscheck

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/internal/taglist"
)

// relayMX checks that the forward domain's MX leads to the relay: that is
// how the old host's forwards reach dualmx.
func (e *eval) relayMX() {
	fwd, relay := e.o.Expected.ForwardDomain, bare(e.o.Expected.RelayHost)
	if fwd == "" || relay == "" {
		return
	}
	f := Finding{Check: CheckRelayMX, Name: fwd, Type: "MX"}
	a, ok := e.o.lookupAnswer(fwd, dns.TypeMX)
	if !ok || !a.ok() {
		f.Level, f.Message = Error, "could not be looked up: "+a.Err
		e.add(f)
		return
	}
	got := targets(mxRecords(a, fwd))
	publish := fmt.Sprintf("%s 3600 IN MX 10 %s.", fqdn(fwd), relay)
	switch {
	case slices.Equal(got, []string{relay}):
		f.Level, f.Message = OK, "points to the relay host "+relay
	case slices.Contains(got, relay):
		f.Level, f.Message = Warning, fmt.Sprintf("points to %s; hosts other than the relay would receive forwarded mail", strings.Join(got, ", "))
	case len(got) == 0:
		f.Level, f.Message, f.Publish = Error, "has no MX: the old host cannot forward to the relay", publish
	default:
		f.Level, f.Message, f.Publish = Error, fmt.Sprintf("points to %s, not the relay host %s", strings.Join(got, ", "), relay), publish
	}
	e.add(f)
}

// relayFCrDNS checks forward-confirmed reverse DNS of the relay host:
// receivers, Microsoft 365 among them, distrust a sender whose address does
// not map back to its name.
func (e *eval) relayFCrDNS() {
	host := bare(e.o.Expected.RelayHost)
	if host == "" {
		return
	}
	var ips []string
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		if a, ok := e.o.lookupAnswer(host, t); ok {
			ips = append(ips, addrsOf(a, host)...)
		}
	}
	if len(ips) == 0 {
		a, _ := e.o.lookupAnswer(host, dns.TypeA)
		msg := "has no A or AAAA record"
		if a.Err != "" {
			msg = "could not be looked up: " + a.Err
		}
		e.add(Finding{Check: CheckRelayFCrDNS, Level: Error, Name: host, Type: "A", Message: msg})
		return
	}
	for _, ip := range ips {
		rev, _ := dns.ReverseAddr(ip)
		f := Finding{Check: CheckRelayFCrDNS, Name: rev, Type: "PTR"}
		a, ok := e.o.lookupAnswer(rev, dns.TypePTR)
		var names []string
		for _, rr := range a.rrs(rev, dns.TypePTR) {
			names = append(names, bare(rr.(*dns.PTR).Ptr))
		}
		publish := fmt.Sprintf("%s 3600 IN PTR %s.", rev, host)
		switch {
		case !ok || !a.ok():
			f.Level, f.Message = Error, fmt.Sprintf("reverse lookup of %s failed: %s", ip, a.Err)
		case slices.Contains(names, host):
			f.Level, f.Message = OK, fmt.Sprintf("%s maps back to %s (forward-confirmed)", ip, host)
		case len(names) == 0:
			f.Level, f.Message, f.Publish = Error, fmt.Sprintf("%s (of %s) has no PTR record; ask the address's owner to publish one", ip, host), publish
		default:
			f.Level, f.Message, f.Publish = Error, fmt.Sprintf("%s (of %s) maps back to %s, not to %s", ip, host, strings.Join(names, ", "), host), publish
		}
		e.add(f)
	}
}

// relayARC checks the published ARC key against the configured one; a
// mismatch makes every seal fail at Microsoft 365.
func (e *eval) relayARC() {
	k := e.o.Expected.ARC
	if k == nil {
		return
	}
	name := k.Name()
	f := Finding{Check: CheckRelayARC, Name: name, Type: "TXT"}
	publish := TXTLine(name, 3600, k.Record())
	a, ok := e.o.lookupAnswer(name, dns.TypeTXT)
	if !ok || !a.ok() {
		f.Level, f.Message = Error, "could not be looked up: "+a.Err
		e.add(f)
		return
	}
	recs := txtStrings(a.rrs(name, dns.TypeTXT))
	switch {
	case len(recs) == 0:
		f.Level, f.Message, f.Publish = Error, "not published: receivers cannot verify the relay's ARC seals", publish
	case len(recs) > 1:
		f.Level, f.Message, f.Publish = Error, fmt.Sprintf("%d TXT records: verifiers may pick either", len(recs)), publish
	default:
		t, err := taglist.Parse(recs[0])
		kt, _ := t.Get("k")
		if kt == "" {
			kt = "rsa"
		}
		p, _ := t.Get("p")
		p = taglist.StripFWS(p)
		switch {
		case err != nil:
			f.Level, f.Message, f.Publish = Error, fmt.Sprintf("is not a valid key record (%v): verifiers ignore it", err), publish
		case kt != k.KeyType:
			f.Level, f.Message, f.Publish = Error, fmt.Sprintf("publishes a %s key, but arc.key_file holds a %s key", kt, k.KeyType), publish
		case p == "":
			f.Level, f.Message, f.Publish = Error, "has an empty p= (a revoked key)", publish
		case p != k.PublicKey:
			f.Level, f.Message, f.Publish = Error, "the published key is not the public half of arc.key_file", publish
		default:
			f.Level, f.Message = OK, "matches the public half of arc.key_file"
		}
	}
	e.add(f)
}
