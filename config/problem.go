// SPDX-License-Identifier: MIT

package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with (or worth a warning about) a configuration.
type Problem struct {
	File string
	// Line is 1-based; 0 when the value did not come from the file (a default
	// or a flag) or the problem concerns the file as a whole.
	Line int
	// Key is the dotted key path, e.g. "delivery.retry_max", with an index
	// for list elements, e.g. "inbound.allowed_networks[1]".
	Key     string
	Msg     string
	Warning bool
}

// String formats the problem as "file:line: key: msg", leaving out the parts
// that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every error found in one configuration. Parse returns it as the
// error so the operator fixes the file in one round instead of one per start.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps *Problems) add(file string, line int, key, format string, args ...any) {
	*ps = append(*ps, Problem{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// sortByLine puts problems in file order; problems without a line (missing
// required keys, values from flags) go last, in the order they were found.
func (ps Problems) sortByLine() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Line, ps[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}

// hasKey reports whether a problem was already recorded for key, so later
// checks do not pile a second, derived complaint onto the same value.
func (ps Problems) hasKey(key string) bool {
	for _, p := range ps {
		if p.Key == key || strings.HasPrefix(p.Key, key+"[") {
			return true
		}
	}
	return false
}
