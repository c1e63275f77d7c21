// SPDX-License-Identifier: MIT

package deploy

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/dualmx/dualmx/"

// imports maps each package of the repository (by path below the module)
// to the repository packages its non-test files import.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(strings.TrimPrefix(p, "../")))
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			if dep, ok := strings.CutPrefix(path, module); ok && !slices.Contains(out[pkg], dep) {
				out[pkg] = append(out[pkg], dep)
			}
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLayout keeps the arrows of the package map in the README pointing
// one way: a message goes smtpd → spool → queue → vouch → courier, the
// packages below know nothing of those above, cmd/dualmx wires, and only it
// reads the config.
func TestLayout(t *testing.T) {
	deps := imports(t)
	for _, rule := range []struct {
		pkg    string
		not    []string
		reason string
	}{
		{"smtpd", []string{"queue", "courier", "vouch"}, "the SMTP session writes the spool and never dials out"},
		{"spool", []string{"smtpd", "queue", "vouch", "courier"}, "the spool knows nothing of SMTP or delivery"},
		{"courier", []string{"smtpd", "spool", "queue", "vouch"}, "the courier only speaks SMTP to a target"},
		{"vouch", []string{"queue", "spool", "smtpd"}, "vouch is a stage before the courier, called by nothing but the queue's target"},
		{"queue", []string{"smtpd", "vouch"}, "the queue drives the targets it is given"},
		{"dnscheck", []string{"config", "cutover"}, "dnscheck takes plain values; cmd converts the config"},
		{"router", []string{"checklist", "cutover", "spool", "queue"}, "the routing table is below what reads it"},
	} {
		for _, dep := range deps[rule.pkg] {
			if slices.Contains(rule.not, dep) {
				t.Errorf("%s imports %s: %s", rule.pkg, dep, rule.reason)
			}
		}
	}
	// metrics is the bottom: every package may export through it, so it
	// imports none of them (their enumerations come in with metrics.Labels).
	if d := deps["metrics"]; len(d) > 0 {
		t.Errorf("metrics imports %v; it must import no package of the repository", d)
	}
	for pkg, d := range deps {
		if pkg != "cmd/dualmx" && slices.Contains(d, "config") {
			t.Errorf("%s imports config: only cmd/dualmx reads the config and hands plain values on", pkg)
		}
		if slices.Contains(d, "cmd/dualmx") {
			t.Errorf("%s imports cmd/dualmx", pkg)
		}
	}
	if len(deps["smtpd"]) == 0 || len(deps["cmd/dualmx"]) == 0 {
		t.Fatalf("the walk found no imports: %v", deps)
	}
}

// TestFuzzCorpora: every fuzz target has a committed seed corpus in its
// package's testdata/fuzz/FuzzXxx (the house rule for a parser of outside
// input), of more than one input, so plain go test replays them.
func TestFuzzCorpora(t *testing.T) {
	target := regexp.MustCompile(`(?m)^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)`)
	n := 0
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != ".." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range target.FindAllStringSubmatch(string(src), -1) {
			n++
			dir := filepath.Join(filepath.Dir(p), "testdata", "fuzz", m[1])
			if entries, err := os.ReadDir(dir); err != nil || len(entries) < 3 {
				t.Errorf("%s (%s) has %d seeds in %s; commit some that reach its branches", m[1], strings.TrimPrefix(p, "../"), len(entries), strings.TrimPrefix(dir, "../"))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("found only %d fuzz targets", n)
	}
}

// TestREADMELayoutNamesEveryPackage: the README's package map names every
// package of the repository (bench/ stands for its tool).
func TestREADMELayoutNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README has no Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	dirs := map[string]bool{}
	err = filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || d.Name() == "bench") && p != ".." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			dirs[filepath.ToSlash(filepath.Dir(strings.TrimPrefix(p, "../")))] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range dirs {
		if !strings.Contains(layout, "`"+dir+"`") && !strings.Contains(layout, "`"+dir+"/`") {
			t.Errorf("the README's Layout does not name %s", dir)
		}
	}
	if len(dirs) < 30 {
		t.Fatalf("found only %d packages", len(dirs))
	}
}
