// SPDX-License-Identifier: MIT

package provisioning

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // the file names a zone; the host may have no zoneinfo

	"go.yaml.in/yaml/v3"
)

// Desired is the desired-state file: who exists, which functions exist,
// and who holds each function when.
type Desired struct {
	File         string
	Domain       string
	Organisation string
	// Licence is the SKU part number (e.g. O365_BUSINESS_PREMIUM) given to
	// every personal account; it is resolved to the tenant's SKU ID.
	Licence       string
	UsageLocation string
	TimeZone      *time.Location
	Naming        Naming
	Welcome       Welcome
	People        []*Person   // sorted by key
	Functions     []*Function // in file order
}

// Welcome configures the welcome mail.
type Welcome struct {
	From     string // the mailbox that sends it
	Help     string // the address people write to for help
	Language string // nl or en
	// Templates replaces the built-in template of a language with a file;
	// a .html file is an html/template, anything else a text/template.
	Templates map[string]string
}

// Person is one member who gets a personal account.
type Person struct {
	Key          string
	GivenName    string
	Surname      string
	PrivateEmail string
	Language     string // "" means Welcome.Language
	// Account overrides the local part the naming rules would choose.
	Account string
	// UPN is the account's sign-in name, filled in by the naming rules.
	UPN  string
	Line int
}

// DisplayName is how the person appears in the address book.
func (p *Person) DisplayName() string { return strings.TrimSpace(p.GivenName + " " + p.Surname) }

// Function is a role with a shared mailbox (scriba, koster, ...).
type Function struct {
	Address string
	Name    string
	Holders []Holder
	Line    int
}

// Holder is a person holding a function from a date, and until a date when
// known. Both dates are inclusive, in the file's time zone.
type Holder struct {
	Person string
	From   Date
	Until  *Date
	Line   int
}

// Date is a calendar date.
type Date struct{ Y, M, D int }

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Y, d.M, d.D) }

// Before reports whether d is earlier than e.
func (d Date) Before(e Date) bool {
	if d.Y != e.Y {
		return d.Y < e.Y
	}
	if d.M != e.M {
		return d.M < e.M
	}
	return d.D < e.D
}

// DateOf is the calendar date of t in loc.
func DateOf(t time.Time, loc *time.Location) Date {
	y, m, d := t.In(loc).Date()
	return Date{y, int(m), d}
}

// ParseDate reads YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return Date{}, fmt.Errorf("%q is not a date (want YYYY-MM-DD)", s)
	}
	return Date{t.Year(), int(t.Month()), t.Day()}, nil
}

// Current reports whether h holds the function on day d.
func (h Holder) Current(d Date) bool {
	return !d.Before(h.From) && (h.Until == nil || !h.Until.Before(d))
}

// Expired reports whether h's until date has passed on day d.
func (h Holder) Expired(d Date) bool { return h.Until != nil && h.Until.Before(d) }

// Problem is one mistake in the file, with its line.
type Problem struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (p Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
	}
	if s != "" {
		s += ": "
	}
	if p.Key != "" {
		s += p.Key + ": "
	}
	return s + p.Msg
}

// Problems is every mistake found, reported together so the admin fixes
// the file in one round.
type Problems []Problem

func (ps Problems) Error() string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, "\n")
}

// LoadFile reads and checks a desired-state file.
func LoadFile(path string) (*Desired, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("provisioning: %w", err)
	}
	return Parse(path, b)
}

type parser struct {
	file  string
	probs Problems
}

