// SPDX-License-Identifier: MIT

package dnscheck

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dualmx/dualmx/dnscheck/internal/authtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	oldMXLine    = "@ 300 MX 10 mx1.solcon.nl."
	tenantMXLine = "@ 300 MX 0 example-nl.mail.protection.outlook.com."
)

func TestCheckBeforeAllReady(t *testing.T) {
	w := newWorld(t)
	w.start()
	r := w.check(Before)
	if r.HasErrors() || r.Count(Warning) > 0 {
		t.Errorf("errors or warnings in a ready zone:\n%s", dump(r.Findings))
	}
	wantLevel(t, r, CheckMX, OK, "mx1.solcon.nl", "old host")
	wantLevel(t, r, CheckSPF, OK, "2 of 10")
	wantLevel(t, r, CheckDelegation, OK)
	wantLevel(t, r, CheckRelayARC, OK)
	wantLevel(t, r, CheckRelayFCrDNS, OK, "192.0.2.25")
	wantLevel(t, r, CheckRelayMX, OK)
	wantLevel(t, r, CheckDNSSEC, OK, "not signed")
	golden(t, w, r, "before_ready")
}

// TestCheckAfterServersDisagree has a secondary that has not transferred
// the new zone: it still serves the old MX with the old serial.
func TestCheckAfterServersDisagree(t *testing.T) {
	w := newWorld(t)
	w.zone = authtest.NewZone(t, "example.nl.", strings.NewReplacer(oldMXLine, tenantMXLine, "2026010101", "2026010102").Replace(exampleZone))
	w.zone.Add(t, `arc2026._domainkey TXT "`+w.exp.ARC.Record()+`"`)
	w.start()
	r := w.check(After)
	wantLevel(t, r, CheckSerial, Error, "2026010101 on ns2.example.nl", "2026010102 on ns1.example.nl")
	wantLevel(t, r, CheckConsistency, Error, "mx1.solcon.nl")
	wantLevel(t, r, CheckMX, Error, "ns2.example.nl", "still lists mx1.solcon.nl")
	var ns1OK bool
	for _, f := range findings(r, CheckMX) {
		ns1OK = ns1OK || f.Server == "ns1.example.nl (127.0.0.11:"+strconv.Itoa(w.port)+")" && f.Level == OK
	}
	if !ns1OK {
		t.Errorf("ns1 has the new MX and should have an ok finding:\n%s", dump(findings(r, CheckMX)))
	}
	wantLevel(t, r, CheckSPF, Warning, "still authorises the old host")
	golden(t, w, r, "after_disagree")

	o, err := w.checker().Run(context.Background(), w.exp)
	if err != nil {
		t.Fatal(err)
	}
	if s, n := o.MXSwitched(); s != 1 || n != 2 {
		t.Errorf("MXSwitched = %d of %d, want 1 of 2", s, n)
	}
}

func golden(t *testing.T, w *world, r *Report, name string) {
	t.Helper()
	var txt, js bytes.Buffer
	if err := r.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	port := ":" + strconv.Itoa(w.port)
	for ext, b := range map[string][]byte{".txt": txt.Bytes(), ".json": js.Bytes()} {
		got := bytes.ReplaceAll(b, []byte(port), []byte(":PORT"))
		path := filepath.Join("testdata", name+ext)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
		}
	}
}

func TestTruncatedUDPFallsBackToTCP(t *testing.T) {
	w := newWorld(t)
	w.modes["ns1"] = authtest.Truncate
	w.start()
	r := w.check(Before)
	if w.servers["ns1"].TCP.Load() == 0 {
		t.Fatal("no query reached ns1 over TCP")
	}
	if r.HasErrors() {
		t.Errorf("errors:\n%s", dump(r.Errors()))
	}
	wantLevel(t, r, CheckServers, OK, "over TCP after truncated UDP replies")
	if r.Servers[0].Status != "ok (tcp)" {
		t.Errorf("ns1 status %q, want ok (tcp)", r.Servers[0].Status)
	}
}

func TestSilentServerReportedAsTimeout(t *testing.T) {
	w := newWorld(t)
	w.modes["ns2"] = authtest.Silent
	w.start()
	start := time.Now()
	r := w.check(Before)
	// One question times out (300ms, 2 attempts); the rest are skipped.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("check took %v with one silent server", d)
	}
	wantLevel(t, r, CheckServers, Error, "ns2.example.nl", "did not answer", "2 attempt(s)")
	if r.Servers[1].Status != "timeout" {
		t.Errorf("ns2 status %q, want timeout", r.Servers[1].Status)
	}
	// ns1 still answered, so the records themselves are judged.
	wantLevel(t, r, CheckMX, OK)
	if n := w.servers["ns2"].Queries.Load(); n > 4 {
		t.Errorf("a dead server was asked %d times; after the first timeout it should be skipped", n)
	}
}

