// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// MailFolder is a folder in a mailbox of the fake, with the MIME messages
// stored in it through Graph.
type MailFolder struct {
	ID, Parent, Name string
	Messages         [][]byte
}

// Folders returns a mailbox's folders as "Parent name/Name" paths → message count.
func (tn *Tenant) Folders(mailbox string) map[string][][]byte {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	out := map[string][][]byte{}
	for _, f := range tn.folders[strings.ToLower(mailbox)] {
		out[tn.folderPath(mailbox, f)] = append([][]byte(nil), f.Messages...)
	}
	return out
}

func (tn *Tenant) folderPath(mailbox string, f *MailFolder) string {
	if f.Parent == "" {
		return f.Name
	}
	return tn.folderPath(mailbox, tn.folders[strings.ToLower(mailbox)][f.Parent]) + "/" + f.Name
}

// serveMailFolders handles /users/{m}/mailFolders[/{id}[/childFolders|/messages]].
func (tn *Tenant) serveMailFolders(w http.ResponseWriter, r *http.Request, parts []string, body []byte) {
	mbox := strings.ToLower(parts[1])
	if tn.findMailbox(mbox) == nil {
		notFound(w, parts[1])
		return
	}
	if tn.folders == nil {
		tn.folders = map[string]map[string]*MailFolder{}
	}
	fs := tn.folders[mbox]
	if fs == nil {
		fs = map[string]*MailFolder{"inbox": {ID: "inbox", Name: "Inbox"}}
		tn.folders[mbox] = fs
	}
	parent := ""
	if len(parts) >= 4 {
		parent = parts[3]
		if fs[parent] == nil {
			graphError(w, 404, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
	}
	switch {
	case len(parts) == 5 && parts[4] == "messages" && r.Method == "POST":
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
			tn.graphViolate(w, "message create wants base64 MIME as text/plain, got %q", r.Header.Get("Content-Type"))
			return
		}
		mime, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(body)))
		if err != nil || !strings.Contains(string(mime), "\r\n\r\n") {
			graphError(w, 400, "UnableToDeserializePostBody", "were unable to deserialize ")
			return
		}
		fs[parent].Messages = append(fs[parent].Messages, mime)
		writeJSON(w, 201, map[string]any{"id": "msg-" + tn.newID(), "parentFolderId": parent})
	case (len(parts) == 3 || (len(parts) == 5 && parts[4] == "childFolders")) && r.Method == "GET":
		want := ""
		if f := r.URL.Query().Get("$filter"); f != "" {
			v, ok := strings.CutPrefix(f, "displayName eq '")
			if !ok || !strings.HasSuffix(v, "'") {
				tn.graphViolate(w, "unsupported $filter %q", f)
				return
			}
			want = strings.ReplaceAll(strings.TrimSuffix(v, "'"), "''", "'")
		}
		list := []any{}
		for _, f := range fs {
			if f.Parent == parent && f.ID != "inbox" && (want == "" || strings.EqualFold(f.Name, want)) {
				list = append(list, map[string]any{"id": f.ID, "displayName": f.Name, "parentFolderId": f.Parent})
			}
		}
		writeJSON(w, 200, map[string]any{"value": list})
	case (len(parts) == 3 || (len(parts) == 5 && parts[4] == "childFolders")) && r.Method == "POST":
		var in struct {
			DisplayName string `json:"displayName"`
		}
		if json.Unmarshal(body, &in) != nil || in.DisplayName == "" {
			tn.graphViolate(w, "folder create wants displayName: %s", body)
			return
		}
		for _, f := range fs {
			if f.Parent == parent && strings.EqualFold(f.Name, in.DisplayName) {
				graphError(w, 409, "ErrorFolderExists", "A folder with the specified name already exists.")
				return
			}
		}
		f := &MailFolder{ID: "folder-" + tn.newID(), Parent: parent, Name: in.DisplayName}
		fs[f.ID] = f
		writeJSON(w, 201, map[string]any{"id": f.ID, "displayName": f.Name, "parentFolderId": parent})
	default:
		graphError(w, 400, "BadRequest", "Resource not found for the segment.")
	}
}
