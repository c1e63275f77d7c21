// SPDX-License-Identifier: MIT

package provisioning

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/m365"
)

// AccessRow is one person's (or trustee's) access to one shared mailbox.
type AccessRow struct {
	Mailbox  string   `json:"mailbox"`
	Function string   `json:"function"` // "" when the file does not name the mailbox
	User     string   `json:"user"`
	Person   string   `json:"person,omitempty"`
	Rights   []string `json:"rights"`  // what the tenant grants now
	Since    string   `json:"since"`   // holder from (file)
	Granted  string   `json:"granted"` // first grant by dualmx still on record (audit log)
	Until    string   `json:"until"`   // holder until (file)
	Status   string   `json:"status"`
}

// Row statuses. Anything but ok and upcoming is a difference from the file.
const (
	StatusOK         = "ok"
	StatusUpcoming   = "upcoming"
	StatusMissing    = "missing"
	StatusExpired    = "expired"
	StatusUnexpected = "unexpected"
	StatusUnmanaged  = "not in file"
)

// ObserveAll is Observe plus every shared mailbox of the tenant that the
// file does not name, with its grants, for the access report.
func ObserveAll(ctx context.Context, env Env, d *Desired) (*Actual, error) {
	a, err := Observe(ctx, env, d)
	if err != nil {
		return nil, err
	}
	a.Others, a.OtherMbx = map[string][]m365.Grant{}, map[string]m365.Mailbox{}
	all, err := env.MB.SharedMailboxes(ctx)
	if err != nil {
		return nil, err
	}
	for _, mb := range all {
		addr := strings.ToLower(mb.PrimarySmtpAddress)
		if _, known := a.Mailboxes[addr]; known || d.function(addr) != nil {
			continue
		}
		gs, err := env.MB.Grants(ctx, addr)
		if err != nil {
			return nil, err
		}
		a.OtherMbx[addr], a.Others[addr] = mb, gs
	}
	return a, nil
}

func (d *Desired) function(addr string) *Function {
	for _, f := range d.Functions {
		if f.Address == addr {
			return f
		}
	}
	return nil
}

// Report lists who has access to every shared mailbox on day today, from
// the tenant, the file and the audit log, and marks every difference.
func Report(d *Desired, a *Actual, today Date) []AccessRow {
	var rows []AccessRow
	for _, f := range d.Functions {
		grants := a.Grants[f.Address]
		seen := map[string]bool{}
		// The holder entry that speaks for a person today: the current
		// one, else the latest past one, else the next future one.
		entry := map[string]Holder{}
		var order []string
		for _, h := range f.Holders {
			prev, ok := entry[h.Person]
			if !ok {
				order = append(order, h.Person)
			}
			if !ok || rank(h, today) > rank(prev, today) || (rank(h, today) == rank(prev, today) && prev.From.Before(h.From)) {
				entry[h.Person] = h
			}
		}
		for _, key := range order {
			per, h := d.person(key), entry[key]
			row := AccessRow{Mailbox: f.Address, Function: f.Name, User: per.UPN, Person: key, Since: h.From.String(), Rights: []string{}}
			if h.Until != nil {
				row.Until = h.Until.String()
			}
			for _, r := range []m365.Right{m365.FullAccess, m365.SendAs} {
				if hasGrant(grants, per.UPN, r) {
					row.Rights = append(row.Rights, string(r))
				}
			}
			row.Granted = grantedAt(a, f.Address, per.UPN)
			switch {
			case h.Current(today) && len(row.Rights) == 2:
				row.Status = StatusOK
			case h.Current(today):
				row.Status = StatusMissing
			case h.Expired(today) && len(row.Rights) > 0:
				row.Status = StatusExpired
			case h.Expired(today):
				continue // history: the audit log has it
			case len(row.Rights) > 0:
				row.Status = StatusUnexpected // access before the from date
			default:
				row.Status = StatusUpcoming
			}
			seen[strings.ToLower(per.UPN)] = true
			rows = append(rows, row)
		}
		rows = append(rows, strays(f.Address, f.Name, grants, seen, d, StatusUnexpected)...)
	}
	others := make([]string, 0, len(a.OtherMbx))
	for addr := range a.OtherMbx {
		others = append(others, addr)
	}
	sort.Strings(others)
	for _, addr := range others {
		r := strays(addr, "", a.Others[addr], map[string]bool{}, d, StatusUnmanaged)
		if len(r) == 0 {
			r = []AccessRow{{Mailbox: addr, Rights: []string{}, Status: StatusUnmanaged}}
		}
		rows = append(rows, r...)
	}
	return rows
}

func rank(h Holder, today Date) int {
	switch {
	case h.Current(today):
		return 2
	case h.Expired(today):
		return 1
	}
	return 0
}

// strays are grants on a mailbox that no holder entry accounts for.
func strays(addr, name string, grants []m365.Grant, seen map[string]bool, d *Desired, status string) []AccessRow {
	byUser := map[string]*AccessRow{}
	var order []string
	for _, g := range grants {
		per := d.personByUPN(g.User)
		user := g.User
		if per != nil {
			user = per.UPN
		}
		if seen[strings.ToLower(user)] {
			continue
		}
		r, ok := byUser[strings.ToLower(user)]
		if !ok {
			r = &AccessRow{Mailbox: addr, Function: name, User: user, Rights: []string{}, Status: status}
			if per != nil {
				r.Person = per.Key
			}
			byUser[strings.ToLower(user)] = r
			order = append(order, strings.ToLower(user))
		}
		r.Rights = append(r.Rights, string(g.Right))
	}
	out := make([]AccessRow, 0, len(order))
	for _, u := range order {
		sort.Strings(byUser[u].Rights)
		out = append(out, *byUser[u])
	}
	return out
}

func grantedAt(a *Actual, mailbox, upn string) string {
	var first time.Time
	for _, r := range []m365.Right{m365.FullAccess, m365.SendAs} {
		if t, ok := a.GrantedAt[grantKey(mailbox, upn, r)]; ok && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	if first.IsZero() {
		return ""
	}
	return first.UTC().Format("2006-01-02 15:04Z")
}

// WriteAccessText prints the report as a table.
func WriteAccessText(w io.Writer, rows []AccessRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tUSER\tRIGHTS\tSINCE\tGRANTED\tUNTIL\tSTATUS")
	diffs := 0
	for _, r := range rows {
		if r.Status != StatusOK && r.Status != StatusUpcoming {
			diffs++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", visible.String(r.Mailbox), visible.String(dash(r.User)), visible.String(dash(strings.Join(r.Rights, "+"))),
			dash(r.Since), dash(r.Granted), dash(r.Until), r.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s from the desired state.\n", plural(diffs, "difference", "differences"))
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteAccessJSON prints the report for scripts.
func WriteAccessJSON(w io.Writer, rows []AccessRow) error {
	if rows == nil {
		rows = []AccessRow{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// WriteAccessCSV prints the report for a spreadsheet.
func WriteAccessCSV(w io.Writer, rows []AccessRow) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"mailbox", "function", "user", "person", "rights", "since", "granted", "until", "status"})
	for _, r := range rows {
		cw.Write([]string{r.Mailbox, r.Function, r.User, r.Person, strings.Join(r.Rights, "+"), r.Since, r.Granted, r.Until, r.Status})
	}
	cw.Flush()
	return cw.Error()
}
