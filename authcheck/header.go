// SPDX-License-Identifier: MIT

package authcheck

import (
	"bufio"
	"errors"
	"net/mail"
	"strings"

	"golang.org/x/net/idna"

	"github.com/dualmx/dualmx/internal/headerblock"
	"github.com/dualmx/dualmx/internal/taglist"
)

// maxHeaderBytes bounds the header block held in memory for DKIM (which
// needs all of it); Exchange Online itself refuses headers much larger.
const maxHeaderBytes = 1 << 20

// readHeader returns the header block including the blank line that ends it.
// A message that ends inside its header gets the blank line added, so DKIM
// sees the empty body such a message has.
func readHeader(br *bufio.Reader) ([]byte, error) {
	h, ended, err := headerblock.Read(br, maxHeaderBytes)
	if err != nil || ended {
		return h, err
	}
	if len(h) > 0 && h[len(h)-1] != '\n' {
		h = append(h, "\r\n"...)
	}
	return append(h, "\r\n"...), nil
}

// field is one header field: its name and its raw value, still folded.
type field struct {
	name  string
	value string
}

// splitFields splits a header block read by readHeader into fields, the way
// go-msgauth's dkim package does, so the n-th DKIM-Signature here is its n-th too.
func splitFields(h []byte) []field {
	var fs []field
	for f := range headerblock.Fields(h) {
		name, value, _ := strings.Cut(string(f), ":")
		fs = append(fs, field{name: strings.TrimSpace(name), value: value})
	}
	return fs
}

func unfold(s string) string {
	return strings.TrimSpace(strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(s))
}

var (
	errNoFrom       = errors.New("no From field")
	errManyFrom     = errors.New("more than one From field")
	errFromDomain   = errors.New("no domain in From")
	errFromDomains  = errors.New("From names addresses in different domains")
	errNoDKIMDomain = errors.New("no d= tag")
)

// fromDomain returns the RFC5322.From domain DMARC evaluates (RFC 7489 §6.6.1),
// lower case, IDNs as A-labels. Real mail carries From fields net/mail rejects
// (unknown charsets in encoded words, stray quotes), so an address in angle
// brackets is accepted without a full parse rather than recorded as permerror.
func fromDomain(fs []field) (string, error) {
	var from []string
	for _, f := range fs {
		if strings.EqualFold(f.name, "From") {
			from = append(from, unfold(f.value))
		}
	}
	switch len(from) {
	case 0:
		return "", errNoFrom
	case 1:
	default:
		return "", errManyFrom
	}
	var domains []string
	if list, err := mail.ParseAddressList(from[0]); err == nil {
		for _, a := range list {
			domains = append(domains, domainOf(a.Address))
		}
	} else {
		addr := from[0]
		if i := strings.LastIndexByte(addr, '<'); i >= 0 {
			addr, _, _ = strings.Cut(addr[i+1:], ">")
		}
		domains = []string{domainOf(strings.TrimSpace(addr))}
	}
	d := domains[0]
	for _, o := range domains[1:] {
		if o != d {
			return "", errFromDomains
		}
	}
	if !validDomain(d) {
		return "", errFromDomain
	}
	return d, nil
}

// domainOf returns the normalised domain of an address, "" if there is none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return normDomain(addr[i+1:])
}

func normDomain(d string) string {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		d = a
	}
	return strings.ToLower(d)
}

// validDomain accepts a multi-label host name; RFC 7208 §4.3 and RFC 7489
// give "none" rather than an error for anything else (address literals, bare labels).
func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// sigTags holds the tags of one DKIM-Signature that the A-R field reports;
// go-msgauth's Verification has no selector and no b=.
type sigTags struct{ d, s, b string }

// parseSigTags reads them; a signature whose tag-list is not valid reports
// none (it fails verification anyway).
func parseSigTags(value string) sigTags {
	tags, err := taglist.Parse(value)
	if err != nil {
		return sigTags{}
	}
	d, _ := tags.Get("d")
	s, _ := tags.Get("s")
	b, _ := tags.Get("b")
	return sigTags{d: normDomain(d), s: taglist.StripFWS(s), b: taglist.StripFWS(b)}
}
