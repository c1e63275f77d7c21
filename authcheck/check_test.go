// SPDX-License-Identifier: MIT

package authcheck

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/metrics"
)

type sig struct{ domain, selector string }

type arcFunc = func(ctx context.Context, msg io.Reader) (string, int, string)

// TestCheck runs the table over net.Resolver and over one Cache shared by
// every case, so later cases get their verdicts from cached answers,
// positive and negative.
func TestCheck(t *testing.T) {
	s := zone(t)
	t.Run("resolver", func(t *testing.T) { testCheck(t, s, s.Resolver()) })
	t.Run("cache", func(t *testing.T) { testCheck(t, s, NewCache(s.Addr())) })
}

func testCheck(t *testing.T, s *dnstest.Server, lookup Lookup) {
	authorSig := []sig{{"example.org", "sel1"}}
	alterBody := func(m []byte) []byte { return bytes.Replace(m, []byte("agenda."), []byte("agenda!"), 1) }

	tests := []struct {
		name        string
		from        string // From field value
		sigs        []sig  // in signing order; the last one ends up on top
		alter       func([]byte) []byte
		mailFrom    string
		helo        string
		ip          net.IP
		arc         arcFunc
		wantDKIM    []string // results, top signature first
		wantAuthor  string
		wantSPF     string
		wantDMARC   string
		wantPolicy  string
		wantARC     string
		wantSPFOnly bool
	}{
		{name: "dkim pass spf pass dmarc pass", from: "A <a@example.org>", sigs: authorSig,
			mailFrom: "bounce@example.org", ip: ipAuthor,
			wantDKIM: []string{"pass"}, wantAuthor: "intact", wantSPF: "pass", wantDMARC: "pass", wantPolicy: "reject"},
		{name: "forwarded: intact dkim carries dmarc past spf fail", from: "a@example.org", sigs: authorSig,
			mailFrom: "bounce@example.org", ip: ipOldMX,
			wantDKIM: []string{"pass"}, wantAuthor: "intact", wantSPF: "fail", wantDMARC: "pass", wantPolicy: "reject"},
		{name: "dkim fail after body change", from: "a@example.org", sigs: authorSig, alter: alterBody,
			mailFrom: "bounce@example.org", ip: ipOldMX,
			wantDKIM: []string{"fail"}, wantAuthor: "broken", wantSPF: "fail", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "dkim absent dmarc pass through spf only", from: "a@example.org",
			mailFrom: "bounce@example.org", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "pass", wantPolicy: "reject", wantSPFOnly: true},
		{name: "multiple signatures: author and list", from: "a@example.org",
			sigs:     []sig{{"example.org", "sel1"}, {"lists.example.net", "list"}},
			mailFrom: "list-bounces@lists.example.net", ip: ipList,
			wantDKIM: []string{"pass", "pass"}, wantAuthor: "intact", wantSPF: "pass", wantDMARC: "pass", wantPolicy: "reject"},
		{name: "multiple signatures: list altered after author signed", from: "a@example.org",
			sigs:     []sig{{"example.org", "sel1"}, {"alter", ""}, {"lists.example.net", "list"}},
			mailFrom: "list-bounces@lists.example.net", ip: ipList,
			wantDKIM: []string{"pass", "fail"}, wantAuthor: "broken", wantSPF: "pass", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "dkim permerror without key", from: "a@example.org", sigs: []sig{{"example.org", "gone"}},
			mailFrom: "bounce@example.org", ip: ipOldMX,
			wantDKIM: []string{"permerror"}, wantAuthor: "broken", wantSPF: "fail", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "spf softfail", from: "a@softfail.example.com", mailFrom: "x@softfail.example.com", ip: ipOldMX,
			wantAuthor: "absent", wantSPF: "softfail", wantDMARC: "none"},
		{name: "spf neutral", from: "a@neutral.example.com", mailFrom: "x@neutral.example.com", ip: ipOldMX,
			wantAuthor: "absent", wantSPF: "neutral", wantDMARC: "none"},
		{name: "spf none without record", from: "a@nospf.example.com", mailFrom: "x@nospf.example.com", ip: ipOldMX,
			wantAuthor: "absent", wantSPF: "none", wantDMARC: "none"},
		{name: "spf none for nxdomain", from: "a@example.org", mailFrom: "x@nowhere.example.com", ip: ipOldMX,
			wantAuthor: "absent", wantSPF: "none", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "spf permerror", from: "a@badspf.example.com", mailFrom: "x@badspf.example.com", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "permerror", wantDMARC: "none"},
		{name: "null sender: spf of helo", from: "a@example.org", helo: "relay.example.net", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "null sender with address-literal helo", from: "a@example.org", helo: "[192.0.2.10]", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "none", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "dmarc none without record", from: "a@nodmarc.example.com", mailFrom: "x@nodmarc.example.com", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "none"},
		{name: "dmarc fail", from: "a@example.org", mailFrom: "bounce@example.org", ip: ipOldMX,
			wantAuthor: "absent", wantSPF: "fail", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "dmarc of subdomain from organisational record, relaxed dkim", from: "a@news.example.org", sigs: authorSig,
			mailFrom: "bounce@news.example.org", ip: ipOldMX,
			wantDKIM: []string{"pass"}, wantAuthor: "intact", wantSPF: "none", wantDMARC: "pass", wantPolicy: "quarantine"},
		{name: "dmarc strict spf alignment", from: "a@strict.example.com", mailFrom: "x@mail.strict.example.com", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "fail", wantPolicy: "reject"},
		{name: "dmarc permerror for a bad record", from: "a@baddmarc.example.com", mailFrom: "x@baddmarc.example.com", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "permerror"},
		{name: "dmarc permerror without From", mailFrom: "bounce@example.org", ip: ipAuthor,
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "permerror"},
		{name: "From with undecodable display name", from: "=?x-unknown?Q?Koster?= <koster@example.org>", sigs: authorSig,
			mailFrom: "bounce@example.org", ip: ipOldMX,
			wantDKIM: []string{"pass"}, wantAuthor: "intact", wantSPF: "fail", wantDMARC: "pass", wantPolicy: "reject"},
		{name: "arc pass", from: "a@example.org", sigs: authorSig, mailFrom: "bounce@example.org", ip: ipOldMX,
			arc:      func(context.Context, io.Reader) (string, int, string) { return "pass", 2, "" },
			wantDKIM: []string{"pass"}, wantAuthor: "intact", wantSPF: "fail", wantDMARC: "pass", wantPolicy: "reject", wantARC: "pass"},
		{name: "arc cv outside the RFC is fail", from: "a@example.org", mailFrom: "bounce@example.org", ip: ipAuthor,
			arc:        func(context.Context, io.Reader) (string, int, string) { return "maybe", 1, "" },
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "pass", wantPolicy: "reject", wantARC: "fail", wantSPFOnly: true},
		{name: "arc validator panics", from: "a@example.org", mailFrom: "bounce@example.org", ip: ipAuthor,
			arc:        func(context.Context, io.Reader) (string, int, string) { panic("bad chain") },
			wantAuthor: "absent", wantSPF: "pass", wantDMARC: "pass", wantPolicy: "reject", wantARC: "fail", wantSPFOnly: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := message(tc.from, body)
			for _, sg := range tc.sigs {
				if sg.domain == "alter" {
					msg = bytes.Replace(msg, []byte("Subject: "), []byte("Subject: [kerk] "), 1)
					msg = bytes.Replace(msg, []byte("agenda.\r\n"), []byte("agenda.\r\n-- \r\nlists.example.net\r\n"), 1)
					continue
				}
				msg = sign(t, msg, sg.domain, sg.selector)
			}
			if tc.alter != nil {
				msg = tc.alter(msg)
			}
			c := newChecker(s)
			c.Lookup = lookup
			c.ARC = tc.arc
			got := c.Check(context.Background(), Input{ClientIP: tc.ip, Helo: tc.helo, MailFrom: tc.mailFrom, Message: opener(msg)})

			var dk []string
			for _, d := range got.DKIM {
				dk = append(dk, d.Result)
			}
			wantARC := tc.wantARC
			if wantARC == "" {
				wantARC = "none"
			}
			if !slices.Equal(dk, tc.wantDKIM) || got.AuthorDKIM != tc.wantAuthor || got.SPF != tc.wantSPF ||
				got.DMARC != tc.wantDMARC || got.DMARCPolicy != tc.wantPolicy || got.ARC != wantARC {
				t.Errorf("got dkim=%v author=%s spf=%s dmarc=%s p=%q arc=%s\nwant dkim=%v author=%s spf=%s dmarc=%s p=%q arc=%s\n%+v",
					dk, got.AuthorDKIM, got.SPF, got.DMARC, got.DMARCPolicy, got.ARC,
					tc.wantDKIM, tc.wantAuthor, tc.wantSPF, tc.wantDMARC, tc.wantPolicy, wantARC, got)
			}
			if !strings.HasPrefix(got.Field, "Authentication-Results: "+authServID+";\r\n\t") || !strings.HasSuffix(got.Field, "\r\n") ||
				got.Field != "Authentication-Results: "+got.AARPayload+"\r\n" {
				t.Errorf("field %q", got.Field)
			}

			m := c.Metrics
			for _, mt := range []struct {
				name  string
				value float64
			}{
				{"author " + tc.wantAuthor, testutil.ToFloat64(m.AuthAuthorDKIM.WithLabelValues(tc.wantAuthor))},
				{"spf " + tc.wantSPF, testutil.ToFloat64(m.AuthSPF.WithLabelValues(tc.wantSPF))},
				{"dmarc " + tc.wantDMARC, testutil.ToFloat64(m.AuthDMARC.WithLabelValues(tc.wantDMARC))},
				{"arc " + wantARC, testutil.ToFloat64(m.AuthARC.WithLabelValues(wantARC))},
			} {
				if mt.value != 1 {
					t.Errorf("metric %s = %v, want 1", mt.name, mt.value)
				}
			}
			spfOnly := testutil.ToFloat64(m.AuthDMARCSPFOnly)
			if (spfOnly == 1) != tc.wantSPFOnly {
				t.Errorf("dualmx_auth_dmarc_spf_only_total = %v, want SPF-only rescue %v", spfOnly, tc.wantSPFOnly)
			}
		})
	}
}

