// SPDX-License-Identifier: MIT

package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

type instruction struct {
	line      int
	cmd, args string
}

// parseContainerfile joins continuation lines and drops comments.
func parseContainerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(string(b), "\n") {
		trim := strings.TrimSpace(l)
		if cur.Len() == 0 && (trim == "" || strings.HasPrefix(trim, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trim, "\\") {
			cur.WriteString(strings.TrimSuffix(trim, "\\") + " ")
			continue
		}
		cur.WriteString(trim)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestContainerfile: a multi-stage build of the binary with its version
// stamped in (as scripts/dist.sh does), a final image that runs as a
// non-root user, and no secrets baked in.
func TestContainerfile(t *testing.T) {
	ins := parseContainerfile(t, "Containerfile")
	var froms []instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d FROM lines, want a multi-stage build", len(froms))
	}
	if !regexp.MustCompile(`(?i)\sAS\s+build$`).MatchString(froms[0].args) {
		t.Errorf("first stage %q is not named build", froms[0].args)
	}
	// The Go in the build image is the one go.mod asks for.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVer == nil || !strings.Contains(froms[0].args, "golang:"+string(goVer[1])) {
		t.Errorf("build stage %q does not use Go %s from go.mod", froms[0].args, goVer[1])
	}
	final := froms[len(froms)-1]
	if strings.Contains(final.args, "golang") {
		t.Errorf("final stage %q ships the Go toolchain", final.args)
	}

	var build, user, cmdSeen, cgo, versionArg bool
	finalStage := false
	for _, in := range ins {
		if in.line == final.line {
			finalStage = true
		}
		switch in.cmd {
		case "RUN":
			// The binary is built by scripts/dist.sh, as a release is, or
			// by go build with the flags dist.sh uses.
			dist := strings.Contains(in.args, "scripts/dist.sh")
			if !dist && !strings.Contains(in.args, "go build") {
				continue
			}
			build = true
			if dist {
				cgo = strings.Contains(in.args, "--cgo")
			} else {
				cgo = !strings.Contains(in.args, "CGO_ENABLED=0")
				if !strings.Contains(in.args, "./cmd/dualmx") {
					t.Errorf("line %d: go build does not build ./cmd/dualmx", in.line)
				}
			}
			// "dualmx version" in the image names the version it was built
			// from: the VERSION build argument reaches main.version, through
			// dist.sh's --version or -X main.version.
			if !versionArg {
				t.Errorf("line %d: the build step comes before an ARG VERSION in the build stage", in.line)
			}
			stamped := regexp.MustCompile(`\$\{?VERSION\b`)
			switch {
			case dist && !regexp.MustCompile(`--version "?\$\{?VERSION\b`).MatchString(in.args):
				t.Errorf("line %d: scripts/dist.sh is not given --version from the VERSION build argument", in.line)
			case !dist && (!strings.Contains(in.args, "-X main.version=") || !stamped.MatchString(in.args)):
				t.Errorf("line %d: go build does not stamp main.version from the VERSION build argument (-X main.version=$VERSION)", in.line)
			}
		case "ARG":
			if !finalStage && regexp.MustCompile(`^VERSION\b`).MatchString(in.args) {
				versionArg = true
			}
		case "USER":
			if finalStage {
				u, _, _ := strings.Cut(in.args, ":")
				user = u != "" && u != "root" && u != "0"
				if !user {
					t.Errorf("line %d: USER %s is root", in.line, in.args)
				}
			}
		case "ENTRYPOINT", "CMD":
			if finalStage {
				cmdSeen = true
			}
		}
		switch in.cmd {
		case "ARG", "ENV":
			if regexp.MustCompile(`(?i)secret|password|passwd|token|private|_key\b`).MatchString(in.args) {
				t.Errorf("line %d: %s %s looks like a secret baked into the image", in.line, in.cmd, in.args)
			}
		case "COPY", "ADD":
			if regexp.MustCompile(`(?i)\.key\b|secret|\.pem\b|/etc/dualmx`).MatchString(in.args) {
				t.Errorf("line %d: %s %s copies keys or config into the image; mount them instead", in.line, in.cmd, in.args)
			}
			if in.cmd == "ADD" && regexp.MustCompile(`https?://`).MatchString(in.args) {
				t.Errorf("line %d: ADD from a URL", in.line)
			}
		}
	}
	if !build {
		t.Error("no go build step")
	}
	// A cgo binary needs glibc, and libcrypto.so.3 to seal with OpenSSL
	// (arc/openssl.go): distroless/static has neither, base-nossl no OpenSSL.
	if cgo && !regexp.MustCompile(`distroless/base-debian\d+`).MatchString(final.args) {
		t.Errorf("final stage %q cannot run a cgo binary with OpenSSL; use distroless/base or build with CGO_ENABLED=0", final.args)
	}
	if !user {
		t.Error("the final stage sets no non-root USER")
	}
	if !cmdSeen {
		t.Error("the final stage has no ENTRYPOINT or CMD")
	}
}
