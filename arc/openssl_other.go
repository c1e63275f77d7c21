// SPDX-License-Identifier: MIT

//go:build !(cgo && linux)

package arc

import (
	"crypto"
	"crypto/rsa"
	"fmt"
)

// fastSigner returns k: this build has no cgo, so Go signs (see openssl.go).
func fastSigner(k *rsa.PrivateKey) crypto.Signer { return k }

// describeSigner names what makes k's signatures, for the start-up log.
func describeSigner(k crypto.Signer) string {
	if _, ok := k.(*rsa.PrivateKey); ok {
		return "Go crypto/rsa (built without cgo)"
	}
	return fmt.Sprintf("Go (%T)", k)
}

// SignerFallbacks is always 0: this build signs only with Go.
func SignerFallbacks() int64 { return 0 }
