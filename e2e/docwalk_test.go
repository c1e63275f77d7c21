// SPDX-License-Identifier: MIT

package e2e

// docs/microsoft-365.md walks an admin from an empty tenant to a finished
// migration, command by command, with what each prints. TestDocWalk runs
// the commands that document shows, in its order, with the built binary
// against the fake tenant, and holds each output against the document, so
// the two cannot drift apart.
//
// A block the test runs is marked in the document with an HTML comment,
// <!-- walk: NAME -->, right before its fence; NAME picks what the tenant
// and the old host must hold first (walkSteps). In a block, a line "$
// dualmx ARGS" is a command and the lines up to the next one are its
// output. In the expected output "…" stands for any text within a line,
// and a line that starts and ends with "…" for any number of lines. Only
// flags the document cannot show are added to a command (walkFlags): a name
// server on loopback, --password-file where a person would type, the old
// IMAP host on loopback; a command that asks a question runs on a terminal,
// where the test types the answer.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/dualmx/dualmx/internal/dnstest"
	"github.com/dualmx/dualmx/internal/psttest"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/m365/m365test"
)

const walkDoc = "../docs/microsoft-365.md"

// walkBlock is one marked code block of the document.
type walkBlock struct {
	name string
	line int // of the marker
	cmds []walkCmd
}

type walkCmd struct {
	args []string // after "dualmx"
	want []string // the output lines shown
}

var walkMarker = regexp.MustCompile(`^<!-- walk: ([a-z0-9-]+) -->$`)

// parseWalk reads the marked blocks. Every fenced block of the document
// that shows a "$ dualmx" command must be marked, or carry <!-- walk: no
// (WHY) --> to say why the test cannot run it.
func parseWalk(t *testing.T, doc string) []walkBlock {
	t.Helper()
	lines := strings.Split(doc, "\n")
	var out []walkBlock
	pending, skip := "", false
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if m := walkMarker.FindStringSubmatch(l); m != nil {
			pending = m[1]
			continue
		}
		if strings.HasPrefix(l, "<!-- walk: no (") {
			skip = true
			continue
		}
		if !strings.HasPrefix(l, "```") {
			continue
		}
		start, indent := i, lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " "))]
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, strings.TrimPrefix(lines[i], indent))
		}
		shows := false
		for _, b := range body {
			shows = shows || strings.HasPrefix(b, "$ dualmx ")
		}
		switch {
		case pending != "":
			b := walkBlock{name: pending, line: start}
			for _, s := range body {
				if strings.HasPrefix(s, "$ dualmx ") {
					b.cmds = append(b.cmds, walkCmd{args: splitArgs(t, strings.TrimPrefix(s, "$ dualmx "))})
					continue
				}
				if len(b.cmds) == 0 {
					t.Fatalf("%s:%d: the walk block %s starts with output, not a command", walkDoc, start+1, pending)
				}
				c := &b.cmds[len(b.cmds)-1]
				c.want = append(c.want, s)
			}
			out = append(out, b)
		case shows && !skip:
			t.Errorf("%s:%d: a block shows a dualmx command but is not part of the walk: mark it <!-- walk: NAME --> "+
				"(and give NAME a step in docwalk_test.go) or <!-- walk: no (WHY) -->", walkDoc, start+1)
		}
		pending, skip = "", false
	}
	return out
}

