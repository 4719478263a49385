package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

// restore restores the backup m of env into a fresh data dir as the CLI
// does — the database, then the anchor set up again — with the master key
// copied there and the anchor at anchorURL (the old one: it survived), and
// answers the restored core.
func restore(t *testing.T, env *coretest.Env, m backup.Manifest, anchorURL string) *core.Core {
	t.Helper()
	ctx := context.Background()
	setup := env.Core.Backups.Setup()
	b, err := os.ReadFile(setup.Identity)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	nd := t.TempDir()
	key, err := os.ReadFile(filepath.Join(env.DataDir, keyring.MasterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(nd, keyring.MasterKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.RestoreSQLite(ctx, setup.Dir, m.ID, "ed25519:0000", ids, filepath.Join(nd, "custodia.db"), nil); err == nil ||
		!strings.Contains(err.Error(), "not signed by the key") {
		t.Fatalf("a restore trusting another key: %v", err)
	}
	var last int64
	got, err := backup.RestoreSQLite(ctx, setup.Dir, m.ID, setup.Fingerprint, ids, filepath.Join(nd, "custodia.db"), func(done, total int64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	if last != m.Database.Bytes || got.ID != m.ID {
		t.Errorf("progress ended at %d of %d bytes; manifest %s", last, m.Database.Bytes, got.ID)
	}
	if _, err := backup.RestoreSQLite(ctx, setup.Dir, m.ID, setup.Fingerprint, ids, filepath.Join(nd, "custodia.db"), nil); err == nil ||
		!strings.Contains(err.Error(), "empty data directory") {
		t.Errorf("a restore over a database: %v", err)
	}
	cfg := config.Default()
	cfg.DataDir, cfg.AnchorURL, cfg.Node = nd, anchorURL, "restored"
	cfg.BackupDir = setup.Dir
	c, err := core.Open(ctx, cfg, &core.Options{Test: core.TestOptions{NoSync: true, CheapHash: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Backups.Restored(ctx, got); err != nil {
		t.Fatal(err)
	}
	return c
}

// A backup taken while people are being added restores to one instant:
// every person added before it with their create event and their key,
// none after; each chain verifies, saying the restore lost the events
// anchored since, and the trail records it. A person erased after the
// backup stays unreadable in it: their key left the backup's shards.
func TestRestoreToOneInstant(t *testing.T) {
	env := coretest.New(t, "")
	ctx := context.Background()
	ann, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "ann@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	var added atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: fmt.Sprintf("w%d-%d@example.org", w, i)}); err != nil {
					t.Error(err)
					return
				}
				added.Add(1)
			}
		}()
	}
	for added.Load() < 50 {
		time.Sleep(5 * time.Millisecond)
	}
	m, err := env.Core.Backups.Run(ctx)
	for n := added.Load(); added.Load() < n+50; {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Core.Subjects.Erase(ctx, env.Tenant.ID, ann.ID, subject.EraseInput{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	anchorURL := env.Core.Config.AnchorURL
	if err := env.Core.Close(); err != nil { // the old server is gone; its anchor survived
		t.Fatal(err)
	}

	c := restore(t, env, m, anchorURL)
	subjects := sqldbtest.Int(t, c.DB, "SELECT count(*) FROM subjects WHERE tenant_id = ?", env.Tenant.ID)
	created := sqldbtest.Int(t, c.DB, "SELECT count(*) FROM audit_events WHERE tenant_id = ? AND action = 'subject.create'", env.Tenant.ID)
	keys := sqldbtest.Int(t, c.DB, "SELECT count(*) FROM subject_keys WHERE tenant_id = ?", env.Tenant.ID)
	if subjects < 51 || subjects > int(added.Load()) || created != subjects || keys != subjects-1 {
		t.Errorf("restored %d people, %d create events, %d keys (of %d added); want one instant, every key but the erased one's", subjects, created, keys, added.Load()+1)
	}
	if _, err := c.Subjects.Get(ctx, env.Tenant.ID, ann.ID); err == nil {
		t.Errorf("the person erased after the backup opens in it")
	}
	v, err := c.Log.Verify(ctx, env.Tenant.ID)
	if err != nil || !v.OK || !strings.Contains(v.Restored, "were lost") {
		t.Fatalf("audit verify after the restore: %s %v", v, err)
	}
	es, _, err := audit.NewReader(c.DB, c.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "backup.restore"})
	if err != nil || len(es) != 1 || es[0].Details["backup"] != m.ID || es[0].Details["events_lost_from"] != float64(m.Heads[env.Tenant.ID].Seq+1) {
		t.Errorf("the trail's record of the restore: %+v %v", es, err)
	}
	t.Logf("%s; %d restored of %d added", v, subjects, added.Load()+1)
	// The chain goes on, anchored, after the restore.
	if _, err := c.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "new@example.org"}); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Log.Verify(ctx, env.Tenant.ID); err != nil || !v.OK {
		t.Errorf("audit verify once the server writes again: %s %v", v, err)
	}
	// A restore record edited in the anchor (to hide lost events) fails.
	path := filepath.Join(strings.TrimPrefix(anchorURL, "file://"), "restored.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"kind":"restored","from":`, `"kind":"restored","from":1`, 1) // 90 → 190
	if edited == string(b) {
		t.Fatalf("no restore record in %s", b)
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Log.Verify(ctx, env.Tenant.ID); err != nil || v.OK || !strings.Contains(v.Problem, "does not verify") {
		t.Errorf("audit verify with an edited restore record: %s %v", v, err)
	}
}
