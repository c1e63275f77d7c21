// SPDX-License-Identifier: MIT

//go:build cgo && linux

package arc

// Sealing costs two RSA signatures per message, and Go's constant-time RSA
// takes about four times as long as OpenSSL's (1.0 against 0.27 ms for a
// 2048-bit key on the benchmark machine): with ARC on, signing was half of
// dualmx's CPU per message. So an RSA sealing key signs through the system's
// libcrypto when one is there.
//
// libcrypto is opened with dlopen at run time, not linked: the binary builds
// without OpenSSL's headers, runs on a machine without OpenSSL (falling back
// to Go), and a CGO_ENABLED=0 build has none of this. Only OpenSSL 3 is used;
// its EVP calls below are stable API there. Every call that can fail reads
// and clears the thread's error queue inside the same C call, because a
// goroutine may change threads between two cgo calls.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_st EVP_MD;

static struct {
	unsigned long (*version_num)(void);
	const char *(*version)(int);
	EVP_PKEY *(*d2i_private_key)(int, EVP_PKEY **, const unsigned char **, long);
	void (*pkey_free)(EVP_PKEY *);
	EVP_PKEY_CTX *(*ctx_new)(EVP_PKEY *, void *);
	void (*ctx_free)(EVP_PKEY_CTX *);
	int (*sign_init)(EVP_PKEY_CTX *);
	int (*set_rsa_padding)(EVP_PKEY_CTX *, int);
	int (*set_signature_md)(EVP_PKEY_CTX *, const EVP_MD *);
	const EVP_MD *(*sha256)(void);
	int (*sign)(EVP_PKEY_CTX *, unsigned char *, size_t *, const unsigned char *, size_t);
	unsigned long (*err_get)(void);
	void (*err_string)(unsigned long, char *, size_t);
	void (*err_clear)(void);
} ossl;

#define DUALMX_EVP_PKEY_RSA 6
#define DUALMX_RSA_PKCS1_PADDING 1

// dualmx_ossl_open returns NULL on success, or what is missing.
static const char *dualmx_ossl_open(void) {
	void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return "libcrypto.so.3 not found";
	}
#define SYM(field, name) \
	if ((*(void **)(&ossl.field) = dlsym(h, name)) == NULL) { return name " missing from libcrypto.so.3"; }
	SYM(version_num, "OpenSSL_version_num")
	SYM(version, "OpenSSL_version")
	SYM(d2i_private_key, "d2i_PrivateKey")
	SYM(pkey_free, "EVP_PKEY_free")
	SYM(ctx_new, "EVP_PKEY_CTX_new")
	SYM(ctx_free, "EVP_PKEY_CTX_free")
	SYM(sign_init, "EVP_PKEY_sign_init")
	SYM(set_rsa_padding, "EVP_PKEY_CTX_set_rsa_padding")
	SYM(set_signature_md, "EVP_PKEY_CTX_set_signature_md")
	SYM(sha256, "EVP_sha256")
	SYM(sign, "EVP_PKEY_sign")
	SYM(err_get, "ERR_get_error")
	SYM(err_string, "ERR_error_string_n")
	SYM(err_clear, "ERR_clear_error")
#undef SYM
	if (ossl.version_num() < 0x30000000UL) {
		return "libcrypto.so.3 is older than OpenSSL 3";
	}
	return NULL;
}

static const char *dualmx_ossl_version(void) { return ossl.version(0); }

static void dualmx_ossl_err(char *buf, size_t n) {
	unsigned long e = ossl.err_get();
	if (e == 0) {
		strncpy(buf, "no OpenSSL error recorded", n - 1);
		buf[n - 1] = 0;
	} else {
		ossl.err_string(e, buf, n);
	}
	ossl.err_clear();
}

// dualmx_ossl_load parses a PKCS#1 RSAPrivateKey.
static EVP_PKEY *dualmx_ossl_load(const unsigned char *der, long n, char *errbuf, size_t errn) {
	// This thread may hold errors left by other code; only ours count.
	ossl.err_clear();
	const unsigned char *p = der;
	EVP_PKEY *k = ossl.d2i_private_key(DUALMX_EVP_PKEY_RSA, NULL, &p, n);
	if (k == NULL) {
		dualmx_ossl_err(errbuf, errn);
	}
	return k;
}

static void dualmx_ossl_free(EVP_PKEY *k) { ossl.pkey_free(k); }

