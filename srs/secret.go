// SPDX-License-Identifier: MIT

package srs

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dualmx/dualmx/internal/secretfile"
)

// maxSecretFile bounds what is read: a secret is a line of random text, and
// a misconfigured path (a log, a device) must not be read whole.
const maxSecretFile = 4096

// LoadSecrets reads the current secret and the previous ones (which only
// verify) from files holding one secret each. A file must be a regular file
// that neither group nor others can read or write: whoever reads the secret
// can make this relay send DSNs to any address. One trailing newline is
// dropped, so `echo` and `pwgen > file` both work.
//
// Errors name the file and the defect, never the content.
func LoadSecrets(current string, previous []string) (cur []byte, prev [][]byte, err error) {
	if current == "" {
		return nil, nil, errors.New("srs: no secret file given")
	}
	if cur, err = loadSecret(current); err != nil {
		return nil, nil, err
	}
	for _, p := range previous {
		s, err := loadSecret(p)
		if err != nil {
			return nil, nil, err
		}
		prev = append(prev, s)
	}
	return cur, prev, nil
}

func loadSecret(path string) ([]byte, error) {
	b, err := secretfile.Read(path, maxSecretFile)
	if err != nil {
		return nil, fmt.Errorf("srs: secret file: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("srs: secret file %s: empty", path)
	case bytes.ContainsAny(b, "\r\n"):
		// postsrsd reads every line of its file as a separate secret; a
		// multi-line file here would be one key there and never match.
		return nil, fmt.Errorf("srs: secret file %s: more than one line; put each older secret in its own file among the previous secrets", path)
	case bytes.IndexByte(b, 0) >= 0:
		// libsrs2 keys the HMAC with a C string, which would end at the NUL.
		return nil, fmt.Errorf("srs: secret file %s: contains a NUL byte", path)
	}
	return b, nil
}
