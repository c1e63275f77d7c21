// SPDX-License-Identifier: MIT

package m365

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
	absser "github.com/microsoft/kiota-abstractions-go/serialization"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/dualmx/dualmx/mailmsg"
)

// Well-known folder names Graph accepts wherever a folder ID goes (mailFolder
// resource page, "Use well-known folder names"). "" in EnsureFolder is the
// top of the mailbox's folder tree (msgfolderroot).
const (
	FolderInbox   = "inbox"
	FolderSent    = "sentitems"
	FolderDrafts  = "drafts"
	FolderDeleted = "deleteditems"
	FolderJunk    = "junkemail"
	FolderArchive = "archive"
)

// Graph's request size limits for mail (user-post-messages: a request body
// over 4 MB is refused with 413; outlook-large-attachments: a file under
// 3 MB is POSTed whole, 3 MB to 150 MB goes through an upload session in
// ranges "less than 4 MB" each). createBudget keeps a message create, with
// the attachments that fit, under the limit with room for JSON escaping.
const (
	createBudget     = 3 << 20
	sessionThreshold = 3 << 20
	uploadChunk      = 3 << 20
)

// EnsureFolder returns the ID of the mail folder at path below root (a
// well-known name such as FolderSent, or "" for the top of the mailbox),
// creating what is missing. It needs Mail.ReadWrite. Folders are found by
// display name, so a rerun finds what an earlier run made.
func (g *Graph) EnsureFolder(ctx context.Context, mailbox, root string, path []string) (string, error) {
	parent := root
	for _, name := range path {
		id, err := g.childFolder(ctx, mailbox, parent, name)
		if err != nil {
			return "", withNeed(err, NeedWriteMail)
		}
		parent = id
	}
	if parent == "" {
		return "msgfolderroot", nil
	}
	return parent, nil
}

func odataQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (g *Graph) childFolder(ctx context.Context, mailbox, parent, name string) (string, error) {
	filter := "displayName eq " + odataQuote(name)
	find := func() (string, error) {
		mf := g.users().ByUserId(mailbox).MailFolders()
		var found []models.MailFolderable
		if parent == "" {
			r, err := mf.Get(ctx, &users.ItemMailFoldersRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemMailFoldersRequestBuilderGetQueryParameters{Filter: &filter}})
			if err != nil {
				return "", graphErr("find folder "+name+" in "+mailbox, err)
			}
			found = r.GetValue()
		} else {
			r, err := mf.ByMailFolderId(parent).ChildFolders().Get(ctx, &users.ItemMailFoldersItemChildFoldersRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemMailFoldersItemChildFoldersRequestBuilderGetQueryParameters{Filter: &filter}})
			if err != nil {
				return "", graphErr("find folder "+name+" in "+mailbox, err)
			}
			found = r.GetValue()
		}
		for _, f := range found {
			// The filter compares without regard to case; the name we want
			// is the one we asked for.
			if strings.EqualFold(deref(f.GetDisplayName()), name) {
				return deref(f.GetId()), nil
			}
		}
		return "", nil
	}
	folder := models.NewMailFolder()
	folder.SetDisplayName(ptr(name))
	var id string
	err := g.retry.do(ctx, func() error {
		var err error
		if id, err = find(); err != nil || id != "" {
			return err
		}
		mf := g.users().ByUserId(mailbox).MailFolders()
		var made models.MailFolderable
		if parent == "" {
			made, err = mf.Post(ctx, folder, nil)
		} else {
			made, err = mf.ByMailFolderId(parent).ChildFolders().Post(ctx, folder, nil)
		}
		if err != nil {
			err = graphErr("create folder "+name+" in "+mailbox, err)
			var ge *GraphError
			if errors.As(err, &ge) && ge.Status == http.StatusConflict {
				// Made meanwhile (a parallel run, or a create whose answer
				// was lost): it is there to be found.
				id, err = find()
				if err == nil && id == "" {
					err = ge
				}
			}
			return err
		}
		id = deref(made.GetId())
		return nil
	})
	return id, err
}

