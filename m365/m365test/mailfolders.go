// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MailFolder is a folder in a mailbox of the fake.
type MailFolder struct {
	ID, Parent, Name string
	WellKnown        string // inbox, sentitems, ... for Exchange's default folders
}

// Message is a message as the fake stores it.
type Message struct {
	ID, Folder        string
	IsDraft, IsRead   bool
	Received, Sent    time.Time
	FlagStatus        string
	Subject           string
	BodyType, Body    string
	From              string
	To, Cc, Bcc       []string
	InternetMessageID string
	Importance        string
	Props             map[string]string // singleValueExtendedProperties by id
	Attachments       []Attachment
	MIME              []byte // the request body, when created from MIME
}

// Attachment is a file attachment of a stored message.
type Attachment struct {
	Name, ContentType, ContentID string
	Inline                       bool
	Data                         []byte
	Via                          string // "create", "post" or "session": how it arrived
}

type uploadSession struct {
	mailbox, message string
	att              Attachment
	size, next       int
	token            string
}

// mailState is the fake's store of mailboxes' folders and messages.
type mailState struct {
	folders  map[string]map[string]*MailFolder // by lower-case mailbox, then folder ID
	messages map[string]*Message               // by message ID
	owner    map[string]string                 // message ID → lower-case mailbox
	sessions map[string]*uploadSession
	// ignoreFlags makes the fake a tenant that keeps every created message
	// a draft whatever PidTagMessageFlags says: the run-time check of the
	// import must catch it.
	ignoreFlags bool
	maxMessage  int
	// failAfterCreate: this many more creates are stored and then answered
	// 503, as a create whose answer was lost.
	failAfterCreate int
	// brokenUploads points upload sessions at a port nothing listens on.
	brokenUploads bool
}

// The limits the fake enforces. Graph refuses a request over 4 MB ("The
// maximum request length supported is 4MB.", microsoft-graph-docs issue
// 11806); a 3 MB file may still be POSTed whole (outlook-large-attachments),
// so the bound allows the JSON around one. A mailbox takes messages up to
// 35 MB by default (attachment-createuploadsession, Tip).
const (
	maxRequest        = 4<<20 + 8<<10
	minSessionBytes   = 3 << 20
	maxUploadRange    = 4 << 20
	defaultMaxMessage = 35 << 20
)

// wellKnown are the default folders of a new Exchange Online mailbox with
// their well-known names (mailFolder resource page).
var wellKnown = []struct{ name, display string }{
	{"inbox", "Inbox"}, {"sentitems", "Sent Items"}, {"drafts", "Drafts"}, {"deleteditems", "Deleted Items"},
	{"junkemail", "Junk Email"}, {"archive", "Archive"}, {"outbox", "Outbox"},
}

// IgnoreMessageFlags makes the tenant keep created messages as drafts
// whatever PidTagMessageFlags says.
func (tn *Tenant) IgnoreMessageFlags(on bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.mail.ignoreFlags = on
}

// FailAfterCreate makes the next n message creates take effect and then
// answer 503 Service Unavailable.
func (tn *Tenant) FailAfterCreate(n int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.mail.failAfterCreate = n
}

// BreakUploads makes new upload sessions hand out a URL nobody answers.
func (tn *Tenant) BreakUploads() {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.mail.brokenUploads = true
}

// SetMaxMessageSize sets the mailbox's message size limit (35 MB by default).
func (tn *Tenant) SetMaxMessageSize(n int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.mail.maxMessage = n
}

