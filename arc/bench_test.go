// SPDX-License-Identifier: MIT

package arc

import (
	"context"
	"crypto"
	"strings"
	"testing"
)

// benchMessage is a typical forwarded message: a dozen header fields,
// an author DKIM signature and a 16 KiB body.
func benchMessage() string {
	body := strings.Repeat("Lorem ipsum dolor sit amet,  consectetur adipiscing elit. \r\n", 270)
	return "Received: from old.host.example by relay.example with ESMTPS; Mon, 02 Jan 2006 15:04:06 +0000\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=author.example; s=a1;\r\n" +
		" h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
		" b=" + strings.Repeat("A", 344) + "\r\n" +
		strings.TrimSuffix(interopMessage(), "\r\n"+interopBody) + "\r\n" + body
}

// BenchmarkSeal compares the signers: "go" is crypto/rsa, "loaded" what a
// key file gets (OpenSSL where cgo and libcrypto.so.3 are there).
func BenchmarkSeal(b *testing.B) {
	for _, signer := range []string{"go", "loaded"} {
		b.Run(signer, func(b *testing.B) {
			var key crypto.Signer = testKey(b)
			if signer == "loaded" {
				key = fastSigner(testKey(b))
			}
			s := newTestSealer(b, "relay.example", key, keyring{})
			msg := benchMessage()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(strings.NewReader(msg), "relay.example", "arc=none; spf=pass smtp.mailfrom=author.example; dkim=pass header.d=author.example", Result{CV: CVNone}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	keys := keyring{}
	msg := benchMessage()
	for _, d := range []string{"one.example", "two.example"} {
		s := newTestSealer(b, d, testKey(b), keys)
		prior := Verify(context.Background(), strings.NewReader(msg), keys.lookup)
		set, err := s.Seal(strings.NewReader(msg), "mx."+d, "arc="+string(prior.CV), prior)
		if err != nil {
			b.Fatal(err)
		}
		msg = string(set) + msg
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if res := Verify(context.Background(), strings.NewReader(msg), keys.lookup); res.CV != CVPass {
			b.Fatalf("cv=%s (%s)", res.CV, res.Reason)
		}
	}
}
