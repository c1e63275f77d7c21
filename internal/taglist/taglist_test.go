// SPDX-License-Identifier: MIT

package taglist

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // name=value pairs joined by "|"; "" with wantErr
		wantErr bool
	}{
		{in: "a=b", want: "a=b"},
		{in: " a = b ; c=d ;", want: "a=b|c=d"},
		{in: "a=b;\r\n\tc=d;\r\n ", want: "a=b|c=d"},
		{in: "a=b;\nc=d", want: "a=b|c=d"}, // bare LF folding
		{in: "h=from : to;\r\n b=abc\r\n def", want: "h=from : to|b=abc\r\n def"},
		{in: "a=", want: "a="},
		{in: "x_1=ü-utf8", want: "x_1=ü-utf8"}, // EAI values
		{in: "", wantErr: true},
		{in: "  ", wantErr: true},
		{in: ";", wantErr: true},
		{in: "a=b;;c=d", wantErr: true},
		{in: "a=b;c", wantErr: true},
		{in: "=b", wantErr: true},
		{in: "1a=b", wantErr: true},
		{in: "a-b=c", wantErr: true},
		{in: "a=b;a=c", wantErr: true},
		{in: "a=b\x00", wantErr: true},
		{in: "a=b\x7f", wantErr: true},
	} {
		tags, err := Parse(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tc.in, tags)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		var got []string
		for _, tag := range tags {
			got = append(got, tag.Name+"="+tag.Value)
		}
		if g := strings.Join(got, "|"); g != tc.want {
			t.Errorf("Parse(%q) = %q, want %q", tc.in, g, tc.want)
		}
	}
}

func TestGetIsCaseSensitive(t *testing.T) {
	tags, err := Parse("I=1; i=2")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := tags.Get("i"); v != "2" {
		t.Errorf("Get(i) = %q, want 2", v)
	}
	if _, ok := tags.Get("x"); ok {
		t.Error("Get(x) found a tag that is not there")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"i=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel; t=1; h=from:to; bh=AAAA; b=AAAA",
		"v=DKIM1; k=rsa; p=MIGfMA0G",
		"a=b;;c=d", "a=b;", "=", ";", "a=b\r\n c=d", "h=a : b", "\x00=\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := Parse(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		var b strings.Builder
		for i, tag := range tags {
			if !validTagName(tag.Name) {
				t.Fatalf("accepted invalid name %q", tag.Name)
			}
			if seen[tag.Name] {
				t.Fatalf("accepted duplicate %q", tag.Name)
			}
			seen[tag.Name] = true
			if tag.Value != TrimFWS(tag.Value) || strings.Contains(tag.Value, ";") {
				t.Fatalf("value %q not trimmed or holds ';'", tag.Value)
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(tag.Name + "=" + tag.Value)
		}
		// What was accepted re-parses to the same list.
		again, err := Parse(b.String())
		if err != nil || len(again) != len(tags) {
			t.Fatalf("re-parse of %q: %v, %d tags, want %d", b.String(), err, len(again), len(tags))
		}
		for i := range tags {
			if again[i] != tags[i] {
				t.Fatalf("re-parse changed %v to %v", tags[i], again[i])
			}
		}
	})
}