func TestDeadServersNeverHang(t *testing.T) {
	w := newWorld(t)
	w.modes["ns1"] = authtest.Silent
	w.modes["ns2"] = authtest.Silent
	w.start()
	c := w.checker()
	c.QueryTimeout = 10 * time.Second // longer than the command deadline
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Check(ctx, w.exp, Before)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("check ran %v past a 700ms deadline", d)
	}
	if !errors.Is(err, ErrCannotRun) {
		t.Errorf("err = %v, want ErrCannotRun", err)
	}

	// The same through --nameserver, with the default query timeout.
	c = &Checker{Nameservers: []string{net.JoinHostPort(ipNS1, strconv.Itoa(w.port))}, Resolver: w.resolver}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if _, err := c.Check(ctx2, w.exp, Before); !errors.Is(err, ErrCannotRun) || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("err = %v, want ErrCannotRun naming the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("check ran %v past a 500ms deadline", d)
	}
}

func TestServFailAndLameServers(t *testing.T) {
	for _, tc := range []struct {
		mode   authtest.Mode
		status string
		words  []string
	}{
		{authtest.ServFail, "servfail", []string{"SERVFAIL to 9 of 9"}},
		{authtest.NotAuth, "not authoritative", []string{"without the AA bit", "lame"}},
	} {
		t.Run(tc.status, func(t *testing.T) {
			w := newWorld(t)
			w.modes["ns2"] = tc.mode
			w.start()
			r := w.check(Before)
			wantLevel(t, r, CheckServers, Error, tc.words...)
			if r.Servers[1].Status != tc.status {
				t.Errorf("ns2 status %q, want %q", r.Servers[1].Status, tc.status)
			}
		})
	}
}

func TestDelegationDiffersFromZoneNS(t *testing.T) {
	w := newWorld(t)
	w.parent = authtest.NewZone(t, "nl.", strings.Replace(parentZone, "example NS ns2.example.nl.\n", "", 1))
	w.start()
	r := w.check(Before)
	wantLevel(t, r, CheckDelegation, Warning, "delegates to ns1.example.nl but the zone lists ns1.example.nl, ns2.example.nl")
	if len(r.Servers) != 2 {
		t.Errorf("asked %d servers; the union of both NS sets has 2", len(r.Servers))
	}
}

func TestExplicitNameserver(t *testing.T) {
	w := newWorld(t)
	w.start()
	c := w.checker()
	c.Nameservers = []string{net.JoinHostPort(ipNS2, strconv.Itoa(w.port))}
	r, err := c.Check(context.Background(), w.exp, Before)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Explicit || len(r.Servers) != 1 || r.Servers[0].Addr != c.Nameservers[0] {
		t.Errorf("servers = %+v, want only %s", r.Servers, c.Nameservers[0])
	}
	if w.servers["parent"].Queries.Load() != 0 {
		t.Error("the parent was asked although servers were given")
	}
	wantLevel(t, r, CheckDelegation, Warning, "--nameserver")
	wantLevel(t, r, CheckMX, OK)
	wantLevel(t, r, CheckRelayMX, OK)
}

func TestSPFProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		txt   []string
		phase Phase
		level Level
		words []string
	}{
		{"two records", []string{`@ TXT "v=spf1 include:spf.solcon.nl -all"`, `@ TXT "v=spf1 include:spf.protection.outlook.com -all"`},
			Before, Error, []string{"2 SPF records", "permerror", "v=spf1 include:spf.solcon.nl include:spf.protection.outlook.com -all"}},
		{"eleven lookups", []string{`@ TXT "v=spf1 include:spf.solcon.nl include:spf.protection.outlook.com include:big.solcon.nl -all"`},
			Before, Error, []string{"needs 11 DNS lookups", "limit of 10"}},
		{"no microsoft", []string{`@ TXT "v=spf1 include:spf.solcon.nl -all"`}, Before, Error, []string{"spf.protection.outlook.com"}},
		{"old host missing before", []string{`@ TXT "v=spf1 include:spf.protection.outlook.com -all"`}, Before, Error, []string{"does not authorise the old host"}},
		{"old host gone after", []string{`@ TXT "v=spf1 include:spf.protection.outlook.com -all"`}, After, OK, []string{"1 of 10"}},
		{"none", nil, Before, Error, []string{"no SPF record"}},
		{"broken include", []string{`@ TXT "v=spf1 include:spf.solcon.nl include:spf.protection.outlook.com include:nothing.solcon.nl -all"`},
			Before, Error, []string{"nothing.solcon.nl"}},
		{"plus all", []string{`@ TXT "v=spf1 include:spf.solcon.nl include:spf.protection.outlook.com +all"`}, Before, Error, []string{"+all"}},
		{"syntax", []string{`@ TXT "v=spf1 include:spf.solcon.nl include:spf.protection.outlook.com ip4:300.1.1.1 -all"`}, Before, Error, []string{"does not parse"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.zone.Replace("@", dns.TypeTXT)
			w.zone.Add(t, append(tc.txt, `@ TXT "MS=ms12345678"`)...)
			// big needs a, mx, ptr, exists, include, a:, mx: (7) and b one
			// more: 3 + 7 + 1 = 11.
			w.ext[1].Add(t, `big TXT "v=spf1 a mx ptr exists:x.solcon.nl include:b.solcon.nl a:c.solcon.nl mx:d.solcon.nl -all"`,
				`b TXT "v=spf1 a -all"`)
			w.start()
			r := w.check(tc.phase)
			wantLevel(t, r, CheckSPF, tc.level, tc.words...)
		})
	}
}

func TestMXForms(t *testing.T) {
	const dane = "example-nl.j-v1.mx.microsoft"
	for _, tc := range []struct {
		name   string
		mx     []string
		tenant string
		phase  Phase
		level  Level
		words  []string
	}{
		{"before at old host", []string{oldMXLine}, "", Before, OK, []string{"the old host"}},
		{"before already at microsoft", []string{tenantMXLine}, "", Before, Error, []string{"already points to Microsoft 365"}},
		{"after protection form", []string{tenantMXLine}, "example-nl.mail.protection.outlook.com", After, OK, []string{"mail.protection.outlook.com form"}},
		{"after mx.microsoft form", []string{"@ 300 MX 0 " + dane + "."}, dane, After, OK, []string{"mx.microsoft form"}},
		{"after wrong form", []string{"@ 300 MX 0 " + dane + "."}, "example-nl.mail.protection.outlook.com", After, Error,
			[]string{"lists example-nl.j-v1.mx.microsoft (the mx.microsoft form)", "missing the tenant's example-nl.mail.protection.outlook.com",
				"MX 0 example-nl.mail.protection.outlook.com."}},
		{"after old host left", []string{tenantMXLine, oldMXLine}, "example-nl.mail.protection.outlook.com", After, Error, []string{"still lists mx1.solcon.nl"}},
		{"after still old", []string{oldMXLine}, "example-nl.mail.protection.outlook.com", After, Error, []string{"still lists mx1.solcon.nl", "missing the tenant's"}},
		{"after no MX", nil, "example-nl.mail.protection.outlook.com", After, Error, []string{"no MX record"}},
		{"after target does not exist", []string{"@ 300 MX 0 nothere.mail.protection.outlook.com."}, "nothere.mail.protection.outlook.com", After, Error, []string{"NXDOMAIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.zone.Replace("@", dns.TypeMX)
			w.zone.Add(t, tc.mx...)
			if tc.tenant != "" {
				w.exp.TenantMX = []string{tc.tenant}
			}
			w.start()
			r := w.check(tc.phase)
			wantLevel(t, r, CheckMX, tc.level, tc.words...)
		})
	}
}

func TestMXTTLAdvice(t *testing.T) {
	w := newWorld(t)
	w.zone.Replace("@", dns.TypeMX)
	w.zone.Add(t, "@ 3600 MX 10 mx1.solcon.nl.")
	w.zone.Replace("autodiscover", dns.TypeCNAME)
	w.start()
	r := w.check(Before)
	wantLevel(t, r, CheckMXTTL, Warning, "MX TTL is 3600 s", "lower it to 300 s at least 3600 s")
	wantLevel(t, r, CheckAutodiscover, Warning, "not published", "autodiscover.example.nl. 3600 IN CNAME autodiscover.outlook.com.")
	wantLevel(t, r, CheckNegativeTTL, OK, "up to 300 s", "autodiscover.example.nl CNAME")
}