// splitArgs splits a command line shell-like: spaces separate, double
// quotes group.
func splitArgs(t *testing.T, s string) []string {
	var out []string
	var cur strings.Builder
	in, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			in, any = !in, true
		case r == ' ' && !in:
			if any {
				out = append(out, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if in {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// walkMatch reports whether got is what want shows, "…" standing for any
// text in a line and a line beginning and ending with "…" for any lines.
func walkMatch(want, got []string) bool {
	var re strings.Builder
	re.WriteString(`\A`)
	for _, w := range want {
		if strings.HasPrefix(w, "…") && strings.HasSuffix(w, "…") {
			re.WriteString(`(?:[^\n]*\n)*?`)
			continue
		}
		parts := strings.Split(w, "…")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re.WriteString(strings.Join(parts, `[^\n]*?`) + `\n`)
	}
	re.WriteString(`\z`)
	return regexp.MustCompile(re.String()).MatchString(strings.Join(got, "\n") + "\n")
}

// Both the document and the output are normalised the same way for what
// differs from run to run: dates, times, rates, batch names' stamps.
var walkVolatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{8}t\d{6}`), "<stamp>"},
	{regexp.MustCompile(`\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?`), "<date>"},
	{regexp.MustCompile(`\b\d{2}:\d{2}(:\d{2})?Z?\b`), "<time>"},
	{regexp.MustCompile(`\d+ messages/minute`), "<n> messages/minute"},
}

func normalise(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		for _, v := range walkVolatile {
			l = v.re.ReplaceAllString(l, v.with)
		}
		out = append(out, strings.TrimRight(l, " "))
	}
	return out
}

// walk is the state of the walk: the tenant, the old host, the name
// server the DNS checks ask.
type walk struct {
	*tenantEnv
	t          *testing.T
	nameserver string
	imapPort   string
	imap       *imapclient.Client
	pwFile     string
	pstFile    string
	pstDoc     string // the PST's path as the document shows it
}

// walkSteps prepare the tenant before each marked block, as the real world
// would have moved on between two commands of the document.
var walkSteps = map[string]func(w *walk){
	// Section 3: an app that still lacks some of what it needs.
	"check": func(w *walk) {
		w.tn.SetAppRoles(m365test.GraphAudience, "User.ReadWrite.All", "Organization.Read.All", "RoleManagement.Read.Directory")
		w.tn.SetDirectoryRoles(m365.RoleExchangeRecipientAdministrator)
	},
	// Section 4, step 2 onwards: everything granted.
	"address": func(w *walk) {
		w.tn.SetAppRoles(m365test.GraphAudience, m365test.AllGraphRoles...)
		w.tn.SetDirectoryRoles(m365.RoleUserAdministrator, m365.RoleExchangeAdministrator)
		w.tn.SetPremium(true)
	},
	"provision":     func(*walk) {},
	"access":        func(*walk) {},
	"setup":         func(*walk) {},
	"dns-missing":   func(*walk) {},
	"dns-published": func(w *walk) { w.publishDKIM() },
	"setup-again": func(w *walk) {
		w.tn.LookUpDKIMAt(w.nameserver)
	},
	"teardown": func(w *walk) {
		w.tn.AddMigrationEndpoint(m365test.MigrationEndpoint{Name: "dualmx-imap-mail.solcon.nl-993-ssl", RemoteServer: "mail.solcon.nl", Security: "Ssl", Port: 993})
		w.tn.AddMigrationBatch(m365test.MigrationBatch{Name: "dualmx-financien-at-hervormdputten-nl-20260501t140012",
			Endpoint: "dualmx-imap-mail.solcon.nl-993-ssl", Status: "Completed", User: "financien@" + tenantDomain})
	},
	// Section 8.
	"import-copy": func(w *walk) {
		w.tn.AddSharedMailbox("scriba@"+tenantDomain, "Scriba")
		w.tn.SetMaxMessageSize(5 << 20)
		w.fillOldHost()
	},
	"import-status":          func(*walk) {},
	"import-microsoft-start": func(*walk) {},
	"import-microsoft": func(w *walk) {
		for _, b := range w.tn.Batches() {
			if strings.HasPrefix(b, "dualmx-anna-devries-at-") {
				w.tn.SetMigrationBatch(b, "Synced", "", 2210, 2210)
			}
		}
	},
	"forwarding": func(*walk) {},
	"import-pst": func(w *walk) { w.writePST() },
}

// walkFlags adds to a command what the document cannot show, and says
// which shown lines a person would see that the test, not being at a
// terminal, does not. A command with a question is run on a terminal
// instead, as the document shows it, where the answer is typed.
func (w *walk) walkFlags(args []string) (run []string, prompts []string, question, answer string) {
	run = append([]string{}, args...)
	cmd := strings.Join(args[:min(2, len(args))], " ")
	switch cmd {
	case "m365 setup", "dns check":
		run = append(run, "--nameserver", w.nameserver)
	case "m365 teardown":
		run = append(run, "--nameserver", w.nameserver)
		if args[2] == "--apply" {
			// The cutover of the walk is done on paper only.
			run = append(run, "--force", "--reason", "docs walk")
		}
	case "provision apply":
		question, answer = "Apply these changes? Type yes to go on: ", "yes\n"
	case "import start":
		if args[2] == "scriba@"+tenantDomain {
			for i := range run {
				if run[i] == "imap.solcon.nl" {
					run[i] = "127.0.0.1"
				}
			}
			run = append(run, "--imap-port", w.imapPort, "--imap-tls", "none")
		}
		run = append(run, "--password-file", w.pwFile)
		prompts = append(prompts, "IMAP password for ")
	case "import pst":
		run[2] = w.pstFile
	}
	return run, prompts, question, answer
}

// shown is the output as the document would show it: the test's paths as
// the admin's, the loopback old host as the real one, the program's log
// lines (slog, on stderr) left out. Of the progress lines of an import only
// each folder's last stays: the others come every ten seconds, so how many
// there are depends on the machine.
func (w *walk) shown(args []string, stdout, stderr string) []string {
	out := stdout
	for _, l := range strings.SplitAfter(stderr, "\n") {
		if !strings.HasPrefix(l, "time=") {
			out += l
		}
	}
	repl := []string{w.cfgPath, "/etc/dualmx/dualmx.yaml", w.desired, "/etc/dualmx/provision.yaml"}
	if w.pstFile != "" {
		repl = append(repl, w.pstFile, w.pstDoc)
	}
	if len(args) > 1 && args[0] == "import" && w.imapPort != "" {
		repl = append(repl, "127.0.0.1:"+w.imapPort, "imap.solcon.nl", "127.0.0.1", "imap.solcon.nl")
	}
	out = strings.NewReplacer(repl...).Replace(out)
	return lastProgress(strings.Split(strings.TrimSuffix(out, "\n"), "\n"))
}

var progressLine = regexp.MustCompile(`^(.+ -> .+): \d+ of \d+ moved, \d+ skipped \(`)

// lastProgress keeps, of consecutive progress lines of one folder, the last.
func lastProgress(lines []string) []string {
	var out []string
	for i, l := range lines {
		if m := progressLine.FindStringSubmatch(l); m != nil && i+1 < len(lines) {
			if n := progressLine.FindStringSubmatch(lines[i+1]); n != nil && n[1] == m[1] {
				continue
			}
		}
		out = append(out, l)
	}
	return out
}

func (w *walk) publishDKIM() {
	zone := dnstest.Start(w.t, "selector1._domainkey.hervormdputten.nl. 3600 IN CNAME selector1-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft.\n"+
		"selector2._domainkey.hervormdputten.nl. 3600 IN CNAME selector2-hervormdputten-nl._domainkey.hervormdputten.n-v1.dkim.mail.microsoft.\n")
	w.nameserver = zone.Addr()
}

// fillOldHost gives the old host the folders and messages section 8 shows.
func (w *walk) fillOldHost() {
	port, c := oldIMAPHost(w.t)
	w.imapPort, w.imap = port, c
	appendMsg(w.t, c, "INBOX", "1@example.org", "Rooster", "", imap.FlagSeen, imap.FlagFlagged)
	appendMsg(w.t, c, "INBOX", "2@example.org", "Kerkdienst", "")
	appendRaw(w.t, c, "INBOX", photoMessage(6<<20), imap.FlagSeen)
	appendMsg(w.t, c, "Verzonden", "4@example.org", "Antwoord", "", imap.FlagSeen)
	appendMsg(w.t, c, "Archief/2019", "5@example.org", "Jaarverslag", "", imap.FlagSeen)
}

func appendRaw(t *testing.T, c *imapclient.Client, folder, msg string, flags ...imap.Flag) {
	t.Helper()
	cmd := c.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: received})
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// photoMessage is the minutes with an attachment of n bytes: too large for
// a mailbox whose limit is below it.
func photoMessage(n int) string {
	var data strings.Builder
	for data.Len() < n*4/3 {
		data.WriteString(strings.Repeat("QUJD", 19) + "\r\n")
	}
	return "From: Anna <anna@example.org>\r\nTo: scriba@hervormdputten.nl\r\nSubject: Notulen met foto's\r\nMessage-ID: <3@example.org>\r\n" +
		"Date: Mon, 4 Mar 2019 10:00:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" +
		"--x\r\nContent-Type: text/plain\r\n\r\nDe notulen.\r\n" +
		"--x\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"foto's.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		data.String() + "--x--\r\n"
}

func (w *walk) writePST() {
	hdr := func(id, subject string) string {
		return "Received: from mx.example.org by mail.solcon.nl; Mon, 4 Mar 2019 09:30:00 +0000\r\nFrom: Anna <anna@example.org>\r\n" +
			"Subject: " + subject + "\r\nMessage-ID: <" + id + ">\r\n\r\n"
	}
	b, err := psttest.Build("Persoonlijke mappen", []psttest.Folder{
		{Name: "Inbox", Messages: []psttest.Message{
			{Headers: hdr("p1@x", "Rooster"), Subject: "Rooster", Body: "maart\r\n", Read: true},
			{Headers: hdr("p2@x", "Collecte"), Subject: "Collecte", Body: "april\r\n"}},
			Folders: []psttest.Folder{{Name: "Kerkenraad", Messages: []psttest.Message{
				{Headers: hdr("p3@x", "Vergadering"), Subject: "Vergadering", Body: "dinsdag\r\n", Read: true}}}}},
		{Name: "Sent Items", Messages: []psttest.Message{{Headers: hdr("p4@x", "Antwoord"), Subject: "Antwoord", Body: "goed\r\n", Read: true}}},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.pstFile = filepath.Join(w.t.TempDir(), "scriba-2019.pst")
	if err := os.WriteFile(w.pstFile, b, 0o600); err != nil {
		w.t.Fatal(err)
	}
}

func TestDocWalk(t *testing.T) {
	raw, err := os.ReadFile(walkDoc)
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseWalk(t, string(raw))
	if len(blocks) == 0 {
		t.Fatal("no walk blocks in " + walkDoc)
	}
	cutover := "cutover:\n  domain: hervormdputten.nl\n  old_mx: [mx.solcon.nl]\n"
	w := &walk{tenantEnv: newTenantEnv(t, tenantOptions{desired: walkDesired, extraConfig: cutover}), t: t, pstDoc: "/srv/oud/scriba-2019.pst"}
	w.tn.SetArcSealers("forwarder.example")
	w.tn.SetDomainDNS(tenantDomain, m365test.DomainDNS{MX: "hervormdputten-nl.mail.protection.outlook.com", VerificationTXT: "MS=ms31415926"})
	w.nameserver = dnstest.Start(t, "").Addr()
	w.tn.LookUpDKIMAt(w.nameserver)
	w.pwFile = passwordFile(t)
	dump := os.Getenv("DOCWALK_DUMP")
	var dumped strings.Builder
	for _, b := range blocks {
		step, ok := walkSteps[b.name]
		if !ok {
			t.Fatalf("%s:%d: walk block %q has no step in docwalk_test.go", walkDoc, b.line+1, b.name)
		}
		step(w)
		for _, c := range b.cmds {
			run, prompts, question, answer := w.walkFlags(c.args)
			var stdout, stderr string
			var code int
			if question != "" {
				stdout, code = w.onTerminal(question, answer, run...)
			} else {
				stdout, stderr, code = w.m365(run...)
			}
			got := w.shown(c.args, stdout, stderr)
			var want []string
			for len(c.want) > 0 && c.want[len(c.want)-1] == "" {
				// A blank line before the next command is the document's.
				c.want = c.want[:len(c.want)-1]
			}
			for _, l := range c.want {
				prompt := false
				for _, p := range prompts {
					prompt = prompt || strings.HasPrefix(l, p)
				}
				if !prompt {
					want = append(want, l)
				}
			}
			fmt.Fprintf(&dumped, "<!-- walk: %s -->\n$ dualmx %s   (exit %d)\n%s\n", b.name, strings.Join(c.args, " "), code, strings.Join(got, "\n"))
			if !walkMatch(normalise(lastProgress(want)), normalise(got)) {
				t.Errorf("%s:%d (%s): dualmx %s prints (exit %d):\n%s\n\nthe document shows:\n%s", walkDoc, b.line+1, b.name,
					strings.Join(c.args, " "), code, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		}
	}
	if dump != "" {
		os.WriteFile(dump, []byte(dumped.String()), 0o600)
	}
}

const walkDesired = `domain: hervormdputten.nl
organisation: Hervormde Gemeente Putten
licence: O365_BUSINESS_PREMIUM
welcome:
  from: ithelp@hervormdputten.nl
  help: ithelp@hervormdputten.nl
people:
  anna:
    given_name: Anna
    surname: de Vries
    private_email: anna@private.example
functions:
  - address: financien@hervormdputten.nl
    name: Financiën
    holders:
      - person: anna
        from: 2026-01-01
`