func TestCheckMultipleSignaturesDetail(t *testing.T) {
	s := zone(t)
	msg := sign(t, sign(t, message("a@example.org", body), "example.org", "sel1"), "lists.example.net", "list")
	got := newChecker(s).Check(context.Background(), Input{ClientIP: ipList, MailFrom: "l@lists.example.net", Message: opener(msg)})
	want := []DKIMResult{
		{Domain: "lists.example.net", Selector: "list", Result: "pass", Aligned: false},
		{Domain: "example.org", Selector: "sel1", Result: "pass", Aligned: true},
	}
	if len(got.DKIM) != len(want) {
		t.Fatalf("DKIM = %+v", got.DKIM)
	}
	for i, w := range want {
		g := got.DKIM[i]
		if g.Domain != w.Domain || g.Selector != w.Selector || g.Result != w.Result || g.Aligned != w.Aligned || len(g.B) != 8 {
			t.Errorf("DKIM[%d] = %+v, want %+v", i, g, w)
		}
	}
}

// TestCheckDNSUnreachable: a resolver that never answers, or refuses, costs a
// temperror verdict within the Timeout, never a fail and never a stall.
func TestCheckDNSUnreachable(t *testing.T) {
	closed := func(t *testing.T) string {
		// A UDP socket connected elsewhere keeps the port (no other test
		// can bind it) yet takes no datagram from the resolver, so queries
		// get ICMP port unreachable, as from a port nobody listens on.
		c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.LocalAddr().String()
	}
	silent := func(t *testing.T) string { return dnstest.Start(t, "", dnstest.Silent()).Addr() }
	resolver := func(addr string) Lookup { return NewResolver(addr) }
	cache := func(addr string) Lookup { return NewCache(addr) }

	for _, tc := range []struct {
		name   string
		server func(*testing.T) string
		lookup func(string) Lookup
	}{
		{"silent", silent, resolver}, {"refused", closed, resolver},
		{"silent/cache", silent, cache}, {"refused/cache", closed, cache},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := sign(t, message("a@example.org", body), "example.org", "sel1")
			c := &Checker{AuthServID: authServID, Lookup: tc.lookup(tc.server(t)), Timeout: 300 * time.Millisecond, Metrics: metrics.New()}
			start := time.Now()
			got := c.Check(context.Background(), Input{ClientIP: ipAuthor, MailFrom: "bounce@example.org", Message: opener(msg)})
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Check took %v with a 300ms Timeout", d)
			}
			if len(got.DKIM) != 1 || got.DKIM[0].Result != "temperror" || got.SPF != "temperror" || got.DMARC != "temperror" ||
				got.AuthorDKIM != "unknown" {
				t.Errorf("got %+v", got)
			}
			if strings.Contains(got.Field, "127.0.0.1") {
				t.Errorf("the field names our resolver: %q", got.Field)
			}
		})
	}
}

