// SPDX-License-Identifier: MIT

package router

import (
	"strings"
	"testing"
)

// TestActor: the person comes from the login uid; the effective user and
// SUDO_USER are recorded beside it, SUDO_USER only as a claim.
func TestActor(t *testing.T) {
	names := map[uint32]string{0: "root", 1000: "alice", 1001: "bob", 998: "dualmx"}
	login := func(uid uint32) func() (uint32, bool) { return func() (uint32, bool) { return uid, true } }
	noLogin := func() (uint32, bool) { return 0, false }
	for _, tc := range []struct {
		name  string
		login func() (uint32, bool)
		euid  int
		sudo  string
		want  string
	}{
		{"own account", login(1000), 1000, "", "alice"},
		{"sudo to root", login(1000), 0, "alice", "alice (as root)"},
		{"sudo -u dualmx keeps the person", login(1000), 998, "alice", "alice (as dualmx)"},
		{"a root shell claims someone else", login(1000), 0, "mallory", "alice (as root; sudo claims mallory)"},
		{"SUDO_USER cannot name the person", login(1001), 1001, "alice", "bob (sudo claims alice)"},
		{"no login uid: the effective user, marked", noLogin, 998, "", "dualmx (no login uid)"},
		{"no login uid and a claim", noLogin, 0, "mallory", "root (no login uid; sudo claims mallory)"},
		{"unknown uids", login(4242), 4243, "", "uid 4242 (as uid 4243)"},
		{"a long claim is clipped", login(1000), 1000, strings.Repeat("m", 100), "alice (sudo claims " + strings.Repeat("m", 64) + "…)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := Identity{LoginUID: tc.login, EUID: tc.euid, SudoUser: tc.sudo, UserName: func(uid uint32) string { return names[uid] }}
			if got := id.Actor(); got != tc.want {
				t.Errorf("Actor() = %q, want %q", got, tc.want)
			}
		})
	}
}
