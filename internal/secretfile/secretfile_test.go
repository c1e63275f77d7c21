// SPDX-License-Identifier: MIT

package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		content string
		want    string // "" means read
	}{
		{"owner only", 0o600, "s3cret\n", ""},
		{"read-only owner", 0o400, "s3cret\n", ""},
		{"group readable", 0o640, "s3cret\n", "accessible by group or others (mode 0640); chmod 600 it"},
		{"group writable", 0o620, "s3cret\n", "mode 0620"},
		{"others readable", 0o604, "s3cret\n", "mode 0604"},
		{"too long", 0o600, strings.Repeat("s", 65), "longer than 64 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			b, err := Read(p, 64)
			checkErr := Check(p)
			if tc.want == "" {
				if err != nil || string(b) != tc.content || checkErr != nil {
					t.Fatalf("Read = %q, %v; Check = %v", b, err, checkErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Read err = %v, want %q naming the file", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "sss") {
				t.Errorf("error shows the contents: %v", err)
			}
			var me *ModeError
			if tc.mode&0o077 != 0 && (!errors.As(err, &me) || !errors.As(checkErr, &me)) {
				t.Errorf("not a *ModeError: Read %v, Check %v", err, checkErr)
			}
		})
	}
	if _, err := Read(dir, 64); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing"), 64); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestCreate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	if err := Create(p, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := Create(p, []byte("second")); !errors.Is(err, os.ErrExist) {
		t.Errorf("a second Create: %v, want ErrExist", err)
	}
	b, err := Read(p, 64)
	if err != nil || string(b) != "first" {
		t.Errorf("read back %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if err := Create(filepath.Join(t.TempDir(), "missing", "key"), nil); err == nil {
		t.Error("created in a missing directory")
	}
}