func TestCheckUnreadableMessage(t *testing.T) {
	s := zone(t)
	c := newChecker(s)
	got := c.Check(context.Background(), Input{ClientIP: ipAuthor, MailFrom: "bounce@example.org",
		Message: func() (io.ReadCloser, error) { return nil, os.ErrNotExist }})
	if len(got.DKIM) != 1 || got.DKIM[0].Result != "temperror" || got.SPF != "pass" || got.DMARC != "temperror" {
		t.Errorf("got %+v", got)
	}
}

func TestNewResolver(t *testing.T) {
	s := zone(t)
	r := NewResolver(s.Addr())
	txt, err := r.LookupTXT(context.Background(), "example.org.")
	if err != nil || len(txt) != 1 || !strings.HasPrefix(txt[0], "v=spf1") {
		t.Fatalf("LookupTXT via %s = %q, %v", s.Addr(), txt, err)
	}
	if sys := NewResolver(""); sys == nil || sys.PreferGo || sys.Dial != nil || !sys.StrictErrors {
		t.Errorf("NewResolver(\"\") = %+v, want the system's with strict errors", sys)
	}
	// Every name goes out absolute, whatever search list the host has.
	newChecker(s).Check(context.Background(), Input{ClientIP: ipAuthor, MailFrom: "b@example.org", Message: opener(message("a@example.org", body))})
	for _, q := range s.Queries() {
		if strings.HasSuffix(strings.TrimSuffix(q.Name, "."), ".example.org.example.org") {
			t.Errorf("query for %s", q.Name)
		}
	}
}

