// SPDX-License-Identifier: MIT

package router

import (
	"os"
	"os/user"
	"strconv"
	"strings"
)

// Identity is what the audit log's actor is made of. The person is the
// login uid the kernel keeps for the session: set once at login, kept across
// sudo and su, changeable only with CAP_AUDIT_CONTROL. The effective user is
// who the command runs as. SUDO_USER is an environment variable any root
// shell can set, so it is recorded only as a claim beside the person.
type Identity struct {
	// LoginUID returns the session's login uid; ok is false when there is
	// none (4294967295: a daemon, a container, a kernel without audit).
	LoginUID func() (uid uint32, ok bool)
	// EUID is the effective user id.
	EUID int
	// UserName turns a uid into a user name; "" when it has none.
	UserName func(uid uint32) string
	// SudoUser is $SUDO_USER.
	SudoUser string
}

// SystemIdentity reads the identity of this process.
func SystemIdentity() Identity {
	return Identity{LoginUID: procLoginUID, EUID: os.Geteuid(), UserName: lookupUserName, SudoUser: os.Getenv("SUDO_USER")}
}

// CurrentActor names the person behind this process for the audit log; see
// Identity.Actor.
func CurrentActor() string { return SystemIdentity().Actor() }

// maxClaim bounds the SUDO_USER claim kept in the audit log.
const maxClaim = 64

// Actor names the person: the login user, then in parentheses the user the
// command ran as when that differs, and what SUDO_USER claims when it names
// someone else. Without a login uid the effective user stands in, marked so.
//
//	alice
//	alice (as dualmx)
//	alice (as root; sudo claims mallory)
//	dualmx (no login uid)
func (id Identity) Actor() string {
	name := func(uid uint32) string {
		if id.UserName != nil {
			if n := id.UserName(uid); n != "" {
				return n
			}
		}
		return "uid " + strconv.FormatUint(uint64(uid), 10)
	}
	euid := uint32(id.EUID)
	var who string
	var notes []string
	if id.LoginUID == nil {
		id.LoginUID = func() (uint32, bool) { return 0, false }
	}
	if luid, ok := id.LoginUID(); ok {
		who = name(luid)
		if luid != euid {
			notes = append(notes, "as "+name(euid))
		}
	} else {
		who = name(euid)
		notes = append(notes, "no login uid")
	}
	if claim := clipClaim(id.SudoUser); claim != "" && claim != who {
		notes = append(notes, "sudo claims "+claim)
	}
	if len(notes) == 0 {
		return who
	}
	return who + " (" + strings.Join(notes, "; ") + ")"
}

func clipClaim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxClaim {
		s = s[:maxClaim] + "…"
	}
	return s
}

// procLoginUID reads the audit login uid of this process.
func procLoginUID() (uint32, bool) {
	b, err := os.ReadFile("/proc/self/loginuid")
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || n == 4294967295 {
		return 0, false
	}
	return uint32(n), true
}

func lookupUserName(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return ""
	}
	return u.Username
}