// MailImport is one message to store as it was received: the message taken
// apart (mailmsg), with what the old host knew about it.
type MailImport struct {
	mailmsg.Message
	Received      time.Time // when the old host received it; zero: unknown
	Read, Flagged bool
	Draft         bool   // a draft at the old host stays a draft
	Key           string // dualmx's identity of the message, stored on it to find it again
}

// The properties below are how the message is made "received" rather than
// a draft. Microsoft documents none of this for Graph: creating a message
// (user-post-messages, mailfolder-post-messages) makes a draft, and
// PidTagMessageFlags can only be set before the first save (MS-OXCMSG
// 2.2.1.6, mfUnsent). The route here is the one migration tools use: set
// PidTagMessageFlags without mfUnsent in the create request itself, with the
// delivery and submit times (PidTagMessageDeliveryTime 0x0E06,
// PidTagClientSubmitTime 0x0039) beside it. It is the one place that
// guesses; VerifyImport checks the result on the tenant at run time.
//
// The ids are in the "{type} {proptag}" form of the Outlook extended
// properties overview, with the property identifier alone as migration
// tools write it; the overview's own example gives a whole tag (type
// included, "String 0x4001001E"). SystemTime values are ISO 8601 in UTC,
// as Graph writes every DateTimeOffset.
const (
	propMessageFlags = "Integer 0x0E07"
	propDeliveryTime = "SystemTime 0x0E06"
	propSubmitTime   = "SystemTime 0x0039"
	// propImportKey is dualmx's own named property, for finding a message
	// again after a run that stopped between the create and its record
	// (singlevaluelegacyextendedproperty-get: filter on id and value).
	propImportKey = "String {495f4444-31ba-458a-bf96-27235fbfd89e} Name dualmxImportKey"

	mfRead   = 0x1 // MSGFLAG_READ
	mfUnsent = 0x8 // MSGFLAG_UNSENT: the draft bit
)

type extProp struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

func importProperties(m *MailImport) []extProp {
	flags := 0
	if m.Read {
		flags |= mfRead
	}
	if m.Draft {
		flags |= mfUnsent
	}
	props := []extProp{{propMessageFlags, strconv.Itoa(flags)}}
	if !m.Received.IsZero() {
		props = append(props, extProp{propDeliveryTime, graphTime(m.Received)})
	}
	if !m.Sent.IsZero() {
		props = append(props, extProp{propSubmitTime, graphTime(m.Sent)})
	}
	if m.Key != "" {
		props = append(props, extProp{propImportKey, m.Key})
	}
	return props
}

func graphTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// The JSON of a message create (message resource; only what an import sets).
type jsonEmail struct {
	Name    string `json:"name,omitempty"`
	Address string `json:"address"`
}

type jsonRecipient struct {
	EmailAddress jsonEmail `json:"emailAddress"`
}

type jsonBody struct {
	ContentType string `json:"contentType"`
	Content     string `json:"content"`
}

type jsonFlag struct {
	FlagStatus string `json:"flagStatus"`
}

type jsonAttachment struct {
	ODataType    string `json:"@odata.type"`
	Name         string `json:"name"`
	ContentType  string `json:"contentType,omitempty"`
	ContentBytes string `json:"contentBytes"`
	IsInline     bool   `json:"isInline,omitempty"`
	ContentID    string `json:"contentId,omitempty"`
}