// TestGolden pins the Authentication-Results field byte for byte; messages
// are committed fixtures because signatures carry their signing time.
func TestGolden(t *testing.T) {
	s := zone(t)
	tests := []struct {
		name     string
		msg      func() []byte
		mailFrom string
		helo     string
		ip       net.IP
		arc      arcFunc
	}{
		{name: "pass", mailFrom: "bounce@example.org", helo: "mail.example.org", ip: ipAuthor,
			msg: func() []byte {
				return sign(t, sign(t, message("Scriba <scriba@example.org>", body), "example.org", "sel1"), "lists.example.net", "list")
			},
			arc: func(context.Context, io.Reader) (string, int, string) { return "pass", 1, "" }},
		{name: "fail", mailFrom: "bounce@example.org", helo: "mx.old-host.example", ip: ipOldMX,
			msg: func() []byte {
				return bytes.Replace(sign(t, message("scriba@example.org", body), "example.org", "sel1"), []byte("agenda."), []byte("agenda!"), 1)
			},
			arc: func(context.Context, io.Reader) (string, int, string) {
				return "fail", 2, "ams i=2 body hash mismatch\r\nX-Injected: yes"
			}},
		{name: "nullsender", helo: "relay.example.net", ip: ipAuthor,
			msg: func() []byte { return message("MAILER-DAEMON@example.org", body) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := fixture(t, "golden-"+tc.name+".eml", tc.msg)
			c := newChecker(s)
			c.ARC = tc.arc
			got := c.Check(context.Background(), Input{ClientIP: tc.ip, Helo: tc.helo, MailFrom: tc.mailFrom, Message: opener(msg)})
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got.Field), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.Field != string(want) {
				t.Errorf("field differs from %s (rerun with -update if intended):\n got %q\nwant %q", path, got.Field, want)
			}
			for _, line := range strings.Split(strings.TrimSuffix(got.Field, "\r\n"), "\r\n") {
				if len(line) > foldWidth && !strings.HasPrefix(line, "Authentication-Results:") {
					t.Errorf("line longer than %d: %q", foldWidth, line)
				}
			}
		})
	}
}

