// SPDX-License-Identifier: MIT

// Package srs rewrites envelope senders with the Sender Rewriting Scheme, in
// the dialect of libsrs2 and postsrsd, so that an address made here reverses
// there and the other way round, given the same secret and domain.
//
//	SRS0=HHHH=TT=author.example=user@srs-domain
//	SRS1=HHHH=first-forwarder.example==HHHH=TT=author.example=user@srs-domain
//
// HHHH is the first four characters of the base64 HMAC-SHA1, keyed with the
// secret, over the other fields lower-cased and concatenated; TT is the day
// number modulo 1024 in two base32 characters.
package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultMaxAge is libsrs2's and postsrsd's validity: a bounce that arrives
// later than this is refused.
const DefaultMaxAge = 21 * 24 * time.Hour

const (
	// hashLen is libsrs2's default and postsrsd's -n/-N default; both sides
	// of an interop pair must agree, and nothing here needs more: a forger
	// gets one guess per SMTP transaction against a 4-character hash.
	hashLen = 4

	day        = 24 * time.Hour
	stampChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	stampSlots = 1 << 10 // two base32 characters
)

// Rewriter signs and verifies SRS addresses. Its fields are read on every
// call and must not change while it is in use; it is then safe for
// concurrent use.
type Rewriter struct {
	Domain   string   // the SRS domain, e.g. fwd.example.nl; its MX must be this relay
	Secret   []byte   // signs new addresses (and verifies)
	Previous [][]byte // older secrets that still verify, for key rotation
	MaxAge   time.Duration
	Now      func() time.Time // nil means time.Now
}

// Forward rewrites an envelope sender for mail this relay sends on.
//
// The null sender stays null. An address at Domain is returned as is (it is
// ours already: one of our SRS addresses or a local mailbox). A local part
// tagged SRS0 (another forwarder's) becomes SRS1 naming that forwarder, and
// one tagged SRS1 keeps its original forwarder and gets our signature, so
// bounces skip the forwarders in between. Anything else becomes SRS0.
//
// sender may be in wire form (local part quoted) or unquoted; the result is
// unquoted, the form go-smtp's server hands over and the spool keeps (the
// courier writes every address in wire form).
func (r *Rewriter) Forward(sender string) (string, error) {
	if sender == "" {
		return "", nil
	}
	if err := r.check(); err != nil {
		return "", err
	}
	local, domain, ok := split(sender)
	if !ok {
		return "", fail("forward", sender, ErrMalformed, "no '@'")
	}
	if err := checkDomain(domain); err != nil {
		return "", fail("forward", sender, ErrMalformed, err.Error())
	}
	local, err := unquote(local)
	if err == nil {
		err = checkLocal(local)
	}
	if err != nil {
		return "", fail("forward", sender, ErrMalformed, err.Error())
	}
	if strings.EqualFold(domain, r.Domain) {
		return address(local, domain), nil
	}

	switch {
	case hasTag(local, "SRS1"):
		// libsrs2 refuses an SRS1 local part it cannot parse; here it is
		// wrapped as SRS0 instead, which still reverses exactly, so odd but
		// legal senders are not refused.
		if _, host, user, ok := cutSRS1(local); ok {
			return address("SRS1="+sign(r.Secret, host, user)+"="+host+"="+user, r.Domain), nil
		}
	case hasTag(local, "SRS0"):
		// The SRS0 fields are carried unverified: they are another
		// forwarder's, signed with its secret. The separator after "SRS0" stays
		// with them, which is where the "==" in SRS1 comes from.
		user := local[len("SRS0"):]
		return address("SRS1="+sign(r.Secret, domain, user)+"="+domain+"="+user, r.Domain), nil
	}
	stamp := timestamp(r.now())
	return address("SRS0="+sign(r.Secret, stamp, domain, local)+"="+stamp+"="+domain+"="+local, r.Domain), nil
}

// Reverse recovers the address an SRS address at Domain was made from:
// the author's address for SRS0, the first forwarder's SRS0 address for SRS1.
// The result is unquoted, like Forward's.
//
// Errors wrap ErrNotSRS, ErrMalformed, ErrBadHash or ErrExpired (see Reason
// and ReplyText). The signature is checked before the age, so a forgery is
// always reported as one, never as expired.
func (r *Rewriter) Reverse(addr string) (string, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	local, domain, ok := split(addr)
	if !ok {
		return "", fail("reverse", addr, ErrNotSRS, "no '@'")
	}
	if !strings.EqualFold(domain, r.Domain) {
		return "", fail("reverse", addr, ErrNotSRS, "not at the SRS domain "+r.Domain)
	}
	local, err := unquote(local)
	if err != nil {
		return "", fail("reverse", addr, ErrMalformed, err.Error())
	}
	p, err := parseLocal(local)
	if err != nil {
		return "", fmt.Errorf("srs: reverse %q: %w", addr, err)
	}
	if !r.verify(p.hash, p.signed()...) {
		return "", fail("reverse", addr, ErrBadHash, "no secret matches the hash")
	}
	if p.srs1 {
		// user still starts with the original SRS0 separator.
		return address("SRS0"+p.user, p.host), nil
	}
	if age, limit := ageDays(r.now(), p.then), r.maxDays(); age > limit {
		return "", fail("reverse", addr, ErrExpired, fmt.Sprintf("signed %d days ago, the limit is %d", age, limit))
	}
	return address(p.user, p.host), nil
}

// parsed is an SRS local part taken apart.
type parsed struct {
	srs1       bool
	hash       string
	stamp      string // SRS0 only
	then       int64  // stamp as a day number modulo 1024
	host, user string
}

// signed lists what the hash covers, in order.
func (p parsed) signed() []string {
	if p.srs1 {
		return []string{p.host, p.user}
	}
	return []string{p.stamp, p.host, p.user}
}

