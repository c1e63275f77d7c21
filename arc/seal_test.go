// SPDX-License-Identifier: MIT

package arc

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testKeyOnce sync.Once
	testRSA     *rsa.PrivateKey
)

// testKey is one 2048-bit key shared by the tests and benchmarks, because
// generating it is the slowest thing they would do.
func testKey(t testing.TB) *rsa.PrivateKey {
	testKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testRSA = k
	})
	return testRSA
}

func newTestSealer(t testing.TB, domain string, key crypto.Signer, keys keyring) *Sealer {
	t.Helper()
	if key == nil {
		key = testKey(t)
	}
	sel := "s" + strings.ReplaceAll(domain, ".", "-")
	rec, err := DNSRecord(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	keys[sel+"._domainkey."+domain] = rec
	return &Sealer{Domain: domain, Selector: sel, Key: key, Now: func() time.Time { return time.Unix(1700000000, 0) }}
}

// sealAs verifies msg, seals it and returns the sealed message.
func sealAs(t *testing.T, s *Sealer, keys keyring, msg string) string {
	t.Helper()
	prior := Verify(context.Background(), strings.NewReader(msg), keys.lookup)
	set, err := s.Seal(strings.NewReader(msg), "mx."+s.Domain, "arc="+string(prior.CV)+"; spf=pass smtp.mailfrom=author.example", prior)
	if err != nil {
		t.Fatalf("Seal by %s: %v", s.Domain, err)
	}
	return string(set) + msg
}

func verifyString(keys keyring, msg string) Result {
	return Verify(context.Background(), strings.NewReader(msg), keys.lookup)
}

func TestSealChainOfThree(t *testing.T) {
	keys := keyring{}
	edKey, _, err := GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	msg := interopMessage()
	msg = sealAs(t, newTestSealer(t, "one.example", nil, keys), keys, msg)
	msg = sealAs(t, newTestSealer(t, "two.example", edKey, keys), keys, msg)
	msg = sealAs(t, newTestSealer(t, "three.example", nil, keys), keys, msg)
	res := verifyString(keys, msg)
	if res.CV != CVPass || res.Instance != 3 || res.OldestPass != 0 {
		t.Fatalf("got %+v, want pass at i=3 with oldest-pass 0", res)
	}
	if got := strings.Join(res.Domains, ","); got != "one.example,two.example,three.example" {
		t.Errorf("Domains = %s", got)
	}
	if !strings.Contains(msg, "a=ed25519-sha256") {
		t.Error("the Ed25519 sealer did not write a=ed25519-sha256")
	}
}

func TestSealOutputShape(t *testing.T) {
	keys := keyring{}
	set, err := newTestSealer(t, "relay.example", nil, keys).Seal(strings.NewReader(interopMessage()),
		"relay.example", "spf=pass smtp.mailfrom=author.example;\r\n dkim=none", Result{CV: CVNone})
	if err != nil {
		t.Fatal(err)
	}
	s := string(set)
	for _, prefix := range []string{"ARC-Seal: i=1; cv=none; a=rsa-sha256;", "ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed;", "ARC-Authentication-Results: i=1; relay.example; spf=pass"} {
		if !strings.Contains(s, "\r\n"+prefix) && !strings.HasPrefix(s, prefix) {
			t.Errorf("output lacks %q:\n%s", prefix, s)
		}
	}
	if !strings.HasSuffix(s, "\r\n") || strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\n") {
		t.Errorf("output not CRLF-terminated lines:\n%q", s)
	}
	for _, line := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line of %d bytes exceeds RFC 5322's limit", len(line))
		}
	}
	// Default header list with over-signing.
	// Default list: each field present once plus once more where
	// over-signed, and absent over-signed fields (Reply-To, Cc) once.
	if want := "h=from:from:reply-to:to:to:cc:subject:subject:date:date:message-id:message-id:mime-version:content-type;"; !strings.Contains(squash(s), want) {
		t.Errorf("h= is not %s:\n%s", want, s)
	}
}

func TestSealOversigning(t *testing.T) {
	keys := keyring{}
	sealed := sealAs(t, newTestSealer(t, "relay.example", nil, keys), keys, interopMessage())
	if res := verifyString(keys, sealed); res.CV != CVPass {
		t.Fatalf("sealed message: %s (%s)", res.CV, res.Reason)
	}
	for _, tc := range []struct {
		added string
		want  ChainValidation
	}{
		{"From: Forger <ceo@author.example>\r\n", CVFail},
		{"Subject: urgent wire transfer\r\n", CVFail},
		{"Cc: someone@else.example\r\n", CVFail}, // absent when sealed, over-signed
		{"Received: from later.example\r\n", CVPass},
		{"X-Spam-Score: 0\r\n", CVPass},
	} {
		if res := verifyString(keys, tc.added+sealed); res.CV != tc.want {
			t.Errorf("adding %q: cv=%s (%s), want %s", strings.TrimSpace(tc.added), res.CV, res.Reason, tc.want)
		}
	}
}

