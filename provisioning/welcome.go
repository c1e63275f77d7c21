// SPDX-License-Identifier: MIT

package provisioning

import (
	"bytes"
	"crypto/rand"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"math/big"
	"os"
	"strings"
	texttemplate "text/template"
)

// Languages are the languages of the built-in welcome mails; Dutch first,
// as the organisation writes to its members in Dutch.
var Languages = []string{"nl", "en"}

//go:embed templates/welcome.*.txt
var builtinTemplates embed.FS

// WelcomeData is what a welcome template can use.
type WelcomeData struct {
	GivenName, DisplayName string
	SignIn                 string // the UPN
	Password               string
	HelpAddress            string
	Organisation, Domain   string
}

// WelcomeMail is a rendered welcome mail.
type WelcomeMail struct {
	Subject, Body string
	HTML          bool
}

// renderWelcome fills the template of lang: the file's replacement if it
// names one, else the built-in one. A template starts with a
// "Subject: ..." line and a blank line, then the body.
func renderWelcome(d *Desired, lang string, data WelcomeData) (WelcomeMail, error) {
	src, html := "", false
	if path := d.Welcome.Templates[lang]; path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return WelcomeMail{}, fmt.Errorf("welcome template: %w", err)
		}
		src, html = string(b), strings.HasSuffix(strings.ToLower(path), ".html") || strings.HasSuffix(strings.ToLower(path), ".htm")
	} else {
		b, err := builtinTemplates.ReadFile("templates/welcome." + lang + ".txt")
		if err != nil {
			return WelcomeMail{}, fmt.Errorf("no built-in welcome template for %q", lang)
		}
		src = string(b)
	}
	subjLine, body, ok := strings.Cut(strings.ReplaceAll(src, "\r\n", "\n"), "\n\n")
	if !ok || !strings.HasPrefix(subjLine, "Subject:") {
		return WelcomeMail{}, fmt.Errorf("welcome template for %s: want a \"Subject: ...\" line, a blank line, then the body", lang)
	}
	subject, err := execText("subject", strings.TrimSpace(strings.TrimPrefix(subjLine, "Subject:")), data)
	if err != nil {
		return WelcomeMail{}, err
	}
	var out bytes.Buffer
	if html {
		t, err := htmltemplate.New("welcome").Option("missingkey=error").Parse(body)
		if err != nil {
			return WelcomeMail{}, fmt.Errorf("welcome template: %w", err)
		}
		if err := t.Execute(&out, data); err != nil {
			return WelcomeMail{}, fmt.Errorf("welcome template: %w", err)
		}
	} else {
		s, err := execText("body", body, data)
		if err != nil {
			return WelcomeMail{}, err
		}
		out.WriteString(s)
	}
	return WelcomeMail{Subject: subject, Body: out.String(), HTML: html}, nil
}

func execText(name, src string, data WelcomeData) (string, error) {
	t, err := texttemplate.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("welcome template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("welcome template %s: %w", name, err)
	}
	return b.String(), nil
}

// checkTemplates renders every template the file uses with dummy data, so
// a broken template stops the plan instead of the apply half-way.
func checkTemplates(d *Desired) error {
	langs := map[string]bool{d.Welcome.Language: true}
	for _, p := range d.People {
		if p.Language != "" {
			langs[p.Language] = true
		}
	}
	for l := range langs {
		if _, err := renderWelcome(d, l, WelcomeData{GivenName: "x", DisplayName: "x", SignIn: "x@x", Password: "x", HelpAddress: "x@x",
			Organisation: "x", Domain: "x"}); err != nil {
			return err
		}
	}
	return nil
}

// Password alphabets leave out characters people misread when typing from
// a mail: 0/O, 1/l/I.
const (
	pwUpper  = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	pwLower  = "abcdefghijkmnopqrstuvwxyz"
	pwDigit  = "23456789"
	pwSymbol = "-_!#%+=?"
)

// newPassword returns a random temporary password of 20 characters with
// every class present, well above Entra's complexity rule (3 of 4 classes,
// 8+ characters).
func newPassword() (string, error) {
	all := pwUpper + pwLower + pwDigit + pwSymbol
	classes := []string{pwUpper, pwLower, pwDigit, pwSymbol}
	b := make([]byte, 20)
	for i := range b {
		set := all
		if i < len(classes) {
			set = classes[i]
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		if err != nil {
			return "", err
		}
		b[i] = set[n.Int64()]
	}
	// Shuffle so the classes are not always in the first four places.
	for i := len(b) - 1; i > 0; i-- {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", err
		}
		j := n.Int64()
		b[i], b[j] = b[j], b[i]
	}
	return string(b), nil
}
