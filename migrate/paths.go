// SPDX-License-Identifier: MIT

package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dir is where imports keep their progress and work files, below the
// state directory.
func Dir(stateDir string) string { return filepath.Join(stateDir, "import") }

// ProgressFile is the progress file of the import into mailbox from the
// old host (IMAP, or Microsoft's migration batch).
func ProgressFile(stateDir, mailbox string) string {
	return filepath.Join(Dir(stateDir), strings.ToLower(mailbox)+".json")
}

// PSTProgressFile is the progress file of importing pstFile into mailbox:
// one per PST file and mailbox, so two PSTs into one mailbox, or a PST
// after an IMAP copy, keep their own count.
func PSTProgressFile(stateDir, mailbox, pstFile string) string {
	h := sha256.Sum256([]byte(pstFile))
	return filepath.Join(Dir(stateDir), strings.ToLower(mailbox)+".pst-"+hex.EncodeToString(h[:6])+".json")
}

// ProgressFiles lists the progress files of every import into mailbox:
// the old host's first, then one per PST file.
func ProgressFiles(stateDir, mailbox string) ([]string, error) {
	var paths []string
	if p := ProgressFile(stateDir, mailbox); fileExists(p) {
		paths = append(paths, p)
	}
	pattern := globEscape(strings.ToLower(mailbox)) + ".pst-*.json"
	pst, err := filepath.Glob(filepath.Join(globEscape(Dir(stateDir)), pattern))
	if err != nil {
		return nil, err
	}
	sort.Strings(pst)
	return append(paths, pst...), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
}
