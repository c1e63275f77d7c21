// SPDX-License-Identifier: MIT

// Package migrate moves an old mailbox's mail into Microsoft 365, by one of
// three routes. Microsoft's IMAP migration (a migration endpoint for the old
// host and a migration batch, created through the Exchange Online admin
// API) serves a user mailbox; it syncs until it is completed. The Graph copy
// (CopyIMAP) reads the old host over IMAP and creates each message through
// Microsoft Graph; it serves every mailbox, shared ones included, which
// Microsoft's migration does not document as targets. ImportPST does the
// same from an Outlook PST file. Copies keep each message's folder,
// received time, read state and flag, are resumable, and never store a
// message twice.
//
// Cmdlet parameters and output fields of the migration cmdlets are taken
// from their PowerShell reference pages and are [unverified] over
// InvokeCommand; they are all in this file.
package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dualmx/dualmx/m365"
)

// Commander runs Exchange cmdlets; *m365.InvokeCommandClient is one.
type Commander interface {
	Invoke(ctx context.Context, cmdlet string, params map[string]any) ([]json.RawMessage, error)
}

// naming makes a refused migration cmdlet say what to grant: the
// Exchange.ManageAsApp permission and the Entra role m365's table holds for
// the migration cmdlets (m365.NeedMigrationAdministrator, marked there as
// not verified beyond Exchange Administrator).
type naming struct{ c Commander }

func (n naming) Invoke(ctx context.Context, cmdlet string, params map[string]any) ([]json.RawMessage, error) {
	raw, err := n.c.Invoke(ctx, cmdlet, params)
	return raw, m365.WithNeed(err, m365.NeedManageAsApp, m365.NeedMigrationAdministrator)
}

func named(c Commander) Commander {
	if _, ok := c.(naming); ok {
		return c
	}
	return naming{c}
}

// BatchRequest is what StartBatch needs. Password is used once, inside the
// CSV sent to Microsoft, and kept nowhere.
type BatchRequest struct {
	Mailbox  string // the target mailbox (a user mailbox)
	Host     string // old host's IMAP server
	Port     int    // 993 unless said otherwise
	Mode     TLSMode
	User     string
	Password string
}

// Security is New-MigrationEndpoint's name for a TLS mode: Ssl is TLS from
// the first byte, Tls is STARTTLS (New-MigrationEndpoint, -Security: None,
// Ssl, Tls).
func Security(m TLSMode) string {
	switch m {
	case TLSNone:
		return "None"
	case TLSStartTLS:
		return "Tls"
	}
	return "Ssl"
}

// EndpointPrefix and BatchPrefix begin the names dualmx gives Microsoft's
// objects, so teardown finds its own and nothing else.
const (
	EndpointPrefix = "dualmx-imap-"
	BatchPrefix    = "dualmx-"
)

// EndpointName names the endpoint for one host, port and security; one
// endpoint per setting, so a second mailbox on the same host reuses it and a
// different setting never silently does.
func EndpointName(host string, port int, m TLSMode) string {
	return limitName(EndpointPrefix + strings.ToLower(host) + "-" + strconv.Itoa(port) + "-" + strings.ToLower(Security(m)))
}

// BatchName names one run's batch for a mailbox. A batch name must be
// unique and at most 64 characters (New-MigrationBatch, -Name); the time
// keeps a rerun from colliding with an earlier batch still being removed.
func BatchName(mailbox string, now time.Time) string {
	base := BatchPrefix + strings.NewReplacer("@", "-at-", ".", "-").Replace(strings.ToLower(mailbox))
	return limitName(base + "-" + now.UTC().Format("20060102t150405"))
}

// limitName shortens a name over 64 characters, keeping it unique with a
// hash of the whole.
func limitName(s string) string {
	if len(s) <= 64 {
		return s
	}
	h := sha256.Sum256([]byte(s))
	return s[:64-9] + "-" + hex.EncodeToString(h[:4])
}

// Batch states (MigrationBatchStatus in Get-MigrationBatch's output).
// Finished batches may be removed; a batch being removed blocks a new one
// for the same user until it is gone.
var finishedStates = map[string]bool{"completed": true, "completedwitherrors": true, "failed": true, "stopped": true, "corrupted": true}