func TestSealFailedChain(t *testing.T) {
	keys := keyring{}
	first := newTestSealer(t, "one.example", nil, keys)
	sealed := sealAs(t, first, keys, interopMessage())
	broken := strings.Replace(sealed, "trailing spaces", "trailing SPACES", 1)
	prior := verifyString(keys, broken)
	if prior.CV != CVFail || prior.Instance != 1 || prior.UpstreamFail {
		t.Fatalf("broken chain: %+v, want fail at i=1", prior)
	}
	second := newTestSealer(t, "two.example", nil, keys)
	set, err := second.Seal(strings.NewReader(broken), "mx.two.example", "arc=fail", prior)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(set), "i=2; cv=fail;") {
		t.Fatalf("want an i=2 cv=fail seal:\n%s", set)
	}
	// RFC 8617 §5.1.2: the seal covers only its own set.
	fields, err := readHeaderString(string(set))
	if err != nil {
		t.Fatal(err)
	}
	own := []arcSet{{}, {aar: fields[2]}}
	if own[1].ams, err = parseSig(fields[1], false); err != nil {
		t.Fatal(err)
	}
	if own[1].as, err = parseSig(fields[0], true); err != nil {
		t.Fatal(err)
	}
	if err := verifySignature(algRSASHA256, testKey(t).Public(), asDigest(own, 1), own[1].as.b); err != nil {
		t.Errorf("cv=fail seal does not verify over its own set alone: %v", err)
	}
	// And the next hop stops (RFC 8617 §5.1 step 2).
	after := string(set) + broken
	res := verifyString(keys, after)
	if res.CV != CVFail || !res.UpstreamFail {
		t.Fatalf("after cv=fail seal: %+v, want fail with UpstreamFail", res)
	}
	if _, err := second.Seal(strings.NewReader(after), "mx.two.example", "arc=fail", res); !errors.Is(err, ErrChainFailedUpstream) {
		t.Errorf("sealing after cv=fail: %v, want ErrChainFailedUpstream", err)
	}
}

func TestSealChainTooLong(t *testing.T) {
	keys := keyring{}
	s := newTestSealer(t, "relay.example", nil, keys)
	_, err := s.Seal(strings.NewReader(interopMessage()), "relay.example", "", Result{CV: CVPass, Instance: 50})
	if !errors.Is(err, ErrChainTooLong) {
		t.Errorf("err = %v, want ErrChainTooLong", err)
	}
	// A chain of more than 50 fails validation and still is not sealed.
	_, err = s.Seal(strings.NewReader(interopMessage()), "relay.example", "", Result{CV: CVFail, Instance: 50})
	if !errors.Is(err, ErrChainTooLong) {
		t.Errorf("failed chain at 50: err = %v, want ErrChainTooLong", err)
	}
}

func TestVerifyMoreThanFiftySets(t *testing.T) {
	var b strings.Builder
	b.WriteString("ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=x.example; s=s; b=AAAA\r\n")
	b.WriteString(interopMessage())
	if res := verifyString(keyring{}, b.String()); res.CV != CVFail {
		t.Errorf("i=51: cv=%s, want fail", res.CV)
	}
}

func TestOldestPass(t *testing.T) {
	keys := keyring{}
	msg := sealAs(t, newTestSealer(t, "one.example", nil, keys), keys, interopMessage())
	// The second hop validates, then rewrites the subject (a list tag), then
	// seals: its AMS covers the change, the first one no longer validates.
	second := newTestSealer(t, "two.example", nil, keys)
	prior := verifyString(keys, msg)
	msg = strings.Replace(msg, "Subject: interop test", "Subject: [list] interop test", 1)
	set, err := second.Seal(strings.NewReader(msg), "mx.two.example", "arc=pass", prior)
	if err != nil {
		t.Fatal(err)
	}
	res := verifyString(keys, string(set)+msg)
	if res.CV != CVPass || res.OldestPass != 2 {
		t.Errorf("got %+v, want pass with oldest-pass 2", res)
	}
}

