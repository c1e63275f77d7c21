// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dualmx/dualmx/arc"
	"github.com/dualmx/dualmx/internal/dnstest"
)

const debianPython = "/usr/bin/python3"

func zoneTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}

// TestARCSealedEndToEnd: the admin makes a key with "dualmx arc keygen",
// publishes the printed record, and configures the arc section. A message
// signed by its author goes through a real SMTP session into the relay and out
// to the tenant: the tenant's copy carries a passing ARC chain sealed by the
// relay, the author's DKIM signature still verifies, and Debian's dkimpy
// agrees on both.
func TestARCSealedEndToEnd(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "arc.key")
	out, errOut, code := runBinary(t, nil, "arc", "keygen", "--domain", "relay.test.localhost", "--selector", "arc2026", "--out", keyFile)
	if code != 0 {
		t.Fatalf("arc keygen: %d %s%s", code, out, errOut)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	rec := regexp.MustCompile(`(?s)arc2026\._domainkey\.relay\.test\.localhost\. 3600 IN TXT \( (.*) \)`).FindStringSubmatch(out)
	if rec == nil {
		t.Fatalf("keygen printed no record:\n%s", out)
	}
	sealTXT := strings.Join(regexp.MustCompile(`"([^"]*)"`).FindAllString(rec[1], -1), " ")

	authorKey, _, err := arc.GenerateKey("rsa")
	if err != nil {
		t.Fatal(err)
	}
	authorRec, _ := arc.DNSRecord(authorKey.Public())
	zone := "arc2026._domainkey.relay.test.localhost. 300 IN TXT " + sealTXT + "\n" +
		"s1._domainkey.author.test. 300 IN TXT " + zoneTXT(authorRec) + "\n" +
		"author.test. 300 IN TXT \"v=spf1 ip4:192.0.2.99 -all\"\n" +
		"_dmarc.author.test. 300 IN TXT \"v=DMARC1; p=reject\"\n"
	ns := dnstest.Start(t, zone)

	e := newEnv(t, envOptions{extraConfig: fmt.Sprintf("resolver: %q\narc:\n  domain: relay.test.localhost\n  selector: arc2026\n  key_file: %q\n", ns.Addr(), keyFile)})
	e.addForwarding("scriba@hervormdputten.nl", "scriba@fwd.hervormdputten.nl")
	e.start()

	var signed bytes.Buffer
	orig := "From: Author <a@author.test>\r\nTo: scriba@hervormdputten.nl\r\nSubject: Rooster =?utf-8?q?advent?=\r\n" +
		"Date: Fri, 27 Nov 2026 10:00:00 +0100\r\nMessage-ID: <arc-e2e@author.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nZondag   om 10 uur.  \r\n\r\n"
	if err := dkim.Sign(&signed, strings.NewReader(orig), &dkim.SignOptions{Domain: "author.test", Selector: "s1", Signer: authorKey,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}}); err != nil {
		t.Fatal(err)
	}
	if err := send(e.smtpAddr(), "a@author.test", []string{"scriba@fwd.hervormdputten.nl"}, signed.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := waitTenant(t, e.tenant, 1)[0].Data

	// Order on the wire: the ARC set, our Authentication-Results, our
	// Received, then the original bytes exactly.
	for i, prefix := range []string{"ARC-Seal: i=1;", "ARC-Message-Signature: i=1;", "ARC-Authentication-Results: i=1; relay.test.localhost;"} {
		if !bytes.Contains(got, []byte(prefix)) {
			t.Errorf("field %d %q missing", i, prefix)
		}
	}
	if !bytes.HasSuffix(got, signed.Bytes()) {
		t.Fatal("the original message bytes did not arrive unchanged")
	}
	head := string(got[:len(got)-signed.Len()])
	if !strings.Contains(head, "Authentication-Results: relay.test.localhost;") || !strings.Contains(head, "dkim=pass") {
		t.Errorf("Authentication-Results missing or wrong:\n%s", head)
	}
	// What dualmx adds, field by field, in the order README and the demo state.
	var added []string
	for _, line := range strings.Split(strings.TrimSuffix(head, "\r\n"), "\r\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && line[0] != ' ' && line[0] != '\t' {
			added = append(added, name)
		}
	}
	if want := []string{"ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results", "Authentication-Results", "Received"}; strings.Join(added, ",") != strings.Join(want, ",") {
		t.Errorf("fields added on top: %v, want %v", added, want)
	}
	res := arc.Verify(context.Background(), bytes.NewReader(got), ns.Resolver().LookupTXT)
	if res.CV != arc.CVPass || res.Instance != 1 || res.Domains[0] != "relay.test.localhost" {
		t.Errorf("ARC verdict at the tenant: %+v", res)
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(got), &dkim.VerifyOptions{LookupTXT: func(d string) ([]string, error) {
		return ns.Resolver().LookupTXT(context.Background(), d)
	}})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil {
		t.Errorf("author DKIM at the tenant: %v %+v", err, verifs)
	}
	if m := e.scrape(); !strings.Contains(m, `dualmx_arc_seals_total{result="sealed"} 1`) || !strings.Contains(m, `dualmx_auth_author_dkim_total{state="intact"} 1`) {
		t.Error("sealing or arrival metrics not counted")
	}

	// "dualmx arc verify" on the received file, as an admin would.
	msgFile := filepath.Join(dir, "received.eml")
	os.WriteFile(msgFile, got, 0o600)
	vout, verr, vcode := runBinary(t, []string{"DUALMX_CONFIG=" + e.cfgPath}, "arc", "verify", msgFile)
	if vcode != 0 || !strings.HasPrefix(vout, "cv=pass instances=1") {
		t.Errorf("arc verify: exit %d %q %q", vcode, vout, verr)
	}

	// Debian's dkimpy, an independent implementation, agrees.
	if _, err := exec.Command(debianPython, "-c", "import dkim, authres").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-dkim missing in CI: %v", err)
		}
		t.Skip("python3-dkim not installed (.ci/run installs it)")
	}
	keys := map[string]string{"arc2026._domainkey.relay.test.localhost": strings.ReplaceAll(strings.ReplaceAll(sealTXT, `" "`, ""), `"`, ""),
		"s1._domainkey.author.test": authorRec}
	kb, _ := json.Marshal(keys)
	keysFile := filepath.Join(dir, "keys.json")
	os.WriteFile(keysFile, kb, 0o600)
	pyOut, err := exec.Command(debianPython, "../arc/testdata/dkimpy.py", "verify", keysFile, msgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, pyOut)
	}
	var v struct {
		ARC    string `json:"arc"`
		Reason string `json:"arc_reason"`
		DKIM   bool   `json:"dkim"`
	}
	if err := json.Unmarshal(pyOut, &v); err != nil || v.ARC != "pass" || !v.DKIM {
		t.Fatalf("dkimpy verdict %s (%v)", pyOut, err)
	}
}
