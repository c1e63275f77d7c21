// SPDX-License-Identifier: MIT

package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/dualmx/dualmx/m365"
)

// TeardownStep is one object of an import that teardown removes.
type TeardownStep struct {
	What string
	Do   func(ctx context.Context) error
}

// TeardownSteps lists what imports left in the tenant once the migration
// is over: dualmx's finished migration batches (Remove-MigrationBatch:
// "When the finalization process is complete, you can remove the batch")
// and then its IMAP endpoints. A batch that is still running is not
// removed; it is returned in kept with what to do about it. An endpoint
// stays, and is named in kept, while any batch other than the ones removed
// here uses it, dualmx's or anyone else's (Get-MigrationBatch -Endpoint:
// "returns a list of migration batches associated with the specified
// migration endpoint"). Objects not named by dualmx are never touched.
func TeardownSteps(ctx context.Context, c Commander) (steps []TeardownStep, kept []string, err error) {
	c = named(c)
	raw, err := c.Invoke(ctx, "Get-MigrationBatch", map[string]any{})
	if err != nil && !errors.Is(err, m365.ErrNotFound) {
		return nil, nil, fmt.Errorf("migrate: list migration batches: %w", err)
	}
	removed := map[string]bool{}
	for _, r := range raw {
		var b migrationOut
		if err := json.Unmarshal(r, &b); err != nil {
			return nil, nil, fmt.Errorf("migrate: list migration batches: %w", err)
		}
		name, status := text(b.Identity), text(b.Status)
		if !strings.HasPrefix(name, BatchPrefix) {
			continue
		}
		if !finishedStates[strings.ToLower(status)] {
			kept = append(kept, fmt.Sprintf("migration batch %s is %s: complete it first (dualmx import status completes a synced batch)", name, status))
			continue
		}
		removed[strings.ToLower(name)] = true
		steps = append(steps, TeardownStep{What: "remove migration batch " + name + " (" + status + ")", Do: func(ctx context.Context) error {
			if _, err := c.Invoke(ctx, "Remove-MigrationBatch", map[string]any{"Identity": name, "Confirm": false}); err != nil && !errors.Is(err, m365.ErrNotFound) {
				return fmt.Errorf("migrate: remove migration batch %s: %w", name, err)
			}
			return nil
		}})
	}
	raw, err = c.Invoke(ctx, "Get-MigrationEndpoint", map[string]any{})
	if err != nil && !errors.Is(err, m365.ErrNotFound) {
		return nil, nil, fmt.Errorf("migrate: list migration endpoints: %w", err)
	}
	var eps []string
	for _, r := range raw {
		var e migrationOut
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, nil, fmt.Errorf("migrate: list migration endpoints: %w", err)
		}
		if name := text(e.Identity); strings.HasPrefix(name, EndpointPrefix) {
			eps = append(eps, name)
		}
	}
	sort.Strings(eps)
	for _, name := range eps {
		users, err := endpointUsers(ctx, c, name, removed)
		if err != nil {
			return nil, nil, err
		}
		if len(users) > 0 {
			kept = append(kept, "migration endpoint "+name+": still used by migration batch "+strings.Join(users, ", "))
			continue
		}
		steps = append(steps, TeardownStep{What: "remove migration endpoint " + name, Do: func(ctx context.Context) error {
			_, err := c.Invoke(ctx, "Remove-MigrationEndpoint", map[string]any{"Identity": name, "Confirm": false})
			if err == nil || errors.Is(err, m365.ErrNotFound) {
				return nil
			}
			// A batch made since the plan may use it now: then it is
			// kept, and the plan that follows the teardown names the
			// batch, rather than the teardown failing on it.
			if users, uerr := endpointUsers(ctx, c, name, nil); uerr == nil && len(users) > 0 {
				return nil
			}
			return fmt.Errorf("migrate: remove migration endpoint %s: %w", name, err)
		}})
	}
	return steps, kept, nil
}

// endpointUsers names the batches that use the endpoint, leaving out those
// in skip (the ones this teardown removes before the endpoint).
func endpointUsers(ctx context.Context, c Commander, endpoint string, skip map[string]bool) ([]string, error) {
	raw, err := c.Invoke(ctx, "Get-MigrationBatch", map[string]any{"Endpoint": endpoint})
	if errors.Is(err, m365.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: migration batches of endpoint %s: %w", endpoint, err)
	}
	var out []string
	for _, r := range raw {
		var b migrationOut
		if err := json.Unmarshal(r, &b); err != nil {
			return nil, fmt.Errorf("migrate: migration batches of endpoint %s: %w", endpoint, err)
		}
		name := text(b.Identity)
		if name == "" {
			name = "(one whose name the reply does not show)"
		}
		if !skip[strings.ToLower(name)] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}
