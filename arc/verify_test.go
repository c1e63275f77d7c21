// SPDX-License-Identifier: MIT

package arc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Shapes of ARC sets as Microsoft 365 and Gmail write them (tag order,
// folding, authres-version after the authserv-id, Gmail's fh= tag, comments
// in the AAR), with signatures that cannot verify here. They must produce a
// verdict with a reason, never a crash.
const microsoftSet = "ARC-Seal: i=1; a=rsa-sha256; s=arcselector10001; d=microsoft.com; cv=none;\r\n" +
	" b=Kx0JqM8bXtT1m6Lh9d0Xr1nC0y7M5ZlB2Pq3a8vP6Zb0vA3k1cB1m0Rk4t0zL2m1Y6Qp9yT+4v1w2x3y4z5A6B7C8D9E0F1G2H3I4J5K6L7M8N9O0P1Q2R3S4T5U6V7W8X9Y0Z==\r\n" +
	"ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=microsoft.com;\r\n" +
	" s=arcselector10001;\r\n" +
	" h=From:Date:Subject:Message-ID:Content-Type:MIME-Version:X-MS-Exchange-AntiSpam-MessageData-ChunkCount:X-MS-Exchange-AntiSpam-MessageData-0:X-MS-Exchange-AntiSpam-MessageData-1;\r\n" +
	" bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
	" b=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4==\r\n" +
	"ARC-Authentication-Results: i=1; mx.microsoft.com 1; spf=pass\r\n" +
	" smtp.mailfrom=author.example; dmarc=pass action=none\r\n" +
	" header.from=author.example; dkim=pass header.d=author.example; arc=none\r\n"

const googleSet = "ARC-Seal: i=2; a=rsa-sha256; t=1700000000; cv=pass;\r\n" +
	"        d=google.com; s=arc-20160816;\r\n" +
	"        b=YmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy\r\n" +
	"         YmF6cXV4Zm9v==\r\n" +
	"ARC-Message-Signature: i=2; a=rsa-sha256; c=relaxed/relaxed; d=google.com; s=arc-20160816;\r\n" +
	"        h=to:subject:message-id:date:from:mime-version:dkim-signature;\r\n" +
	"        bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
	"        fh=abcdefghijklmnopqrstuvwxyz0123456789abcdefg=;\r\n" +
	"        b=cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9v==\r\n" +
	"ARC-Authentication-Results: i=2; mx.google.com;\r\n" +
	"       dkim=pass header.i=@author.example header.s=20230601 header.b=abcdef;\r\n" +
	"       arc=pass (i=1 spf=pass spfdomain=author.example dkim=pass dkdomain=author.example dmarc=pass fromdomain=author.example);\r\n" +
	"       spf=pass (google.com: domain of a@author.example designates 192.0.2.1 as permitted sender) smtp.mailfrom=a@author.example;\r\n" +
	"       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=author.example\r\n"

// nonConformingAR is the kind of Authentication-Results real mail carries:
// no authserv-id, unbalanced comments, stray semicolons. Verify never
// parses it, and must not trip over it.
const nonConformingAR = "Authentication-Results: spf=pass (sender IP is 192.0.2.1)\r\n" +
	" smtp.mailfrom=author.example; dkim=none (message not signed)\r\n" +
	" header.d=none;dmarc=none action=none header.from=author.example;;\r\n" +
	"Authentication-Results: (unclosed comment; dkim=pass\r\n"

func TestVerifyRealWorldShapes(t *testing.T) {
	keys := keyring{}
	keys.add(t, "arcselector10001", "microsoft.com", testKey(t).Public())
	keys.add(t, "arc-20160816", "google.com", testKey(t).Public())
	for name, tc := range map[string]struct {
		msg    string
		reason string
	}{
		"microsoft i=1":             {microsoftSet + nonConformingAR + interopMessage(), "ARC-Message-Signature i=1"},
		"google i=2 over ms i=1":    {googleSet + microsoftSet + interopMessage(), "i=2"},
		"google alone":              {googleSet + interopMessage(), "with i=1"},
		"only a non-conforming A-R": {nonConformingAR + interopMessage(), ""},
	} {
		res := verifyString(keys, tc.msg)
		if tc.reason == "" {
			if res.CV != CVNone {
				t.Errorf("%s: cv=%s (%s), want none", name, res.CV, res.Reason)
			}
			continue
		}
		if res.CV != CVFail || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("%s: cv=%s reason %q, want fail mentioning %q", name, res.CV, res.Reason, tc.reason)
		}
	}
}

