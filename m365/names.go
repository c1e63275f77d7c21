// SPDX-License-Identifier: MIT

package m365

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// letterMap covers letters that Unicode decomposition does not reduce to
// ASCII.
var letterMap = map[rune]string{
	'ß': "ss", 'æ': "ae", 'Æ': "AE", 'œ': "oe", 'Œ': "OE", 'ø': "o", 'Ø': "O", 'ł': "l", 'Ł': "L",
	'đ': "d", 'Đ': "D", 'ð': "d", 'Ð': "D", 'þ': "th", 'Þ': "Th", 'ĳ': "ij", 'Ĳ': "IJ", 'ı': "i",
}

// ASCIIFold removes diacritics (Financiën → Financien, Çelik → Celik) and
// writes ß, æ, œ, ø, ł, đ, þ and ĳ as ASCII; case is kept and any other
// character is left as it is.
func ASCIIFold(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		if m, ok := letterMap[r]; ok {
			b.WriteString(m)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// maxMailboxName is New-Mailbox's limit on Name: "The maximum length is 64
// characters."
const maxMailboxName = 64

// MailboxName is the Name a shared mailbox gets for a display name. The
// New-Mailbox page: Name is at most 64 characters, and "In the cloud-based
// service, many special characters aren't allowed in the Name value (for
// example, ö, ü, or ä)". So letters are folded to ASCII and what is left
// of the display name is kept to letters, digits, spaces and - _ . ';
// a name with nothing left falls back to the alias.
func MailboxName(displayName, alias string) string {
	var b strings.Builder
	space := false
	for _, r := range ASCIIFold(displayName) {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-_.'", r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteRune(r)
			space = false
		default:
			space = true
		}
	}
	name := b.String()
	if name == "" {
		name = alias
	}
	if len(name) > maxMailboxName {
		name = strings.TrimSpace(name[:maxMailboxName])
	}
	return name
}

// uniqueMailboxName is name with the alias added, "Financien (financien)",
// cut so that the whole stays within New-Mailbox's 64 characters.
func uniqueMailboxName(name, alias string) string {
	suffix := " (" + alias + ")"
	if len(suffix) >= maxMailboxName {
		return MailboxName(alias, alias)
	}
	if len(name)+len(suffix) > maxMailboxName {
		name = strings.TrimSpace(name[:maxMailboxName-len(suffix)])
	}
	return name + suffix
}
