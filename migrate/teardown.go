// SPDX-License-Identifier: MIT

package migrate

import (
	"context"
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
// removed; it is returned in kept with what to do about it, and so is an
// endpoint a kept batch uses. Objects not named by dualmx are never touched.
func TeardownSteps(ctx context.Context, c Commander) (steps []TeardownStep, kept []string, err error) {
	raw, err := c.Invoke(ctx, "Get-MigrationBatch", map[string]any{})
	if err != nil && !errors.Is(err, m365.ErrNotFound) {
		return nil, nil, fmt.Errorf("migrate: list migration batches: %w", err)
	}
	inUse := map[string]bool{}
	anyKept := false
	for _, r := range raw {
		b, err := first([]jsonRaw{r})
		if err != nil {
			return nil, nil, fmt.Errorf("migrate: list migration batches: %w", err)
		}
		name, status := text(b.Identity), text(b.Status)
		if !strings.HasPrefix(name, BatchPrefix) {
			continue
		}
		if !finishedStates[strings.ToLower(status)] {
			kept = append(kept, fmt.Sprintf("migration batch %s is %s: complete it first (dualmx import status completes a synced batch)", name, status))
			if ep := text(b.SourceEndpoint); ep != "" {
				inUse[strings.ToLower(ep)] = true
			} else {
				anyKept = true
			}
			continue
		}
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
		e, err := first([]jsonRaw{r})
		if err != nil {
			return nil, nil, fmt.Errorf("migrate: list migration endpoints: %w", err)
		}
		if name := text(e.Identity); strings.HasPrefix(name, EndpointPrefix) {
			eps = append(eps, name)
		}
	}
	sort.Strings(eps)
	for _, name := range eps {
		if inUse[strings.ToLower(name)] || anyKept {
			kept = append(kept, "migration endpoint "+name+": a running batch may still use it")
			continue
		}
		steps = append(steps, TeardownStep{What: "remove migration endpoint " + name, Do: func(ctx context.Context) error {
			if _, err := c.Invoke(ctx, "Remove-MigrationEndpoint", map[string]any{"Identity": name, "Confirm": false}); err != nil && !errors.Is(err, m365.ErrNotFound) {
				return fmt.Errorf("migrate: remove migration endpoint %s: %w", name, err)
			}
			return nil
		}})
	}
	return steps, kept, nil
}