// ErrBatchRunning means the mailbox already has a batch that is not finished.
var ErrBatchRunning = errors.New("a migration batch for this mailbox is still running")

// ErrBatchCompleted means the mailbox's batch completed: its mail is in.
var ErrBatchCompleted = errors.New("the migration batch for this mailbox has completed")

// ErrBatchRestarted means an earlier batch that ended with errors or was
// stopped was started again rather than replaced.
var ErrBatchRestarted = errors.New("the earlier migration batch was started again")

// StartBatch creates the IMAP migration endpoint (once per setting) and a
// batch for one mailbox that starts at once and syncs until completed (an
// IMAP batch does not complete by itself: New-MigrationBatch, -AutoComplete
// "can only be used for local moves and remote move migrations"). An
// earlier batch of the mailbox decides what a rerun does: one still running
// is left alone (ErrBatchRunning); one that completed is done
// (ErrBatchCompleted); one that completed with errors or was stopped is
// started again (Complete-MigrationBatch: "In Exchange Online, use the
// Start-MigrationBatch cmdlet to retry migration for failed users"), which
// keeps what it already moved (ErrBatchRestarted); one that failed outright
// (a wrong password, an unreachable host) is removed and replaced by a new
// one with the password given now.
func StartBatch(ctx context.Context, c Commander, r BatchRequest, now time.Time) (string, error) {
	c = named(c)
	if r.Port == 0 {
		r.Port = 993
	}
	ep := EndpointName(r.Host, r.Port, r.Mode)
	if _, found, err := lookUp(ctx, c, "Get-MigrationEndpoint", ep); err == nil && !found {
		if _, err := c.Invoke(ctx, "New-MigrationEndpoint", map[string]any{
			"IMAP": true, "Name": ep, "RemoteServer": r.Host, "Port": r.Port, "Security": Security(r.Mode),
		}); err != nil {
			return "", fmt.Errorf("migrate: create migration endpoint %s: %w", ep, err)
		}
	} else if err != nil {
		return "", err
	}
	if old, err := batchOfUser(ctx, c, r.Mailbox); err != nil {
		return "", err
	} else if old != "" {
		st, err := getBatch(ctx, c, old)
		switch {
		case errors.Is(err, ErrNoBatch):
		case err != nil:
			return "", err
		case strings.EqualFold(st.Status, "Removing"):
			return "", fmt.Errorf("migrate: the earlier batch %s is being removed; try again when it is gone", old)
		case !finishedStates[strings.ToLower(st.Status)]:
			return old, fmt.Errorf("migrate: %s is in batch %s (%s): %w", r.Mailbox, old, st.Status, ErrBatchRunning)
		case strings.EqualFold(st.Status, "Completed"):
			return old, fmt.Errorf("migrate: batch %s: %w", old, ErrBatchCompleted)
		case strings.EqualFold(st.Status, "CompletedWithErrors") || strings.EqualFold(st.Status, "Stopped"):
			if _, err := c.Invoke(ctx, "Start-MigrationBatch", map[string]any{"Identity": old, "Confirm": false}); err != nil {
				return "", fmt.Errorf("migrate: start the earlier batch %s again: %w", old, err)
			}
			return old, fmt.Errorf("migrate: batch %s (%s): %w", old, st.Status, ErrBatchRestarted)
		default:
			if _, err := c.Invoke(ctx, "Remove-MigrationBatch", map[string]any{"Identity": old, "Confirm": false}); err != nil && !errors.Is(err, m365.ErrNotFound) {
				return "", fmt.Errorf("migrate: remove the earlier batch %s: %w", old, err)
			}
		}
	}
	csv := "EmailAddress,UserName,Password\r\n" + csvField(r.Mailbox) + "," + csvField(r.User) + "," + csvField(r.Password) + "\r\n"
	name := BatchName(r.Mailbox, now)
	_, err := c.Invoke(ctx, "New-MigrationBatch", map[string]any{
		"Name": name, "SourceEndpoint": ep, "AutoStart": true,
		// CSVData is a Byte[] (New-MigrationBatch: the file read with
		// [System.IO.File]::ReadAllBytes). How InvokeCommand takes one is not
		// documented [unverified]: .NET writes a byte[] in JSON as a base64
		// string, so that is what is sent; a tenant that wants it otherwise
		// refuses the batch at import start with Exchange's own error.
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
	Name    string
	Status  string // Syncing, Synced, Completing, Completed, Failed, ...
	Failed  bool
	Error   string // Microsoft's reason when something failed
	Found   int    // items in the source mailbox, when reported
	Moved   int    // items synced
	Skipped int    // items Microsoft skipped
	// CompleteAfter is when completion was asked for, "" before:
	// Complete-MigrationBatch sets it in Exchange Online, and Microsoft
	// completes the batch in its own time after it.
	CompleteAfter string
}

// Finished reports whether the batch will do nothing more.
func (s BatchStatus) Finished() bool { return finishedStates[strings.ToLower(s.Status)] }

// Synced reports whether the first sync is done and the batch waits to be
// completed.
func (s BatchStatus) Synced() bool {
	return strings.EqualFold(s.Status, "Synced") || strings.EqualFold(s.Status, "SyncedWithErrors")
}

// ErrNoBatch means there is no batch for the mailbox.
var ErrNoBatch = errors.New("no migration batch")

// text reads a value that may come as a string, as {"Value": ...}, or as
// an object describing an error or an id.
func text(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o map[string]json.RawMessage
	if json.Unmarshal(raw, &o) == nil {
		for _, k := range []string{"Value", "Message", "LocalizedString", "ErrorMessage", "Name", "Id", "ToString"} {
			if v, ok := o[k]; ok {
				if t := text(v); t != "" {
					return t
				}
			}
		}
		for _, k := range []string{"InnerException", "Exception"} {
			if v, ok := o[k]; ok {
				if t := text(v); t != "" {
					return t
				}
			}
		}
		return ""
	}
	var a []json.RawMessage
	if json.Unmarshal(raw, &a) == nil {
		var parts []string
		for _, v := range a {
			if t := text(v); t != "" {
				parts = append(parts, t)
			}
		}
		return strings.Join(parts, "; ")
	}
	return strings.TrimSpace(string(raw))
}

func number(raw json.RawMessage) int {
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n
	}
	n, _ = strconv.Atoi(text(raw))
	return n
}

// migrationOut is the part of Get-MigrationBatch, Get-MigrationUser and
// Get-MigrationUserStatistics output read here. Error is an object in that
// output (an exception), not a string; text() reads either.
type migrationOut struct {
	Identity                       json.RawMessage
	Identifier                     json.RawMessage
	MailboxEmailAddress            json.RawMessage
	EmailAddress                   json.RawMessage
	BatchId                        json.RawMessage
	SourceEndpoint                 json.RawMessage
	Status                         json.RawMessage
	FailedCount                    json.RawMessage
	Error                          json.RawMessage
	ErrorSummary                   json.RawMessage
	CompleteAfterUTC               json.RawMessage
	SyncedItemCount                json.RawMessage
	SkippedItemCount               json.RawMessage
	TotalItemsInSourceMailboxCount json.RawMessage
}

type jsonRaw = json.RawMessage

// identities are the fields of a migration object that can name it: its
// Identity (a batch's or endpoint's name, a migration user's address), and
// for a migration user the mailbox's address. Which of them the REST output
// carries, and whether Identity comes as a string or an object, is not
// documented [unverified]; text() reads either, and this is the one place
// to correct.
func (o migrationOut) identities() []string {
	return []string{text(o.Identity), text(o.Identifier), text(o.MailboxEmailAddress), text(o.EmailAddress)}
}

// lookUp runs a Get-Migration* cmdlet for one identity and keeps the object
// that is the one asked for. Their pages (Get-MigrationBatch,
// Get-MigrationEndpoint, Get-MigrationUser, Get-MigrationUserStatistics)
// warn that "a non-existent value for the Identity parameter returns *all*
// objects": the first object of the reply may be another mailbox's or
// another batch's. None, or a not-found error, is found false.
func lookUp(ctx context.Context, c Commander, cmdlet, identity string) (o migrationOut, found bool, err error) {
	raw, err := c.Invoke(ctx, cmdlet, map[string]any{"Identity": identity})
	if errors.Is(err, m365.ErrNotFound) {
		return migrationOut{}, false, nil
	}
	if err != nil {
		return migrationOut{}, false, fmt.Errorf("migrate: %s %s: %w", cmdlet, identity, err)
	}
	var match []migrationOut
	for _, r := range raw {
		var o migrationOut
		if err := json.Unmarshal(r, &o); err != nil {
			return migrationOut{}, false, fmt.Errorf("migrate: %s %s: %w", cmdlet, identity, err)
		}
		for _, id := range o.identities() {
			if id != "" && strings.EqualFold(strings.TrimSpace(id), identity) {
				match = append(match, o)
				break
			}
		}
	}
	switch len(match) {
	case 0:
		return migrationOut{}, false, nil
	case 1:
		return match[0], true, nil
	}
	return migrationOut{}, false, fmt.Errorf("migrate: %s %s: %d objects answer to that identity (migrate/batch.go, identities); dualmx will not guess which",
		cmdlet, identity, len(match))
}

// batchOfUser returns the batch a mailbox is in, or "".
func batchOfUser(ctx context.Context, c Commander, mailbox string) (string, error) {
	u, found, err := lookUp(ctx, c, "Get-MigrationUser", mailbox)
	if err != nil || !found {
		return "", err
	}
	return text(u.BatchId), nil
}

func getBatch(ctx context.Context, c Commander, name string) (BatchStatus, error) {
	b, found, err := lookUp(ctx, c, "Get-MigrationBatch", name)
	if err != nil {
		return BatchStatus{}, err
	}
	if !found {
		return BatchStatus{}, fmt.Errorf("migrate: batch %s: %w", name, ErrNoBatch)
	}
	st := BatchStatus{Name: name, Status: text(b.Status), Error: text(b.Error), CompleteAfter: text(b.CompleteAfterUTC)}
	s := strings.ToLower(st.Status)
	st.Failed = s == "failed" || s == "corrupted" || strings.HasSuffix(s, "witherrors") || (strings.HasPrefix(s, "completed") && number(b.FailedCount) > 0)
	return st, nil
}

// GetBatchStatus reads a mailbox's batch (name, or the one Get-MigrationUser
// names when name is ""), its user and the user's statistics.
func GetBatchStatus(ctx context.Context, c Commander, mailbox, name string) (BatchStatus, error) {
	c = named(c)
	if name == "" {
		var err error
		if name, err = batchOfUser(ctx, c, mailbox); err != nil {
			return BatchStatus{}, err
		}
		if name == "" {
			return BatchStatus{}, fmt.Errorf("migrate: %s: %w", mailbox, ErrNoBatch)
		}
	}
	st, err := getBatch(ctx, c, name)
	if err != nil {
		return BatchStatus{}, err
	}
	if u, found, err := lookUp(ctx, c, "Get-MigrationUser", mailbox); err == nil && found {
		if strings.EqualFold(text(u.Status), "Failed") {
			st.Failed = true
		}
		if e := text(u.Error); e != "" {
			st.Error = e
		} else if e := text(u.ErrorSummary); e != "" && st.Error == "" {
			st.Error = e
		}
	}
	if s, found, err := lookUp(ctx, c, "Get-MigrationUserStatistics", mailbox); err == nil && found {
		st.Found, st.Moved, st.Skipped = number(s.TotalItemsInSourceMailboxCount), number(s.SyncedItemCount), number(s.SkippedItemCount)
		if st.Error == "" {
			st.Error = text(s.Error)
		}
	}
	return st, nil
}

// CompleteBatch finalises a synced batch (Complete-MigrationBatch: "After a
// migration batch has successfully run and has a status of Synced or
// SyncedWithErrors"): a last incremental sync, then no more. Until then an
// IMAP batch keeps syncing the old mailbox, which during the forwarding
// window would bring forwarded mail in a second time.
func CompleteBatch(ctx context.Context, c Commander, name string) error {
	c = named(c)
	if _, err := c.Invoke(ctx, "Complete-MigrationBatch", map[string]any{"Identity": name, "Confirm": false}); err != nil {
		return fmt.Errorf("migrate: complete batch %s: %w", name, err)
	}
	return nil
}
