// SPDX-License-Identifier: MIT

package provisioning

import (
	"strings"
	"testing"
)

const base = `domain: example.nl
licence: O365_BUSINESS_PREMIUM
welcome:
  from: ithelp@example.nl
  help: ithelp@example.nl
`

func TestParseRefusesBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown top key", base + "licens: X\n", "desired.yaml:6: licens: unknown key"},
		{"unknown person key", base + "people:\n  anna:\n    given_name: Anna\n    surname: Vries\n    private_email: a@b.nl\n    mail: x\n",
			"desired.yaml:11: people.anna.mail: unknown key"},
		{"typo in until", base + "people:\n  a:\n    given_name: A\n    surname: B\n    private_email: a@b.nl\nfunctions:\n  - address: s@example.nl\n    name: S\n    holders:\n      - person: a\n        from: 2026-01-01\n        untill: 2026-02-01\n",
			"desired.yaml:17: functions[0].holders[0].untill: unknown key"},
		{"duplicate key", base + "domain: other.nl\n", "desired.yaml:6: domain: duplicate key"},
		{"unknown holder", base + "functions:\n  - address: s@example.nl\n    name: S\n    holders:\n      - person: ghost\n        from: 2026-01-01\n",
			"desired.yaml:10: functions[0].holders[0].person: unknown person \"ghost\""},
		{"bad date", base + "people:\n  a:\n    given_name: A\n    surname: B\n    private_email: a@b.nl\nfunctions:\n  - address: s@example.nl\n    name: S\n    holders:\n      - person: a\n        from: 1 maart\n",
			"desired.yaml:16: functions[0].holders[0].from: \"1 maart\" is not a date"},
		{"until before from", base + "people:\n  a:\n    given_name: A\n    surname: B\n    private_email: a@b.nl\nfunctions:\n  - address: s@example.nl\n    name: S\n    holders:\n      - person: a\n        from: 2026-03-01\n        until: 2026-02-01\n",
			"until: 2026-02-01 is before from 2026-03-01"},
		{"function outside domain", base + "functions:\n  - address: s@other.nl\n    name: S\n", "is not in the domain example.nl"},
		{"missing licence", "domain: example.nl\nwelcome:\n  from: a@example.nl\n  help: a@example.nl\n", "licence: required"},
		{"missing welcome", "domain: example.nl\nlicence: X\n", "welcome: required"},
		{"bad usage location", base + "usage_location: Nederland\n", "not a two-letter country code"},
		{"bad language", base + "welcome2: x\n", "welcome2: unknown key"},
		{"collision", base + "people:\n  anna:\n    given_name: Anna\n    surname: de Vries\n    private_email: a@b.nl\n  anna2:\n    given_name: Anna\n    surname: De Vries\n    private_email: c@d.nl\n",
			"desired.yaml:11: people.anna2: account anna.devries@example.nl is also the account of anna (line 7); give one of them account: (e.g. anna.devries2)"},
		{"bad override", base + "people:\n  a:\n    given_name: A\n    surname: B\n    private_email: a@b.nl\n    account: A B\n", "people.a.account: \"A B\" may only contain"},
		{"not yaml", "domain: [\n", "desired.yaml: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("desired.yaml", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseCollisionSettledByOverride(t *testing.T) {
	d, err := Parse("d.yaml", []byte(base+"people:\n  anna:\n    given_name: Anna\n    surname: de Vries\n    private_email: a@b.nl\n  anna2:\n    given_name: Anna\n    surname: De Vries\n    private_email: c@d.nl\n    account: anna.devries2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Person("anna2").UPN != "anna.devries2@example.nl" || d.Person("anna").UPN != "anna.devries@example.nl" {
		t.Errorf("upns %s %s", d.Person("anna").UPN, d.Person("anna2").UPN)
	}
	if d.UsageLocation != "NL" || d.TimeZone.String() != "Europe/Amsterdam" || d.Welcome.Language != "nl" {
		t.Errorf("defaults: %s %s %s", d.UsageLocation, d.TimeZone, d.Welcome.Language)
	}
}

func TestAccountName(t *testing.T) {
	keep, drop := Naming{Particles: ParticlesKeep}, Naming{Particles: ParticlesDrop}
	for _, tc := range []struct {
		given, surname string
		n              Naming
		want           string
	}{
		{"Anna", "de Vries", keep, "anna.devries"},
		{"Anna", "de Vries", drop, "anna.vries"},
		{"Bert", "van der Berg", keep, "bert.vanderberg"},
		{"Bert", "van der Berg", drop, "bert.berg"},
		{"Jurriën", "'t Hart", keep, "jurrien.thart"},
		{"Jurriën", "'t Hart", drop, "jurrien.hart"},
		{"Jan-Willem", "Jansen-de Vries", keep, "jan-willem.jansen-devries"},
		{"Anne Marie", "Müller", keep, "annemarie.muller"},
		{"Zoë", "Çelik", keep, "zoe.celik"},
		{"Søren", "Groß", keep, "soren.gross"},
		{"IJsbrand", "Ĳzerman", keep, "ijsbrand.ijzerman"},
		{"J.W.", "D'Ancona", keep, "jw.dancona"},
		{"Éva", " van  den  Heuvel ", keep, "eva.vandenheuvel"},
		{"Piet", "Van", drop, "piet.van"}, // a surname that is only a particle keeps it
		{"Kees", "-de- -Boer-", keep, "kees.de-boer"},
	} {
		got, err := AccountName(tc.given, tc.surname, tc.n)
		if err != nil || got != tc.want {
			t.Errorf("AccountName(%q, %q, %s) = %q, %v; want %q", tc.given, tc.surname, tc.n.Particles, got, err, tc.want)
		}
	}
	if _, err := AccountName("李", "王", keep); err == nil {
		t.Error("a name with nothing left must be refused (set account:)")
	}
}

func TestPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		pw, err := newPassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != 20 || !strings.ContainsAny(pw, pwUpper) || !strings.ContainsAny(pw, pwLower) ||
			!strings.ContainsAny(pw, pwDigit) || !strings.ContainsAny(pw, pwSymbol) || strings.ContainsAny(pw, "0O1lI") {
			t.Errorf("weak or ambiguous password %q", pw)
		}
		if seen[pw] {
			t.Errorf("repeated password")
		}
		seen[pw] = true
	}
}