// Messages returns a mailbox's messages by folder path ("Inbox",
// "Sent Items/2019"), each folder's in the order they were created.
func (tn *Tenant) Messages(mailbox string) map[string][]Message {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	out := map[string][]Message{}
	mb := strings.ToLower(mailbox)
	var ids []string
	for id, m := range tn.mail.messages {
		if tn.mail.owner[id] == mb {
			ids = append(ids, m.ID)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		m := tn.mail.messages[id]
		p := tn.folderPath(mb, m.Folder)
		out[p] = append(out[p], *m)
	}
	return out
}

// FolderPaths lists every folder of a mailbox by path, default ones included.
func (tn *Tenant) FolderPaths(mailbox string) []string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	mb := strings.ToLower(mailbox)
	tn.mailFolders(mb)
	var out []string
	for id, f := range tn.mail.folders[mb] {
		if f.WellKnown != "msgfolderroot" {
			out = append(out, tn.folderPath(mb, id))
		}
	}
	sort.Strings(out)
	return out
}

func (tn *Tenant) folderPath(mb, id string) string {
	f := tn.mail.folders[mb][id]
	if f == nil {
		return "?" + id
	}
	if p := tn.mail.folders[mb][f.Parent]; p == nil || p.WellKnown == "msgfolderroot" {
		return f.Name
	}
	return tn.folderPath(mb, f.Parent) + "/" + f.Name
}

// mailFolders returns a mailbox's folders, creating the default ones on
// first use as Exchange has them in a new mailbox.
func (tn *Tenant) mailFolders(mb string) map[string]*MailFolder {
	if tn.mail.folders == nil {
		tn.mail.folders, tn.mail.messages = map[string]map[string]*MailFolder{}, map[string]*Message{}
		tn.mail.owner, tn.mail.sessions = map[string]string{}, map[string]*uploadSession{}
	}
	fs := tn.mail.folders[mb]
	if fs == nil {
		fs = map[string]*MailFolder{}
		root := &MailFolder{ID: "folder-" + tn.newID(), Name: "Top of Information Store", WellKnown: "msgfolderroot"}
		fs[root.ID] = root
		for _, w := range wellKnown {
			f := &MailFolder{ID: "folder-" + tn.newID(), Parent: root.ID, Name: w.display, WellKnown: w.name}
			fs[f.ID] = f
		}
		tn.mail.folders[mb] = fs
	}
	return fs
}

// resolveFolder finds a folder by ID or well-known name.
func resolveFolder(fs map[string]*MailFolder, key string) *MailFolder {
	if f := fs[key]; f != nil {
		return f
	}
	for _, f := range fs {
		if f.WellKnown != "" && strings.EqualFold(f.WellKnown, key) {
			return f
		}
	}
	return nil
}

func (tn *Tenant) maxMessageSize() int {
	if tn.mail.maxMessage > 0 {
		return tn.mail.maxMessage
	}
	return defaultMaxMessage
}

