// SPDX-License-Identifier: MIT

package migrate

import (
	"strings"
	"testing"
)

func folders(delim string, specs ...string) []Folder {
	var out []Folder
	for _, s := range specs {
		name, use, _ := strings.Cut(s, "|")
		out = append(out, Folder{Name: name, Path: strings.Split(name, delim), SpecialUse: use})
	}
	return out
}

// TestMap: special folders by SPECIAL-USE or by their Dutch and English
// names go to the well-known folders, with their subfolders; other folders
// keep their nesting at the top; an "INBOX." namespace is seen through;
// virtual folders are left out.
func TestMap(t *testing.T) {
	cases := []struct {
		name string
		in   []Folder
		want map[string]string // folder → Where.String(), "-" for left out
	}{
		{"special-use and names, slash delimiter", folders("/",
			"INBOX", `Verstuurd|\Sent`, `Verstuurd/2019`, "Concepten", "Prullenbak", "Ongewenste e-mail", "Archief", "Archief/2019",
			"Projecten/Orgel", "INBOX/Kerkenraad", `Alles|\All`, "Sent Messages", "spam"),
			map[string]string{"INBOX": "Inbox", "Verstuurd": "Sent Items", "Verstuurd/2019": "Sent Items/2019", "Concepten": "Drafts",
				"Prullenbak": "Deleted Items", "Ongewenste e-mail": "Junk Email", "Archief": "Archive", "Archief/2019": "Archive/2019",
				"Projecten/Orgel": "Projecten/Orgel", "INBOX/Kerkenraad": "Inbox/Kerkenraad", "Alles": "-",
				"Sent Messages": "Sent Items", "spam": "Junk Email"}},
		{"courier INBOX namespace", folders(".",
			"INBOX", "INBOX.Sent", "INBOX.Drafts", "INBOX.Trash", "INBOX.Archief.2018", "INBOX.Kerkenraad"),
			map[string]string{"INBOX": "Inbox", "INBOX.Sent": "Sent Items", "INBOX.Drafts": "Drafts", "INBOX.Trash": "Deleted Items",
				"INBOX.Archief.2018": "Archive/2018", "INBOX.Kerkenraad": "Kerkenraad"}},
		{"inbox subfolders when others are at the top", folders(".",
			"INBOX", "INBOX.Sent", "Drafts"),
			map[string]string{"INBOX": "Inbox", "INBOX.Sent": "Inbox/Sent", "Drafts": "Drafts"}},
		{"special-use wins over a misleading name", folders("/", `Drafts|\Sent`, `Kladjes|\Drafts`, `Junk|\Archive`),
			map[string]string{"Drafts": "Sent Items", "Kladjes": "Drafts", "Junk": "Archive"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Map(c.in)
			for name, want := range c.want {
				w, ok := got[name]
				s := "-"
				if ok {
					s = w.String()
				}
				if s != want {
					t.Errorf("%s -> %q, want %q", name, s, want)
				}
			}
		})
	}
}
