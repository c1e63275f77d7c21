// SPDX-License-Identifier: MIT

package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// python is Debian's interpreter, where apt's python3-dkim lives; a python3
// earlier on PATH (a virtualenv, a toolchain's) would not see it.
const python = "/usr/bin/python3"

// requireDkimpy skips when python3-dkim is missing on a developer's machine,
// but fails in CI, where .ci/run must have installed it.
func requireDkimpy(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import dkim, authres").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("python3-dkim is not usable (%v: %s); apt-get install python3-dkim python3-authres", err, bytes.TrimSpace(out))
	if os.Getenv("CI") == "" {
		t.Skip(msg)
	}
	t.Fatal(msg)
}

type keyring map[string]string // "s._domainkey.d" -> TXT record

func (k keyring) add(t *testing.T, selector, domain string, pub crypto.PublicKey) {
	t.Helper()
	rec, err := DNSRecord(pub)
	if err != nil {
		t.Fatal(err)
	}
	k[selector+"._domainkey."+domain] = rec
}

func (k keyring) lookup(_ context.Context, name string) ([]string, error) {
	if r, ok := k[name]; ok {
		return []string{r}, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", name)
}

const interopBody = "Hello,\r\n\r\nthis line has trailing spaces   \r\nand\tinner  \t whitespace.\r\n\r\n\r\n"

func interopMessage() string {
	return "From: Author <author@author.example>\r\n" +
		"To: Someone <someone@tenant.example>\r\n" +
		"Subject: interop test\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"Message-ID: <interop@author.example>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" + interopBody
}

func TestInteropDkimpy(t *testing.T) {
	requireDkimpy(t)
	dir := t.TempDir()
	keys := keyring{}

	// Loaded as the daemon loads its key file, so the seals are made by the
	// signer it uses (OpenSSL where available).
	_, sealPEM, err := GenerateKey("rsa")
	if err != nil {
		t.Fatal(err)
	}
	sealKey, err := parsePrivateKey(sealPEM)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sealing with %s", SignerInfo(sealKey))
	keys.add(t, "arc", "relay.example", sealKey.Public())
	sealer := &Sealer{Domain: "relay.example", Selector: "arc", Key: sealKey}

	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys.add(t, "s1", "forwarder.example", otherKey.Public())
	otherPEM := filepath.Join(dir, "other.pem")
	writeFile(t, otherPEM, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(otherKey)}))

	authorKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys.add(t, "a1", "author.example", authorKey.Public())

	keysJSON, err := json.Marshal(keys)
	if err != nil {
		t.Fatal(err)
	}
	keysFile := filepath.Join(dir, "keys.json")
	writeFile(t, keysFile, keysJSON)

	// An i=1 chain from dkimpy, standing for a sealer before dualmx.
	withChain := func(t *testing.T) string {
		msg := "Authentication-Results: forwarder.example; spf=pass smtp.mailfrom=author.example\r\n" + interopMessage()
		in := filepath.Join(dir, "to-arcsign.eml")
		writeFile(t, in, []byte(msg))
		out, err := exec.Command(python, "testdata/dkimpy.py", "arcsign", in, otherPEM,
			"s1", "forwarder.example", "forwarder.example", strconv.FormatInt(time.Now().Unix(), 10)).Output()
		if err != nil {
			t.Fatalf("dkimpy arcsign: %v: %s", err, stderrOf(err))
		}
		return string(out) + msg
	}
	withAuthorDKIM := func(t *testing.T) string {
		var b bytes.Buffer
		err := dkim.Sign(&b, strings.NewReader(interopMessage()), &dkim.SignOptions{
			Domain: "author.example", Selector: "a1", Signer: authorKey,
		})
		if err != nil {
			t.Fatalf("dkim.Sign: %v", err)
		}
		return b.String()
	}

	cases := []struct {
		name      string
		msg       func(*testing.T) string
		priorCV   ChainValidation
		checkDKIM bool
	}{
		{"no_chain", func(*testing.T) string { return interopMessage() }, CVNone, false},
		{"dkimpy_i1_chain", withChain, CVPass, false},
		{"author_dkim", withAuthorDKIM, CVNone, true},
	}
	// dkimpy's ARC code knows rsa-sha256 only, so ed25519 seals are
	// checked by TestSealEd25519 against this package's verifier alone.
	var files []string
	for _, tc := range cases {
		arrived := tc.msg(t)
		prior := Verify(context.Background(), strings.NewReader(arrived), keys.lookup)
		if prior.CV != tc.priorCV {
			t.Fatalf("%s: arrival verdict cv=%s (%s), want %s", tc.name, prior.CV, prior.Reason, tc.priorCV)
		}
		// What dualmx prepends before sealing.
		forwarded := "Authentication-Results: relay.example; arc=" + string(prior.CV) +
			"; spf=pass smtp.mailfrom=author.example\r\n" +
			"Received: from old.host.example by relay.example with ESMTPS id 1; Mon, 02 Jan 2006 15:04:06 +0000\r\n" +
			arrived
		set, err := sealer.Seal(strings.NewReader(forwarded), "relay.example",
			"arc="+string(prior.CV)+"; spf=pass smtp.mailfrom=author.example", prior)
		if err != nil {
			t.Fatalf("%s: Seal: %v", tc.name, err)
		}
		final := string(set) + forwarded
		if !strings.HasSuffix(final, arrived) {
			t.Fatalf("%s: sealing changed the message bytes", tc.name)
		}
		if res := Verify(context.Background(), strings.NewReader(final), keys.lookup); res.CV != CVPass {
			t.Errorf("%s: own Verify after sealing: cv=%s (%s)", tc.name, res.CV, res.Reason)
		}
		file := filepath.Join(dir, tc.name+".eml")
		writeFile(t, file, []byte(final))
		files = append(files, file)
	}

	out, err := exec.Command(python, append([]string{"testdata/dkimpy.py", "verify", keysFile}, files...)...).Output()
	if err != nil {
		t.Fatalf("dkimpy verify: %v: %s", err, stderrOf(err))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("dkimpy printed %d results for %d messages:\n%s", len(lines), len(cases), out)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got struct {
				ARC       string `json:"arc"`
				ARCReason string `json:"arc_reason"`
				DKIM      bool   `json:"dkim"`
			}
			if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
				t.Fatalf("dkimpy output %q: %v", lines[i], err)
			}
			if got.ARC != "pass" {
				t.Errorf("dkimpy arc_verify: %s (%s)", got.ARC, got.ARCReason)
			}
			if tc.checkDKIM && !got.DKIM {
				t.Errorf("dkimpy: the author's DKIM signature no longer verifies")
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
