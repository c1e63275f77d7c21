// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set when the binary is built for release:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/dualmx
//
// scripts/dist.sh does that. Without it the version comes from the build
// information Go records (a module version, or the commit).
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	if rev := buildSetting("vcs.revision"); rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if buildSetting("vcs.modified") == "true" {
			rev += "-modified"
		}
		return "commit " + rev
	}
	return "(unknown version)"
}

func buildSetting(key string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// buildKind says what the build gives up or gains (see arc/openssl.go).
func buildKind() string {
	if buildSetting("CGO_ENABLED") == "1" {
		return "cgo: ARC sealing signs through the system's OpenSSL 3 when libcrypto.so.3 is there"
	}
	return "static (CGO_ENABLED=0): ARC sealing signs with Go's crypto"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, and how the binary was built",
		Example: "  dualmx version\n  dualmx --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "dualmx %s\n", versionString())
			fmt.Fprintf(w, "%s %s/%s, %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, buildKind())
			if rev := buildSetting("vcs.revision"); rev != "" {
				fmt.Fprintf(w, "commit %s %s", rev, buildSetting("vcs.time"))
				if buildSetting("vcs.modified") == "true" {
					fmt.Fprint(w, " (with uncommitted changes)")
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	}
}