// TestCheckStreamsBody: a 16 MiB body is hashed as it is read, never held:
// the live heap, sampled while the body is read, stays far below its size.
func TestCheckStreamsBody(t *testing.T) {
	s := zone(t)
	const n = 16 << 20
	hdr := sign(t, message("a@example.org", body), "example.org", "sel1")
	hdr = hdr[:bytes.Index(hdr, []byte("\r\n\r\n"))+4]
	// Simple body canonicalisation keeps the race detector's cost per byte
	// low; the body hash fails either way, after the whole body is read.
	hdr = bytes.Replace(hdr, []byte("c=relaxed/relaxed"), []byte("c=relaxed/simple"), 1)
	body := &lines{n: n}
	open := func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(hdr), body)), nil
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	body.base = ms.HeapAlloc
	got := newChecker(s).Check(context.Background(), Input{ClientIP: ipAuthor, MailFrom: "bounce@example.org", Message: open})
	if len(got.DKIM) != 1 || got.DKIM[0].Result != "fail" || got.DKIM[0].Reason != "body hash did not verify" {
		t.Errorf("DKIM = %+v", got.DKIM)
	}
	if body.peak > 8<<20 {
		t.Errorf("heap grew by %d MiB while checking a 16 MiB message", body.peak>>20)
	}
}

func TestCheckHeaderTooLarge(t *testing.T) {
	s := zone(t)
	msg := append([]byte("X-Filler: "+strings.Repeat("f", maxHeaderBytes)+"\r\n"), message("a@example.org", body)...)
	got := newChecker(s).Check(context.Background(), Input{ClientIP: ipAuthor, MailFrom: "bounce@example.org", Message: opener(msg)})
	if len(got.DKIM) != 1 || got.DKIM[0].Result != "permerror" || got.DMARC != "permerror" || got.SPF != "pass" {
		t.Errorf("got %+v", got)
	}
}

// lines yields n bytes of 78-byte CRLF lines, the shape of a base64
// attachment, and samples the heap's growth over base every MiB.
type lines struct {
	n, off, since int
	base, peak    uint64
}

func (l *lines) Read(p []byte) (int, error) {
	const line = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\r\n"
	if l.n == 0 {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && l.n > 0 {
		c := copy(p[k:min(len(p), k+l.n)], line[l.off:])
		k, l.n, l.off = k+c, l.n-c, (l.off+c)%len(line)
	}
	if l.since += k; l.since >= 1<<20 {
		l.since = 0
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > l.base {
			l.peak = max(l.peak, ms.HeapAlloc-l.base)
		}
	}
	return k, nil
}
