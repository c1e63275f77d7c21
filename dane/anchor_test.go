// SPDX-License-Identifier: MIT

package dane

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRootAnchors(t *testing.T) {
	a := RootAnchors()
	if z := a.Zones(); !slices.Equal(z, []string{"."}) {
		t.Fatalf("zones %v", z)
	}
	var tags []uint16
	for _, d := range a.ds["."] {
		tags = append(tags, d.KeyTag)
	}
	if !slices.Equal(tags, []uint16{20326, 38696}) {
		t.Fatalf("root anchors have key tags %v, want KSK-2017 and KSK-2024 (20326, 38696)", tags)
	}
}

func TestParseTrustAnchors(t *testing.T) {
	const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name  string
		text  string
		zones []string // when it parses
		err   string   // else
	}{
		{"root DS records", rootAnchorsText, []string{"."}, ""},
		{"DNSKEY over lines, with comments", "; the test zone\nexample. 3600 IN DNSKEY 257 3 13 ( mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+Gq\n JxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ== ) ; KSK\n", []string{"example."}, ""},
		{"relative owner", "test IN DS 1 13 2 " + digest, []string{"test."}, ""},
		{"SHA-384 digest", ". IN DS 1 13 4 " + digest + digest[:32], []string{"."}, ""},
		{"SHA-1 digest", ". IN DS 20326 8 1 0123456789abcdef0123456789abcdef01234567", nil, "digest type 1 is refused"},
		{"RSASHA1 key", ". IN DS 20326 5 2 " + digest, nil, "algorithm RSASHA1 (5) is refused"},
		{"short digest", ". IN DS 20326 8 2 0123", nil, "not 32 bytes of hex"},
		{"revoked key", ". IN DNSKEY 385 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==", nil, "not a usable zone key"},
		{"another type", ". IN TXT \"x\"", nil, `"." type 16: a TXT record; trust anchors are DS or DNSKEY records`},
		{"another class", ". CH DS 20326 8 2 " + digest, nil, "class CH"},
		{"include", "$INCLUDE /etc/passwd\n", nil, "$INCLUDE"},
		{"nothing", "; empty\n", nil, "no DS or DNSKEY records"},
		{"garbage", "this is not a zone file", nil, "test:"},
		{"terminal escapes are not echoed", ". IN DS 20326 13 2 \x1b[2J\x1b[31m", nil, `"." DS 20326: the digest is not 32 bytes of hex`},
		{"control characters in the owner", "\x1b[2J IN DS 20326 5 2 " + digest, nil, `"\x1b[2J." DS 20326: algorithm RSASHA1 (5) is refused`},
		{"too many", "$GENERATE 1-100 x$ IN DS 1 13 2 " + digest + "\n", nil, "more than 64 records"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseTrustAnchors("test", []byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to say %q", err, tc.err)
				}
				if i := strings.IndexFunc(err.Error(), isControl); i >= 0 {
					t.Fatalf("err %q holds a control character", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Zones(), tc.zones) {
				t.Fatalf("zones %v, want %v", a.Zones(), tc.zones)
			}
		})
	}
}

func TestLoadTrustAnchorFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "root.ds")
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(good, []byte(rootAnchorsText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, []byte(strings.Repeat("; padding\n", 10000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err := LoadTrustAnchorFile(good); err != nil || len(a.ds["."]) != 2 {
		t.Fatalf("good file: %v", err)
	}
	for path, want := range map[string]string{
		big:                           "larger than 64 KiB",
		filepath.Join(dir, "missing"): "no such file",
	} {
		if _, err := LoadTrustAnchorFile(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }
