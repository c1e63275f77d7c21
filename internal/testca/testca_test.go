// SPDX-License-Identifier: MIT

package testca

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLeafVerifies(t *testing.T) {
	ca, err := New()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("127.0.0.1", "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.Leaf.IPAddresses; len(got) != 1 || !got[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("IP SANs = %v", got)
	}
	if got := leaf.Leaf.DNSNames; len(got) != 1 || got[0] != "mx.example.test" {
		t.Fatalf("DNS SANs = %v", got)
	}
	for _, name := range []string{"127.0.0.1", "mx.example.test"} {
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: name}); err != nil {
			t.Errorf("verify %s: %v", name, err)
		}
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "other.test"}); err == nil {
		t.Error("leaf verified for a name it does not carry")
	}
}

func TestExpiredAndForeignLeavesFail(t *testing.T) {
	ca, err := New()
	if err != nil {
		t.Fatal(err)
	}
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expired, err := ca.LeafWith(now.Add(-48*time.Hour), now.Add(-24*time.Hour), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Leaf("localhost")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]tls.Certificate{"expired": expired, "foreign": foreign} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err == nil {
			t.Errorf("%s leaf verified", name)
		}
	}
	if _, err := ca.Leaf(); err == nil {
		t.Error("leaf without names accepted")
	}
}

func TestWriteCAFile(t *testing.T) {
	ca, err := New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.WriteCAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p, "ca.pem") {
		t.Errorf("path %s", p)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !c.IsCA {
		t.Fatalf("parse: %v, IsCA=%v", err, c != nil && c.IsCA)
	}
}