// serveMailFolders handles /users/{m}/mailFolders[/{id}[/childFolders|/messages]].
func (tn *Tenant) serveMailFolders(w http.ResponseWriter, r *http.Request, parts []string, body []byte) {
	mb := strings.ToLower(parts[1])
	if tn.findMailbox(mb) == nil {
		notFound(w, parts[1])
		return
	}
	fs := tn.mailFolders(mb)
	root := resolveFolder(fs, "msgfolderroot")
	parent := root
	if len(parts) >= 4 {
		if parent = resolveFolder(fs, parts[3]); parent == nil {
			// The not-found shape of Outlook resources (graph errors page;
			// ErrorItemNotFound as Exchange names it).
			graphError(w, 404, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
	}
	switch {
	case len(parts) == 5 && parts[4] == "messages" && r.Method == "POST":
		tn.createMessage(w, r, mb, parent, body)
	case len(parts) == 5 && parts[4] == "messages" && r.Method == "GET":
		tn.listMessages(w, r, mb, parent)
	case (len(parts) == 3 || (len(parts) == 5 && parts[4] == "childFolders")) && r.Method == "GET":
		// user-list-mailfolders, mailfolder-list-childfolders: a collection
		// in "value"; $filter on displayName.
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
			if f.Parent == parent.ID && (want == "" || strings.EqualFold(f.Name, want)) {
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
			if f.Parent == parent.ID && strings.EqualFold(f.Name, in.DisplayName) {
				// mailfolder-post-childfolders: a name taken in the parent.
				graphError(w, 409, "ErrorFolderExists", "A folder with the specified name already exists.")
				return
			}
		}
		f := &MailFolder{ID: "folder-" + tn.newID(), Parent: parent.ID, Name: in.DisplayName}
		fs[f.ID] = f
		writeJSON(w, 201, map[string]any{"id": f.ID, "displayName": f.Name, "parentFolderId": parent.ID})
	default:
		graphError(w, 400, "BadRequest", "Resource not found for the segment.")
	}
}

// The message create body as Graph reads it (message resource). Unknown
// properties are refused, as OData does.
type createReq struct {
	Subject *string `json:"subject"`
	Body    *struct {
		ContentType string `json:"contentType"`
		Content     string `json:"content"`
	} `json:"body"`
	From              *recipientJSON               `json:"from"`
	To                []recipientJSON              `json:"toRecipients"`
	Cc                []recipientJSON              `json:"ccRecipients"`
	Bcc               []recipientJSON              `json:"bccRecipients"`
	ReplyTo           []recipientJSON              `json:"replyTo"`
	InternetMessageID string                       `json:"internetMessageId"`
	Importance        string                       `json:"importance"`
	IsRead            *bool                        `json:"isRead"`
	Flag              *struct{ FlagStatus string } `json:"flag"`
	Props             []struct {
		ID    string `json:"id"`
		Value string `json:"value"`
	} `json:"singleValueExtendedProperties"`
	Attachments []attachmentJSON `json:"attachments"`
}

type recipientJSON struct {
	EmailAddress *struct {
		Name    string `json:"name"`
		Address string `json:"address"`
	} `json:"emailAddress"`
}

type attachmentJSON struct {
	ODataType    string `json:"@odata.type"`
	Name         string `json:"name"`
	ContentType  string `json:"contentType"`
	ContentBytes string `json:"contentBytes"`
	IsInline     bool   `json:"isInline"`
	ContentID    string `json:"contentId"`
}

// propID is the id form of singleValueLegacyExtendedProperty
// (extended-properties-overview): "{type} {proptag}", or a type, a property
// set GUID and a name or id. The page's proptag example is a whole MAPI
// property tag, identifier and type ("String 0x4001001E"); migration tools
// write the identifier alone ("Integer 0x0E07"). Both name one property.
var propID = regexp.MustCompile(`^(Integer|SystemTime|String|Boolean|Binary|Long) (0x[0-9A-Fa-f]{4}|0x[0-9A-Fa-f]{8}|\{[0-9A-Fa-f-]{36}\} (Name \S+|Id 0x[0-9A-Fa-f]+))$`)

// propTypes are the MAPI property types ([MS-OXCDATA] 2.11.1) of the type
// names; String takes PT_UNICODE or PT_STRING8.
var propTypes = map[string][]string{"Integer": {"0003"}, "SystemTime": {"0040"}, "String": {"001F", "001E"}, "Boolean": {"000B"},
	"Binary": {"0102"}, "Long": {"0014"}}

// propKey writes a proptag id as "{type} 0xIDID", so both forms, in any
// case, find the same property; "" for a whole tag whose type part is not
// the type named.
func propKey(id string) string {
	typ, tag, ok := strings.Cut(id, " ")
	if !ok || !strings.HasPrefix(tag, "0x") || strings.Contains(tag, " ") {
		return id
	}
	hex := strings.ToUpper(tag[2:])
	if len(hex) == 8 {
		if !slices.Contains(propTypes[typ], hex[4:]) {
			return ""
		}
		hex = hex[:4]
	}
	return typ + " 0x" + hex
}

func addrs(rs []recipientJSON) ([]string, bool) {
	var out []string
	for _, r := range rs {
		if r.EmailAddress == nil || !strings.Contains(r.EmailAddress.Address, "@") {
			return nil, false
		}
		out = append(out, r.EmailAddress.Address)
	}
	return out, true
}

func tooLarge(w http.ResponseWriter) {
	graphError(w, 400, "BadRequest", "The maximum request length supported is 4MB.")
}

// createMessage is POST .../mailFolders/{id}/messages. Whatever the form,
// Graph creates a draft (user-post-messages: "Create a draft of a new message
// in either JSON or MIME format"; MIME-created ones report isDraft true,
// microsoft-graph-docs issue 14829). Only PidTagMessageFlags without mfUnsent,
// given in the create itself, makes a received message: MS-OXCMSG lets the
// flag be set before the first save only, and migration tools rely on it
// (observed, not documented for Graph).
func (tn *Tenant) createMessage(w http.ResponseWriter, r *http.Request, mb string, folder *MailFolder, body []byte) {
	if len(body) > maxRequest {
		tooLarge(w)
		return
	}
	m := &Message{ID: "msg-" + tn.newID(), Folder: folder.ID, IsDraft: true, Received: time.Now().UTC(), Props: map[string]string{}}
	switch ct := r.Header.Get("Content-Type"); {
	case strings.HasPrefix(ct, "text/plain"):
		mime, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(body)))
		if err != nil || !strings.Contains(string(mime), "\r\n\r\n") {
			graphError(w, 400, "UnableToDeserializePostBody", "were unable to deserialize ")
			return
		}
		m.MIME = mime
		m.Subject = headerValue(mime, "Subject")
	case strings.HasPrefix(ct, "application/json"):
		var in createReq
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			graphError(w, 400, "RequestBodyRead", "Invalid request body: "+err.Error())
			return
		}
		if code, msg := tn.fillMessage(m, &in); code != "" {
			graphError(w, 400, code, msg)
			return
		}
	default:
		tn.graphViolate(w, "message create: Content-Type %q", ct)
		return
	}
	if tn.messageSize(m) > tn.maxMessageSize() {
		graphError(w, 400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
		return
	}
	if tn.mail.ignoreFlags {
		m.IsDraft = true
	}
	tn.mail.messages[m.ID] = m
	tn.mail.owner[m.ID] = mb
	if tn.mail.failAfterCreate > 0 {
		tn.mail.failAfterCreate--
		graphError(w, 503, "ServiceUnavailable", "The service is temporarily unavailable.")
		return
	}
	writeJSON(w, 201, tn.messageJSON(m))
}

