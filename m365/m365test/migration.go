// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// MigrationBatch is a migration batch as the fake keeps it; tests move it
// along with SetMigrationBatch.
type MigrationBatch struct {
	Name, Endpoint, Status string
	CSV                    string // decoded CSVData, for assertions
	User                   string // EmailAddress from the CSV
	ErrorSummary           string
	Total, Synced          int
}

// MigrationEndpoints lists the IMAP endpoints created: name → remote server.
func (tn *Tenant) MigrationEndpoints() map[string]string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	out := map[string]string{}
	for k, v := range tn.migEndpoints {
		out[k] = v
	}
	return out
}

// Batch returns a batch by name.
func (tn *Tenant) Batch(name string) (MigrationBatch, bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	b, ok := tn.migBatches[strings.ToLower(name)]
	if !ok {
		return MigrationBatch{}, false
	}
	return *b, true
}

// SetMigrationBatch changes a batch as the migration service would.
func (tn *Tenant) SetMigrationBatch(name, status, errorSummary string, total, synced int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if b, ok := tn.migBatches[strings.ToLower(name)]; ok {
		b.Status, b.ErrorSummary, b.Total, b.Synced = status, errorSummary, total, synced
	}
}

func (tn *Tenant) exoMigration(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any) {
	if tn.migEndpoints == nil {
		tn.migEndpoints, tn.migBatches = map[string]string{}, map[string]*MigrationBatch{}
	}
	switch cmd {
	case "Get-MigrationEndpoint":
		id := str(p, "Identity")
		srv, ok := tn.migEndpoints[strings.ToLower(id)]
		if !ok {
			notFoundExo(w, id)
			return
		}
		tn.page(w, r, []any{map[string]any{"Identity": id, "EndpointType": "IMAP", "RemoteServer": srv}}, 0)
	case "New-MigrationEndpoint":
		if p["IMAP"] != true || str(p, "Name") == "" || str(p, "RemoteServer") == "" || str(p, "Security") == "" {
			tn.exoViolate(w, "New-MigrationEndpoint wants IMAP, Name, RemoteServer, Security: %v", p)
			return
		}
		tn.migEndpoints[strings.ToLower(str(p, "Name"))] = str(p, "RemoteServer")
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"Identity": str(p, "Name")}}})
	case "New-MigrationBatch":
		ep := strings.ToLower(str(p, "SourceEndpoint"))
		if _, ok := tn.migEndpoints[ep]; !ok {
			notFoundExo(w, str(p, "SourceEndpoint"))
			return
		}
		csv, err := base64.StdEncoding.DecodeString(str(p, "CSVData"))
		lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
		if err != nil || len(lines) < 2 || !strings.HasPrefix(lines[0], "EmailAddress,UserName,Password") {
			tn.exoViolate(w, "New-MigrationBatch CSVData is not base64 of an IMAP migration CSV")
			return
		}
		name := str(p, "Name")
		if _, ok := tn.migBatches[strings.ToLower(name)]; ok {
			exoError(w, 400, "Ex1A2B3C", "Microsoft.Exchange.Migration.MigrationBatchNameAlreadyExistsException", "A migration batch with the name '"+name+"' already exists.")
			return
		}
		status := "Created"
		if p["AutoStart"] == true {
			status = "Syncing"
		}
		user, _, _ := strings.Cut(lines[1], ",")
		tn.migBatches[strings.ToLower(name)] = &MigrationBatch{Name: name, Endpoint: ep, Status: status, CSV: string(csv), User: strings.ToLower(user)}
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"Identity": name, "Status": status}}})
	case "Get-MigrationBatch":
		b, ok := tn.migBatches[strings.ToLower(str(p, "Identity"))]
		if !ok {
			notFoundExo(w, str(p, "Identity"))
			return
		}
		failed := 0
		if b.Status == "Failed" {
			failed = 1
		}
		tn.page(w, r, []any{map[string]any{"Identity": b.Name, "Status": map[string]any{"Value": b.Status}, "TotalCount": 1, "FailedCount": failed}}, 0)
	case "Get-MigrationUser", "Get-MigrationUserStatistics":
		id := strings.ToLower(str(p, "Identity"))
		for _, b := range tn.migBatches {
			if b.User != id {
				continue
			}
			st := "Syncing"
			if b.Status == "Failed" {
				st = "Failed"
			}
			tn.page(w, r, []any{map[string]any{"Identity": id, "Status": map[string]any{"Value": st}, "ErrorSummary": b.ErrorSummary,
				"SyncedItemCount": b.Synced, "TotalItemsInSourceMailboxCount": b.Total}}, 0)
			return
		}
		notFoundExo(w, id)
	}
}