// dualmx_ossl_sign makes an RSASSA-PKCS1-v1_5 signature over a SHA-256
// digest. It returns the signature length, or 0 with errbuf filled.
static size_t dualmx_ossl_sign(EVP_PKEY *k, const unsigned char *digest, size_t dn,
		unsigned char *sig, size_t sn, char *errbuf, size_t errn) {
	ossl.err_clear();
	EVP_PKEY_CTX *ctx = ossl.ctx_new(k, NULL);
	if (ctx == NULL) {
		dualmx_ossl_err(errbuf, errn);
		return 0;
	}
	size_t n = sn;
	if (ossl.sign_init(ctx) <= 0 ||
		ossl.set_rsa_padding(ctx, DUALMX_RSA_PKCS1_PADDING) <= 0 ||
		ossl.set_signature_md(ctx, ossl.sha256()) <= 0 ||
		ossl.sign(ctx, sig, &n, digest, dn) <= 0) {
		dualmx_ossl_err(errbuf, errn);
		n = 0;
	}
	ossl.ctx_free(ctx);
	return n;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// opensslEnv turns the OpenSSL signer off when set to "off", for an admin
// who wants only Go's crypto in the process.
const opensslEnv = "DUALMX_OPENSSL"

var openssl = sync.OnceValues(func() (string, error) {
	if os.Getenv(opensslEnv) == "off" {
		return "", errors.New(opensslEnv + "=off")
	}
	if msg := C.dualmx_ossl_open(); msg != nil {
		return "", errors.New(C.GoString(msg))
	}
	return C.GoString(C.dualmx_ossl_version()), nil
})

// opensslRSA signs with a copy of an RSA key held by libcrypto. It keeps the
// Go key for Public and to check each signature before it leaves.
type opensslRSA struct {
	key  *rsa.PrivateKey
	pkey *C.EVP_PKEY
}

// fastSigner returns k signing through OpenSSL when that is available and
// signs with k, else k itself (describeSigner says why).
func fastSigner(k *rsa.PrivateKey) crypto.Signer {
	s, err := newOpenSSLRSA(k)
	if err != nil {
		return k
	}
	return s
}

// selfTestDigest is signed once per key before OpenSSL is trusted with it: a
// libcrypto that loads a key may still refuse to sign with it (a FIPS
// provider refuses RSA keys under 2048 bits, which ARC allows from 1024).
var selfTestDigest = sha256.Sum256([]byte("dualmx arc signer self-test"))

func newOpenSSLRSA(k *rsa.PrivateKey) (*opensslRSA, error) {
	if _, err := openssl(); err != nil {
		return nil, err
	}
	der := x509.MarshalPKCS1PrivateKey(k)
	// The DER is private key material: it is wiped once libcrypto has its
	// own copy, and libcrypto frees its copy with EVP_PKEY_free, which
	// clears RSA key memory.
	defer clear(der)
	var errbuf [256]C.char
	pkey := C.dualmx_ossl_load((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &errbuf[0], C.size_t(len(errbuf)))
	if pkey == nil {
		return nil, fmt.Errorf("openssl: loading key: %s", C.GoString(&errbuf[0]))
	}
	s := &opensslRSA{key: k, pkey: pkey}
	runtime.AddCleanup(s, func(p *C.EVP_PKEY) { C.dualmx_ossl_free(p) }, pkey)
	if _, err := s.opensslSign(selfTestDigest[:]); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *opensslRSA) Public() crypto.PublicKey { return &s.key.PublicKey }

// Sign implements crypto.Signer for PKCS #1 v1.5 over SHA-256, the only
// RSA signature ARC uses. Should OpenSSL fail, or make a signature that Go
// does not verify (a faulty library, a fault in the computation), Go signs
// instead: the seal is the same, only slower, and no bad seal goes on mail.
func (s *opensslRSA) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 || len(digest) != crypto.SHA256.Size() {
		return nil, fmt.Errorf("openssl: unsupported signature options %v", opts.HashFunc())
	}
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return nil, errors.New("openssl: RSA-PSS is not supported")
	}
	sig, err := s.opensslSign(digest)
	if err != nil {
		opensslFallbacks.Add(1)
		return rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, digest)
	}
	return sig, nil
}

// opensslFallbacks counts signatures Go made because OpenSSL failed.
var opensslFallbacks atomic.Int64

// SignerFallbacks is how many signatures Go has made in this process
// because the OpenSSL signer failed or made one that did not verify.
func SignerFallbacks() int64 { return opensslFallbacks.Load() }

// opensslSign signs through libcrypto and checks the result with Go.
func (s *opensslRSA) opensslSign(digest []byte) ([]byte, error) {
	sig := make([]byte, s.key.Size())
	var errbuf [256]C.char
	n := C.dualmx_ossl_sign(s.pkey,
		(*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), C.size_t(len(sig)),
		&errbuf[0], C.size_t(len(errbuf)))
	runtime.KeepAlive(s)
	if n == 0 {
		return nil, fmt.Errorf("openssl: signing: %s", C.GoString(&errbuf[0]))
	}
	sig = sig[:n]
	if err := rsa.VerifyPKCS1v15(&s.key.PublicKey, crypto.SHA256, digest, sig); err != nil {
		return nil, fmt.Errorf("openssl: signature does not verify: %w", err)
	}
	return sig, nil
}

// describeSigner names what makes k's signatures, for the start-up log.
func describeSigner(k crypto.Signer) string {
	switch k := k.(type) {
	case *opensslRSA:
		v, _ := openssl()
		return v
	case *rsa.PrivateKey:
		// Asked once, at start: trying again costs one key load and one
		// signature, and says why OpenSSL is not used.
		if _, err := newOpenSSLRSA(k); err != nil {
			return "Go crypto/rsa (OpenSSL not used: " + err.Error() + ")"
		}
		return "Go crypto/rsa"
	}
	return fmt.Sprintf("Go (%T)", k)
}
