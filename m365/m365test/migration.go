// SPDX-License-Identifier: MIT

package m365test

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strings"
	"time"
)

// MigrationEndpoint is an IMAP migration endpoint as the fake keeps it.
type MigrationEndpoint struct {
	Name, RemoteServer, Security string
	Port                         int
}

// MigrationBatch is a migration batch as the fake keeps it; tests move it
// along with SetMigrationBatch, as the migration service would.
type MigrationBatch struct {
	Name, Endpoint, Status string
	CSV                    string // decoded CSVData, for assertions
	User                   string // EmailAddress from the CSV
	ErrorSummary           string
	Total, Synced          int
	Completions            int       // Complete-MigrationBatch calls
	CompleteAfter          time.Time // set by the first Complete-MigrationBatch
	Starts                 int       // Start-MigrationBatch calls
}

// MigrationEndpoints lists the IMAP endpoints by lower-case name.
func (tn *Tenant) MigrationEndpoints() map[string]MigrationEndpoint {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	out := map[string]MigrationEndpoint{}
	for k, v := range tn.migEndpoints {
		out[k] = *v
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

// Batches lists the batches' names.
func (tn *Tenant) Batches() []string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var out []string
	for _, b := range tn.migBatches {
		out = append(out, b.Name)
	}
	sort.Strings(out)
	return out
}

// SetMigrationBatch changes a batch as the migration service would.
func (tn *Tenant) SetMigrationBatch(name, status, errorSummary string, total, synced int) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if b, ok := tn.migBatches[strings.ToLower(name)]; ok {
		b.Status, b.ErrorSummary, b.Total, b.Synced = status, errorSummary, total, synced
	}
}

// AddMigrationEndpoint and AddMigrationBatch set up what an admin (or an
// earlier tool) left in the tenant.
func (tn *Tenant) AddMigrationEndpoint(e MigrationEndpoint) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.initMigration()
	tn.migEndpoints[strings.ToLower(e.Name)] = &e
}

// AddMigrationBatch adds a batch for user in the given state.
func (tn *Tenant) AddMigrationBatch(b MigrationBatch) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.initMigration()
	b.User = strings.ToLower(b.User)
	tn.migBatches[strings.ToLower(b.Name)] = &b
}

func (tn *Tenant) initMigration() {
	if tn.migEndpoints == nil {
		tn.migEndpoints, tn.migBatches = map[string]*MigrationEndpoint{}, map[string]*MigrationBatch{}
	}
}

func (tn *Tenant) batchOf(user string) *MigrationBatch {
	for _, b := range tn.migBatches {
		if b.User == strings.ToLower(user) {
			return b
		}
	}
	return nil
}

var finished = map[string]bool{"Completed": true, "CompletedWithErrors": true, "Failed": true, "Stopped": true, "Corrupted": true}

