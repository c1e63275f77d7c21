// SPDX-License-Identifier: MIT

//go:build cgo && linux

package arc

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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

// A signature from OpenSSL that Go does not verify (here: libcrypto holds
// another key) is replaced by Go's: the seal stays right.
func TestOpenSSLSignerFallsBackToGo(t *testing.T) {
	s := mustOpenSSL(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	o, err := newOpenSSLRSA(other)
	if err != nil {
		t.Fatal(err)
	}
	mixed := &opensslRSA{key: s.key, pkey: o.pkey}
	before := opensslFallbacks.Load()
	digest := sha256.Sum256([]byte("fallback"))
	got, err := mixed.Sign(rand.Reader, digest[:], crypto.SHA256)
	runtime.KeepAlive(o) // o owns the EVP_PKEY mixed borrows
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, digest[:])
	if string(got) != string(want) {
		t.Error("fallback signature differs from Go's")
	}
	if opensslFallbacks.Load() != before+1 {
		t.Error("fallback not counted")
	}
}

// childEnv makes the test binary, run again, act as one process with a
// given environment: OpenSSL is set up once per process.
const childEnv = "DUALMX_ARC_TEST_CHILD"

// TestOpenSSLChild is the child's side; it does nothing in a normal run.
func TestOpenSSLChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs only as the child of TestKeysOpenSSLCannotUse")
	}
	der := x509.MarshalPKCS1PrivateKey(testKey(t))
	k, err := parsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("type=%T\ninfo=%s\n", k, SignerInfo(k))
	digest := sha256.Sum256([]byte("child"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&testKey(t).PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatal(err)
	}
}

// Where OpenSSL is switched off, or loads a key but will not sign with it
// (a FIPS-only configuration), the key signs with Go and the start-up line
// says why.
func TestKeysOpenSSLCannotUse(t *testing.T) {
	mustOpenSSL(t)
	fipsOnly := filepath.Join(t.TempDir(), "openssl.cnf")
	writeFile(t, fipsOnly, []byte("openssl_conf = init\n[init]\nalg_section = algs\n[algs]\ndefault_properties = fips=yes\n"))
	for _, c := range []struct {
		name, env, why string
	}{
		{"switched off", opensslEnv + "=off", opensslEnv + "=off"},
		{"FIPS-only configuration", "OPENSSL_CONF=" + fipsOnly, "openssl: signing:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestOpenSSLChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), childEnv+"=1", c.env)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "type=*rsa.PrivateKey\n") || !strings.Contains(string(out), "OpenSSL not used: "+c.why) {
				t.Errorf("child printed:\n%s", out)
			}
		})
	}
}