func (tn *Tenant) fillMessage(m *Message, in *createReq) (code, msg string) {
	var ok bool
	if in.Subject != nil {
		m.Subject = *in.Subject
	}
	if in.Body != nil {
		if t := strings.ToLower(in.Body.ContentType); t != "text" && t != "html" {
			return "RequestBodyRead", "body.contentType " + in.Body.ContentType
		}
		m.BodyType, m.Body = strings.ToLower(in.Body.ContentType), in.Body.Content
	}
	if in.From != nil {
		f, good := addrs([]recipientJSON{*in.From})
		if !good {
			return "ErrorInvalidRecipients", "At least one recipient isn't valid."
		}
		m.From = f[0]
	}
	for _, l := range []struct {
		in  []recipientJSON
		out *[]string
	}{{in.To, &m.To}, {in.Cc, &m.Cc}, {in.Bcc, &m.Bcc}, {in.ReplyTo, nil}} {
		a, good := addrs(l.in)
		if !good {
			return "ErrorInvalidRecipients", "At least one recipient isn't valid."
		}
		if l.out != nil {
			*l.out = a
		}
	}
	if id := in.InternetMessageID; id != "" && (!strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">")) {
		return "ErrorInvalidInternetMessageHeader", "The internet message id is invalid."
	}
	m.InternetMessageID = in.InternetMessageID
	switch strings.ToLower(in.Importance) {
	case "", "low", "normal", "high":
		m.Importance = strings.ToLower(in.Importance)
	default:
		return "RequestBodyRead", "importance " + in.Importance
	}
	if in.Flag != nil {
		m.FlagStatus = in.Flag.FlagStatus
	}
	for _, p := range in.Props {
		key := propKey(p.ID)
		if !propID.MatchString(p.ID) || key == "" {
			return "ErrorInvalidProperty", "The property id " + strconv.Quote(p.ID) + " is not valid."
		}
		m.Props[key] = p.Value
	}
	if v, has := m.Props["Integer 0x0E07"]; has {
		flags, err := strconv.Atoi(v)
		if err != nil {
			return "ErrorInvalidProperty", "PidTagMessageFlags " + strconv.Quote(v)
		}
		m.IsDraft = flags&0x8 != 0
		m.IsRead = flags&0x1 != 0
	}
	if in.IsRead != nil {
		m.IsRead = *in.IsRead
	}
	for k, t := range map[string]*time.Time{"SystemTime 0x0E06": &m.Received, "SystemTime 0x0039": &m.Sent} {
		if v, has := m.Props[k]; has {
			if *t, ok = parseGraphTime(v); !ok {
				return "ErrorInvalidProperty", k + " " + strconv.Quote(v)
			}
		}
	}
	for _, a := range in.Attachments {
		att, code, msg := decodeAttachment(a)
		if code != "" {
			return code, msg
		}
		att.Via = "create"
		m.Attachments = append(m.Attachments, att)
	}
	return "", ""
}

