// SPDX-License-Identifier: MIT

package provisioning

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dualmx/dualmx/internal/visible"
)

// WriteText prints the plan for a person to read, grouped by person and
// by function. Marks: + adds, - removes, ~ changes dualmx's own state,
// ! needs a person's attention, · is for information.
func (p *Plan) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "Plan for %s on %s (from %s)\n", p.Domain, p.Date, p.File)
	for _, wn := range p.Warnings {
		fmt.Fprintf(b, "warning: %s\n", visible.String(wn))
	}
	fmt.Fprintf(b, "\nPeople\n")
	for _, pp := range p.People {
		fmt.Fprintf(b, "  %s: %s <%s>\n", visible.String(pp.Key), visible.String(pp.DisplayName), visible.String(pp.UPN))
		if len(pp.Steps) == 0 {
			fmt.Fprintf(b, "    = up to date\n")
		}
		for _, s := range pp.Steps {
			fmt.Fprintf(b, "    %s %s\n", mark(s.Kind), visible.String(s.Text))
		}
	}
	fmt.Fprintf(b, "\nFunctions\n")
	for _, fp := range p.Functions {
		fmt.Fprintf(b, "  %s: %s\n", visible.String(fp.Address), visible.String(fp.Name))
		if len(fp.Steps) == 0 && len(fp.Unexpected) == 0 {
			fmt.Fprintf(b, "    = up to date\n")
		}
		for _, s := range fp.Steps {
			fmt.Fprintf(b, "    %s %s\n", mark(s.Kind), visible.String(s.Text))
		}
		for _, u := range fp.Unexpected {
			fmt.Fprintf(b, "    ! unexpected access: %s has %s, which the file does not explain\n", visible.String(u.User), visible.String(string(u.Right)))
		}
		for _, n := range fp.Notes {
			fmt.Fprintf(b, "    · %s\n", visible.String(n))
		}
	}
	n, u := len(p.Steps()), p.UnexpectedCount()
	fmt.Fprintf(b, "\n%s", plural(n, "change", "changes"))
	if u > 0 {
		fmt.Fprintf(b, "; %s to look at", plural(u, "unexpected grant", "unexpected grants"))
	}
	b.WriteString(".\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func mark(k Kind) string {
	switch k {
	case RevokeAccess:
		return "-"
	case MarkProvisioned:
		return "~"
	}
	return "+"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// WriteJSON prints the plan for scripts.
func (p *Plan) WriteJSON(w io.Writer) error {
	type out struct {
		*Plan
		Changes    int `json:"changes"`
		Unexpected int `json:"unexpected"`
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out{p, len(p.Steps()), p.UnexpectedCount()})
}
