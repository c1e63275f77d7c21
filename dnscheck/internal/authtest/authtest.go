// SPDX-License-Identifier: MIT

// Package authtest runs small authoritative DNS servers on loopback for the
// dnscheck tests: zones from master-file text, optional DNSSEC signing done
// at test time, and servers that misbehave on purpose (truncate, stay
// silent, SERVFAIL, answer without the AA bit).
package authtest

import (
	"crypto"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Mode is how a server behaves.
type Mode int

// Server behaviours.
const (
	Normal   Mode = iota
	Truncate      // UDP replies carry TC and no records; TCP answers in full
	Silent        // never replies, over UDP or TCP
	ServFail      // every reply is SERVFAIL
	NotAuth       // answers without the AA bit, like a lame server
)

// Zone is a zone's records, keyed for lookup.
type Zone struct {
	Origin string
	mu     sync.RWMutex
	rrs    []dns.RR
}

// NewZone parses master-file text (with $ORIGIN set to origin and a
// default TTL of 3600) into a zone.
func NewZone(t testing.TB, origin, text string) *Zone {
	t.Helper()
	origin = dns.Fqdn(origin)
	z := &Zone{Origin: origin}
	zp := dns.NewZoneParser(strings.NewReader("$TTL 3600\n"+text), origin, "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		z.rrs = append(z.rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("authtest: zone %s: %v", origin, err)
	}
	return z
}

// Add appends records given as master-file lines.
func (z *Zone) Add(t testing.TB, lines ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR("$ORIGIN " + z.Origin + "\n$TTL 3600\n" + l)
		if err != nil {
			t.Fatalf("authtest: %q: %v", l, err)
		}
		z.rrs = append(z.rrs, rr)
	}
}

// Replace removes every record of type t at name (relative names are
// completed with the origin).
func (z *Zone) Replace(name string, typ uint16, rrs ...dns.RR) {
	name = z.abs(name)
	z.mu.Lock()
	defer z.mu.Unlock()
	out := z.rrs[:0]
	for _, rr := range z.rrs {
		h := rr.Header()
		if strings.EqualFold(h.Name, name) && (h.Rrtype == typ || h.Rrtype == dns.TypeRRSIG && rr.(*dns.RRSIG).TypeCovered == typ) {
			continue
		}
		out = append(out, rr)
	}
	z.rrs = append(out, rrs...)
}

func (z *Zone) abs(name string) string {
	if name == "@" {
		return z.Origin
	}
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "." + z.Origin
}

// Keys are a zone's signing keys.
type Keys struct {
	KSK, ZSK         *dns.DNSKEY
	kskPriv, zskPriv crypto.Signer
}

// DS returns the DS record for the KSK, for the parent zone.
func (k *Keys) DS() *dns.DS { return k.KSK.ToDS(dns.SHA256) }

// Sign adds DNSKEYs (a KSK and a ZSK, ECDSA P-256) and an RRSIG for every
// RRset the zone is authoritative for, valid from an hour before now to a
// day after. NSEC records are not generated: the tests validate positive
// answers only.
func (z *Zone) Sign(t testing.TB, now time.Time) *Keys {
	t.Helper()
	k := &Keys{}
	mk := func(flags uint16) (*dns.DNSKEY, crypto.Signer) {
		key := &dns.DNSKEY{Hdr: dns.RR_Header{Name: z.Origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
			Flags: flags, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
		priv, err := key.Generate(256)
		if err != nil {
			t.Fatalf("authtest: generate key: %v", err)
		}
		return key, priv.(crypto.Signer)
	}
	k.KSK, k.kskPriv = mk(257)
	k.ZSK, k.zskPriv = mk(256)
	z.mu.Lock()
	z.rrs = append(z.rrs, k.KSK, k.ZSK)
	z.mu.Unlock()
	z.Resign(t, k, now)
	return k
}

// Resign drops every RRSIG and signs all RRsets again, e.g. after a test
// changed records with Replace.
func (z *Zone) Resign(t testing.TB, k *Keys, now time.Time) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	var plain []dns.RR
	sets := map[[2]string][]dns.RR{}
	var order [][2]string
	for _, rr := range z.rrs {
		if rr.Header().Rrtype == dns.TypeRRSIG {
			continue
		}
		plain = append(plain, rr)
		h := rr.Header()
		if z.isDelegated(h.Name) && h.Rrtype != dns.TypeDS {
			continue // below a zone cut: glue and delegation NS are not signed
		}
		key := [2]string{strings.ToLower(h.Name), dns.TypeToString[h.Rrtype]}
		if _, ok := sets[key]; !ok {
			order = append(order, key)
		}
		sets[key] = append(sets[key], rr)
	}
	z.rrs = plain
	for _, key := range order {
		set := sets[key]
		signer, priv := k.ZSK, k.zskPriv
		if set[0].Header().Rrtype == dns.TypeDNSKEY {
			signer, priv = k.KSK, k.kskPriv
		}
		sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: set[0].Header().Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: set[0].Header().Ttl},
			KeyTag: signer.KeyTag(), SignerName: z.Origin, Algorithm: signer.Algorithm,
			Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(24 * time.Hour).Unix())}
		if err := sig.Sign(priv, set); err != nil {
			t.Fatalf("authtest: sign %v: %v", key, err)
		}
		z.rrs = append(z.rrs, sig)
	}
}

