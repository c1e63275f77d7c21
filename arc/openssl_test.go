// SPDX-License-Identifier: Apache-2.0

//go:build cgo && linux

package arc

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"os"
	"sync"
	"testing"
)

// mustOpenSSL returns the OpenSSL signer for the shared test key. CI
// installs libssl3, so an unusable libcrypto is a failure there, not a skip:
// otherwise the fast path could silently stop being used.
func mustOpenSSL(t testing.TB) *opensslRSA {
	t.Helper()
	if os.Getenv(opensslEnv) == "off" {
		t.Skip(opensslEnv + "=off")
	}
	s, err := newOpenSSLRSA(testKey(t))
	if err != nil {
		t.Fatalf("OpenSSL signer unavailable: %v (install libssl3, or set %s=off to test only Go's)", err, opensslEnv)
	}
	return s
}

// PKCS #1 v1.5 is deterministic, so OpenSSL's signature must equal Go's byte
// for byte, also when many goroutines share the key.
func TestOpenSSLSignerMatchesGo(t *testing.T) {
	s := mustOpenSSL(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				digest := sha256.Sum256([]byte{byte(g), byte(i)})
				got, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
				if err != nil {
					t.Error(err)
					return
				}
				want, err := rsa.SignPKCS1v15(nil, testKey(t), crypto.SHA256, digest[:])
				if err != nil {
					t.Error(err)
					return
				}
				if string(got) != string(want) {
					t.Errorf("goroutine %d digest %d: OpenSSL and Go signatures differ", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestOpenSSLSignerRefusesOtherSchemes(t *testing.T) {
	s := mustOpenSSL(t)
	d256 := sha256.Sum256([]byte("x"))
	for name, c := range map[string]struct {
		digest []byte
		opts   crypto.SignerOpts
	}{
		"sha1":          {d256[:20], crypto.SHA1},
		"raw":           {d256[:], crypto.Hash(0)},
		"pss":           {d256[:], &rsa.PSSOptions{Hash: crypto.SHA256}},
		"short digest":  {d256[:16], crypto.SHA256},
		"empty digest":  {nil, crypto.SHA256},
		"sha512 length": {make([]byte, 64), crypto.SHA256},
	} {
		if sig, err := s.Sign(rand.Reader, c.digest, c.opts); err == nil {
			t.Errorf("%s: signed (%d bytes), want an error", name, len(sig))
		}
	}
}

// A key file's RSA key signs through OpenSSL, and says so for the log.
func TestLoadedRSAKeyUsesOpenSSL(t *testing.T) {
	mustOpenSSL(t)
	der := x509.MarshalPKCS1PrivateKey(testKey(t))
	k, err := parsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.(*opensslRSA); !ok {
		t.Fatalf("parsed RSA key is %T, want the OpenSSL signer", k)
	}
	if info := SignerInfo(k); len(info) < 9 || info[:9] != "OpenSSL 3" {
		t.Errorf("SignerInfo = %q, want OpenSSL's version", info)
	}
	if info := SignerInfo(testKey(t)); info != "Go crypto/rsa" {
		t.Errorf("SignerInfo(Go key) = %q", info)
	}
}