func parseGraphTime(v string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, v)
	return t.UTC(), err == nil
}

func decodeAttachment(a attachmentJSON) (Attachment, string, string) {
	if a.ODataType != "#microsoft.graph.fileAttachment" || a.Name == "" {
		return Attachment{}, "RequestBodyRead", "attachment wants @odata.type #microsoft.graph.fileAttachment and a name"
	}
	data, err := base64.StdEncoding.DecodeString(a.ContentBytes)
	if err != nil {
		return Attachment{}, "RequestBodyRead", "contentBytes is not base64"
	}
	return Attachment{Name: a.Name, ContentType: a.ContentType, ContentID: a.ContentID, Inline: a.IsInline, Data: data}, "", ""
}

func headerValue(mime []byte, name string) string {
	head, _, _ := strings.Cut(string(mime), "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (tn *Tenant) messageJSON(m *Message) map[string]any {
	out := map[string]any{"id": m.ID, "parentFolderId": m.Folder, "isDraft": m.IsDraft, "isRead": m.IsRead,
		"receivedDateTime": m.Received.Format(time.RFC3339), "subject": m.Subject,
		"hasAttachments": len(m.Attachments) > 0, "internetMessageId": nilIfEmpty(m.InternetMessageID)}
	flag := m.FlagStatus
	if flag == "" {
		flag = "notFlagged"
	}
	out["flag"] = map[string]any{"flagStatus": flag}
	if !m.Sent.IsZero() {
		out["sentDateTime"] = m.Sent.Format(time.RFC3339)
	}
	return out
}

// extFilter is the one filter Graph documents for extended properties
// (singlevaluelegacyextendedproperty-get, "filter").
var extFilter = regexp.MustCompile(`^singleValueExtendedProperties/any\(ep: ep/id eq '((?:[^']|'')*)' and ep/value eq '((?:[^']|'')*)'\)$`)

func (tn *Tenant) listMessages(w http.ResponseWriter, r *http.Request, mb string, folder *MailFolder) {
	var id, value string
	if f := r.URL.Query().Get("$filter"); f != "" {
		sm := extFilter.FindStringSubmatch(f)
		if sm == nil {
			tn.graphViolate(w, "unsupported message $filter %q", f)
			return
		}
		id, value = strings.ReplaceAll(sm[1], "''", "'"), strings.ReplaceAll(sm[2], "''", "'")
	}
	list := []any{}
	for mid, m := range tn.mail.messages {
		if tn.mail.owner[mid] != mb || m.Folder != folder.ID {
			continue
		}
		if id != "" && m.Props[propKey(id)] != value {
			continue
		}
		list = append(list, tn.messageJSON(m))
	}
	writeJSON(w, 200, map[string]any{"value": list})
}

// serveMessages handles /users/{m}/messages/{id}[/attachments[/createUploadSession]].
func (tn *Tenant) serveMessages(w http.ResponseWriter, r *http.Request, parts []string, body []byte) {
	mb := strings.ToLower(parts[1])
	if tn.findMailbox(mb) == nil {
		notFound(w, parts[1])
		return
	}
	tn.mailFolders(mb)
	if len(parts) < 4 {
		graphError(w, 400, "BadRequest", "Resource not found for the segment.")
		return
	}
	m := tn.mail.messages[parts[3]]
	if m == nil || tn.mail.owner[parts[3]] != mb {
		// The not-found shape of Outlook items (graph errors page: 404 with
		// error.code; Exchange names it ErrorItemNotFound).
		graphError(w, 404, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	switch {
	case len(parts) == 4 && r.Method == "GET":
		// message-get: the message resource's properties.
		writeJSON(w, 200, tn.messageJSON(m))
	case len(parts) == 4 && r.Method == "DELETE":
		// message-delete: 204 No Content.
		delete(tn.mail.messages, m.ID)
		delete(tn.mail.owner, m.ID)
		w.WriteHeader(204)
	case len(parts) == 5 && parts[4] == "attachments" && r.Method == "POST":
		// message-post-attachments: one file attachment per request, the
		// request under the 4 MB limit.
		if len(body) > maxRequest {
			tooLarge(w)
			return
		}
		var in attachmentJSON
		if err := json.Unmarshal(body, &in); err != nil {
			graphError(w, 400, "RequestBodyRead", "Invalid request body")
			return
		}
		att, code, msg := decodeAttachment(in)
		if code != "" {
			graphError(w, 400, code, msg)
			return
		}
		if tn.messageSize(m)+len(att.Data) > tn.maxMessageSize() {
			graphError(w, 400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
			return
		}
		att.Via = "post"
		m.Attachments = append(m.Attachments, att)
		writeJSON(w, 201, map[string]any{"@odata.type": "#microsoft.graph.fileAttachment", "id": "att-" + tn.newID(), "name": att.Name})
	case len(parts) == 6 && parts[4] == "attachments" && parts[5] == "createUploadSession" && r.Method == "POST":
		tn.createUploadSession(w, mb, m, body)
	default:
		graphError(w, 400, "BadRequest", "Resource not found for the segment.")
	}
}

func (tn *Tenant) messageSize(m *Message) int {
	n := len(m.Body) + len(m.MIME)
	for _, a := range m.Attachments {
		n += len(a.Data)
	}
	return n
}

// createUploadSession answers as attachment-createuploadsession documents:
// 201 with an uploadSession whose opaque uploadUrl carries its own token.
// Below 3 MB the service refuses a session (microsoft-graph-docs issue
// 11806: "I cannot create an upload session for a 0.6MB file"); over the
// mailbox's size limit it answers ErrorMessageSizeExceeded (issue 2561).
func (tn *Tenant) createUploadSession(w http.ResponseWriter, mb string, m *Message, body []byte) {
	var in struct {
		AttachmentItem *struct {
			AttachmentType string `json:"attachmentType"`
			Name           string `json:"name"`
			Size           int    `json:"size"`
			ContentType    string `json:"contentType"`
			IsInline       bool   `json:"isInline"`
			ContentID      string `json:"contentId"`
		} `json:"AttachmentItem"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.AttachmentItem == nil {
		tn.graphViolate(w, "createUploadSession wants {\"AttachmentItem\": {...}}: %s", body)
		return
	}
	it := in.AttachmentItem
	if it.AttachmentType != "file" || it.Name == "" || it.Size <= 0 {
		tn.graphViolate(w, "createUploadSession AttachmentItem wants attachmentType file, name, size: %s", body)
		return
	}
	if it.Size < minSessionBytes {
		graphError(w, 400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
			fmt.Sprintf("The attachment size %d should not be less than minimum size %d.", it.Size, minSessionBytes))
		return
	}
	if tn.messageSize(m)+it.Size > tn.maxMessageSize() {
		graphError(w, 400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
		return
	}
	s := &uploadSession{mailbox: mb, message: m.ID, size: it.Size, token: "tok" + tn.newID(),
		att: Attachment{Name: it.Name, ContentType: it.ContentType, Inline: it.IsInline, ContentID: it.ContentID, Via: "session"}}
	id := "sess-" + tn.newID()
	tn.mail.sessions[id] = s
	base := tn.GraphSrv.URL
	if tn.mail.brokenUploads {
		base = "https://127.0.0.1:1"
	}
	writeJSON(w, 201, map[string]any{
		"@odata.context":     tn.GraphSrv.URL + "/v1.0/$metadata#microsoft.graph.uploadSession",
		"uploadUrl":          base + "/upload/AttachmentSessions('" + id + "')?authtoken=" + s.token,
		"expirationDateTime": time.Now().Add(15 * time.Minute).UTC().Format(time.RFC3339),
		"nextExpectedRanges": []string{"0-"},
	})
}

var contentRange = regexp.MustCompile(`^bytes (\d+)-(\d+)/(\d+)$`)

// serveUpload is a PUT to an upload session's URL (outlook-large-attachments,
// steps 2 and 3): no Authorization header, Content-Range in order, 200 with
// nextExpectedRanges until the last byte, then 201 with a Location.
func (tn *Tenant) serveUpload(w http.ResponseWriter, r *http.Request, body []byte) {
	if f := tn.fault("PUT /upload"); f != nil {
		graphError(w, f.Status, f.Code, f.Message)
		return
	}
	id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/upload/AttachmentSessions('"), "')")
	s := tn.mail.sessions[id]
	if s == nil || r.URL.Query().Get("authtoken") != s.token {
		graphError(w, 401, "InvalidAuthenticationToken", "The upload session's token is not valid.")
		return
	}
	if r.Header.Get("Authorization") != "" {
		tn.graphViolate(w, "upload session PUT with an Authorization header (the docs: do not specify one)")
		return
	}
	if r.Method != http.MethodPut || r.Header.Get("Content-Type") != "application/octet-stream" {
		tn.graphViolate(w, "upload session wants PUT with Content-Type application/octet-stream, got %s %q", r.Method, r.Header.Get("Content-Type"))
		return
	}
	sm := contentRange.FindStringSubmatch(r.Header.Get("Content-Range"))
	if sm == nil {
		tn.graphViolate(w, "upload session Content-Range %q", r.Header.Get("Content-Range"))
		return
	}
	from, _ := strconv.Atoi(sm[1])
	to, _ := strconv.Atoi(sm[2])
	total, _ := strconv.Atoi(sm[3])
	if total != s.size || from != s.next || to < from || to-from+1 != len(body) || len(body) > maxUploadRange {
		graphError(w, 416, "InvalidRange", fmt.Sprintf("Expected range %d- of %d, got %s with %d bytes.", s.next, s.size, sm[0], len(body)))
		return
	}
	s.att.Data = append(s.att.Data, body...)
	s.next = to + 1
	if s.next < s.size {
		writeJSON(w, 200, map[string]any{"expirationDateTime": time.Now().Add(15 * time.Minute).UTC().Format(time.RFC3339),
			"nextExpectedRanges": []string{strconv.Itoa(s.next)}})
		return
	}
	delete(tn.mail.sessions, id)
	m := tn.mail.messages[s.message]
	if m == nil {
		graphError(w, 404, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	m.Attachments = append(m.Attachments, s.att)
	w.Header().Set("Location", tn.GraphSrv.URL+"/v1.0/users/"+s.mailbox+"/messages/"+m.ID+"/attachments/att-"+tn.newID())
	w.WriteHeader(201)
}