// parseLocal takes an unquoted SRS local part apart. Errors wrap ErrNotSRS
// or ErrMalformed.
func parseLocal(local string) (parsed, error) {
	srs1 := hasTag(local, "SRS1")
	if !srs1 && !hasTag(local, "SRS0") {
		return parsed{}, fmt.Errorf("%w: local part is not tagged SRS0 or SRS1", ErrNotSRS)
	}
	if err := checkLocal(local); err != nil {
		return parsed{}, fmt.Errorf("%w: %s", ErrMalformed, err)
	}
	if srs1 {
		hash, host, user, ok := cutSRS1(local)
		if !ok {
			return parsed{}, fmt.Errorf("%w: SRS1 needs a hash, a host and a user starting with a separator", ErrMalformed)
		}
		return parsed{srs1: true, hash: hash, host: host, user: user}, nil
	}
	f := strings.SplitN(local[len("SRS0="):], "=", 4)
	if len(f) < 4 || f[0] == "" || f[1] == "" || f[2] == "" || f[3] == "" {
		return parsed{}, fmt.Errorf("%w: SRS0 needs a hash, a timestamp, a host and a user", ErrMalformed)
	}
	then, ok := parseStamp(f[1])
	if !ok {
		return parsed{}, fmt.Errorf("%w: timestamp is not two base32 characters", ErrMalformed)
	}
	return parsed{hash: f[0], stamp: f[1], then: then, host: f[2], user: f[3]}, nil
}

func (r *Rewriter) check() error {
	switch {
	case r.Domain == "":
		return errors.New("srs: Rewriter has no Domain")
	case len(r.Secret) == 0:
		return errors.New("srs: Rewriter has no Secret")
	}
	return nil
}

func (r *Rewriter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// maxDays is MaxAge in whole days, the timestamp's resolution; a partial day
// is dropped so the limit is never longer than configured.
func (r *Rewriter) maxDays() int64 {
	if r.MaxAge <= 0 {
		return int64(DefaultMaxAge / day)
	}
	return int64(r.MaxAge / day)
}

func fail(op, addr string, kind error, detail string) error {
	return fmt.Errorf("srs: %s %q: %w: %s", op, addr, kind, detail)
}

// hasTag is libsrs2's test: the tag in any case, then one of its three
// separators. postsrsd can be configured to emit any of them.
func hasTag(local, tag string) bool {
	return len(local) > len(tag) && strings.EqualFold(local[:len(tag)], tag) &&
		strings.IndexByte("=-+", local[len(tag)]) >= 0
}

// cutSRS1 splits "SRS1=hash=host=user"; user keeps whatever '=' it contains.
//
// user must start with a separator, as it does in every SRS1 address made
// from an SRS0 one. libsrs2 does not insist, but without it the hash, which
// covers host and user concatenated, would also match the same address with
// the host's last characters moved into the user.
func cutSRS1(local string) (hash, host, user string, ok bool) {
	if !hasTag(local, "SRS1") {
		return "", "", "", false
	}
	hash, rest, ok1 := strings.Cut(local[len("SRS1="):], "=")
	host, user, ok2 := strings.Cut(rest, "=")
	ok = ok1 && ok2 && hash != "" && host != "" && user != "" && strings.IndexByte("=-+", user[0]) >= 0
	return hash, host, user, ok
}

// checkDomain refuses what would make the address unreversible: a '=' in
// the domain would move the boundary between host and user when parsed back.
func checkDomain(domain string) error {
	if domain == "" {
		return errors.New("empty domain")
	}
	for i := 0; i < len(domain); i++ {
		switch c := domain[i]; {
		case c == '=':
			return errors.New("'=' in domain")
		case c <= 0x20 || c == 0x7f:
			return errors.New("space or control character in domain")
		}
	}
	return nil
}

// sign is libsrs2's hash: lower-casing the data is what lets an address
// survive an MTA that folds the case of local parts.
func sign(secret []byte, fields ...string) string {
	m := hmac.New(sha1.New, secret)
	for _, f := range fields {
		m.Write([]byte(asciiLower(f)))
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))[:hashLen]
}

// verify compares case-insensitively, as libsrs2 does, because the hash
// itself may have been case-folded on the way back.
func (r *Rewriter) verify(hash string, fields ...string) bool {
	if len(hash) != hashLen {
		return false
	}
	got := []byte(asciiLower(hash))
	match := 0
	for _, s := range append([][]byte{r.Secret}, r.Previous...) {
		if len(s) == 0 {
			continue
		}
		// Every secret is tried, so the time taken does not tell which matched.
		match |= subtle.ConstantTimeCompare(got, []byte(asciiLower(sign(s, fields...))))
	}
	return match == 1
}

func dayNumber(t time.Time) int64 {
	d := t.Unix() / int64(day/time.Second)
	if t.Unix() < 0 && t.Unix()%int64(day/time.Second) != 0 {
		d-- // floor, so the day before 1970 is not day 0 again
	}
	return d
}

func timestamp(t time.Time) string {
	d := dayNumber(t) & (stampSlots - 1)
	return string([]byte{stampChars[d>>5], stampChars[d&31]})
}

func parseStamp(s string) (int64, bool) {
	if len(s) != 2 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		n := strings.IndexByte(stampChars, c)
		if n < 0 {
			return 0, false
		}
		v = v<<5 | int64(n)
	}
	return v, true
}

// ageDays is how many days ago a stamp was made, given that it only holds
// the day modulo 1024. As in libsrs2, a stamp from the future reads as almost
// 1024 days old, so it fails any sensible MaxAge.
func ageDays(now time.Time, then int64) int64 {
	return (dayNumber(now)&(stampSlots-1) - then + stampSlots) % stampSlots
}