// exoMigration answers the migration cmdlets. Shapes follow the cmdlets'
// reference pages (office-docs-powershell, ExchangePowerShell/*.md); where a
// page is silent the shape is marked [unverified].
func (tn *Tenant) exoMigration(w http.ResponseWriter, r *http.Request, cmd string, p map[string]any) {
	tn.initMigration()
	switch cmd {
	case "Get-MigrationEndpoint":
		// Get-MigrationEndpoint.md: by Identity, or every endpoint; for a
		// name that does not exist, the Caution on Identity: "returns *all*
		// objects".
		id := str(p, "Identity")
		var list, all []any
		for _, k := range sortedKeys(tn.migEndpoints) {
			e := tn.migEndpoints[k]
			out := map[string]any{"Identity": e.Name, "EndpointType": "IMAP", "RemoteServer": e.RemoteServer, "Port": e.Port, "Security": e.Security}
			all = append(all, out)
			if id == "" || strings.EqualFold(e.Name, id) {
				list = append(list, out)
			}
		}
		if id != "" && len(list) == 0 {
			tn.missing(w, r, id, all, 0)
			return
		}
		tn.page(w, r, list, 0)
	case "New-MigrationEndpoint":
		// New-MigrationEndpoint.md: -IMAP, -RemoteServer; -Port (default
		// 993); -Security None, Ssl or Tls.
		sec := str(p, "Security")
		port, portOK := p["Port"].(float64)
		if p["IMAP"] != true || str(p, "Name") == "" || str(p, "RemoteServer") == "" || (sec != "None" && sec != "Ssl" && sec != "Tls") || !portOK {
			tn.exoViolate(w, "New-MigrationEndpoint wants IMAP, Name, RemoteServer, Port and Security None|Ssl|Tls: %v", p)
			return
		}
		key := strings.ToLower(str(p, "Name"))
		if _, ok := tn.migEndpoints[key]; ok {
			exoError(w, 400, "Ex9D1C7E", "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException", "The migration endpoint "+str(p, "Name")+" already exists.")
			return
		}
		tn.migEndpoints[key] = &MigrationEndpoint{Name: str(p, "Name"), RemoteServer: str(p, "RemoteServer"), Security: sec, Port: int(port)}
		writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"Identity": str(p, "Name")}}})
	case "Remove-MigrationEndpoint":
		// Remove-MigrationEndpoint.md: Confirm:$false skips the prompt; an
		// endpoint a batch uses cannot go [unverified: the exception's name].
		id := str(p, "Identity")
		if p["Confirm"] != false {
			tn.exoViolate(w, "%s without Confirm: false would prompt", cmd)
			return
		}
		if _, ok := tn.migEndpoints[strings.ToLower(id)]; !ok {
			notFoundExo(w, id)
			return
		}
		for _, b := range tn.migBatches {
			if b.Endpoint == strings.ToLower(id) {
				exoError(w, 400, "Ex4E11B2", "Microsoft.Exchange.Migration.MigrationEndpointInUseException", "The endpoint is used by batch "+b.Name+".")
				return
			}
		}
		delete(tn.migEndpoints, strings.ToLower(id))
		w.WriteHeader(204)
	case "New-MigrationBatch":
		tn.newBatch(w, p)
	case "Get-MigrationBatch":
		// Get-MigrationBatch.md: the batch's status and counts; -Endpoint
		// "returns a list of migration batches associated with the
		// specified migration endpoint" and cannot go with -Identity; for
		// an Identity that does not exist, the Caution: every batch.
		id, ep := str(p, "Identity"), str(p, "Endpoint")
		if id != "" && ep != "" {
			tn.exoViolate(w, "Get-MigrationBatch: Endpoint cannot go with Identity")
			return
		}
		if _, ok := tn.migEndpoints[strings.ToLower(ep)]; ep != "" && !ok {
			notFoundExo(w, ep)
			return
		}
		var list, all []any
		for _, k := range sortedKeys(tn.migBatches) {
			b := tn.migBatches[k]
			failed := 0
			if b.Status == "Failed" || strings.HasSuffix(b.Status, "WithErrors") {
				failed = 1
			}
			// [unverified] Status serialises as {"Value": ...} here and as a
			// plain string in Get-MigrationUser: the client reads both.
			// CompleteAfter and CompleteAfterUTC hold the same value when the
			// batch has no TimeZone (Get-MigrationBatch.md, Note).
			var after any
			if !b.CompleteAfter.IsZero() {
				after = b.CompleteAfter.Format(time.RFC3339)
			}
			out := map[string]any{"Identity": b.Name, "Status": map[string]any{"Value": b.Status}, "TotalCount": 1,
				"FailedCount": failed, "SourceEndpoint": b.Endpoint, "CompleteAfter": after, "CompleteAfterUTC": after}
			all = append(all, out)
			if (id == "" || strings.EqualFold(b.Name, id)) && (ep == "" || strings.EqualFold(b.Endpoint, ep)) {
				list = append(list, out)
			}
		}
		if id != "" && len(list) == 0 {
			tn.missing(w, r, id, all, 0)
			return
		}
		tn.page(w, r, list, 0)
	case "Complete-MigrationBatch":
		// Complete-MigrationBatch.md: for a batch that is Synced or
		// SyncedWithErrors. "In the cloud-based service, this cmdlet sets
		// the CompleteAfter value to the current UTC time, which signals the
		// migration service to complete the batch as soon as possible": the
		// status stays until the service moves it (SetMigrationBatch:
		// Completing, then Completed), and running it again "within 8 hours
		// ... may not re-process the request", which is no error.
		b := tn.migBatches[strings.ToLower(str(p, "Identity"))]
		if b == nil {
			notFoundExo(w, str(p, "Identity"))
			return
		}
		if b.Status != "Synced" && b.Status != "SyncedWithErrors" {
			exoError(w, 400, "Ex8B6A41", "Microsoft.Exchange.Migration.MigrationBatchCannotBeCompletedException",
				"The migration batch can't be completed because its status is "+b.Status+".")
			return
		}
		if b.CompleteAfter.IsZero() {
			b.CompleteAfter = time.Now().UTC().Truncate(time.Second)
		}
		b.Completions++
		w.WriteHeader(204)
	case "Start-MigrationBatch":
		// Start-MigrationBatch.md: starts a created batch, or retries a
		// stopped one or the failed users of one that completed with errors.
		b := tn.migBatches[strings.ToLower(str(p, "Identity"))]
		if b == nil {
			notFoundExo(w, str(p, "Identity"))
			return
		}
		switch b.Status {
		case "Created", "Stopped", "CompletedWithErrors", "Failed":
			b.Status, b.Starts = "Syncing", b.Starts+1
			w.WriteHeader(204)
		default:
			exoError(w, 400, "Ex2F0E77", "Microsoft.Exchange.Migration.MigrationBatchCannotBeStartedException",
				"The migration batch can't be started because its status is "+b.Status+".")
		}
	case "Remove-MigrationBatch":
		// Remove-MigrationBatch.md: Confirm:$false skips the prompt.
		if p["Confirm"] != false {
			tn.exoViolate(w, "%s without Confirm: false would prompt", cmd)
			return
		}
		key := strings.ToLower(str(p, "Identity"))
		if tn.migBatches[key] == nil {
			notFoundExo(w, str(p, "Identity"))
			return
		}
		delete(tn.migBatches, key)
		w.WriteHeader(204)
	case "Get-MigrationUser", "Get-MigrationUserStatistics":
		// Get-MigrationUser.md, Get-MigrationUserStatistics.md: the user's
		// batch (BatchId), status and error, and the item counts.
		// The Caution on Identity holds here too: a user with no
		// migration gets every migration user.
		id := strings.ToLower(str(p, "Identity"))
		var all []any
		for _, k := range sortedKeys(tn.migBatches) {
			all = append(all, migrationUserOut(cmd, tn.migBatches[k]))
		}
		b := tn.batchOf(id)
		if b == nil {
			tn.missing(w, r, id, all, 0)
			return
		}
		tn.page(w, r, []any{migrationUserOut(cmd, b)}, 0)
	}
}

