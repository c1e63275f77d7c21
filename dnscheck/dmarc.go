// SPDX-License-Identifier: MIT

// DMARC record parsing (RFC 7489 section 6.3).

package dnscheck

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DMARC is a parsed DMARC record; tags not listed here are kept in Other.
type DMARC struct {
	Policy          string   `json:"p"`
	SubdomainPolicy string   `json:"sp,omitempty"`
	Pct             int      `json:"pct"`
	RUA             []string `json:"rua,omitempty"`
	RUF             []string `json:"ruf,omitempty"`
	ADKIM           string   `json:"adkim,omitempty"`
	ASPF            string   `json:"aspf,omitempty"`
	// order keeps the tags as written, for String.
	order [][2]string
}

// IsDMARC reports whether a TXT string claims to be a DMARC record.
func IsDMARC(txt string) bool {
	t := strings.TrimLeft(txt, " \t")
	return len(t) >= 8 && strings.EqualFold(t[:2], "v=") && strings.HasPrefix(strings.TrimLeft(t[2:], " \t"), "DMARC1")
}

func (d *DMARC) String() string {
	parts := make([]string, 0, len(d.order))
	for _, kv := range d.order {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return strings.Join(parts, "; ")
}

// ParseDMARC parses a DMARC record. Receivers discard a record that fails
// here, so the domain then has no policy at all.
func ParseDMARC(rec string) (*DMARC, error) {
	d := &DMARC{Pct: 100}
	seen := map[string]bool{}
	for i, part := range strings.Split(rec, ";") {
		part = strings.Trim(part, " \t")
		if part == "" {
			if i == 0 {
				return nil, errors.New("dmarc: empty record")
			}
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("dmarc: %q is not tag=value", part)
		}
		k, v = strings.ToLower(strings.Trim(k, " \t")), strings.Trim(v, " \t")
		if k == "" {
			return nil, fmt.Errorf("dmarc: %q has no tag name", part)
		}
		if seen[k] {
			return nil, fmt.Errorf("dmarc: tag %s appears twice", k)
		}
		seen[k] = true
		if i == 0 {
			if k != "v" || v != "DMARC1" {
				return nil, errors.New("dmarc: must start with v=DMARC1")
			}
			d.order = append(d.order, [2]string{k, v})
			continue
		}
		switch k {
		case "p", "sp":
			v = strings.ToLower(v)
			if v != "none" && v != "quarantine" && v != "reject" {
				return nil, fmt.Errorf("dmarc: %s=%q is not none, quarantine or reject", k, v)
			}
			if k == "p" {
				d.Policy = v
			} else {
				d.SubdomainPolicy = v
			}
		case "pct":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 100 {
				return nil, fmt.Errorf("dmarc: pct=%q is not 0..100", v)
			}
			d.Pct = n
		case "adkim", "aspf":
			v = strings.ToLower(v)
			if v != "r" && v != "s" {
				return nil, fmt.Errorf("dmarc: %s=%q is not r or s", k, v)
			}
			if k == "adkim" {
				d.ADKIM = v
			} else {
				d.ASPF = v
			}
		case "rua", "ruf":
			var uris []string
			for _, u := range strings.Split(v, ",") {
				u = strings.Trim(u, " \t")
				if !strings.Contains(u, ":") {
					return nil, fmt.Errorf("dmarc: %s: %q is not a URI", k, u)
				}
				uris = append(uris, u)
			}
			if k == "rua" {
				d.RUA = uris
			} else {
				d.RUF = uris
			}
		case "ri":
			if n, err := strconv.ParseUint(v, 10, 32); err != nil || n == 0 {
				return nil, fmt.Errorf("dmarc: ri=%q is not a positive number", v)
			}
		case "v":
			return nil, errors.New("dmarc: v appears twice")
		}
		d.order = append(d.order, [2]string{k, v})
	}
	if d.Policy == "" {
		return nil, errors.New("dmarc: no p= tag")
	}
	return d, nil
}