func TestDKIMForms(t *testing.T) {
	const newForm1 = "selector1-example-nl._domainkey.example.r-v1.dkim.mail.microsoft"
	const newForm2 = "selector2-example-nl._domainkey.example.r-v1.dkim.mail.microsoft"
	t.Run("new form without expected values", func(t *testing.T) {
		w := newWorld(t)
		w.zone.Replace("selector1._domainkey", dns.TypeCNAME)
		w.zone.Replace("selector2._domainkey", dns.TypeCNAME)
		w.zone.Add(t, "selector1._domainkey CNAME "+newForm1+".", "selector2._domainkey CNAME "+newForm2+".")
		w.exp.DKIM1, w.exp.DKIM2 = "", ""
		w.start()
		wantLevel(t, w.check(Before), CheckDKIM, OK, "dkim.mail.microsoft form")
	})
	t.Run("expected new form, old published", func(t *testing.T) {
		w := newWorld(t)
		w.exp.DKIM1 = newForm1
		w.start()
		wantLevel(t, w.check(Before), CheckDKIM, Error, "the tenant expects "+newForm1, "CNAME "+newForm1+".")
	})
	t.Run("missing", func(t *testing.T) {
		w := newWorld(t)
		w.zone.Replace("selector2._domainkey", dns.TypeCNAME)
		w.start()
		wantLevel(t, w.check(Before), CheckDKIM, Error, "not published", "selector2._domainkey.example.nl. 3600 IN CNAME selector2-example-nl._domainkey.example.onmicrosoft.com.")
	})
	t.Run("not microsoft", func(t *testing.T) {
		w := newWorld(t)
		w.zone.Replace("selector1._domainkey", dns.TypeCNAME)
		w.zone.Add(t, "selector1._domainkey CNAME selector1.dkim.example.net.")
		w.exp.DKIM1 = ""
		w.start()
		wantLevel(t, w.check(Before), CheckDKIM, Error, "not a Microsoft 365 DKIM target")
	})
}

func TestClassify(t *testing.T) {
	for target, want := range map[string]MXForm{
		"contoso-com.mail.protection.outlook.com.": MXProtection,
		"Contoso-com.Mail.Protection.Outlook.com":  MXProtection,
		"contoso-com.j-v1.mx.microsoft":            MXMicrosoft,
		"mx1.solcon.nl":                            MXOther,
		"mail.protection.outlook.com.evil.example": MXOther,
	} {
		if got := ClassifyMX(target); got != want {
			t.Errorf("ClassifyMX(%q) = %s, want %s", target, got, want)
		}
	}
	for _, tc := range []struct {
		sel, target string
		want        DKIMForm
	}{
		{"selector1", "selector1-contoso-com._domainkey.contoso.onmicrosoft.com", DKIMOnMicrosoft},
		{"selector2", "selector2-contoso-com._domainkey.contoso.onmicrosoft.com.", DKIMOnMicrosoft},
		{"selector1", "selector1-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft", DKIMMailMicrosoft},
		{"selector1", "selector1-contoso-com01b._domainkey.contoso.r-v1.dkim.mail.microsoft", DKIMMailMicrosoft},
		{"selector1", "selector2-contoso-com._domainkey.contoso.onmicrosoft.com", DKIMOther},
		{"selector1", "selector1-contoso-com._domainkey.evil.example", DKIMOther},
		{"selector1", "", DKIMOther},
	} {
		if got := ClassifyDKIM(tc.sel, tc.target); got != tc.want {
			t.Errorf("ClassifyDKIM(%s, %q) = %s, want %s", tc.sel, tc.target, got, tc.want)
		}
	}
}

