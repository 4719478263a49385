package app_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/job"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// Two instances of the app on one database (PostgreSQL as when scaled
// out; SQLite too): each periodic job runs once per period between them —
// the daily digest is mailed once, one backup is made in their shared
// location — and when the instance running a job dies, the other takes it
// over once the lease runs out.
func TestJobsRunOnceAcrossTwoInstances(t *testing.T) {
	coretest.Engines(t, func(t *testing.T, databaseURL string) {
		ctx := context.Background()
		a := apptest.New(t, databaseURL)
		cfg := a.App.Config
		cfg.DataDir, cfg.Node = t.TempDir(), "node-b"
		cfg.MasterKeyURL = "file://" + filepath.Join(a.DataDir, "master.key")
		if databaseURL == "" {
			cfg.DatabaseURL = "sqlite://" + filepath.Join(a.DataDir, "custodia.db")
		}
		cfg.AnchorURL = a.App.Config.AnchorURL // one anchor location, an object per node
		// One backup location, and the keys its backups are signed and
		// encrypted with, as the README says nodes share them.
		cfg.BackupDir = a.App.Backups.Setup().Dir
		for _, f := range []string{"backup-signing.key", "backup-identity.txt"} {
			b, err := os.ReadFile(filepath.Join(a.DataDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cfg.DataDir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		b, err := app.Open(ctx, cfg, app.Options{Options: core.Options{Now: a.Now.Now, Test: core.TestOptions{NoSync: true, CheapHash: true}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })

		// Something due for the digest: a request past its deadline.
		if _, err := a.App.Rights.Create(ctx, a.Tenant.ID, rightsInput("zed@example.org")); err != nil {
			t.Fatal(err)
		}
		a.Now.Advance(33 * 24 * time.Hour)
		// To 09:01 the next day (UTC, the tenant's zone): the periods (whole
		// hours) are plain, and the three of them stay within one day — the
		// digest is daily, so a test run near midnight would see two.
		start := a.Now.Now().UTC()
		a.Now.Advance(time.Date(start.Year(), start.Month(), start.Day()+1, 9, 1, 0, 0, time.UTC).Sub(start))

		runners := []*job.Runner{runner(t, a.App), runner(t, b)}
		for period := range 3 {
			var mu sync.Mutex
			var ran []string
			var wg sync.WaitGroup
			for _, r := range append(runners, runners...) { // each looks twice, at once
				wg.Go(func() {
					names, err := r.RunDue(ctx)
					if err != nil {
						t.Errorf("period %d: %v", period, err)
					}
					mu.Lock()
					ran = append(ran, names...)
					mu.Unlock()
				})
			}
			wg.Wait()
			sort.Strings(ran)
			if want := periodic(a.App); !slices.Equal(ran, want) {
				t.Fatalf("period %d ran %v; want each periodic job once: %v", period, ran, want)
			}
			a.Now.Advance(time.Hour)
		}
		if n := sqldbtest.Strings(t, a.App.DB, "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'requests-digest'")[0]; n != "1" {
			t.Errorf("%s digests queued for the one owner; want 1", n)
		}
		s := a.App.Backups.Setup()
		if ms, err := backup.List(s.Dir, s.Trusted...); err != nil || len(ms) != 1 {
			t.Errorf("two nodes made %d backups in three hours (%v); want one", len(ms), err)
		}

		// Every job is due again, and instance b is killed while it runs
		// the sweep: its row stays claimed, with a lease it never renews.
		a.Now.Advance(time.Hour)
		now := a.Now.Now()
		if err := a.App.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE jobs SET owner = ?, lease_until = ?, next_run_at = 0 WHERE name = 'files.blobs.sweep'",
				runners[1].Owner(), now.Add(5*time.Minute).UnixMicro())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if ran, err := runners[0].RunDue(ctx); err != nil || slices.Contains(ran, "files.blobs.sweep") || len(ran) != len(periodic(a.App))-1 {
			t.Fatalf("with b's lease live, a ran %v (%v); want everything but the sweep", ran, err)
		}
		a.Now.Advance(5 * time.Minute) // b's lease runs out; a looks again
		if ran, err := runners[0].RunDue(ctx); err != nil || !slices.Equal(ran, []string{"files.blobs.sweep"}) {
			t.Fatalf("after b's lease ran out, a ran %v (%v); want the sweep", ran, err)
		}
	})
}

func TestMain(m *testing.M) { sqldbtest.Main(m) }

func runner(t *testing.T, a *app.App) *job.Runner {
	t.Helper()
	r := a.Runner()
	if err := r.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func periodic(a *app.App) []string {
	var names []string
	for _, j := range a.Jobs() {
		if j.Kind == job.Periodic {
			names = append(names, j.Name)
		}
	}
	sort.Strings(names)
	return names
}

func rightsInput(email string) rights.Input { return rights.Input{Type: "access", Email: email} }
