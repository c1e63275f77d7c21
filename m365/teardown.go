// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// TeardownStep removes one thing dualmx added to the tenant. Plan reads the
// tenant and returns the changes that would remove it (none when it is gone
// already), and notes on what it leaves and why; the changes are
// read-modify-write, so what others added next to dualmx's entries stays.
type TeardownStep struct {
	Name string
	Plan func(ctx context.Context) (changes []SetupChange, notes []string, err error)
}

// PlannedStep is one step's changes and notes.
type PlannedStep struct {
	Name    string        `json:"step"`
	Changes []SetupChange `json:"changes"`
	Notes   []string      `json:"kept,omitempty"`
}

// PlanTeardown runs every step's Plan.
func PlanTeardown(ctx context.Context, steps []TeardownStep) ([]PlannedStep, error) {
	var out []PlannedStep
	for _, s := range steps {
		cs, notes, err := s.Plan(ctx)
		if err != nil {
			return nil, fmt.Errorf("teardown %s: %w", s.Name, err)
		}
		out = append(out, PlannedStep{Name: s.Name, Changes: cs, Notes: notes})
	}
	return out, nil
}

// RelayTeardown is what m365 setup added for the relay and teardown takes
// away after the cutover: the relay's and the old host's addresses in the
// connector's Enhanced Filtering skip list, and the relay's domain among the
// trusted ARC sealers. The connector itself and DKIM signing stay: DKIM is
// the domain's own, and a connector without skip-listing changes nothing.
func (x *Exchange) RelayTeardown(s RelaySetup) []TeardownStep {
	return []TeardownStep{
		{Name: "Enhanced Filtering skip list of " + s.ConnectorName, Plan: func(ctx context.Context) ([]SetupChange, []string, error) {
			cs, err := x.planUnskip(ctx, s)
			return cs, nil, err
		}},
		{Name: "trusted ARC sealer " + s.ArcDomain, Plan: func(ctx context.Context) ([]SetupChange, []string, error) {
			cs, err := x.planUntrust(ctx, s)
			return cs, nil, err
		}},
	}
}

func (x *Exchange) planUnskip(ctx context.Context, s RelaySetup) ([]SetupChange, error) {
	ours := map[string]bool{}
	for _, ip := range union(s.RelayIPs, s.OldHostIPs) {
		ours[canonicalIP(ip)] = true
	}
	if len(ours) == 0 {
		return nil, errors.New("give the relay's and the old host's addresses (--relay-ip, --old-host-ip) as at setup")
	}
	c, err := x.connector(ctx, s.ConnectorName)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keep, drop []string
	for _, ip := range strings.Split(normValue("EFSkipIPs", c["EFSkipIPs"]), ",") {
		switch {
		case ip == "":
		case ours[ip]:
			drop = append(drop, ip)
		default:
			keep = append(keep, ip)
		}
	}
	if len(drop) == 0 {
		return nil, nil
	}
	// Set-InboundConnector replaces the list; $null clears it.
	var v any = keep
	if len(keep) == 0 {
		v = nil
	}
	return []SetupChange{{What: fmt.Sprintf("remove %s from the Enhanced Filtering skip list of %s (keeping %s)",
		strings.Join(drop, ", "), s.ConnectorName, orNone(keep)), Cmdlet: "Set-InboundConnector",
		Params: map[string]any{"Identity": s.ConnectorName, "EFSkipIPs": v}}}, nil
}

func (x *Exchange) planUntrust(ctx context.Context, s RelaySetup) ([]SetupChange, error) {
	if s.ArcDomain == "" {
		return nil, errors.New("no ARC signing domain (arc.domain of the config, or --arc-domain)")
	}
	sealers, err := x.ArcTrustedSealers(ctx)
	if err != nil {
		return nil, err
	}
	var keep []string
	for _, v := range sealers {
		if v = strings.TrimSpace(v); v != "" && !strings.EqualFold(v, s.ArcDomain) {
			keep = append(keep, v)
		}
	}
	if !hasDomain(sealers, s.ArcDomain) {
		return nil, nil
	}
	return []SetupChange{setSealers("remove "+s.ArcDomain+" from the trusted ARC sealers (keeping "+orNone(keep)+")", keep)}, nil
}