func TestRelayRecords(t *testing.T) {
	t.Run("reverse does not confirm", func(t *testing.T) {
		w := newWorld(t)
		w.ext[3].Replace("25", dns.TypePTR)
		w.ext[3].Add(t, "25 PTR host25.isp.example.")
		w.start()
		wantLevel(t, w.check(Before), CheckRelayFCrDNS, Error, "maps back to host25.isp.example, not to relay.example.nl", "IN PTR relay.example.nl.")
	})
	t.Run("no PTR", func(t *testing.T) {
		w := newWorld(t)
		w.ext[3].Replace("25", dns.TypePTR)
		w.start()
		wantLevel(t, w.check(Before), CheckRelayFCrDNS, Error, "has no PTR record")
	})
	t.Run("forward domain elsewhere", func(t *testing.T) {
		w := newWorld(t)
		w.zone.Replace("fwd", dns.TypeMX)
		w.zone.Add(t, "fwd MX 10 mx1.solcon.nl.")
		w.start()
		wantLevel(t, w.check(Before), CheckRelayMX, Error, "not the relay host", "fwd.example.nl. 3600 IN MX 10 relay.example.nl.")
	})
	t.Run("ARC key differs", func(t *testing.T) {
		w := newWorld(t)
		w.start()
		k := *w.exp.ARC
		k.PublicKey = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="
		w.exp.ARC = &k
		wantLevel(t, w.check(Before), CheckRelayARC, Error, "not the public half of arc.key_file", "p="+k.PublicKey)
	})
	t.Run("ARC key record malformed", func(t *testing.T) {
		w := newWorld(t)
		w.zone.Replace("arc2026._domainkey", dns.TypeTXT)
		w.zone.Add(t, `arc2026._domainkey TXT "v=DKIM1; k=rsa; k=ed25519; p=`+w.exp.ARC.PublicKey+`"`)
		w.start()
		wantLevel(t, w.check(Before), CheckRelayARC, Error, "not a valid key record (duplicate tag \"k\")")
	})
	t.Run("ARC key folded", func(t *testing.T) {
		w := newWorld(t)
		w.zone.Replace("arc2026._domainkey", dns.TypeTXT)
		p := w.exp.ARC.PublicKey
		w.zone.Add(t, `arc2026._domainkey TXT "v=DKIM1; k=`+w.exp.ARC.KeyType+`; p=`+p[:10]+` `+p[10:]+`"`)
		w.start()
		wantLevel(t, w.check(Before), CheckRelayARC, OK)
	})
	t.Run("ARC key missing", func(t *testing.T) {
		w := newWorld(t)
		w.zone.Replace("arc2026._domainkey", dns.TypeTXT)
		w.start()
		wantLevel(t, w.check(Before), CheckRelayARC, Error, "not published")
	})
}

func TestDMARCAndVerification(t *testing.T) {
	w := newWorld(t)
	w.zone.Replace("_dmarc", dns.TypeTXT)
	w.zone.Add(t, `_dmarc TXT "v=DMARC1; p=reject; pct=50"`)
	w.exp.VerificationTXT = "MS=ms99999999"
	w.start()
	r := w.check(Before)
	wantLevel(t, r, CheckDMARC, OK, "p=reject", "pct=50", "ARC", "no rua")
	wantLevel(t, r, CheckVerification, Error, "MS=ms12345678 is published, but the tenant's value is MS=ms99999999")
}

func TestDNSSEC(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(w *world)
		level Level
		words []string
	}{
		{"good", func(w *world) {}, OK, []string{"the zone is signed", "parent's DS matches", "validate"}},
		{"broken MX signature", func(w *world) { w.zone.CorruptSignature(w.t, "@", dns.TypeMX) }, Error,
			[]string{"does not verify", "SERVFAIL"}},
		{"record changed after signing", func(w *world) {
			w.zone.Replace("autodiscover", dns.TypeCNAME)
			w.zone.Add(w.t, "autodiscover CNAME autodiscover.outlook.com.")
		}, Error, []string{"no RRSIG"}},
		{"expired", func(w *world) { w.keys = w.zone.Sign(w.t, testNow.Add(-72*time.Hour)); w.publishDS() }, Error, []string{"validity period"}},
		{"DS names another key", func(w *world) {
			other := authtest.NewZone(w.t, "example.nl.", "@ SOA ns1 hostmaster 1 3600 600 86400 300")
			w.parent.Replace("example", dns.TypeDS, other.Sign(w.t, testNow).DS())
		}, Error, []string{"chain of trust broken", "no DNSKEY matches the parent's DS"}},
		{"no DS at parent", func(w *world) { w.parent.Replace("example", dns.TypeDS) }, Warning, []string{"no DS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.keys = w.zone.Sign(t, testNow)
			w.publishDS()
			tc.setup(w)
			w.start()
			r := w.check(Before)
			wantLevel(t, r, CheckDNSSEC, tc.level, tc.words...)
		})
	}
	t.Run("DS without DNSKEY", func(t *testing.T) {
		w := newWorld(t)
		other := authtest.NewZone(t, "example.nl.", "@ SOA ns1 hostmaster 1 3600 600 86400 300")
		w.parent.Add(t, other.Sign(t, testNow).DS().String())
		w.start()
		wantLevel(t, w.check(Before), CheckDNSSEC, Error, "no DNSKEY")
	})
}

func (w *world) publishDS() {
	w.parent.Replace("example", dns.TypeDS, w.keys.DS())
}
