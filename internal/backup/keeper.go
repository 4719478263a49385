package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// Keeper makes backups of a database and keeps the promise that an erased
// person's key leaves every kept backup: each erasure writes a row of
// backup_forget in its own transaction, and the keeper rewrites the
// shards, at once after the commit and again on its job until it is done.
type Keeper struct {
	db     *sqldb.DB
	log    *audit.Log
	setup  Setup
	logger *slog.Logger
	mu     sync.Mutex // one backup directory writer at a time in this process

	failures atomic.Int64 // backup runs that failed, since the start
	alert    func(ctx context.Context, subject, text string) error
}

// AlertWith makes a failed backup call send (the operator's mail, sent
// without the database).
func (k *Keeper) AlertWith(send func(ctx context.Context, subject, text string) error) {
	k.alert = send
}

// NewKeeper returns a Keeper of db's backups as setup says.
func NewKeeper(db *sqldb.DB, log *audit.Log, setup Setup, logger *slog.Logger) *Keeper {
	return &Keeper{db: db, log: log, setup: setup, logger: logger}
}

// Setup answers where the keeper's backups go and how they are sealed.
func (k *Keeper) Setup() Setup { return k.setup }

// Run makes a backup and prunes the oldest beyond the number kept; an
// older backup is deleted only once the new one is written and verifies.
func (k *Keeper) Run(ctx context.Context) (Manifest, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := lock(k.setup.Dir, false) // across processes: the CLI and the server
	if err != nil {
		return Manifest{}, err
	}
	defer l.unlock()
	m, err := k.run(ctx)
	if err != nil {
		k.failures.Add(1)
		k.logger.Error("the backup failed; older backups are kept", "error", err.Error())
		k.alertFailure(ctx, err)
	}
	return m, err
}

func (k *Keeper) run(ctx context.Context) (Manifest, error) {
	m, err := Run(ctx, k.db, k.setup.Options)
	if err != nil {
		return m, err
	}
	err = Verify(k.setup.Dir, m.ID, k.setup.Trusted...)
	if err == nil && k.setup.Regions != nil {
		err = VerifyContent(ctx, k.setup.Regions, k.setup.Dir, m, false)
	}
	if err != nil {
		return m, fmt.Errorf("the new backup does not verify, older ones are kept: %w", err)
	}
	if _, err := Prune(k.setup.Dir, k.setup.Keep, k.setup.Trusted...); err != nil {
		return m, err
	}
	kept, err := List(k.setup.Dir, k.setup.Trusted...)
	if err != nil {
		return m, err
	}
	if _, err := collectContent(ctx, k.setup.Regions, k.setup.Dir, kept); err != nil {
		return m, err
	}
	// What was queued before this backup was taken is gone from it
	// already; what is queued still applies to the older backups.
	_, err = k.forgetPending(ctx)
	return m, err
}

// Failures answers how many backup runs failed since the start.
func (k *Keeper) Failures() int64 { return k.failures.Load() }

// Newest answers when the newest kept backup was made; made is false when
// there is none.
func (k *Keeper) Newest() (at time.Time, made bool, err error) {
	ms, err := List(k.setup.Dir, k.setup.Trusted...)
	if err != nil || len(ms) == 0 {
		return time.Time{}, false, err
	}
	return ms[0].CreatedAt, true, nil
}

// RunIfDue makes the day's backup once it is due — at the configured
// time of day, or at once when there is none — and none was made since
// (the hourly job, run once across the nodes: a missed hour is made up by
// the next).
func (k *Keeper) RunIfDue(ctx context.Context) error {
	ms, err := List(k.setup.Dir, k.setup.Trusted...)
	if err != nil {
		return err
	}
	now := k.setup.Now().UTC()
	due := now.Truncate(24 * time.Hour).Add(k.setup.At)
	if due.After(now) {
		due = due.Add(-24 * time.Hour)
	}
	if len(ms) > 0 && !ms[0].CreatedAt.Before(due) {
		return nil
	}
	_, err = k.Run(ctx)
	if errors.Is(err, errBusy) {
		return nil // the CLI is making one now
	}
	return err
}

// Eraser is the backups' part of an erasure or anonymisation: the
// person's key is to leave every kept backup.
func (k *Keeper) Eraser() subject.Eraser {
	return subject.Eraser{Name: "backups", Erase: func(ctx context.Context, e *subject.Erasure) (func(context.Context), error) {
		_, err := e.Tx.Exec(ctx, `INSERT INTO backup_forget (tenant_id, subject_id, queued_at) VALUES (?, ?, ?)
			ON CONFLICT (tenant_id, subject_id) DO NOTHING`, e.TenantID, e.SubjectID, k.setup.Now().UnixMicro())
		if err != nil {
			return nil, fmt.Errorf("queue the backups' erasure: %w", err)
		}
		for _, b := range e.Shredded() {
			if _, err := e.Tx.Exec(ctx, `INSERT INTO backup_forget_blobs (tenant_id, region, blob_key, queued_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (region, blob_key) DO NOTHING`, e.TenantID, b.Region, b.Key, k.setup.Now().UnixMicro()); err != nil {
				return nil, fmt.Errorf("queue the backups' erasure of content: %w", err)
			}
		}
		return func(ctx context.Context) {
			if _, err := k.ForgetPending(ctx); err != nil {
				k.logger.Error("kept backups still hold an erased person's key; the backup job tries again", "error", err.Error())
			}
		}, nil
	}}
}

