package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/job"
)

// Jobs is every piece of background work, on one screen: what runs, how
// often, and whether once across all nodes (Periodic) or on each node
// (PerNode). app.Serve runs them on a job.Runner.
func (c *Core) Jobs() []job.Job {
	hourly := func(name string, run func(context.Context) error) job.Job {
		return job.Job{Name: name, Kind: job.Periodic, Every: time.Hour, Run: run}
	}
	counted := func(f func(context.Context) (int, error)) func(context.Context) error {
		return func(ctx context.Context) error { _, err := f(ctx); return err }
	}
	return []job.Job{
		// Per node: the outbox (its messages carry their own leases), woken
		// when a message is queued; the audit anchor of this node; its
		// caches; its ledger.
		{Name: "mail.outbox", Kind: job.PerNode, Every: 30 * time.Second, Run: counted(c.Mail.Deliver), Wake: c.Mail.Woken()},
		{Name: "audit.anchor", Kind: job.PerNode, Every: time.Second, Run: c.Anchor.Flush},
		// This node's caches drop what another node or process changed,
		// even when no request comes (requests check at their start).
		{Name: "caches.sweep", Kind: job.PerNode, Every: time.Second, Run: c.DB.Sweep},
		// This node's ledger, copied to the backup location every minute.
		{Name: "ledger.copy", Kind: job.PerNode, Every: time.Minute, Run: func(context.Context) error {
			return c.Ledger.CopyTo(backup.LedgerDir(c.Backups.Setup().Dir))
		}},
		// Once per hour across all nodes.
		hourly("retention", c.eachTenant(func(ctx context.Context, id string) error { _, err := c.Retention.Run(ctx, id, false); return err })),
		hourly("requests.digest", c.eachTenant(func(ctx context.Context, id string) error { _, err := c.Rights.Digest(ctx, id); return err })),
		hourly("portal.intakes.purge", counted(c.Rights.PurgeIntakes)),
		hourly("accounts.close", counted(c.Rights.CloseDue)),
		hourly("files.trash.purge", counted(c.Files.PurgeDue)),
		hourly("files.blobs.sweep", counted(c.Files.Sweep)),
		hourly("files.migrations.resume", c.Files.ResumeMigrations),
		hourly("files.versions.prune", counted(c.Files.PruneVersions)),
		hourly("files.uploads.expire", counted(c.Files.ExpireUploads)),
		// Backups: the day's, checked every hour; an erased person's key
		// leaves every kept backup right after the erasure commits, and
		// here again if that failed.
		hourly("backup", c.Backups.RunIfDue),
		hourly("backup.forget", counted(c.Backups.ForgetPending)),
	}
}

// eachTenant runs fn for every active tenant, going on past failures.
func (c *Core) eachTenant(fn func(ctx context.Context, tenantID string) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ids, err := c.Tenants.ActiveIDs(ctx)
		if err != nil {
			return err
		}
		var failed []error
		for _, id := range ids {
			if err := fn(ctx, id); err != nil {
				failed = append(failed, fmt.Errorf("tenant %s: %w", id, err))
			}
		}
		return errors.Join(failed...)
	}
}