func TestVerifyDNSErrorIsFail(t *testing.T) {
	keys := keyring{}
	sealed := sealAs(t, newTestSealer(t, "relay.example", nil, keys), keys, interopMessage())
	temp := errors.New("i/o timeout")
	res := Verify(context.Background(), strings.NewReader(sealed), func(context.Context, string) ([]string, error) {
		return nil, temp
	})
	if res.CV != CVFail || !strings.Contains(res.Reason, "DNS lookup") || !strings.Contains(res.Reason, "i/o timeout") {
		t.Errorf("got %+v, want fail naming the DNS error", res)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res = Verify(ctx, strings.NewReader(sealed), keys.lookup)
	if res.CV != CVFail || !strings.Contains(res.Reason, "canceled") {
		t.Errorf("cancelled context: %+v, want fail", res)
	}
}

func TestVerifyRecoversFromPanic(t *testing.T) {
	keys := keyring{}
	sealed := sealAs(t, newTestSealer(t, "relay.example", nil, keys), keys, interopMessage())
	res := Verify(context.Background(), strings.NewReader(sealed), func(context.Context, string) ([]string, error) {
		panic("resolver bug")
	})
	if res.CV != CVFail || !strings.Contains(res.Reason, "resolver bug") {
		t.Errorf("got %+v, want fail reporting the panic", res)
	}
}

type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestVerifyReadErrors(t *testing.T) {
	keys := keyring{}
	sealed := sealAs(t, newTestSealer(t, "relay.example", nil, keys), keys, interopMessage())
	res := Verify(context.Background(), failingReader{strings.NewReader(sealed)}, keys.lookup)
	if res.CV != CVFail || !strings.Contains(res.Reason, "connection reset") {
		t.Errorf("got %+v, want fail naming the read error", res)
	}
	huge := "X: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n"
	if res := verifyString(keys, huge); res.CV != CVFail {
		t.Errorf("oversized header: %+v, want fail", res)
	}
}

func TestVerifySuiteOldestPass(t *testing.T) {
	for _, c := range loadSuite(t, "arc-draft-validation-tests.yml") {
		if c.name != "cv_pass_i2_1_ams1_invalid" {
			continue
		}
		res := Verify(context.Background(), strings.NewReader(mapString(c.test, "message")), suiteDNS(c.doc))
		if res.CV != CVPass || res.OldestPass != 2 || res.Instance != 2 {
			t.Errorf("got %+v, want pass at i=2 with oldest-pass 2", res)
		}
		return
	}
	t.Fatal("scenario cv_pass_i2_1_ams1_invalid not found")
}

func FuzzVerify(f *testing.F) {
	keys := keyring{}
	s := newTestSealer(f, "relay.example", nil, keys)
	f.Add([]byte(microsoftSet + nonConformingAR + interopMessage()))
	f.Add([]byte(googleSet + microsoftSet + interopMessage()))
	f.Add([]byte("ARC-Seal: i=1\r\n\r\n"))
	f.Add([]byte("\r\n\r\nbody"))
	f.Add([]byte("ARC-Authentication-Results: i=1 ; x\nARC-Message-Signature: i=1; h=from; bh=; b=\n"))
	set, err := s.Seal(strings.NewReader(interopMessage()), "relay.example", "spf=pass", Result{CV: CVNone})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(set, interopMessage()...))
	f.Fuzz(func(t *testing.T, msg []byte) {
		res := Verify(context.Background(), bytes.NewReader(msg), keys.lookup)
		switch res.CV {
		case CVNone, CVPass:
		case CVFail:
			if res.Reason == "" {
				t.Fatal("fail without a reason")
			}
		default:
			t.Fatalf("cv=%q", res.CV)
		}
		if res.Instance < 0 || res.Instance > maxInstance {
			t.Fatalf("instance %d", res.Instance)
		}
		if strings.HasPrefix(res.Reason, "internal error") {
			t.Fatalf("Verify panicked: %s", res.Reason)
		}
	})
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	_, rsaPEM, err := GenerateKey("rsa")
	if err != nil {
		t.Fatal(err)
	}
	_, edPEM, err := GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	suiteKey := ""
	for _, c := range loadSuite(t, "arc-draft-sign-tests.yml") {
		suiteKey = mapString(c.doc, "privatekey") // PKCS#1, 1024 bits
		break
	}
	for _, tc := range []struct {
		name    string
		data    string
		mode    os.FileMode
		wantErr string
	}{
		{"pkcs8 rsa", string(rsaPEM), 0o600, ""},
		{"pkcs8 ed25519", string(edPEM), 0o400, ""},
		{"pkcs1 rsa", suiteKey, 0o600, ""},
		{"group readable", string(rsaPEM), 0o640, "group or others"},
		{"world readable", string(rsaPEM), 0o604, "group or others"},
		{"not pem", "hello", 0o600, "no PEM block"},
		{"certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0o600, "CERTIFICATE"},
		{"corrupt", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o600, "parsing PRIVATE KEY"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".pem")
		if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		key, err := LoadKey(path)
		if tc.wantErr == "" {
			if err != nil || key == nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.wantErr)
			continue
		}
		// The error names the file, never its contents.
		if body := strings.Split(tc.data, "\n"); len(body) > 1 && strings.Contains(err.Error(), body[1]) {
			t.Errorf("%s: error leaks key material: %v", tc.name, err)
		}
	}
	if _, err := LoadKey(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("LoadKey of a missing file succeeded")
	}
}