// isDelegated reports whether name is at or below a zone cut inside z
// (an NS RRset at a name other than the apex). Callers hold the lock.
func (z *Zone) isDelegated(name string) bool {
	return z.cut(name) != ""
}

func (z *Zone) cut(name string) string {
	name = strings.ToLower(name)
	best := ""
	for _, rr := range z.rrs {
		h := rr.Header()
		n := strings.ToLower(h.Name)
		if h.Rrtype != dns.TypeNS || n == strings.ToLower(z.Origin) {
			continue
		}
		if dns.IsSubDomain(n, name) && len(n) > len(best) {
			best = n
		}
	}
	return best
}

// Server is one authoritative server on loopback, UDP and TCP on one port.
type Server struct {
	Addr  string
	mode  Mode // set at Start, read by the handler
	zones []*Zone
	// Queries counts the queries received, over both transports.
	Queries atomic.Int64
	TCP     atomic.Int64
}

// Start runs a server on addr (ip:port; port 0 for any free port, the same
// for UDP and TCP), serving zones, until the test ends.
func Start(t testing.TB, addr string, mode Mode, zones ...*Zone) *Server {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("authtest: %v", err)
	}
	var l listeners
	for attempt := 0; ; attempt++ {
		l, err = listenBoth(addr)
		// With port 0 only the UDP port is picked; TCP may find it taken.
		if err == nil || port != "0" || attempt == 50 {
			break
		}
	}
	if err != nil {
		t.Fatalf("authtest: %s: %v", host, err)
	}
	return serve(t, l, mode, zones)
}

// Spec is one server of StartShared.
type Spec struct {
	IP    string
	Mode  Mode
	Zones []*Zone
}

// StartShared runs one server per spec, each on its own IP and all on the
// same port, so several servers can stand in for name servers reached at one
// port. All sockets are bound before any server starts, and a clash on any of
// them tries another port, so no port is picked, released and hoped for.
func StartShared(t testing.TB, specs ...Spec) (port int, servers []*Server) {
	t.Helper()
	var lastErr error
	for range 50 {
		first, err := listenBoth(net.JoinHostPort(specs[0].IP, "0"))
		if err != nil {
			lastErr = err
			continue
		}
		port = first.pc.LocalAddr().(*net.UDPAddr).Port
		all := []listeners{first}
		for _, sp := range specs[1:] {
			l, err := listenBoth(net.JoinHostPort(sp.IP, strconv.Itoa(port)))
			if err != nil {
				lastErr = err
				break
			}
			all = append(all, l)
		}
		if len(all) < len(specs) {
			for _, l := range all {
				l.close()
			}
			continue
		}
		for i, sp := range specs {
			servers = append(servers, serve(t, all[i], sp.Mode, sp.Zones))
		}
		return port, servers
	}
	t.Fatalf("authtest: no port free on all of %d addresses: %v", len(specs), lastErr)
	return 0, nil
}

// listeners are a server's UDP and TCP sockets, on one address.
type listeners struct {
	pc net.PacketConn
	ln net.Listener
}

func (l listeners) close() {
	l.pc.Close()
	l.ln.Close()
}

// listenBoth binds UDP on addr, then TCP on the port UDP got.
func listenBoth(addr string) (listeners, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return listeners{}, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return listeners{}, fmt.Errorf("listen tcp %s: %w", pc.LocalAddr(), err)
	}
	return listeners{pc, ln}, nil
}