// ForgetPending removes the key of every person queued in backup_forget
// from every kept backup, records it in their tenant's trail, and answers
// how many it did.
func (k *Keeper) ForgetPending(ctx context.Context) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := lock(k.setup.Dir, true) // waits for a run under way in another process
	if err != nil {
		return 0, err
	}
	defer l.unlock()
	return k.forgetPending(ctx)
}

// forgetPending is ForgetPending, the lock held.
func (k *Keeper) forgetPending(ctx context.Context) (int, error) {
	rows, err := k.db.Read().Query(ctx, "SELECT tenant_id, subject_id FROM backup_forget ORDER BY queued_at")
	if err != nil {
		return 0, err
	}
	var todo [][2]string
	for rows.Next() {
		var t, s string
		if err := rows.Scan(&t, &s); err != nil {
			rows.Close()
			return 0, err
		}
		todo = append(todo, [2]string{t, s})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if err := k.forgetContent(ctx); err != nil {
		return 0, err
	}
	done := 0
	for _, ts := range todo {
		held, err := Forget(k.setup.Dir, ts[0], ts[1], k.setup.Signer, k.setup.Trusted...)
		if err != nil {
			return done, err
		}
		err = k.log.Commit(ctx, ts[0], func(ctx context.Context, tx *sqldb.Tx) error {
			if _, err := tx.Exec(ctx, "DELETE FROM backup_forget WHERE tenant_id = ? AND subject_id = ?", ts[0], ts[1]); err != nil {
				return err
			}
			return subject.BackupsReached(ctx, tx, ts[0], ts[1], k.setup.Now(), held)
		}, audit.Event{Action: "backup.forget", TargetType: "subject", TargetID: ts[1], SubjectID: ts[1],
			Details: map[string]any{"backups": held}})
		if err != nil {
			return done, err
		}
		done++
	}
	return done, nil
}

// Restored sets the audit anchor up again after the database was restored
// from the backup m, and records the restore in every tenant's trail
// (audit.Log.Restored): the chains go on from the heads signed in the
// manifest. It answers, per tenant, the last anchored event lost (0 when
// none beyond the backup survived).
func (k *Keeper) Restored(ctx context.Context, m Manifest) (map[string]int64, error) {
	lost := map[string]int64{}
	for _, id := range slices.Sorted(maps.Keys(m.Heads)) {
		to, err := k.log.Restored(ctx, id, m.Heads[id], map[string]any{"backup": m.ID, "backup_taken_at": m.CreatedAt.Format(time.RFC3339)})
		if err != nil {
			return lost, fmt.Errorf("tenant %s: %w", id, err)
		}
		lost[id] = to
	}
	return lost, nil
}

// forgetContent deletes the copies of the content erasures shredded
// (backup_forget_blobs) from every region's backup prefix, and takes them
// out of every kept backup's list.
func (k *Keeper) forgetContent(ctx context.Context) error {
	rows, err := k.db.Read().Query(ctx, "SELECT region, blob_key FROM backup_forget_blobs ORDER BY queued_at")
	if err != nil {
		return err
	}
	var todo []subject.Blob
	for rows.Next() {
		var b subject.Blob
		if err := rows.Scan(&b.Region, &b.Key); err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(todo) == 0 {
		return err
	}
	if err := ForgetContent(ctx, k.setup.Regions, k.setup.Dir, todo, k.setup.Signer, k.setup.Trusted...); err != nil {
		return err
	}
	return k.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		for _, b := range todo {
			if _, err := tx.Exec(ctx, "DELETE FROM backup_forget_blobs WHERE region = ? AND blob_key = ?", b.Region, b.Key); err != nil {
				return err
			}
		}
		return nil
	})
}

// alertFailure tells the operator that a backup failed, and since when
// none succeeded.
func (k *Keeper) alertFailure(ctx context.Context, failure error) {
	if k.alert == nil {
		return
	}
	newest := "there is no backup yet"
	if ms, err := List(k.setup.Dir, k.setup.Trusted...); err == nil && len(ms) > 0 {
		newest = "the newest good backup is of " + ms[0].CreatedAt.Format("2006-01-02 15:04 UTC") + ", and it is kept"
	}
	host, _ := os.Hostname()
	text := "A backup of Custodia on " + host + " failed at " + k.setup.Now().UTC().Format("2006-01-02 15:04 UTC") + ":\n\n  " +
		failure.Error() + "\n\nBackup location: " + k.setup.Dir + "\n" + strings.ToUpper(newest[:1]) + newest[1:] +
		". No older backup was deleted.\n\nThe next try is within the hour; `custodia backup run` tries now and says why it fails.\n"
	if err := k.alert(context.WithoutCancel(ctx), "Custodia: a backup failed on "+host, text); err != nil {
		k.logger.Error("the operator could not be mailed about the failed backup", "error", err.Error())
	}
}
