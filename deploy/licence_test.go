// SPDX-License-Identifier: MIT

package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// spdx is the first line of every Go file: the licence in LICENSE.
const spdx = "// SPDX-License-Identifier: MIT"

// TestEveryGoFileNamesTheLicence: every Go file git tracks (or is about to:
// untracked files that are not ignored count too) starts with the SPDX
// line of the repository's licence, and LICENSE is that licence.
func TestEveryGoFileNamesTheLicence(t *testing.T) {
	licence, err := os.ReadFile("../LICENSE")
	if err != nil || !strings.HasPrefix(string(licence), "MIT License\n") {
		t.Fatalf("LICENSE is not the MIT licence: %v", err)
	}
	out, err := exec.Command("git", "-C", "..", "ls-files", "--cached", "--others", "--exclude-standard", "*.go").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	files := strings.Fields(string(out))
	if len(files) < 100 {
		t.Fatalf("git lists only %d Go files", len(files))
	}
	for _, f := range files {
		fh, err := os.Open("../" + f)
		if os.IsNotExist(err) {
			continue // deleted in the working tree, not yet in the index
		}
		if err != nil {
			t.Fatal(err)
		}
		first, _ := bufio.NewReader(fh).ReadString('\n')
		fh.Close()
		if strings.TrimRight(first, "\r\n") != spdx {
			t.Errorf("%s does not start with %q", f, spdx)
		}
	}
}