// migrationUserOut is the migration user of a batch (one user per batch
// here) as Get-MigrationUser or Get-MigrationUserStatistics shows it.
func migrationUserOut(cmd string, b *MigrationBatch) map[string]any {
	st := "Syncing"
	switch {
	case b.Status == "Failed":
		st = "Failed"
	case finished[b.Status] || b.Status == "Synced" || b.Status == "Completing":
		st = b.Status
	}
	// [unverified] Error is an exception object in this output (review,
	// finding 4), null when there is none.
	var errObj any
	if b.ErrorSummary != "" {
		errObj = map[string]any{"Message": b.ErrorSummary, "ClassName": "Microsoft.Exchange.Migration.MigrationPermanentException"}
	}
	out := map[string]any{"Identity": b.User, "BatchId": b.Name, "Status": st, "Error": errObj}
	if cmd == "Get-MigrationUserStatistics" {
		out["SyncedItemCount"], out["TotalItemsInSourceMailboxCount"], out["SkippedItemCount"] = b.Synced, b.Total, 0
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (tn *Tenant) newBatch(w http.ResponseWriter, p map[string]any) {
	if _, ok := p["AutoComplete"]; ok {
		// New-MigrationBatch.md, -AutoComplete: "You can only use this
		// switch for local moves and remote move migrations."
		tn.exoViolate(w, "New-MigrationBatch: AutoComplete is not for IMAP migrations")
		return
	}
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
	if name == "" || len(name) > 64 {
		// New-MigrationBatch.md, -Name: "The maximum length is 64 characters."
		tn.exoViolate(w, "New-MigrationBatch Name %q: 1 to 64 characters", name)
		return
	}
	if _, ok := tn.migBatches[strings.ToLower(name)]; ok {
		exoError(w, 400, "Ex1A2B3C", "Microsoft.Exchange.Migration.MigrationBatchNameAlreadyExistsException", "A migration batch with the name '"+name+"' already exists.")
		return
	}
	user, _, _ := strings.Cut(lines[1], ",")
	if b := tn.batchOf(user); b != nil {
		exoError(w, 400, "Ex5C0D9A", "Microsoft.Exchange.Migration.MigrationUserAlreadyExistsException",
			"The user "+user+" already exists in migration batch "+b.Name+".")
		return
	}
	status := "Created"
	if p["AutoStart"] == true {
		status = "Syncing"
	}
	tn.migBatches[strings.ToLower(name)] = &MigrationBatch{Name: name, Endpoint: ep, Status: status, CSV: string(csv), User: strings.ToLower(user)}
	writeJSON(w, 200, map[string]any{"value": []any{map[string]any{"Identity": name, "Status": status}}})
}