func TestWelcomeTemplates(t *testing.T) {
	d, err := Parse("d.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	data := WelcomeData{GivenName: "Anna", SignIn: "anna.devries@example.nl", Password: "PW-123", HelpAddress: "ithelp@example.nl", Organisation: "HGP"}
	for _, tc := range []struct{ lang, subject, phrase string }{
		{"nl", "Uw account voor HGP", "Tijdelijk wachtwoord:  PW-123"},
		{"en", "Your account at HGP", "Temporary password:  PW-123"},
	} {
		m, err := renderWelcome(d, tc.lang, data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != tc.subject || !strings.Contains(m.Body, tc.phrase) || !strings.Contains(m.Body, "anna.devries@example.nl") ||
			!strings.Contains(m.Body, "ithelp@example.nl") || !strings.Contains(m.Body, "office.com") || m.HTML {
			t.Errorf("%s: %+v", tc.lang, m)
		}
	}
	dir := t.TempDir()
	html := dir + "/w.html"
	writeFile(t, html, "Subject: Welkom {{.GivenName}}\n\n<p>Wachtwoord: {{.Password}}</p><p>{{.Organisation}}</p>")
	d.Welcome.Templates = map[string]string{"nl": html}
	data.Organisation = "<Kerk & Co>"
	m, err := renderWelcome(d, "nl", data)
	if err != nil {
		t.Fatal(err)
	}
	if !m.HTML || m.Subject != "Welkom Anna" || !strings.Contains(m.Body, "&lt;Kerk &amp; Co&gt;") {
		t.Errorf("html template: %+v", m)
	}
	writeFile(t, html, "Welkom\n\n{{.Nope}}")
	if err := checkTemplates(d); err == nil {
		t.Error("a template without a Subject line passed the check")
	}
	writeFile(t, html, "Subject: x\n\n{{.Nope}}")
	if err := checkTemplates(d); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Errorf("unknown field: %v", err)
	}
}
