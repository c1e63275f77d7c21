// SPDX-License-Identifier: MIT

// Package migrate moves an old mailbox's mail into the shared mailbox.
// Microsoft's own IMAP migration is preferred: a migration endpoint for the
// old host and a migration batch, created through the Exchange Online admin
// API, which syncs incrementally until completed. Where that path is not
// available, Copy moves the mail itself: IMAP from the old host, Graph into
// the mailbox, folder by folder, resumable and de-duplicated by Message-ID.
// Either way a Progress says per folder how many messages were found and moved.
//
// Cmdlet parameters and output fields of the migration cmdlets are taken from
// their PowerShell reference pages and are [unverified] over InvokeCommand;
// they are all in this file.
package migrate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dualmx/dualmx/m365"
)

// Commander runs Exchange cmdlets; *m365.InvokeCommandClient is one.
type Commander interface {
	Invoke(ctx context.Context, cmdlet string, params map[string]any) ([]json.RawMessage, error)
}

// BatchRequest is what StartBatch needs. Password is used once, inside the
// CSV sent to Microsoft, and kept nowhere.
type BatchRequest struct {
	Mailbox  string // the shared mailbox, target of the import
	Host     string // old host's IMAP server
	Port     int    // 993 unless said otherwise
	User     string
	Password string
}

// EndpointName and BatchName are the names dualmx gives Microsoft's objects.
func EndpointName(host string) string { return "dualmx-imap-" + host }

// BatchName names the batch of one mailbox.
func BatchName(mailbox string) string {
	return "dualmx-" + strings.NewReplacer("@", "-at-", ".", "-").Replace(strings.ToLower(mailbox))
}

// StartBatch creates the IMAP migration endpoint (once per host) and a batch
// for one mailbox that starts at once and keeps syncing.
func StartBatch(ctx context.Context, c Commander, r BatchRequest) (string, error) {
	if r.Port == 0 {
		r.Port = 993
	}
	ep := EndpointName(r.Host)
	if _, err := c.Invoke(ctx, "Get-MigrationEndpoint", map[string]any{"Identity": ep}); m365.IsNotFound(err) {
		if _, err := c.Invoke(ctx, "New-MigrationEndpoint", map[string]any{
			"IMAP": true, "Name": ep, "RemoteServer": r.Host, "Port": r.Port, "Security": "Ssl",
		}); err != nil {
			return "", fmt.Errorf("migrate: create migration endpoint %s: %w", ep, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("migrate: migration endpoint %s: %w", ep, err)
	}
	csv := "EmailAddress,UserName,Password\r\n" + csvField(r.Mailbox) + "," + csvField(r.User) + "," + csvField(r.Password) + "\r\n"
	name := BatchName(r.Mailbox)
	_, err := c.Invoke(ctx, "New-MigrationBatch", map[string]any{
		"Name": name, "SourceEndpoint": ep, "AutoStart": true,
		// CSVData is a byte[] in PowerShell; JSON carries it base64-encoded.
		"CSVData": base64.StdEncoding.EncodeToString([]byte(csv)),
	})
	if err != nil {
		// The error names the cmdlet, never the CSV.
		return "", fmt.Errorf("migrate: create migration batch %s: %w", name, err)
	}
	return name, nil
}

func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\r\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// BatchStatus is Microsoft's view of a batch, mailbox-wide: the migration
// service reports no per-folder counts.
type BatchStatus struct {
	Name   string
	Status string // Syncing, Synced, Completed, Failed, ...
	Failed bool
	Error  string // Microsoft's error summary when failed
	Found  int    // items in the source mailbox, when reported
	Moved  int    // items synced
}

type batchOut struct {
	Identity    string
	Status      json.RawMessage
	FailedCount int
}

type userOut struct {
	Identity     string
	Status       json.RawMessage
	ErrorSummary string
}

type statsOut struct {
	SyncedItemCount                int
	TotalItemsInSourceMailboxCount int
	Error                          string
}

// statusText reads a status that may come as a string or as {"Value": ...}.
func statusText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var v struct{ Value string }
	_ = json.Unmarshal(raw, &v)
	return v.Value
}

// ErrNoBatch means there is no batch for the mailbox.
var ErrNoBatch = errors.New("no migration batch")

// GetBatchStatus reads the batch, its user and the user's statistics.
func GetBatchStatus(ctx context.Context, c Commander, mailbox string) (BatchStatus, error) {
	name := BatchName(mailbox)
	raw, err := c.Invoke(ctx, "Get-MigrationBatch", map[string]any{"Identity": name})
	if m365.IsNotFound(err) || (err == nil && len(raw) == 0) {
		return BatchStatus{}, fmt.Errorf("migrate: %s: %w", mailbox, ErrNoBatch)
	}
	if err != nil {
		return BatchStatus{}, fmt.Errorf("migrate: batch %s: %w", name, err)
	}
	var b batchOut
	if err := json.Unmarshal(raw[0], &b); err != nil {
		return BatchStatus{}, fmt.Errorf("migrate: batch %s: %w", name, err)
	}
	st := BatchStatus{Name: name, Status: statusText(b.Status)}
	st.Failed = strings.EqualFold(st.Status, "Failed") || strings.HasPrefix(st.Status, "Completed") && b.FailedCount > 0 ||
		strings.EqualFold(st.Status, "SyncedWithErrors") || strings.EqualFold(st.Status, "CompletedWithErrors")
	if raw, err := c.Invoke(ctx, "Get-MigrationUser", map[string]any{"Identity": mailbox}); err == nil && len(raw) > 0 {
		var u userOut
		if json.Unmarshal(raw[0], &u) == nil {
			if us := statusText(u.Status); strings.EqualFold(us, "Failed") {
				st.Failed = true
			}
			st.Error = u.ErrorSummary
		}
	}
	if raw, err := c.Invoke(ctx, "Get-MigrationUserStatistics", map[string]any{"Identity": mailbox}); err == nil && len(raw) > 0 {
		var s statsOut
		if json.Unmarshal(raw[0], &s) == nil {
			st.Found, st.Moved = s.TotalItemsInSourceMailboxCount, s.SyncedItemCount
			if st.Error == "" {
				st.Error = s.Error
			}
		}
	}
	return st, nil
}
