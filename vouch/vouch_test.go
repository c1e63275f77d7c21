// SPDX-License-Identifier: MIT

package vouch

import (
	"bytes"
	"context"
	"crypto"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dualmx/dualmx/arc"
	"github.com/dualmx/dualmx/authcheck"
	"github.com/dualmx/dualmx/courier"
	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/metrics"
)

// txt renders a TXT value as zone-file strings of at most 255 bytes.
func txt(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}

type world struct {
	dns       *dnstest.Server
	sealer    *arc.Sealer
	authorKey crypto.Signer
}

func newWorld(t *testing.T) *world {
	t.Helper()
	sealKey, _, err := arc.GenerateKey("rsa")
	if err != nil {
		t.Fatal(err)
	}
	authorKey, _, err := arc.GenerateKey("rsa")
	if err != nil {
		t.Fatal(err)
	}
	sealRec, _ := arc.DNSRecord(sealKey.Public())
	authorRec, _ := arc.DNSRecord(authorKey.Public())
	zone := "arc._domainkey.relay.test. 300 IN TXT " + txt(sealRec) + "\n" +
		"s1._domainkey.author.test. 300 IN TXT " + txt(authorRec) + "\n" +
		"author.test. 300 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n" +
		"_dmarc.author.test. 300 IN TXT \"v=DMARC1; p=reject\"\n"
	return &world{
		dns:       dnstest.Start(t, zone),
		sealer:    &arc.Sealer{Domain: "relay.test", Selector: "arc", Key: sealKey},
		authorKey: authorKey,
	}
}

const original = "From: Author <a@author.test>\r\nTo: scriba@example.nl\r\nSubject: Kerkdienst\r\n" +
	"Date: Fri, 27 Nov 2026 10:00:00 +0100\r\nMessage-ID: <m1@author.test>\r\n\r\nTot zondag.\r\n"