type jsonMessage struct {
	Subject           string           `json:"subject"`
	Body              jsonBody         `json:"body"`
	From              *jsonRecipient   `json:"from,omitempty"`
	To                []jsonRecipient  `json:"toRecipients,omitempty"`
	Cc                []jsonRecipient  `json:"ccRecipients,omitempty"`
	Bcc               []jsonRecipient  `json:"bccRecipients,omitempty"`
	ReplyTo           []jsonRecipient  `json:"replyTo,omitempty"`
	InternetMessageID string           `json:"internetMessageId,omitempty"`
	Importance        string           `json:"importance,omitempty"`
	IsRead            bool             `json:"isRead"`
	Flag              *jsonFlag        `json:"flag,omitempty"`
	Props             []extProp        `json:"singleValueExtendedProperties"`
	Attachments       []jsonAttachment `json:"attachments,omitempty"`
}

// marshal is json.Marshal without escaping <, > and &: an HTML body would
// grow by up to six times, and the request has a size limit.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func recipients(as []mailmsg.Address) []jsonRecipient {
	var out []jsonRecipient
	for _, a := range as {
		if a.Addr != "" {
			out = append(out, jsonRecipient{jsonEmail{a.Name, a.Addr}})
		}
	}
	return out
}

func fileAttachment(a mailmsg.Attachment) jsonAttachment {
	return jsonAttachment{ODataType: "#microsoft.graph.fileAttachment", Name: a.Name, ContentType: a.ContentType,
		ContentBytes: base64.StdEncoding.EncodeToString(a.Data), IsInline: a.Inline, ContentID: a.ContentID}
}

// movedBodyNote stands in for a body too large for one request; the body
// itself follows as an attachment.
const movedBodyNote = "The text of this message was too large for Microsoft Graph's message create; it is attached as %s."

// createBody is the JSON of the create request, with as many attachments as
// fit in createBudget; the rest are returned to be added one by one.
func createBody(m *MailImport) ([]byte, []mailmsg.Attachment, error) {
	jm := jsonMessage{Subject: m.Subject, Body: jsonBody{"text", m.Body}, To: recipients(m.To), Cc: recipients(m.Cc),
		Bcc: recipients(m.Bcc), ReplyTo: recipients(m.ReplyTo), InternetMessageID: m.InternetMessageID,
		Importance: m.Importance, IsRead: m.Read, Props: importProperties(m)}
	if m.HTML {
		jm.Body.ContentType = "html"
	}
	if m.From != nil && m.From.Addr != "" {
		jm.From = &jsonRecipient{jsonEmail{m.From.Name, m.From.Addr}}
	}
	if m.Flagged {
		jm.Flag = &jsonFlag{"flagged"}
	}
	b, err := marshal(jm)
	if err != nil {
		return nil, nil, err
	}
	rest := m.Attachments
	if len(b) > createBudget {
		// Only a giant body gets here (attachments are not in b yet): it
		// goes on as an attachment rather than failing the message.
		name := "message.txt"
		ct := "text/plain; charset=utf-8"
		if m.HTML {
			name, ct = "message.html", "text/html; charset=utf-8"
		}
		rest = append([]mailmsg.Attachment{{Name: name, ContentType: ct, Data: []byte(m.Body)}}, rest...)
		jm.Body = jsonBody{"text", fmt.Sprintf(movedBodyNote, name)}
		if b, err = marshal(jm); err != nil {
			return nil, nil, err
		}
	}
	size := len(b)
	var later []mailmsg.Attachment
	for _, a := range rest {
		ja := fileAttachment(a)
		ab, err := marshal(ja)
		if err != nil {
			return nil, nil, err
		}
		if size+len(ab)+1 > createBudget {
			later = append(later, a)
			continue
		}
		jm.Attachments = append(jm.Attachments, ja)
		size += len(ab) + 1
	}
	if len(jm.Attachments) > 0 {
		if b, err = marshal(jm); err != nil {
			return nil, nil, err
		}
	}
	return b, later, nil
}

// ImportMessage stores m in the folder as a received message (not a draft,
// unless m.Draft) and returns its ID. Attachments that do not fit in the
// create request follow it, through an upload session when they are 3 MB or
// more. If one of them fails, the message is removed again: a message is
// imported whole or not at all. A refusal for want of a permission names
// Mail.ReadWrite, as every call of the copy does.
func (g *Graph) ImportMessage(ctx context.Context, mailbox, folderID string, m *MailImport) (string, error) {
	id, err := g.importMessage(ctx, mailbox, folderID, m)
	return id, withNeed(err, NeedWriteMail)
}

