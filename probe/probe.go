// SPDX-License-Identifier: MIT

// Package probe proves the old host's forward end to end. "dualmx address
// probe" sends a message marked with an HMAC to the public address through
// the old host; the old host forwards it to the relay's alias; the relay sees
// the marker on arrival and records "forward verified at T" for the address.
// Only someone holding the relay's probe key can make a marker that verifies,
// so nobody else can fake the evidence.
package probe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dualmx/dualmx/internal/secretfile"
	"github.com/dualmx/dualmx/internal/taglist"
)

// Field is the header field that carries the marker.
const Field = "X-Dualmx-Probe"

// MaxAge bounds how old a marker may be when it arrives. A forward that takes
// longer is broken anyway, and an old marker replayed later proves nothing new.
const MaxAge = 72 * time.Hour

// maxSkew allows for a sender clock slightly ahead of the relay's.
const maxSkew = 5 * time.Minute

// KeyFile is the probe key's file name inside the state directory.
const KeyFile = "probe.key"

// Errors Verify returns; wrapped, so use errors.Is.
var (
	ErrMalformed = errors.New("malformed probe marker")
	ErrBadMAC    = errors.New("probe marker does not verify")
	ErrStale     = errors.New("probe marker outside its validity window")
)

// Marker is what the probe field says.
type Marker struct {
	Address string    // the public address probed
	Nonce   string    // unique per probe; the evidence is recorded once per nonce
	Sent    time.Time // when the probe was made (second precision)
	mac     []byte
}

// LoadOrCreateKey reads the key at path, creating a new random one (mode
// 0600) when there is none. Both the daemon and the CLI call it: whichever
// runs first makes the key, and both must run as a user that can read it.
// A key that group or others can read is refused: anyone who reads it can
// make forward evidence.
func LoadOrCreateKey(path string) ([]byte, error) {
	k, err := loadKey(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("probe key: %w", err)
	}
	err = secretfile.Create(path, []byte(hex.EncodeToString(raw)+"\n"))
	if errors.Is(err, os.ErrExist) {
		return loadKey(path) // another process made it first
	}
	if err != nil {
		return nil, fmt.Errorf("probe key: %w", err)
	}
	return raw, nil
}

func loadKey(path string) ([]byte, error) {
	b, err := secretfile.Read(path, 4<<10)
	if err != nil {
		return nil, fmt.Errorf("probe key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) < 16 {
		return nil, fmt.Errorf("probe key %s: not a hex key of at least 16 bytes", path)
	}
	return k, nil
}

// New makes a marker for address, sent at now.
func New(key []byte, address string, now time.Time) (Marker, error) {
	n := make([]byte, 12)
	if _, err := rand.Read(n); err != nil {
		return Marker{}, err
	}
	m := Marker{Address: strings.ToLower(address), Nonce: hex.EncodeToString(n), Sent: now.UTC().Truncate(time.Second)}
	m.mac = sum(key, m)
	return m, nil
}

func sum(key []byte, m Marker) []byte {
	h := hmac.New(sha256.New, key)
	fmt.Fprintf(h, "dualmx-probe v1\n%s\n%s\n%d\n", m.Address, m.Nonce, m.Sent.Unix())
	return h.Sum(nil)
}

// Value is the field body: "v=1; a=ADDRESS; n=NONCE; t=UNIX; m=MAC".
func (m Marker) Value() string {
	return fmt.Sprintf("v=1; a=%s; n=%s; t=%d; m=%s", m.Address, m.Nonce, m.Sent.Unix(),
		base64.RawURLEncoding.EncodeToString(m.mac))
}

// Parse reads a field body without checking the MAC.
func Parse(value string) (Marker, error) {
	list, err := taglist.Parse(value)
	if err != nil {
		return Marker{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	tags := map[string]string{}
	for _, t := range list {
		tags[t.Name] = taglist.StripFWS(t.Value)
	}
	if tags["v"] != "1" {
		return Marker{}, fmt.Errorf("%w: version %q", ErrMalformed, tags["v"])
	}
	t, err := strconv.ParseInt(tags["t"], 10, 64)
	if err != nil {
		return Marker{}, fmt.Errorf("%w: time %q", ErrMalformed, tags["t"])
	}
	mac, err := base64.RawURLEncoding.DecodeString(tags["m"])
	if err != nil || len(mac) != sha256.Size {
		return Marker{}, fmt.Errorf("%w: mac", ErrMalformed)
	}
	if tags["a"] == "" || !strings.Contains(tags["a"], "@") || len(tags["n"]) < 16 || len(tags["n"]) > 64 {
		return Marker{}, fmt.Errorf("%w: address or nonce", ErrMalformed)
	}
	return Marker{Address: strings.ToLower(tags["a"]), Nonce: tags["n"], Sent: time.Unix(t, 0).UTC(), mac: mac}, nil
}

// Verify parses value and checks its MAC and age at now.
func Verify(key []byte, value string, now time.Time) (Marker, error) {
	m, err := Parse(value)
	if err != nil {
		return Marker{}, err
	}
	if !hmac.Equal(m.mac, sum(key, m)) {
		return Marker{}, ErrBadMAC
	}
	if age := now.Sub(m.Sent); age > MaxAge || age < -maxSkew {
		return Marker{}, fmt.Errorf("%w: made %s", ErrStale, m.Sent.Format(time.RFC3339))
	}
	return m, nil
}

// Message is the probe mail: readable for the holder, who finds it in the
// shared mailbox, and carrying the marker.
func Message(m Marker, from, hostname string) []byte {
	var b strings.Builder
	date := m.Sent.Format(time.RFC1123Z)
	fmt.Fprintf(&b, "From: dualmx forward probe <%s>\r\n", from)
	fmt.Fprintf(&b, "To: <%s>\r\n", m.Address)
	fmt.Fprintf(&b, "Subject: dualmx forward test for %s (%s)\r\n", m.Address, m.Nonce[:8])
	fmt.Fprintf(&b, "Date: %s\r\n", date)
	fmt.Fprintf(&b, "Message-ID: <probe.%s@%s>\r\n", m.Nonce, hostname)
	fmt.Fprintf(&b, "%s: %s\r\n", Field, m.Value())
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "This is a test message sent by the mail administrators at %s.\r\n", date)
	b.WriteString("It travelled through the old mail host and its forward into Microsoft 365,\r\n")
	b.WriteString("which shows that mail for this address reaches the shared mailbox.\r\n")
	b.WriteString("You can delete it; there is no need to reply.\r\n")
	return []byte(b.String())
}
