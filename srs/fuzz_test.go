// SPDX-License-Identifier: MIT

package srs

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the seed corpora in testdata/fuzz")

// The fuzz targets sign with a fixed secret at a fixed time, so the committed
// seeds stay valid; the secret protects nothing.
var fuzzSecret = []byte("fuzz-only secret, public on purpose")

func fuzzRewriter() *Rewriter {
	return &Rewriter{Domain: testDomain, Secret: fuzzSecret, Now: at(t0)}
}

// fuzzSenders become the "signed-*" seeds of FuzzReverse: one of each shape
// Forward makes.
var fuzzSenders = map[string]string{
	"srs0-plain":    "user@author.example",
	"srs0-equals":   "a=b@author.example",
	"srs0-plus":     "user+tag@sub.author.example",
	"srs0-quoted":   `"john doe"@author.example`,
	"srs0-escaped":  `"a\"b\\c"@author.example`,
	"srs0-utf8":     "jürgen@author.example",
	"srs1-from-eq":  "SRS0=AbCd=XY=author.example=user@first.example",
	"srs1-from-pl":  "SRS0+AbCd=XY=author.example=user@first.example",
	"srs1-from-srs": "SRS1=zzzz=first.example==AbCd=XY=author.example=user@second.example",
}

// Malformed and foreign inputs, to start the fuzzer near every error path.
var fuzzOddities = map[string]string{
	"empty":          "",
	"no-at":          "SRS0=abcd=WB=a=b",
	"other-domain":   "SRS0=abcd=WB=a=b@other.example",
	"not-tagged":     "postmaster@" + testDomain,
	"srs0-short":     "SRS0=abcd=WB=a@" + testDomain,
	"srs0-bad-stamp": "SRS0=abcd=W1=a=b@" + testDomain,
	"srs1-short":     "SRS1=abcd=a@" + testDomain,
	"bad-quoting":    `"SRS0=a"b"@` + testDomain,
	"trailing-bs":    `"SRS0=abcd=WB=a=b\"@` + testDomain,
	"control":        "SRS0=abcd=WB=a=b\x00c@" + testDomain,
}

func fuzzSeeds(t testing.TB) map[string]string {
	seeds := map[string]string{}
	r := fuzzRewriter()
	for name, sender := range fuzzSenders {
		addr, err := r.Forward(sender)
		if err != nil {
			t.Fatalf("Forward(%q): %v", sender, err)
		}
		seeds["signed-"+name] = addr
	}
	for name, s := range fuzzOddities {
		seeds["odd-"+name] = s
	}
	return seeds
}

// signedData is what an address's hash covers, lower-cased; an address moved
// across field boundaries has the same data and the same (our) signature.
func signedData(addr string) (string, bool) {
	local, _, ok := split(addr)
	if !ok {
		return "", false
	}
	local, err := unquote(local)
	if err != nil {
		return "", false
	}
	p, err := parseLocal(local)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("srs1=%t:%s", p.srs1, asciiLower(strings.Join(p.signed(), ""))), true
}

func FuzzReverse(f *testing.F) {
	signed := map[string]bool{}
	for name, s := range fuzzSeeds(f) {
		if strings.HasPrefix(name, "signed-") {
			d, ok := signedData(s)
			if !ok {
				f.Fatalf("seed %s %q does not parse", name, s)
			}
			signed[d] = true
		}
	}
	r := fuzzRewriter()
	f.Fuzz(func(t *testing.T, addr string) {
		got, err := r.Reverse(addr)
		if err != nil {
			if got != "" {
				t.Errorf("Reverse(%q) = %q together with %v", addr, got, err)
			}
			if Reason(err) == "error" {
				t.Errorf("Reverse(%q): unclassified error %v", addr, err)
			}
			return
		}
		d, ok := signedData(addr)
		if !ok {
			t.Fatalf("Reverse accepted %q, which does not parse", addr)
		}
		if !signed[d] {
			// Either a bug in verification or the fuzzer guessed a 4-character
			// hash (about one chance in 2^22 per try): look at which.
			t.Fatalf("Reverse(%q) = %q, but nothing signed covers %q", addr, got, d)
		}
		if _, _, ok := split(got); !ok {
			t.Errorf("Reverse(%q) = %q, not an address", addr, got)
		}
	})
}

func FuzzForward(f *testing.F) {
	for _, s := range fuzzSenders {
		f.Add(s)
	}
	f.Add("")
	f.Add("postmaster@" + testDomain)
	f.Add("SRS1=x@author.example")
	f.Add("user@[192.0.2.1]")
	r := fuzzRewriter()
	f.Fuzz(func(t *testing.T, sender string) {
		out, err := r.Forward(sender)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Forward(%q): %v, want ErrMalformed or success", sender, err)
			}
			return
		}
		if sender == "" {
			if out != "" {
				t.Errorf("Forward(\"\") = %q", out)
			}
			return
		}
		local, domain, _ := split(sender)
		raw, _ := unquote(local)
		want := address(raw, domain)
		if strings.EqualFold(domain, testDomain) {
			if out != want {
				t.Errorf("Forward(%q) = %q, want it unchanged as %q", sender, out, want)
			}
			return
		}
		back, err := r.Reverse(out)
		if err != nil {
			t.Fatalf("Reverse(Forward(%q) = %q): %v", sender, out, err)
		}
		switch _, _, _, resigned := cutSRS1(raw); {
		case resigned:
			// Reversal leads to the first forwarder, not to the sender.
			if !strings.HasPrefix(strings.TrimPrefix(back, `"`), "SRS0") {
				t.Errorf("Reverse(Forward(%q)) = %q, want an SRS0 address", sender, back)
			}
		case hasTag(raw, "SRS0"):
			if !strings.EqualFold(back, want) {
				t.Errorf("Reverse(Forward(%q)) = %q, want %q", sender, back, want)
			}
		default:
			if back != want {
				t.Errorf("Reverse(Forward(%q)) = %q, want %q", sender, back, want)
			}
		}
	})
}

// TestFuzzCorpus keeps testdata/fuzz/FuzzReverse in step with the code: the
// signed seeds must still reverse, or the fuzzer starts far from the paths
// that matter. Run with -update to rewrite it.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReverse")
	seeds := fuzzSeeds(t)
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range seeds {
			content := "go test fuzz v1\nstring(" + strconv.Quote(s) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := fuzzRewriter()
	for name, want := range seeds {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("seed %s: %v (run go test ./srs -run TestFuzzCorpus -update)", name, err)
			continue
		}
		line, _ := strings.CutPrefix(string(b), "go test fuzz v1\nstring(")
		got, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(line), ")"))
		if err != nil || got != want {
			t.Errorf("seed %s holds %q (%v), want %q (run with -update)", name, got, err, want)
			continue
		}
		if _, err := r.Reverse(got); strings.HasPrefix(name, "signed-") && err != nil {
			t.Errorf("signed seed %s no longer reverses: %v", name, err)
		}
	}
}
