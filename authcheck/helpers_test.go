// SPDX-License-Identifier: MIT

package authcheck

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/metrics"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and the signed fixtures they are made from")

const authServID = "relay.dualmx.test"

func zone(t testing.TB) *dnstest.Server {
	t.Helper()
	b, err := os.ReadFile("testdata/auth.zone")
	if err != nil {
		t.Fatal(err)
	}
	return dnstest.Start(t, string(b))
}

func signer(t testing.TB) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile("testdata/dkim-test.key")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

// message builds a CRLF message with the given From field value.
func message(from, body string) []byte {
	var b strings.Builder
	if from != "" {
		b.WriteString("From: " + from + "\r\n")
	}
	b.WriteString("To: scriba@fwd.hervormdputten.nl\r\n" +
		"Subject: Kerkenraad agenda\r\n" +
		"Date: Mon, 03 Nov 2025 10:00:00 +0100\r\n" +
		"Message-ID: <agenda-1@example.org>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" + body)
	return []byte(b.String())
}

const body = "Beste broeders,\r\n\r\nHierbij de agenda.\r\n"

// sign prepends a DKIM-Signature by domain/selector with the test key.
func sign(t testing.TB, msg []byte, domain, selector string) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: signer(t),
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func opener(msg []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(msg)), nil }
}

func newChecker(s *dnstest.Server) *Checker {
	return &Checker{AuthServID: authServID, Resolver: s.Resolver(), Metrics: metrics.New()}
}

// fixture returns testdata/name, creating it with build when missing or under -update.
// Signed fixtures are committed because a signature carries its time (t=),
// and the golden fields quote part of it.
func fixture(t *testing.T, name string, build func() []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if b, err := os.ReadFile(path); err == nil && !*update {
		return b
	}
	b := build()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	ipAuthor = net.ParseIP("192.0.2.10")   // allowed by example.org's SPF
	ipOldMX  = net.ParseIP("198.51.100.7") // the old host, forwarding: allowed by nobody
	ipList   = net.ParseIP("203.0.113.5")  // allowed by lists.example.net
)