func (p *parser) fail(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.probs = append(p.probs, Problem{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// mapping returns n's keys, refusing unknown and duplicate ones: a typo in
// "until" must not silently give someone access for ever.
func (p *parser) mapping(n *yaml.Node, path string, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n == nil {
		return out
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "want a mapping")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		if allowed != nil && !contains(allowed, k.Value) {
			p.fail(k, key, "unknown key (known: %s)", strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.fail(k, key, "duplicate key")
			continue
		}
		out[k.Value] = v
	}
	return out
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) str(m map[string]*yaml.Node, path, key string, required bool) string {
	n, ok := m[key]
	if !ok {
		if required {
			p.fail(nil, join(path, key), "required")
		}
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fail(n, join(path, key), "want a single value")
		return ""
	}
	v := strings.TrimSpace(n.Value)
	if v == "" && required {
		p.fail(n, join(path, key), "must not be empty")
	}
	return v
}

var (
	domainRE  = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
	addressRE = regexp.MustCompile(`^(?i)[a-z0-9._%+'-]+@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
	keyRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
)

// Parse reads a desired-state file from memory; name is used in messages.
func Parse(name string, data []byte) (*Desired, error) {
	p := &parser{file: name}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, Problems{{File: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(root.Content) == 0 {
		return nil, Problems{{File: name, Msg: "empty file"}}
	}
	d := &Desired{File: name}
	top := p.mapping(root.Content[0], "", "domain", "organisation", "licence", "usage_location", "time_zone", "naming", "welcome", "people", "functions")
	d.Domain = strings.ToLower(p.str(top, "", "domain", true))
	if d.Domain != "" && !domainRE.MatchString(d.Domain) {
		p.fail(top["domain"], "domain", "%q is not a domain name", d.Domain)
	}
	d.Organisation = p.str(top, "", "organisation", false)
	d.Licence = p.str(top, "", "licence", true)
	d.UsageLocation = strings.ToUpper(p.str(top, "", "usage_location", false))
	if d.UsageLocation == "" {
		d.UsageLocation = "NL"
	} else if len(d.UsageLocation) != 2 || !isUpperAlpha(d.UsageLocation) {
		p.fail(top["usage_location"], "usage_location", "%q is not a two-letter country code (ISO 3166)", d.UsageLocation)
	}
	tz := p.str(top, "", "time_zone", false)
	if tz == "" {
		tz = "Europe/Amsterdam"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		p.fail(top["time_zone"], "time_zone", "unknown time zone %q", tz)
		loc = time.UTC
	}
	d.TimeZone = loc

	nm := p.mapping(top["naming"], "naming", "particles")
	d.Naming.Particles = ParticlesKeep
	if v := p.str(nm, "naming", "particles", false); v != "" {
		if v != ParticlesKeep && v != ParticlesDrop {
			p.fail(nm["particles"], "naming.particles", "want %s or %s", ParticlesKeep, ParticlesDrop)
		}
		d.Naming.Particles = v
	}

	wm := p.mapping(top["welcome"], "welcome", "from", "help", "language", "templates")
	if top["welcome"] == nil {
		p.fail(nil, "welcome", "required (from: the mailbox that sends welcome mails; help: the help address)")
	}
	d.Welcome.From = strings.ToLower(p.str(wm, "welcome", "from", top["welcome"] != nil))
	d.Welcome.Help = strings.ToLower(p.str(wm, "welcome", "help", top["welcome"] != nil))
	for _, k := range []string{"from", "help"} {
		v := map[string]string{"from": d.Welcome.From, "help": d.Welcome.Help}[k]
		if v != "" && !addressRE.MatchString(v) {
			p.fail(wm[k], "welcome."+k, "%q is not an e-mail address", v)
		}
	}
	d.Welcome.Language = p.str(wm, "welcome", "language", false)
	if d.Welcome.Language == "" {
		d.Welcome.Language = "nl"
	} else if !contains(Languages, d.Welcome.Language) {
		p.fail(wm["language"], "welcome.language", "want one of %s", strings.Join(Languages, ", "))
	}
	tm := p.mapping(wm["templates"], "welcome.templates", Languages...)
	d.Welcome.Templates = map[string]string{}
	for _, lang := range Languages {
		if v := p.str(tm, "welcome.templates", lang, false); v != "" {
			d.Welcome.Templates[lang] = v
		}
	}

	p.people(d, top["people"])
	p.functions(d, top["functions"])
	if len(p.probs) == 0 {
		p.names(d)
	}
	if len(p.probs) > 0 {
		sort.SliceStable(p.probs, func(i, j int) bool { return p.probs[i].Line < p.probs[j].Line })
		return nil, p.probs
	}
	return d, nil
}

func isUpperAlpha(s string) bool {
	for _, c := range s {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func (p *parser) people(d *Desired, n *yaml.Node) {
	if n == nil {
		return
	}
	pm := p.mapping(n, "people")
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		if _, ok := pm[key]; !ok {
			continue // refused as duplicate above
		}
		path := "people." + key
		if !keyRE.MatchString(key) {
			p.fail(n.Content[i], path, "a person's key is lower-case letters, digits, '.', '_' or '-'")
		}
		m := p.mapping(n.Content[i+1], path, "given_name", "surname", "private_email", "language", "account")
		per := &Person{Key: key, Line: n.Content[i].Line,
			GivenName: p.str(m, path, "given_name", true), Surname: p.str(m, path, "surname", true),
			PrivateEmail: p.str(m, path, "private_email", true), Language: p.str(m, path, "language", false),
			Account: p.str(m, path, "account", false)}
		if per.PrivateEmail != "" && !addressRE.MatchString(per.PrivateEmail) {
			p.fail(m["private_email"], path+".private_email", "%q is not an e-mail address", per.PrivateEmail)
		}
		if per.Language != "" && !contains(Languages, per.Language) {
			p.fail(m["language"], path+".language", "want one of %s", strings.Join(Languages, ", "))
		}
		if per.Account != "" {
			if msg := checkLocal(per.Account); msg != "" {
				p.fail(m["account"], path+".account", "%q %s", per.Account, msg)
			}
		}
		d.People = append(d.People, per)
	}
	sort.Slice(d.People, func(i, j int) bool { return d.People[i].Key < d.People[j].Key })
}

func (p *parser) functions(d *Desired, n *yaml.Node) {
	if n == nil {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "functions", "want a list")
		return
	}
	seen := map[string]int{}
	for i, fn := range n.Content {
		path := fmt.Sprintf("functions[%d]", i)
		m := p.mapping(fn, path, "address", "name", "holders")
		f := &Function{Line: fn.Line, Address: strings.ToLower(p.str(m, path, "address", true)), Name: p.str(m, path, "name", true)}
		if f.Address != "" {
			if !addressRE.MatchString(f.Address) {
				p.fail(m["address"], path+".address", "%q is not an e-mail address", f.Address)
			} else if !strings.HasSuffix(f.Address, "@"+d.Domain) {
				p.fail(m["address"], path+".address", "%q is not in the domain %s", f.Address, d.Domain)
			}
			if l, dup := seen[f.Address]; dup {
				p.fail(m["address"], path+".address", "%s is already a function at line %d", f.Address, l)
			}
			seen[f.Address] = fn.Line
		}
		hn := m["holders"]
		if hn != nil && hn.Kind != yaml.SequenceNode {
			p.fail(hn, path+".holders", "want a list")
			hn = nil
		}
		if hn != nil {
			for j, h := range hn.Content {
				hp := fmt.Sprintf("%s.holders[%d]", path, j)
				hm := p.mapping(h, hp, "person", "from", "until")
				hol := Holder{Line: h.Line, Person: p.str(hm, hp, "person", true)}
				if hol.Person != "" && d.person(hol.Person) == nil {
					p.fail(hm["person"], hp+".person", "unknown person %q (not under people:)", hol.Person)
				}
				if v := p.str(hm, hp, "from", true); v != "" {
					dt, err := ParseDate(v)
					if err != nil {
						p.fail(hm["from"], hp+".from", "%v", err)
					}
					hol.From = dt
				}
				if v := p.str(hm, hp, "until", false); v != "" {
					dt, err := ParseDate(v)
					if err != nil {
						p.fail(hm["until"], hp+".until", "%v", err)
					} else if dt.Before(hol.From) {
						p.fail(hm["until"], hp+".until", "%s is before from %s", dt, hol.From)
					}
					hol.Until = &dt
				}
				f.Holders = append(f.Holders, hol)
			}
		}
		d.Functions = append(d.Functions, f)
	}
}

func (d *Desired) person(key string) *Person {
	for _, p := range d.People {
		if p.Key == key {
			return p
		}
	}
	return nil
}

// Person returns the person with this key, or nil.
func (d *Desired) Person(key string) *Person { return d.person(key) }

// names applies the naming rules and refuses collisions: an account name,
// once created, must never move to someone else because a namesake was
// added to the file later, so a clash is for the admin to settle.
func (p *parser) names(d *Desired) {
	byUPN := map[string]*Person{}
	for _, per := range d.People {
		local := per.Account
		if local == "" {
			var err error
			local, err = AccountName(per.GivenName, per.Surname, d.Naming)
			if err != nil {
				p.probs = append(p.probs, Problem{File: p.file, Line: per.Line, Key: "people." + per.Key, Msg: err.Error() + "; set account:"})
				continue
			}
		}
		per.UPN = strings.ToLower(local) + "@" + d.Domain
		if other, ok := byUPN[per.UPN]; ok {
			p.probs = append(p.probs, Problem{File: p.file, Line: per.Line, Key: "people." + per.Key,
				Msg: fmt.Sprintf("account %s is also the account of %s (line %d); give one of them account: (e.g. %s)",
					per.UPN, other.Key, other.Line, suggest(local, byUPN, d.Domain))})
			continue
		}
		for _, f := range d.Functions {
			if f.Address == per.UPN {
				p.probs = append(p.probs, Problem{File: p.file, Line: per.Line, Key: "people." + per.Key,
					Msg: fmt.Sprintf("account %s is the address of function %s (line %d); set account:", per.UPN, f.Name, f.Line)})
			}
		}
		byUPN[per.UPN] = per
	}
}

func suggest(local string, taken map[string]*Person, domain string) string {
	for i := 2; ; i++ {
		c := local + strconv.Itoa(i)
		if _, ok := taken[c+"@"+domain]; !ok {
			return c
		}
	}
}

// errNoName is returned when nothing usable is left of a name.
var errNoName = errors.New("no usable account name")
