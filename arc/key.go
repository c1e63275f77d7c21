// SPDX-License-Identifier: MIT

package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/dualmx/dualmx/internal/secretfile"
)

// rsaKeyBits is the size GenerateKey uses: RFC 8301 §3.2 recommends 2048,
// and Microsoft 365 accepts it.
const rsaKeyBits = 2048

// LoadKey reads a PEM private key: PKCS#1 "RSA PRIVATE KEY" or PKCS#8
// "PRIVATE KEY" holding RSA or Ed25519. It refuses a file that its group or
// others may read, as OpenSSH does, because whoever reads it can seal in
// dualmx's name. Errors never include key material.
func LoadKey(path string) (crypto.Signer, error) {
	data, err := secretfile.Read(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("arc key: %w", err)
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("arc key %s: %w", path, err)
	}
	return key, nil
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	// A key file may carry other blocks (a certificate, parameters); the
	// first private key counts.
	var block *pem.Block
	var seen []string
	for rest := data; ; {
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(seen) == 0 {
				return nil, errors.New("no PEM block found")
			}
			return nil, fmt.Errorf("no PEM private key (found %s), want \"RSA PRIVATE KEY\" or \"PRIVATE KEY\"", strings.Join(seen, ", "))
		}
		if block.Type == "RSA PRIVATE KEY" || block.Type == "PRIVATE KEY" {
			break
		}
		seen = append(seen, block.Type)
	}
	var key any
	var err error
	if block.Type == "RSA PRIVATE KEY" {
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	} else {
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		// x509's messages describe the structure, not the key bytes.
		return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if _, err := keyAlgorithm(&k.PublicKey); err != nil {
			return nil, err
		}
		return fastSigner(k), nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T, want RSA or Ed25519", key)
}

// SignerInfo says what makes the signatures of a key from LoadKey: the
// system's OpenSSL for an RSA key where it can be used, else Go.
func SignerInfo(k crypto.Signer) string { return describeSigner(k) }

// GenerateKey makes a new sealing key, alg "rsa" (2048 bits) or "ed25519",
// and returns it with its PKCS#8 PEM encoding for the key file.
func GenerateKey(alg string) (crypto.Signer, []byte, error) {
	var key crypto.Signer
	switch alg {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
		if err != nil {
			return nil, nil, fmt.Errorf("arc: generating RSA key: %w", err)
		}
		key = k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("arc: generating Ed25519 key: %w", err)
		}
		key = k
	default:
		return nil, nil, fmt.Errorf("arc: unknown key algorithm %q, want rsa or ed25519", alg)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("arc: encoding key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// DNSRecord returns the TXT record value to publish at
// Selector._domainkey.Domain. It is one logical string: splitting it into
// 255-byte character-strings is the DNS software's job.
func DNSRecord(pub crypto.PublicKey) (string, error) {
	kind, p, err := PublicKeyTags(pub)
	if err != nil {
		return "", err
	}
	return "v=DKIM1; k=" + kind + "; p=" + p, nil
}

// PublicKeyTags returns a key record's k= and p= values for pub.
func PublicKeyTags(pub crypto.PublicKey) (kind, p string, err error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", "", fmt.Errorf("arc: encoding public key: %w", err)
		}
		return "rsa", base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		// RFC 8463 §4.2: the raw 32-byte key, not SubjectPublicKeyInfo.
		return "ed25519", base64.StdEncoding.EncodeToString(k), nil
	}
	return "", "", fmt.Errorf("arc: unsupported public key type %T", pub)
}
