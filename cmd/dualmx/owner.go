// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// checkStateOwner refuses to work on state_dir as another user than its
// owner. A file an admin command creates there as root (an SQLite -wal or
// -shm file, a spool or import file) is one the daemon, running as the
// owner, cannot read or write: mail would stay stuck. The commands that
// only read are not checked: they open the state read-only (openReader,
// router.OpenReadOnly), which creates nothing, so a member of the state's
// group may run them. A state_dir that does not exist yet is not checked;
// the command creates it, owned by whoever runs it.
func checkStateOwner(dir string, euid int, argv []string, configFromEnv string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == euid {
		return nil
	}
	owner := userName(st.Uid)
	return &exitError{code: 2, err: fmt.Errorf("state_dir %s belongs to %s, but this command runs as %s: files it created there "+
		"would be unusable to the daemon. Run it as %s:\n  sudo -u %s %s",
		dir, owner, userName(uint32(euid)), owner, shellQuote(owner), suggestion(argv, configFromEnv))}
}

func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + id
}

// suggestion is the command line to run again; sudo resets the environment,
// so a config named by $DUALMX_CONFIG becomes --config.
func suggestion(argv []string, configFromEnv string) string {
	if len(argv) == 0 {
		argv = []string{"dualmx"}
	}
	words := []string{"dualmx"}
	if configFromEnv != "" {
		words = append(words, "--config", configFromEnv)
	}
	words = append(words, argv[1:]...)
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
