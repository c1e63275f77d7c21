// SPDX-License-Identifier: MIT

package provisioning

import (
	"fmt"
	"strings"

	"github.com/dualmx/dualmx/m365"
)

// Naming holds the file's choices for account names.
type Naming struct {
	// Particles is ParticlesKeep or ParticlesDrop.
	Particles string
}

// Values of Naming.Particles.
const (
	// ParticlesKeep writes Dutch surname particles together with the
	// surname: "de Vries" → devries, "van der Berg" → vanderberg. This is
	// the default, because dropping them merges different families
	// (de Vries, Vries) and people look for their name as they write it.
	ParticlesKeep = "keep"
	// ParticlesDrop leaves leading particles out: "de Vries" → vries.
	ParticlesDrop = "drop"
)

// particles are the words that can open a Dutch (or Flemish, French,
// German) surname and are not part of the family name proper.
var particles = map[string]bool{
	"van": true, "de": true, "der": true, "den": true, "het": true, "'t": true, "t": true, "ter": true, "ten": true, "te": true,
	"in": true, "op": true, "onder": true, "over": true, "uit": true, "aan": true, "bij": true, "voor": true, "tot": true,
	"'s": true, "s": true, "la": true, "le": true, "les": true, "du": true, "des": true, "da": true, "di": true, "del": true,
	"della": true, "von": true, "zu": true, "zum": true, "zur": true, "d'": true, "l'": true,
}

// AccountName returns the local part of a person's account,
// firstname.lastname, by these rules, in order:
//
//  1. Letters lose their diacritics (Jurriën → jurrien, Çelik → celik);
//     ß, æ, œ, ø, ł, đ, þ and ĳ become ss, ae, oe, o, l, d, th and ij.
//  2. Everything is lower case.
//  3. Surname particles (van, de, der, 't, ...) are kept and written
//     together with the surname (de Vries → devries), unless the file
//     says naming.particles: drop, which leaves leading particles out.
//  4. Spaces, apostrophes and dots are removed (Anne Marie → annemarie,
//     't Hart → thart); hyphens stay (Jan-Willem → jan-willem,
//     Jansen-de Vries → jansen-devries); any other character is dropped.
//  5. Given name and surname are joined with one dot.
//
// The result uses only a-z, 0-9, '-' and '.', which Entra accepts in a
// UPN. Two people who come out the same are not told apart by a suffix:
// the file is refused and one of them gets account: in the file, so that
// adding a namesake later never renames anyone (see Parse).
func AccountName(given, surname string, n Naming) (string, error) {
	g := namePart(given)
	s := surname
	if n.Particles == ParticlesDrop {
		s = dropParticles(s)
	}
	sn := namePart(s)
	if g == "" || sn == "" {
		return "", fmt.Errorf("%w from %q %q", errNoName, given, surname)
	}
	local := g + "." + sn
	if len(local) > 64 {
		return "", fmt.Errorf("account name %s is longer than 64 characters", local)
	}
	return local, nil
}

func dropParticles(s string) string {
	words := strings.Fields(s)
	i := 0
	for i < len(words)-1 && particles[strings.ToLower(fold(words[i]))] {
		i++
	}
	return strings.Join(words[i:], " ")
}

// fold removes diacritics and maps the special letters, as Exchange's
// names need too (m365.ASCIIFold).
func fold(s string) string { return m365.ASCIIFold(s) }

func namePart(s string) string {
	s = strings.ToLower(fold(s))
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '-' || r == '‐' || r == '–':
			b.WriteByte('-')
		}
	}
	// Collapse and trim hyphens a removed character may have left next to
	// each other or at an end.
	out := b.String()
	for strings.Contains(out, "--") {
		out = strings.ReplaceAll(out, "--", "-")
	}
	return strings.Trim(out, "-")
}

// checkLocal validates an account: override.
func checkLocal(s string) string {
	if s == "" || len(s) > 64 {
		return "must be 1 to 64 characters"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return "may only contain a-z, 0-9, '.', '-' and '_' (the part before @)"
		}
	}
	if strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return "must not start or end with a dot or have two dots in a row"
	}
	return ""
}
