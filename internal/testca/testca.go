// SPDX-License-Identifier: MIT

// Package testca is an in-memory certificate authority for tests and the demo:
// it lets a loopback SMTP server present a certificate that a client verifies
// for real, instead of tests turning verification off.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a self-signed ECDSA P-256 certificate authority held in memory.
type CA struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

// New creates a CA valid from an hour ago for ten years.
func New() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "dualmx test CA", Organization: []string{"dualmx"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testca: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testca: parse CA certificate: %w", err)
	}
	return &CA{cert: cert, der: der, key: key}, nil
}

// Leaf issues a server certificate for names, valid from an hour ago for a day.
// Names that parse as IP addresses become IP SANs, the others DNS SANs.
func (ca *CA) Leaf(names ...string) (tls.Certificate, error) {
	now := time.Now()
	return ca.LeafWith(now.Add(-time.Hour), now.Add(24*time.Hour), names...)
}

// LeafWith issues a server certificate with an explicit validity window, so a
// test can present an expired or not-yet-valid certificate.
func (ca *CA) LeafWith(notBefore, notAfter time.Time, names ...string) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, fmt.Errorf("testca: leaf needs at least one name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testca: generate leaf key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testca: create leaf certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testca: parse leaf certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerTLS is a convenience for the common case: a server config presenting a
// fresh leaf for names.
func (ca *CA) ServerTLS(names ...string) (*tls.Config, error) {
	leaf, err := ca.Leaf(names...)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}, nil
}

// Pool returns a new pool that trusts only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
}

// WriteCAFile writes the CA certificate to dir/ca.pem and returns its path,
// for code under test that takes a CA file from its configuration.
func (ca *CA) WriteCAFile(dir string) (string, error) {
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, ca.CertPEM(), 0o644); err != nil {
		return "", fmt.Errorf("testca: write %s: %w", p, err)
	}
	return p, nil
}

// WriteLeafFiles writes a fresh leaf for names to dir/leaf.crt (the chain)
// and dir/leaf.key (PKCS#8, mode 0600), for code under test that loads its
// certificate from files.
func (ca *CA) WriteLeafFiles(dir string, names ...string) (certFile, keyFile string, err error) {
	leaf, err := ca.Leaf(names...)
	if err != nil {
		return "", "", err
	}
	var chain []byte
	for _, der := range leaf.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("testca: marshal leaf key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "leaf.crt"), filepath.Join(dir, "leaf.key")
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		return "", "", fmt.Errorf("testca: write %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		return "", "", fmt.Errorf("testca: write %s: %w", keyFile, err)
	}
	return certFile, keyFile, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testca: serial: %w", err)
	}
	return n, nil
}
