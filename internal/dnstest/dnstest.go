// SPDX-License-Identifier: MIT

// Package dnstest runs an in-process authoritative DNS server on loopback for
// tests, answering from records given as master-file text. Each test gets its
// own server and handler, so tests can run in parallel with different zones.
package dnstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a running test DNS server. It is authoritative for every name:
// a name absent from the zone gets NXDOMAIN, so tests need not declare the
// parent zones of the names they look up.
type Server struct {
	addr     string
	silent   bool
	ignoreDO bool
	rcodes   map[string]int // by lower-case owner name (FQDN)
	hold     <-chan struct{}

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case owner name (FQDN)
	queries []dns.Question
}

// Option changes how a server behaves. Options exist so that later DNS
// checks (truncation, DNSSEC, ...) can be added without changing Start's callers.
type Option func(*Server)

// Silent makes the server read queries and never answer, the way an
// overloaded or firewalled resolver looks to a client: the only way out is
// the client's own deadline.
func Silent() Option { return func(s *Server) { s.silent = true } }

// Rcode makes the server answer every query for name with rcode and no
// records, e.g. dns.RcodeServerFailure for a resolver whose upstream is broken.
func Rcode(name string, rcode int) Option {
	return func(s *Server) {
		if s.rcodes == nil {
			s.rcodes = map[string]int{}
		}
		s.rcodes[strings.ToLower(dns.Fqdn(name))] = rcode
	}
}

// IgnoreDO makes the server answer as if it knew nothing of DNSSEC: no
// RRSIGs even when the query sets the DO bit, the way a resolver that strips
// DNSSEC records looks to a validating client.
func IgnoreDO() Option { return func(s *Server) { s.ignoreDO = true } }

// Hold makes the server record each query at once but answer it only after
// release is closed, so a test can have several queries in flight together.
func Hold(release <-chan struct{}) Option { return func(s *Server) { s.hold = release } }

// Start parses zone (RFC 1035 master-file text, origin ".", default TTL 300)
// and serves it on 127.0.0.1 over UDP and TCP on the same port until the test ends.
// A zone that does not parse fails the test.
func Start(t testing.TB, zone string, opts ...Option) *Server {
	t.Helper()
	s := &Server{records: map[string][]dns.RR{}}
	for _, o := range opts {
		o(s)
	}
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "zone")
	zp.SetDefaultTTL(300)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("dnstest: zone: %v", err)
	}

	pc, ln, err := listenSamePort()
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)},
		{Listener: ln, Handler: dns.HandlerFunc(s.serve)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.ShutdownContext(ctx)
		})
	}
	return s
}

// listenSamePort binds UDP on an ephemeral port and TCP on the same number,
// retrying because another process may hold that TCP port.
func listenSamePort() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no port free for both UDP and TCP: %v", lastErr)
}

// Addr is "127.0.0.1:port", the same port for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Resolver returns a pure-Go resolver that sends every query to this server.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo:     true,
		StrictErrors: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr)
		},
	}
}

// Queries returns the questions received so far, in order.
func (s *Server) Queries() []dns.Question {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]dns.Question(nil), s.queries...)
}

// Count returns how many queries for name (any case, with or without the
// trailing dot) and qtype the server has received, over UDP and TCP together.
func (s *Server) Count(name string, qtype uint16) int {
	name = dns.Fqdn(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if q.Qtype == qtype && strings.EqualFold(q.Name, name) {
			n++
		}
	}
	return n
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	s.mu.Lock()
	s.queries = append(s.queries, q)
	s.mu.Unlock()
	if s.silent {
		return
	}
	if s.hold != nil {
		<-s.hold
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if rcode, ok := s.rcodes[strings.ToLower(q.Name)]; ok {
		m.Rcode = rcode
		w.WriteMsg(m)
		return
	}
	m.Answer, m.Rcode = s.answer(q)
	if len(m.Answer) == 0 {
		if soa := s.soaFor(q.Name); soa != nil {
			m.Ns = []dns.RR{soa}
		}
	}
	if opt := req.IsEdns0(); opt != nil && opt.Do() && !s.ignoreDO {
		// A signed zone's answers carry their signatures when the client
		// asks for DNSSEC records (RFC 4035 §3.1.1); the zone text holds
		// the RRSIGs, so the server only picks the ones that fit.
		m.Answer = s.withSigs(m.Answer)
		m.Ns = s.withSigs(m.Ns)
		m.SetEdns0(dns.DefaultMsgSize, true)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size) // sets TC so the client retries over TCP
	}
	w.WriteMsg(m)
}

// answer follows CNAMEs inside the zone; a name that owns no record but has
// descendants (an empty non-terminal such as _domainkey.example.org) gets
// NODATA, not NXDOMAIN, as RFC 8020 requires.
func (s *Server) answer(q dns.Question) ([]dns.RR, int) {
	name := strings.ToLower(q.Name)
	var ans []dns.RR
	for range 8 {
		rrs := s.records[name]
		var cname dns.RR
		for _, rr := range rrs {
			switch {
			case q.Qtype == dns.TypeANY || rr.Header().Rrtype == q.Qtype:
				ans = append(ans, dns.Copy(rr))
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr
			}
		}
		if len(ans) > 0 || cname == nil {
			if len(ans) == 0 && !s.exists(name) {
				return nil, dns.RcodeNameError
			}
			return ans, dns.RcodeSuccess
		}
		ans = append(ans, dns.Copy(cname))
		name = strings.ToLower(cname.(*dns.CNAME).Target)
	}
	return ans, dns.RcodeSuccess
}

// withSigs appends to rrs the zone's RRSIGs that cover each of its RRsets.
func (s *Server) withSigs(rrs []dns.RR) []dns.RR {
	type set struct {
		name  string
		rtype uint16
	}
	seen := map[set]bool{}
	out := rrs
	for _, rr := range rrs {
		k := set{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		if seen[k] {
			continue
		}
		seen[k] = true
		for _, r := range s.records[k.name] {
			if sig, ok := r.(*dns.RRSIG); ok && sig.TypeCovered == k.rtype {
				out = append(out, dns.Copy(sig))
			}
		}
	}
	return out
}

func (s *Server) exists(name string) bool {
	if len(s.records[name]) > 0 {
		return true
	}
	for owner := range s.records {
		if strings.HasSuffix(owner, "."+name) || name == "." {
			return true
		}
	}
	return false
}

// soaFor returns the SOA of the closest enclosing zone, for the authority
// section of negative answers (RFC 2308).
func (s *Server) soaFor(name string) dns.RR {
	name = strings.ToLower(name)
	for {
		for _, rr := range s.records[name] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return dns.Copy(rr)
			}
		}
		i := strings.IndexByte(name, '.')
		if i < 0 || i == len(name)-1 {
			return nil
		}
		name = name[i+1:]
	}
}
