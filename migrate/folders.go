// SPDX-License-Identifier: MIT

package migrate

import (
	"strings"

	"github.com/dualmx/dualmx/m365"
)

// Folder is one folder of the old mailbox.
type Folder struct {
	Name string   // as the source names it, e.g. "INBOX.Sent" or "Archief/2019"
	Path []string // Name split at the hierarchy delimiter
	// SpecialUse is the IMAP SPECIAL-USE attribute (RFC 6154), e.g. \Sent.
	SpecialUse string
	// Validity is the folder's UIDVALIDITY; 0 for sources without UIDs.
	Validity uint32
}

// Where is the place in the new mailbox a folder goes: under a well-known
// folder (or the top of the mailbox when Root is ""), at Path.
type Where struct {
	Root string
	Path []string
}

func (w Where) String() string {
	names := map[string]string{m365.FolderInbox: "Inbox", m365.FolderSent: "Sent Items", m365.FolderDrafts: "Drafts",
		m365.FolderDeleted: "Deleted Items", m365.FolderJunk: "Junk Email", m365.FolderArchive: "Archive"}
	parts := append([]string(nil), w.Path...)
	if w.Root != "" {
		parts = append([]string{names[w.Root]}, parts...)
	}
	return strings.Join(parts, "/")
}

var specialUse = map[string]string{
	`\sent`: m365.FolderSent, `\drafts`: m365.FolderDrafts, `\trash`: m365.FolderDeleted,
	`\junk`: m365.FolderJunk, `\archive`: m365.FolderArchive,
}

// usualNames are what mail programs and hosts call the special folders
// when the server does not say, in English and Dutch (Outlook, Thunderbird,
// Apple Mail, Roundcube, Dovecot and Courier defaults), compared without
// regard to case.
var usualNames = map[string]string{
	"inbox": m365.FolderInbox, "postvak in": m365.FolderInbox,

	"sent": m365.FolderSent, "sent items": m365.FolderSent, "sent messages": m365.FolderSent, "sent mail": m365.FolderSent,
	"verzonden": m365.FolderSent, "verzonden items": m365.FolderSent, "verzonden berichten": m365.FolderSent,
	"verzonden e-mail": m365.FolderSent,

	"drafts": m365.FolderDrafts, "draft": m365.FolderDrafts, "concepten": m365.FolderDrafts, "concept": m365.FolderDrafts,

	"trash": m365.FolderDeleted, "deleted items": m365.FolderDeleted, "deleted messages": m365.FolderDeleted, "bin": m365.FolderDeleted,
	"prullenbak": m365.FolderDeleted, "verwijderde items": m365.FolderDeleted, "verwijderde berichten": m365.FolderDeleted,

	"junk": m365.FolderJunk, "junk e-mail": m365.FolderJunk, "junk email": m365.FolderJunk, "spam": m365.FolderJunk,
	"bulk mail": m365.FolderJunk, "ongewenste e-mail": m365.FolderJunk, "ongewenste post": m365.FolderJunk,
	"ongewenst": m365.FolderJunk,

	"archive": m365.FolderArchive, "archives": m365.FolderArchive, "archief": m365.FolderArchive,
}

// skipUse are virtual folders that show mail kept elsewhere (RFC 6154 \All,
// \Flagged): copying them would copy every message twice.
var skipUse = map[string]bool{`\all`: true, `\flagged`: true}

// Map decides where each folder goes, by the folder's Name. Special
// folders (by SPECIAL-USE, else by their usual name at the top level)
// become the matching well-known folder and their subfolders its
// subfolders; every other folder is recreated with its nesting at the top
// of the mailbox. Servers that keep every folder under INBOX ("INBOX.Sent",
// Courier's and many hosts' layout) are read as if INBOX's children were at
// the top. Folders that are only views of others are left out.
func Map(folders []Folder) map[string]Where {
	strip := inboxNamespace(folders)
	special := map[string]string{}
	for _, f := range folders {
		if root, ok := specialUse[strings.ToLower(f.SpecialUse)]; ok {
			special[pathKey(pathOf(f))] = root
		}
	}
	out := map[string]Where{}
	for _, f := range folders {
		if skipUse[strings.ToLower(f.SpecialUse)] {
			continue
		}
		out[f.Name] = where(pathOf(f), special, strip)
	}
	return out
}

func pathOf(f Folder) []string {
	if len(f.Path) == 0 {
		return []string{f.Name}
	}
	return f.Path
}

func pathKey(p []string) string { return strings.ToLower(strings.Join(p, "\x00")) }

func where(path []string, special map[string]string, stripInbox bool) Where {
	for i := len(path); i >= 1; i-- {
		if root, ok := special[pathKey(path[:i])]; ok {
			return Where{Root: root, Path: append([]string(nil), path[i:]...)}
		}
	}
	if strings.EqualFold(path[0], "INBOX") {
		if len(path) == 1 {
			return Where{Root: m365.FolderInbox}
		}
		if !stripInbox {
			return Where{Root: m365.FolderInbox, Path: append([]string(nil), path[1:]...)}
		}
		path = path[1:]
	}
	if root, ok := usualNames[strings.ToLower(strings.TrimSpace(path[0]))]; ok {
		return Where{Root: root, Path: append([]string(nil), path[1:]...)}
	}
	return Where{Path: append([]string(nil), path...)}
}

// inboxNamespace reports whether every folder but INBOX itself lives below
// INBOX, the sign of a server whose personal namespace is "INBOX.".
func inboxNamespace(folders []Folder) bool {
	below := 0
	for _, f := range folders {
		p := pathOf(f)
		if !strings.EqualFold(p[0], "INBOX") {
			return false
		}
		if len(p) > 1 {
			below++
		}
	}
	return below > 0
}
