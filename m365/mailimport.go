// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"encoding/base64"
	"strings"

	abs "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
)

// EnsureFolder returns the ID of the mail folder at path in mailbox,
// creating missing folders; a first element INBOX is the well-known Inbox.
// It needs Mail.ReadWrite. Folders are found by display name.
func (g *Graph) EnsureFolder(ctx context.Context, mailbox string, path []string) (string, error) {
	parent := ""
	if len(path) > 0 && strings.EqualFold(path[0], "INBOX") {
		parent, path = "inbox", path[1:]
	}
	for _, name := range path {
		id, err := g.childFolder(ctx, mailbox, parent, name)
		if err != nil {
			return "", err
		}
		parent = id
	}
	if parent == "" {
		parent = "inbox"
	}
	return parent, nil
}

func odataQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (g *Graph) childFolder(ctx context.Context, mailbox, parent, name string) (string, error) {
	filter := "displayName eq " + odataQuote(name)
	folder := models.NewMailFolder()
	folder.SetDisplayName(ptr(name))
	var id string
	err := g.retry.do(ctx, func() error {
		mf := g.users().ByUserId(mailbox).MailFolders()
		var found []models.MailFolderable
		if parent == "" {
			r, err := mf.Get(ctx, &users.ItemMailFoldersRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemMailFoldersRequestBuilderGetQueryParameters{Filter: &filter}})
			if err != nil {
				return graphErr("find folder "+name+" in "+mailbox, err)
			}
			found = r.GetValue()
		} else {
			r, err := mf.ByMailFolderId(parent).ChildFolders().Get(ctx, &users.ItemMailFoldersItemChildFoldersRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemMailFoldersItemChildFoldersRequestBuilderGetQueryParameters{Filter: &filter}})
			if err != nil {
				return graphErr("find folder "+name+" in "+mailbox, err)
			}
			found = r.GetValue()
		}
		if len(found) > 0 {
			id = deref(found[0].GetId())
			return nil
		}
		var made models.MailFolderable
		var err error
		if parent == "" {
			made, err = mf.Post(ctx, folder, nil)
		} else {
			made, err = mf.ByMailFolderId(parent).ChildFolders().Post(ctx, folder, nil)
		}
		if err != nil {
			return graphErr("create folder "+name+" in "+mailbox, err)
		}
		id = deref(made.GetId())
		return nil
	})
	return id, err
}

// CreateMessage stores one MIME message in a folder: POST
// /users/{mailbox}/mailFolders/{id}/messages with the message base64-encoded
// as text/plain, Graph's MIME form. [unverified: Graph may show messages
// created this way as drafts; Microsoft's own migration batch has no such
// limit, which is one more reason it is the preferred path.]
func (g *Graph) CreateMessage(ctx context.Context, mailbox, folderID string, mime []byte) error {
	body := []byte(base64.StdEncoding.EncodeToString(mime))
	return g.retry.do(ctx, func() error {
		ri := abs.NewRequestInformationWithMethodAndUrlTemplateAndPathParameters(abs.POST,
			"{+baseurl}/users/{user%2Did}/mailFolders/{mailFolder%2Did}/messages",
			map[string]string{"baseurl": g.adapter.GetBaseUrl(), "user%2Did": mailbox, "mailFolder%2Did": folderID})
		ri.Headers.TryAdd("Accept", "application/json")
		ri.SetStreamContentAndContentType(body, "text/plain")
		_, err := g.adapter.Send(ctx, ri, models.CreateMessageFromDiscriminatorValue,
			abs.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue})
		if err != nil {
			return graphErr("store a message in "+mailbox, err)
		}
		return nil
	})
}