func (g *Graph) importMessage(ctx context.Context, mailbox, folderID string, m *MailImport) (string, error) {
	body, later, err := createBody(m)
	if err != nil {
		return "", fmt.Errorf("m365: message %q: %w", m.Subject, err)
	}
	id, err := g.createMessage(ctx, mailbox, folderID, m.Key, body)
	if err != nil {
		return "", err
	}
	for _, a := range later {
		if len(a.Data) < sessionThreshold {
			err = g.postAttachment(ctx, mailbox, id, a)
		} else {
			err = g.uploadAttachment(ctx, mailbox, id, a)
		}
		if err != nil {
			if derr := g.DeleteMessage(context.WithoutCancel(ctx), mailbox, id); derr != nil {
				return "", fmt.Errorf("%w; removing the incomplete message %s also failed: %v", err, id, derr)
			}
			return "", err
		}
	}
	return id, nil
}

// createMessage posts the create. A create that failed with a temporary
// error may still have been carried out, so before trying again it looks
// for the message by its key: a retry must not make a second copy.
func (g *Graph) createMessage(ctx context.Context, mailbox, folderID, key string, body []byte) (string, error) {
	var id string
	tries := 0
	err := g.retry.do(ctx, func() error {
		tries++
		if tries > 1 && key != "" {
			found, err := g.FindImported(ctx, mailbox, folderID, key)
			if err != nil {
				return err
			}
			if found != "" {
				id = found
				return nil
			}
		}
		res, err := g.postJSON(ctx, "{+baseurl}/users/{user%2Did}/mailFolders/{mailFolder%2Did}/messages",
			map[string]string{"user%2Did": mailbox, "mailFolder%2Did": folderID}, body, models.CreateMessageFromDiscriminatorValue)
		if err != nil {
			return graphErr("store a message in "+mailbox, err)
		}
		msg, ok := res.(models.Messageable)
		if !ok || deref(msg.GetId()) == "" {
			return &GraphError{Op: "store a message in " + mailbox, Status: http.StatusOK, Message: "the answer has no message id"}
		}
		id = deref(msg.GetId())
		return nil
	})
	return id, err
}

// postJSON posts body, JSON made here rather than by the SDK's models, to
// the Graph URL template with its path parameters, and reads the answer
// with parse; Graph's errors come back as OData errors.
func (g *Graph) postJSON(ctx context.Context, template string, params map[string]string, body []byte, parse absser.ParsableFactory) (absser.Parsable, error) {
	params["baseurl"] = g.adapter.GetBaseUrl()
	ri := abs.NewRequestInformationWithMethodAndUrlTemplateAndPathParameters(abs.POST, template, params)
	ri.Headers.TryAdd("Accept", "application/json")
	ri.SetStreamContentAndContentType(body, "application/json")
	return g.adapter.Send(ctx, ri, parse, abs.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue})
}

func (g *Graph) postAttachment(ctx context.Context, mailbox, id string, a mailmsg.Attachment) error {
	body, err := marshal(fileAttachment(a))
	if err != nil {
		return err
	}
	return g.retry.do(ctx, func() error {
		_, err := g.postJSON(ctx, "{+baseurl}/users/{user%2Did}/messages/{message%2Did}/attachments",
			map[string]string{"user%2Did": mailbox, "message%2Did": id}, body, models.CreateAttachmentFromDiscriminatorValue)
		if err != nil {
			return graphErr("attach "+a.Name+" to a message in "+mailbox, err)
		}
		return nil
	})
}