func TestSealRejectsBadInput(t *testing.T) {
	keys := keyring{}
	good := newTestSealer(t, "relay.example", nil, keys)
	for name, tc := range map[string]struct {
		s      Sealer
		authID string
		prior  Result
	}{
		"forbidden header": {Sealer{Domain: good.Domain, Selector: good.Selector, Key: good.Key, Headers: []string{"From", "ARC-Seal"}}, "relay.example", Result{CV: CVNone}},
		"A-R in h=":        {Sealer{Domain: good.Domain, Selector: good.Selector, Key: good.Key, Oversign: []string{"Authentication-Results"}}, "relay.example", Result{CV: CVNone}},
		"short key":        {Sealer{Domain: good.Domain, Selector: good.Selector, Key: shortKey{}}, "relay.example", Result{CV: CVNone}},
		"no key":           {Sealer{Domain: good.Domain, Selector: good.Selector}, "relay.example", Result{CV: CVNone}},
		"bad domain":       {Sealer{Domain: "relay..example", Selector: good.Selector, Key: good.Key}, "relay.example", Result{CV: CVNone}},
		"bad authserv-id":  {*good, "relay example", Result{CV: CVNone}},
		"empty verdict":    {*good, "relay.example", Result{}},
		"pass without set": {*good, "relay.example", Result{CV: CVPass, Instance: 1}},
	} {
		if _, err := tc.s.Seal(strings.NewReader(interopMessage()), tc.authID, "", tc.prior); err == nil {
			t.Errorf("%s: Seal succeeded", name)
		}
	}
}

func TestFormatAARFoldsOnlyAtWhitespace(t *testing.T) {
	results := "dkim=pass header.d=author.example header.s=a1 header.b=abcdefgh;\r\n\tspf=pass smtp.mailfrom=" +
		strings.Repeat("x", 90) + "@author.example; dmarc=pass header.from=author.example"
	got := string(formatAAR(7, "relay.example", results))
	want := "arc-authentication-results:i=7; relay.example; " + strings.Join(strings.Fields(results), " ")
	if c := string(canonHeaderRelaxed(nil, []byte(got))); c != want {
		t.Errorf("relaxed AAR =\n%q\nwant\n%q", c, want)
	}
	if got := string(formatAAR(1, "relay.example", "")); got != "ARC-Authentication-Results: i=1; relay.example; none\r\n" {
		t.Errorf("empty results: %q", got)
	}
}

func TestFormatSigLongHeaderList(t *testing.T) {
	keys := keyring{}
	s := newTestSealer(t, "relay.example", nil, keys)
	var msg strings.Builder
	for i := range 30 {
		msg.WriteString("X-Long-Header-Name-" + strings.Repeat("q", i) + ": v\r\n")
		s.Headers = append(s.Headers, "X-Long-Header-Name-"+strings.Repeat("q", i))
	}
	msg.WriteString(interopMessage())
	sealed := sealAs(t, s, keys, msg.String())
	if res := verifyString(keys, sealed); res.CV != CVPass {
		t.Fatalf("cv=%s (%s)", res.CV, res.Reason)
	}
	for _, line := range strings.Split(sealed[:strings.Index(sealed, "ARC-Authentication-Results")], "\r\n") {
		if len(line) > 998 || (len(line) > 80 && !strings.HasPrefix(line, " b=")) {
			t.Errorf("line of %d bytes: %q", len(line), line)
		}
	}
}

func TestDNSRecordRoundTrip(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		key, pemBytes, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := DNSRecord(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		pub, err := parseKeyRecord(rec)
		if err != nil {
			t.Fatalf("%s: parse own record %q: %v", alg, rec, err)
		}
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Errorf("%s: record holds another key", alg)
		}
		back, err := parsePrivateKey(pemBytes)
		if err != nil || !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Errorf("%s: PEM does not round-trip: %v", alg, err)
		}
	}
	if _, _, err := GenerateKey("dsa"); err == nil {
		t.Error("GenerateKey(dsa) succeeded")
	}
}

func TestParseKeyRecord(t *testing.T) {
	rsaRec, _ := DNSRecord(testKey(t).Public())
	p := strings.TrimPrefix(rsaRec, "v=DKIM1; k=rsa; p=")
	smallRec, err := DNSRecord(shortKey{}.Public())
	if err != nil {
		t.Fatal(err)
	}
	for rec, ok := range map[string]bool{
		rsaRec:                            true,
		"p=" + p:                          true,
		"k=rsa; h=sha1:sha256; p=" + p:    true,
		"k=rsa; s=email; p=" + p:          true,
		"k=rsa; h=sha1; p=" + p:           false,
		"k=rsa; s=tlsrpt; p=" + p:         false,
		"k=rsa; v=DKIM1; p=" + p:          false,
		"v=DKIM2; p=" + p:                 false,
		"v=DKIM1; k=rsa; p=":              false, // revoked
		"v=DKIM1; k=ed25519; p=" + p:      false,
		"v=DKIM1; k=dsa; p=" + p:          false,
		"v=DKIM1; p=!!!":                  false,
		smallRec:                          false, // RFC 8301 §3.2
		"v=DKIM1; k=rsa; omgwhatsgoingon": false,
		"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString([]byte("short")): false,
	} {
		if _, err := parseKeyRecord(rec); (err == nil) != ok {
			t.Errorf("parseKeyRecord(%.60q) error = %v, want ok=%v", rec, err, ok)
		}
	}
}

// shortKey stands for a 512-bit RSA key, which crypto/rsa no longer makes.
type shortKey struct{}

func (shortKey) Public() crypto.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), 511)
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

func (shortKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("not a real key")
}