func serve(t testing.TB, l listeners, mode Mode, zones []*Zone) *Server {
	s := &Server{zones: zones, mode: mode}
	s.Addr = l.pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: l.pc, Handler: dns.HandlerFunc(s.serve("udp"))}
	tcp := &dns.Server{Listener: l.ln, Handler: dns.HandlerFunc(s.serve("tcp")), ReadTimeout: 2 * time.Second}
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		wg.Add(1)
		ready.Add(1)
		srv.NotifyStartedFunc = ready.Done
		go func() {
			defer wg.Done()
			_ = srv.ActivateAndServe()
		}()
	}
	ready.Wait()
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		wg.Wait()
	})
	return s
}

func (s *Server) zoneFor(name string) *Zone {
	var best *Zone
	for _, z := range s.zones {
		if dns.IsSubDomain(z.Origin, name) && (best == nil || len(z.Origin) > len(best.Origin)) {
			best = z
		}
	}
	return best
}

func (s *Server) serve(network string) func(dns.ResponseWriter, *dns.Msg) {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		s.Queries.Add(1)
		if network == "tcp" {
			s.TCP.Add(1)
		}
		mode := s.mode
		if mode == Silent || len(r.Question) != 1 {
			return
		}
		m := new(dns.Msg)
		m.SetReply(r)
		do := false
		if opt := r.IsEdns0(); opt != nil {
			do = opt.Do()
			m.SetEdns0(4096, do)
		}
		switch {
		case mode == ServFail:
			m.Rcode = dns.RcodeServerFailure
		case mode == Truncate && network == "udp":
			m.Truncated = true
		default:
			s.answer(m, r.Question[0], do)
			if mode == NotAuth {
				m.Authoritative = false
			}
		}
		_ = w.WriteMsg(m)
	}
}

func (s *Server) answer(m *dns.Msg, q dns.Question, do bool) {
	z := s.zoneFor(q.Name)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return
	}
	z.mu.RLock()
	defer z.mu.RUnlock()
	name := strings.ToLower(q.Name)
	// A name at or below a cut gets a referral, except the DS the parent
	// itself holds.
	if cut := z.cut(name); cut != "" && !(q.Qtype == dns.TypeDS && cut == name) {
		m.Ns = append(m.Ns, z.find(cut, dns.TypeNS, false)...)
		for _, ns := range z.find(cut, dns.TypeNS, false) {
			m.Extra = append(m.Extra, z.find(strings.ToLower(ns.(*dns.NS).Ns), dns.TypeA, false)...)
		}
		return
	}
	m.Authoritative = true
	if rrs := z.find(name, q.Qtype, do); len(rrs) > 0 {
		m.Answer = rrs
		return
	}
	if q.Qtype != dns.TypeCNAME {
		if rrs := z.find(name, dns.TypeCNAME, do); len(rrs) > 0 {
			m.Answer = rrs
			return
		}
	}
	if !z.exists(name) {
		m.Rcode = dns.RcodeNameError
	}
	m.Ns = z.find(strings.ToLower(z.Origin), dns.TypeSOA, do)
}

func (z *Zone) find(name string, t uint16, do bool) []dns.RR {
	var out []dns.RR
	for _, rr := range z.rrs {
		h := rr.Header()
		if !strings.EqualFold(h.Name, name) {
			continue
		}
		if h.Rrtype == t || do && h.Rrtype == dns.TypeRRSIG && rr.(*dns.RRSIG).TypeCovered == t {
			out = append(out, dns.Copy(rr))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Header().Rrtype != dns.TypeRRSIG && out[j].Header().Rrtype == dns.TypeRRSIG
	})
	return out
}

func (z *Zone) exists(name string) bool {
	for _, rr := range z.rrs {
		// An empty non-terminal exists too.
		if dns.IsSubDomain(name, strings.ToLower(rr.Header().Name)) {
			return true
		}
	}
	return false
}

// CorruptSignature changes one byte of the signature over the RRset at
// name of type t, so it no longer verifies.
func (z *Zone) CorruptSignature(t testing.TB, name string, typ uint16) {
	t.Helper()
	name = z.abs(name)
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, rr := range z.rrs {
		sig, ok := rr.(*dns.RRSIG)
		if !ok || sig.TypeCovered != typ || !strings.EqualFold(sig.Hdr.Name, name) {
			continue
		}
		b := []byte(sig.Signature)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		sig.Signature = string(b)
		return
	}
	t.Fatalf("authtest: no RRSIG for %s %s", name, dns.TypeToString[typ])
}