// uploadAttachment attaches a large file through an upload session
// (attachment-createuploadsession; outlook-large-attachments): the session's
// URL carries its own token, so the PUTs go out without ours, and the URL is
// kept out of every error and log line.
func (g *Graph) uploadAttachment(ctx context.Context, mailbox, id string, a mailmsg.Attachment) error {
	op := "upload " + a.Name + " to a message in " + mailbox
	item := models.NewAttachmentItem()
	at := models.FILE_ATTACHMENTTYPE
	item.SetAttachmentType(&at)
	item.SetName(ptr(a.Name))
	item.SetSize(ptr(int64(len(a.Data))))
	if a.ContentType != "" {
		item.SetContentType(ptr(a.ContentType))
	}
	if a.Inline {
		item.SetIsInline(ptr(true))
		item.SetContentId(ptr(a.ContentID))
	}
	req := users.NewItemMessagesItemAttachmentsCreateUploadSessionPostRequestBody()
	req.SetAttachmentItem(item)
	var uploadURL string
	err := g.retry.do(ctx, func() error {
		s, err := g.users().ByUserId(mailbox).Messages().ByMessageId(id).Attachments().CreateUploadSession().Post(ctx, req, nil)
		if err != nil {
			return graphErr(op, err)
		}
		uploadURL = deref(s.GetUploadUrl())
		return nil
	})
	if err != nil {
		return err
	}
	u, perr := url.Parse(uploadURL)
	if perr != nil || u.Scheme != "https" || u.Host == "" {
		return &GraphError{Op: op, Status: http.StatusOK, Message: "the upload session has no https upload URL"}
	}
	total := len(a.Data)
	for start := 0; start < total; {
		end := min(start+uploadChunk, total)
		var next int
		err := g.retry.do(ctx, func() error {
			var err error
			next, err = g.putRange(ctx, op, uploadURL, a.Data, start, end)
			return err
		})
		if err != nil {
			return err
		}
		if next <= start || next > total {
			return &GraphError{Op: op, Status: http.StatusOK, Message: fmt.Sprintf("the upload session expects byte %d after %d-%d", next, start, end-1)}
		}
		start = next
	}
	return nil
}

// putRange sends bytes [start,end) and returns where the session expects
// the next range: total when the upload is complete.
func (g *Graph) putRange(ctx context.Context, op, target string, data []byte, start, end int) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, target, bytes.NewReader(data[start:end]))
	if err != nil {
		return 0, &GraphError{Op: op, Err: errors.New("bad upload URL")}
	}
	req.ContentLength = int64(end - start)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(data)))
	resp, err := g.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		// *url.Error repeats the URL, and with it the session's token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, &GraphError{Op: op, Err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusCreated:
		return len(data), nil
	case resp.StatusCode == http.StatusOK:
		var s struct {
			NextExpectedRanges []string `json:"nextExpectedRanges"`
		}
		if json.Unmarshal(raw, &s) != nil || len(s.NextExpectedRanges) == 0 {
			return 0, &GraphError{Op: op, Status: resp.StatusCode, Message: "the upload session's answer has no nextExpectedRanges"}
		}
		from, _, _ := strings.Cut(s.NextExpectedRanges[0], "-")
		n, err := strconv.Atoi(from)
		if err != nil {
			return 0, &GraphError{Op: op, Status: resp.StatusCode, Message: "the upload session's nextExpectedRanges is " + strconv.Quote(s.NextExpectedRanges[0])}
		}
		return n, nil
	}
	ge := &GraphError{Op: op, Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil {
		ge.Code, ge.Message = e.Error.Code, e.Error.Message
	}
	return 0, ge
}