func (w *world) signed(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(original), &dkim.SignOptions{Domain: "author.test", Selector: "s1", Signer: w.authorKey,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// spoolBody writes what the spool holds (our Received line and the original
// bytes) to a file, and returns it as the queue hands it to a transaction.
func spoolBody(t *testing.T, msg string) *io.SectionReader {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.msg")
	body := "Received: from oldhost.test ([192.0.2.1])\r\n\tby relay.test (dualmx) with ESMTP id X;\r\n\tFri, 27 Nov 2026 10:00:01 +0100\r\n" + msg
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return io.NewSectionReader(f, 0, int64(len(body)))
}

func spooled(t *testing.T, body *io.SectionReader) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(body, 0, body.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFieldsSealAndKeepAuthorDKIM(t *testing.T) {
	w := newWorld(t)
	m := metrics.New()
	v := &Voucher{Check: authcheck.Checker{AuthServID: "relay.test", Resolver: w.dns.Resolver(), Metrics: m}, Sealer: w.sealer, Metrics: m}
	f := spoolBody(t, w.signed(t))
	msg := &courier.Message{ID: "x", ClientIP: "192.0.2.1", Helo: "oldhost.test", From: "a@author.test"}
	prefix, err := v.Fields(context.Background(), msg, f)
	if err != nil {
		t.Fatal(err)
	}
	wire := append(append([]byte{}, prefix...), spooled(t, f)...)

	for i, name := range []string{"ARC-Seal:", "ARC-Message-Signature:", "ARC-Authentication-Results: i=1; relay.test;", "Authentication-Results: relay.test;"} {
		lines := strings.Split(string(prefix), "\r\n")
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, name) {
				found = true
			}
		}
		if !found {
			t.Errorf("prefix field %d %q missing:\n%s", i, name, prefix)
		}
	}
	if !strings.Contains(string(prefix), "dkim=pass") || !strings.Contains(string(prefix), "dmarc=pass") {
		t.Errorf("Authentication-Results does not record the arrival verdict:\n%s", prefix)
	}
	// The chain dualmx made validates, and the author's signature still verifies.
	res := arc.Verify(context.Background(), bytes.NewReader(wire), w.dns.Resolver().LookupTXT)
	if res.CV != arc.CVPass || res.Instance != 1 {
		t.Errorf("sealed chain: %+v", res)
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(wire), &dkim.VerifyOptions{LookupTXT: func(d string) ([]string, error) {
		return w.dns.Resolver().LookupTXT(context.Background(), d)
	}})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil {
		t.Fatalf("author DKIM after sealing: %v %+v", err, verifs)
	}
	if !bytes.HasSuffix(wire, []byte(original[strings.Index(original, "\r\n\r\n"):])) {
		t.Error("message bytes changed")
	}
	if got := testutilCount(m, "sealed"); got != 1 {
		t.Errorf("dualmx_arc_seals_total{result=sealed} = %v", got)
	}

	// Relayed again (another relay in the path): the next seal is i=2 over a passing chain.
	f2 := spoolBody(t, string(wire))
	prefix2, err := v.Fields(context.Background(), msg, f2)
	if err != nil {
		t.Fatal(err)
	}
	res2 := arc.Verify(context.Background(), bytes.NewReader(append(prefix2, spooled(t, f2)...)), w.dns.Resolver().LookupTXT)
	if res2.CV != arc.CVPass || res2.Instance != 2 {
		t.Errorf("second seal: %+v", res2)
	}
}

func TestFieldsWithoutSealer(t *testing.T) {
	w := newWorld(t)
	v := &Voucher{Check: authcheck.Checker{AuthServID: "relay.test", Resolver: w.dns.Resolver()}}
	f := spoolBody(t, original)
	prefix, err := v.Fields(context.Background(), &courier.Message{ClientIP: "192.0.2.1", From: "a@author.test"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(prefix), "ARC-") || !strings.HasPrefix(string(prefix), "Authentication-Results: relay.test;") {
		t.Fatalf("without arc: section only Authentication-Results is added:\n%s", prefix)
	}
}

// recordingTarget is a next hop that keeps what each transaction was given.
type recordingTarget struct{ headers []string }

type recordingDelivery struct {
	t      *recordingTarget
	header []byte
}

func (r *recordingTarget) Start(context.Context, courier.Message) (courier.Delivery, error) {
	return &recordingDelivery{t: r}, nil
}
func (d *recordingDelivery) AddRcpt(context.Context, string) error { return nil }
func (d *recordingDelivery) Body(_ context.Context, header []byte, _ courier.Body) error {
	d.header = header
	return nil
}
func (d *recordingDelivery) Commit(context.Context) courier.Result {
	d.t.headers = append(d.t.headers, string(d.header))
	return courier.Result{Header: d.header}
}
func (d *recordingDelivery) Abort(context.Context) {}

// TestStageVouchesOnlyUnjudgedMessages: as a stage before the courier, the
// voucher puts its fields before a message that comes without any, and
// passes fields an earlier attempt stored on unchanged, without judging the
// message again.
func TestStageVouchesOnlyUnjudgedMessages(t *testing.T) {
	w := newWorld(t)
	m := metrics.New()
	v := &Voucher{Check: authcheck.Checker{AuthServID: "relay.test", Resolver: w.dns.Resolver(), Metrics: m}, Sealer: w.sealer, Metrics: m}
	next := &recordingTarget{}
	target := v.Target(next)
	send := func(header string) courier.Result {
		t.Helper()
		msg := courier.Message{ID: "x", ClientIP: "192.0.2.1", Helo: "oldhost.test", From: "a@author.test"}
		d, err := target.Start(context.Background(), msg)
		if err != nil {
			t.Fatal(err)
		}
		d.AddRcpt(context.Background(), "scriba@example.nl")
		var h []byte
		if header != "" {
			h = []byte(header)
		}
		if err := d.Body(context.Background(), h, spoolBody(t, w.signed(t))); err != nil {
			t.Fatal(err)
		}
		return d.Commit(context.Background())
	}
	first := send("")
	if !strings.HasPrefix(string(first.Header), "ARC-Seal:") || !strings.Contains(string(first.Header), "dkim=pass") {
		t.Fatalf("first attempt sent %q", first.Header)
	}
	stored := "Authentication-Results: relay.test; dkim=fail; spf=fail; dmarc=fail\r\n"
	if got := send(stored); string(got.Header) != stored || next.headers[1] != stored {
		t.Errorf("a stored verdict was replaced: %q", got.Header)
	}
	if got := testutilCount(m, "sealed"); got != 1 {
		t.Errorf("%v seals for one message judged once", got)
	}
}