// FindImported returns the ID of the message in the folder that carries
// key, or "" when there is none.
func (g *Graph) FindImported(ctx context.Context, mailbox, folderID, key string) (string, error) {
	filter := "singleValueExtendedProperties/any(ep: ep/id eq " + odataQuote(propImportKey) + " and ep/value eq " + odataQuote(key) + ")"
	var id string
	err := g.retry.do(ctx, func() error {
		r, err := g.users().ByUserId(mailbox).MailFolders().ByMailFolderId(folderID).Messages().Get(ctx,
			&users.ItemMailFoldersItemMessagesRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemMailFoldersItemMessagesRequestBuilderGetQueryParameters{Filter: &filter, Select: []string{"id"}}})
		if err != nil {
			return graphErr("look for an imported message in "+mailbox, err)
		}
		id = ""
		if v := r.GetValue(); len(v) > 0 {
			id = deref(v[0].GetId())
		}
		return nil
	})
	return id, withNeed(err, NeedWriteMail)
}

// DeleteMessage removes a message (it goes to Recoverable Items, as a
// deletion by the user would).
func (g *Graph) DeleteMessage(ctx context.Context, mailbox, id string) error {
	return withNeed(g.retry.do(ctx, func() error {
		if err := g.users().ByUserId(mailbox).Messages().ByMessageId(id).Delete(ctx, nil); err != nil {
			err = graphErr("remove message "+id+" from "+mailbox, err)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		return nil
	}), NeedWriteMail)
}

// NotHonouredError says the tenant stored an imported message differently
// from what was asked: the guess in importProperties does not hold there.
type NotHonouredError struct {
	Mailbox, ID string
	Problems    []string
}

func (e *NotHonouredError) Error() string {
	return fmt.Sprintf("microsoft 365 did not store the imported message as asked (%s); the message was removed again. "+
		"dualmx's way of importing (m365/mailimport.go, importProperties) does not work on this tenant; see docs/microsoft-365.md, \"Old mail\"",
		strings.Join(e.Problems, "; "))
}

// VerifyImport reads back a message ImportMessage made and checks that the
// tenant honoured what importProperties asked: not a draft, the received
// time, read state and flag.
func (g *Graph) VerifyImport(ctx context.Context, mailbox, id string, m *MailImport) error {
	var msg models.Messageable
	err := g.retry.do(ctx, func() error {
		var err error
		msg, err = g.users().ByUserId(mailbox).Messages().ByMessageId(id).Get(ctx, &users.ItemMessagesMessageItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.ItemMessagesMessageItemRequestBuilderGetQueryParameters{Select: []string{"isDraft", "isRead", "receivedDateTime", "flag"}}})
		if err != nil {
			return graphErr("read back imported message "+id+" in "+mailbox, err)
		}
		return nil
	})
	if err != nil {
		return withNeed(err, NeedWriteMail)
	}
	var problems []string
	if d := msg.GetIsDraft(); d == nil || *d != m.Draft {
		problems = append(problems, fmt.Sprintf("isDraft is %v, want %v", show(d), m.Draft))
	}
	if r := msg.GetIsRead(); r == nil || *r != m.Read {
		problems = append(problems, fmt.Sprintf("isRead is %v, want %v", show(r), m.Read))
	}
	if !m.Received.IsZero() {
		got := msg.GetReceivedDateTime()
		if got == nil || !got.UTC().Truncate(time.Second).Equal(m.Received.UTC().Truncate(time.Second)) {
			problems = append(problems, fmt.Sprintf("receivedDateTime is %v, want %s", show(got), graphTime(m.Received)))
		}
	}
	flagged := false
	if f := msg.GetFlag(); f != nil && f.GetFlagStatus() != nil {
		flagged = *f.GetFlagStatus() == models.FLAGGED_FOLLOWUPFLAGSTATUS
	}
	if flagged != m.Flagged {
		problems = append(problems, fmt.Sprintf("flagged is %v, want %v", flagged, m.Flagged))
	}
	if len(problems) == 0 {
		return nil
	}
	if derr := g.DeleteMessage(context.WithoutCancel(ctx), mailbox, id); derr != nil {
		problems = append(problems, "removing it failed: "+derr.Error())
	}
	return &NotHonouredError{Mailbox: mailbox, ID: id, Problems: problems}
}

func show[T any](p *T) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprint(*p)
}
