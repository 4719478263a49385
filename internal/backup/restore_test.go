package backup_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/ledger"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

// restore restores the backup m of env into a fresh data dir as the CLI
// does — the database, then the anchor set up again — with the master key
// copied there and the anchor at anchorURL (the old one: it survived), and
// answers the restored core.
func restore(t *testing.T, env *coretest.Env, m backup.Manifest, anchorURL string) *core.Core {
	t.Helper()
	return restoreWith(t, env, m, anchorURL, false)
}

// restoreWith is restore, replaying the ledger (read from the backup
// location alone, as on a new machine) when replay is true.
func restoreWith(t *testing.T, env *coretest.Env, m backup.Manifest, anchorURL string, replay bool) *core.Core {
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
	// Into an empty data dir (SQLite) or an empty database (PostgreSQL).
	databaseURL := ""
	into := func(fingerprint string, progress backup.Progress) (backup.Manifest, error) {
		return backup.RestoreSQLite(ctx, setup.Dir, m.ID, fingerprint, ids, filepath.Join(nd, "custodia.db"), progress)
	}
	if env.Core.DB.Dialect() == sqldb.Postgres {
		databaseURL = sqldbtest.EmptyPostgresURL(t)
		target, err := sqldb.Open(ctx, databaseURL, nd)
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()
		into = func(fingerprint string, progress backup.Progress) (backup.Manifest, error) {
			return backup.RestorePostgres(ctx, setup.Dir, m.ID, fingerprint, ids, target, progress)
		}
	}
	if _, err := into("ed25519:0000", nil); err == nil || !strings.Contains(err.Error(), "not signed by the key") {
		t.Fatalf("a restore trusting another key: %v", err)
	}
	var last int64
	got, err := into(setup.Fingerprint, func(done, total int64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	if last != m.Database.Bytes || got.ID != m.ID {
		t.Errorf("progress ended at %d of %d bytes; manifest %s", last, m.Database.Bytes, got.ID)
	}
	if _, err := into(setup.Fingerprint, nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("a restore over a database: %v", err)
	}
	cfg := config.Default()
	cfg.DataDir, cfg.DatabaseURL, cfg.AnchorURL, cfg.Node = nd, databaseURL, anchorURL, "restored"
	cfg.BackupDir = setup.Dir
	c, err := core.Open(ctx, cfg, &core.Options{Test: core.TestOptions{NoSync: true, CheapHash: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The files come back from the copies in the old regions.
	from, err := blobstore.OpenRegions(ctx, env.Core.Regions.Names(), regionURLs(env.Core.Config))
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	if err := backup.RestoreContent(ctx, from, c.Regions, setup.Dir, got, func(int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Backups.Restored(ctx, got); err != nil {
		t.Fatal(err)
	}
	if replay {
		entries, err := ledger.Read(setup.Trusted, backup.LedgerDir(setup.Dir))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Replay(ctx, entries); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// newsReader registers the consent purpose "news" and answers a person,
// cy@example.org, who granted it.
func newsReader(t *testing.T, env *coretest.Env, ctx context.Context) subject.Subject {
	t.Helper()
	if _, err := env.Core.Register.Create(ctx, env.Tenant.ID, register.New{NoticeText: "Monthly news by email.",
		Purpose: register.Purpose{Key: "news", Name: "Newsletter", Description: "Our monthly newsletter", LegalBasis: register.Consent,
			DataCategories: []string{"user.contact.email"}, RetentionDays: 730}}); err != nil {
		t.Fatal(err)
	}
	cy, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "cy@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Core.Consent.Record(ctx, env.Tenant.ID, cy.ID, consent.Input{Purpose: "news", Action: consent.Grant, Method: "web_form"}); err != nil {
		t.Fatal(err)
	}
	return cy
}

// regionURLs are the configured regions' URLs, in order.
func regionURLs(cfg config.Config) []string {
	var out []string
	for _, r := range cfg.Regions {
		out = append(out, r.URL)
	}
	return out
}

// A backup taken while people are being added restores to one instant:
// every person added before it with their create event and their key,
// none after; each chain verifies, saying the restore lost the events
// anchored since, and the trail records it. A person erased after the
// backup stays unreadable in it: their key left the backup's shards.
func TestRestoreToOneInstant(t *testing.T) {
	coretest.Engines(t, func(t *testing.T, databaseURL string) { restoreToOneInstant(t, coretest.New(t, databaseURL)) })
}

func restoreToOneInstant(t *testing.T, env *coretest.Env) {
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

// File content is backed up in its region, incrementally: a second backup
// with no new file copies nothing. A deletion while a backup copies waits
// for it. An erased person's linked file leaves every kept backup (its
// copy and every list). A restore brings the files back, equal to the
// originals, in a fresh data dir's region.
func TestBackupContent(t *testing.T) {
	coretest.Engines(t, func(t *testing.T, databaseURL string) { backupContent(t, coretest.New(t, databaseURL)) })
}

func backupContent(t *testing.T, env *coretest.Env) {
	ctx, p := env.AsToken(t)
	sp, err := env.Core.Spaces.Create(ctx, p, "Contracts", "local")
	if err != nil {
		t.Fatal(err)
	}
	put := func(path string, body []byte) files.Item {
		it, _, err := env.Core.Files.Put(ctx, p, sp.ID, files.Upload{Path: path, ContentType: "application/pdf", Length: int64(len(body)), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	a := bytes.Repeat([]byte("contract of ann "), 40000)
	put("a.pdf", a)
	// A person with a consent and a request, to read back after a restore.
	cy := newsReader(t, env, ctx)
	req, err := env.Core.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "access", SubjectID: cy.ID, Channel: "email"})
	if err != nil {
		t.Fatal(err)
	}
	run := func() backup.Manifest {
		t.Helper()
		m, err := env.Core.Backups.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		env.Now.Advance(24 * time.Hour)
		return m
	}
	if m := run(); len(m.Files) != 1 || m.Files[0].Objects != 1 || m.Files[0].Copied != 1 {
		t.Fatalf("first backup's content: %+v", m.Files)
	}
	if m := run(); m.Files[0].Objects != 1 || m.Files[0].Copied != 0 || m.Files[0].CopiedBytes != 0 {
		t.Errorf("a second backup with no new file copied %+v", m.Files)
	}
	bo, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "bo@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	boFile := put("bo.pdf", []byte("the file of bo"))
	if _, _, err := env.Core.Files.Link(ctx, p, boFile.ID, bo.ID); err != nil {
		t.Fatal(err)
	}
	m3 := run()
	if m3.Files[0].Objects != 2 || m3.Files[0].Copied != 1 {
		t.Errorf("a backup with one new file: %+v", m3.Files)
	}

	// A deletion during a backup waits for it.
	env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO blob_holds (id, until_at) VALUES ('test', ?)", env.Now.Now().Add(time.Hour).UnixMicro())
		return err
	})
	live := filepath.Join(env.DataDir, "regions", "local")
	blobs := func() int {
		n := 0
		filepath.Walk(live, func(path string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && !strings.Contains(path, "/backup/") {
				n++
			}
			return nil
		})
		return n
	}
	before := blobs()
	tmp := put("tmp.pdf", []byte("soon gone"))
	if _, err := env.Core.Files.Trash(ctx, p, sp.ID, "tmp.pdf"); err != nil {
		t.Fatal(err)
	}
	if err := env.Core.Files.Purge(ctx, p, tmp.ID); err != nil {
		t.Fatal(err)
	}
	if n := blobs(); n != before+1 {
		t.Errorf("%d live blobs, %d before the upload: a purge during a backup did not wait", n, before)
	}
	env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM blob_holds")
		return err
	})
	if _, err := env.Core.Files.Sweep(ctx); err != nil || blobs() != before {
		t.Errorf("after the backup, the sweeper left %d blobs (%d before; %v)", blobs(), before, err)
	}

	// Bo is erased: his file's copy leaves every kept backup.
	if _, err := env.Core.Subjects.Erase(ctx, env.Tenant.ID, bo.ID, subject.EraseInput{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	setup := env.Core.Backups.Setup()
	ms, err := backup.List(setup.Dir, setup.Trusted...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := backup.Verify(setup.Dir, m.ID, setup.Trusted...); err != nil {
			t.Error(err)
		}
		if err := backup.VerifyContent(ctx, env.Core.Regions, setup.Dir, m, true); err != nil {
			t.Error(err)
		}
		if m.Files[0].Objects != 1 {
			t.Errorf("backup %s lists %d objects after the erasure; want 1", m.ID, m.Files[0].Objects)
		}
	}
	copies, _ := os.ReadDir(filepath.Join(live, "backup", env.Tenant.ID, sp.ID))
	if len(copies) != 1 {
		t.Errorf("%d copies in the region's backup prefix; want 1 (Ann's contract, not Bo's file)", len(copies))
	}
	if left := sqldbtest.Strings(t, env.Core.DB, "SELECT blob_key FROM backup_forget_blobs"); len(left) != 0 {
		t.Errorf("still queued: %v", left)
	}

	// Nothing personal in clear in the backups or the copies: not a file's
	// content, not an address.
	for _, dir := range []string{filepath.Join(live, "backup"), setup.Dir} {
		filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, marker := range []string{"contract of ann", "cy@example.org", "the file of bo"} {
				if bytes.Contains(b, []byte(marker)) {
					t.Errorf("%s holds %q in clear", path, marker)
				}
			}
			return nil
		})
	}
	// A flipped byte in a region's list fails verification, naming it.
	list := filepath.Join(setup.Dir, ms[0].ID, ms[0].Files[0].List.Name)
	lb, _ := os.ReadFile(list)
	lb[5] ^= 1
	os.WriteFile(list, lb, 0o600)
	if err := backup.Verify(setup.Dir, ms[0].ID, setup.Trusted...); err == nil || !strings.Contains(err.Error(), ms[0].Files[0].List.Name) {
		t.Errorf("a flipped byte in a region's list: %v", err)
	}
	lb[5] ^= 1
	os.WriteFile(list, lb, 0o600)

	// A flipped byte in a copy is found by a deep check, naming it.
	path := filepath.Join(live, "backup", env.Tenant.ID, sp.ID, copies[0].Name())
	b, _ := os.ReadFile(path)
	b[100] ^= 1
	os.WriteFile(path, b, 0o600)
	if err := backup.VerifyContent(ctx, env.Core.Regions, setup.Dir, ms[0], true); err == nil || !strings.Contains(err.Error(), copies[0].Name()) {
		t.Errorf("a flipped byte in a copy: %v", err)
	}
	b[100] ^= 1
	os.WriteFile(path, b, 0o600)

	// Restored elsewhere, the file reads back equal.
	c := restore(t, env, ms[0], env.Core.Config.AnchorURL)
	rp, err := c.Identity.Authenticate(context.Background(), env.Token)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Files.Open(context.Background(), rp, sp.ID, "a.pdf", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, a) {
		t.Errorf("the restored file reads %d bytes, not the original %d", len(got), len(a))
	}
	if l, err := c.Consent.Ledger(context.Background(), env.Tenant.ID, cy.ID); err != nil || len(l.State) != 1 || l.State[0].Status != "granted" {
		t.Errorf("the restored consent: %+v %v", l.State, err)
	}
	if r, err := c.Rights.Get(context.Background(), env.Tenant.ID, req.ID); err != nil || r.Type != "access" || r.SubjectID != cy.ID {
		t.Errorf("the restored request: %+v %v", r, err)
	}
	if s, err := c.Subjects.Get(context.Background(), env.Tenant.ID, cy.ID); err != nil || s.Email != "cy@example.org" {
		t.Errorf("the restored person: %+v %v", s, err)
	}
}

// A failing backup keeps the older ones, leaves nothing half-written,
// counts, and mails the operator directly (the message says what failed
// and which backup is still good, and nothing personal).
func TestFailingBackupKeepsTheOld(t *testing.T) {
	env := coretest.NewWith(t, "", func(c *config.Config, _ *core.Options) { c.OperatorEmail = "ops@example.org" })
	ctx, p := env.AsToken(t)
	sp, err := env.Core.Spaces.Create(ctx, p, "Contracts", "local")
	if err != nil {
		t.Fatal(err)
	}
	good, err := env.Core.Backups.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env.Now.Advance(24 * time.Hour)
	it, _, err := env.Core.Files.Put(ctx, p, sp.ID, files.Upload{Path: "a.pdf", ContentType: "application/pdf", Length: 5, Body: strings.NewReader("hello")})
	if err != nil {
		t.Fatal(err)
	}
	key := sqldbtest.Strings(t, env.Core.DB, "SELECT blob_key FROM file_versions WHERE node_id = ?", it.ID)[0]
	if err := os.Remove(filepath.Join(env.DataDir, "regions", "local", key)); err != nil { // the disk lost it
		t.Fatal(err)
	}
	if _, err := env.Core.Backups.Run(ctx); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("a backup missing content: %v", err)
	}
	if n := env.Core.Backups.Failures(); n != 1 {
		t.Errorf("%d failures counted; want 1", n)
	}
	setup := env.Core.Backups.Setup()
	ms, err := backup.List(setup.Dir, setup.Trusted...)
	if err != nil || len(ms) != 1 || ms[0].ID != good.ID {
		t.Errorf("after the failure: %+v %v; want the good one alone", ms, err)
	}
	if left, _ := filepath.Glob(filepath.Join(setup.Dir, ".*partial")); len(left) != 0 {
		t.Errorf("half a backup left: %v", left)
	}
	m := env.Mail.Wait(t, "ops@example.org", "a backup failed", 5*time.Second)
	if !strings.Contains(m.Text, key) || !strings.Contains(m.Text, good.CreatedAt.Format("2006-01-02 15:04 UTC")) || strings.Contains(m.Text, "owner@acme.example") {
		t.Errorf("the operator's mail:\n%s", m.Text)
	}
}

// A content copy goes with the last kept backup that lists it: with one
// backup kept, a file purged before the second backup loses its copy when
// the first backup is pruned; a file still live keeps its copy.
func TestContentCopiesGoWithTheirLastBackup(t *testing.T) {
	env := coretest.NewWith(t, "", func(c *config.Config, _ *core.Options) { c.BackupKeep = 1 })
	ctx, p := env.AsToken(t)
	sp, err := env.Core.Spaces.Create(ctx, p, "Contracts", "local")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kept.pdf", "gone.pdf"} {
		if _, _, err := env.Core.Files.Put(ctx, p, sp.ID, files.Upload{Path: name, ContentType: "application/pdf", Length: 5, Body: strings.NewReader(name[:5])}); err != nil {
			t.Fatal(err)
		}
	}
	copies := func() int {
		n := 0
		filepath.Walk(filepath.Join(env.DataDir, "regions", "local", "backup"), func(_ string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	if _, err := env.Core.Backups.Run(ctx); err != nil || copies() != 2 {
		t.Fatalf("first backup: %d copies, %v", copies(), err)
	}
	tr, err := env.Core.Files.Trash(ctx, p, sp.ID, "gone.pdf")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Core.Files.Purge(ctx, p, tr.ID); err != nil {
		t.Fatal(err)
	}
	env.Now.Advance(time.Hour)
	m, err := env.Core.Backups.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if copies() != 1 || m.Files[0].Objects != 1 || m.Files[0].Copied != 0 {
		t.Errorf("after the first backup was pruned: %d copies, %+v; want the live file's alone, not copied again", copies(), m.Files)
	}
}

// A restore never brings back what someone took away: after the backup a
// person is erased, a consent withdrawn, a token revoked and a member
// signed in; restored on a "new machine" (the ledger read from the backup
// location alone) the person is still erased (their certificate there),
// the consent still withdrawn, the token refused, no session of before
// works, and the audit trail verifies and says what was replayed. An
// entry deleted from the ledger is found.
func TestRestoreReplaysTheLedger(t *testing.T) {
	coretest.Engines(t, func(t *testing.T, databaseURL string) {
		env := coretest.New(t, databaseURL)
		ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
		cy := newsReader(t, env, ctx)
		ann, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "ann@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Register.Create(ctx, env.Tenant.ID, register.New{Purpose: register.Purpose{Key: "analytics", Name: "Analytics",
			LegalBasis: register.LegitimateInterests, DataCategories: []string{"user.contact.email"}}}); err != nil {
			t.Fatal(err)
		}
		dan, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "dan@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		_, owner := env.AsToken(t)
		sp, err := env.Core.Spaces.Create(ctx, owner, "Clients", "local")
		if err != nil {
			t.Fatal(err)
		}
		old, _, err := env.Core.Files.Put(ctx, owner, sp.ID, files.Upload{Path: "old.pdf", ContentType: "application/pdf", Length: 9, Body: strings.NewReader("old terms")})
		if err != nil {
			t.Fatal(err)
		}
		annFile, _, err := env.Core.Files.Put(ctx, owner, sp.ID, files.Upload{Path: "ann.pdf", ContentType: "application/pdf", Length: 11, Body: strings.NewReader("ann's terms")})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := env.Core.Files.Link(ctx, owner, annFile.ID, ann.ID); err != nil {
			t.Fatal(err)
		}
		m, err := env.Core.Backups.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		env.Now.Advance(time.Minute)

		// After the backup.
		env.AddUser(t, "mo@acme.example", "member", coretest.Password)
		login, err := env.Core.Identity.Login(ctx, identity.LoginInput{Tenant: "acme", Email: "mo@acme.example", Password: coretest.Password})
		if err != nil {
			t.Fatal(err)
		}
		wrapped := liveKeys(t, env)[env.Tenant.ID+"/"+ann.ID]
		if _, err := env.Core.Subjects.Erase(ctx, env.Tenant.ID, ann.ID, subject.EraseInput{Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Consent.Record(ctx, env.Tenant.ID, cy.ID, consent.Input{Purpose: "news", Action: consent.Withdraw, Method: "email_link"}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Subjects.Restrict(ctx, env.Tenant.ID, dan.ID, "disputes the accuracy"); err != nil {
			t.Fatal(err)
		}
		obj, err := env.Core.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "objection", SubjectID: cy.ID, Purposes: []string{"analytics"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Rights.Update(ctx, env.Tenant.ID, obj.ID, rights.Change{Status: rights.Verified}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Rights.Decide(ctx, env.Tenant.ID, cy.ID, "analytics", rights.ObjectionUpheld); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Files.Trash(ctx, owner, sp.ID, "old.pdf"); err != nil {
			t.Fatal(err)
		}
		if err := env.Core.Files.Purge(ctx, owner, old.ID); err != nil {
			t.Fatal(err)
		}
		if ok, err := env.Core.Identity.RevokeTokenID(ctx, env.Tenant.ID, owner.TokenID); err != nil || !ok {
			t.Fatalf("revoke the token: %v %v", ok, err)
		}
		setup := env.Core.Backups.Setup()
		anchorURL := env.Core.Config.AnchorURL
		if err := env.Core.Close(); err != nil { // copies the ledger to the location
			t.Fatal(err)
		}

		c := restoreWith(t, env, m, anchorURL, true)
		bg := context.Background()
		if _, err := c.Subjects.Get(bg, env.Tenant.ID, ann.ID); !errs.Is(err, errs.Gone) {
			t.Errorf("the person erased after the backup, after the restore: %v; want gone", err)
		}
		if cert, err := c.Subjects.ErasureCertificate(bg, env.Tenant.ID, ann.ID); err != nil || cert.SubjectID != ann.ID {
			t.Errorf("their certificate: %+v %v", cert, err)
		}
		if n := sqldbtest.Int(t, c.DB, "SELECT count(*) FROM subjects WHERE tenant_id = ? AND id = ?", env.Tenant.ID, ann.ID) +
			sqldbtest.Int(t, c.DB, "SELECT count(*) FROM subject_keys WHERE tenant_id = ? AND subject_id = ?", env.Tenant.ID, ann.ID); n != 0 {
			t.Errorf("%d rows of the person erased again are left", n)
		}
		if path := c.DB.Path(); path != "" { // SQLite: not in a freed page either
			for _, f := range []string{path, path + "-wal"} {
				if b, _ := os.ReadFile(f); len(wrapped) > 0 && bytes.Contains(b, wrapped) {
					t.Errorf("%s still holds the erased person's wrapped key", f)
				}
			}
		}
		if l, err := c.Consent.Ledger(bg, env.Tenant.ID, cy.ID); err != nil || len(l.State) != 1 || l.State[0].Status != "withdrawn" {
			t.Errorf("the consent withdrawn after the backup: %+v %v", l.State, err)
		}
		if _, err := c.Identity.Authenticate(bg, env.Token); err == nil {
			t.Errorf("the token revoked after the backup works")
		}
		if _, err := c.Identity.AuthenticateSession(bg, login.Session); err == nil {
			t.Errorf("a session of before the restore works")
		}
		if n := sqldbtest.Int(t, c.DB, "SELECT count(*) FROM subjects WHERE tenant_id = ? AND id = ? AND restricted_since > 0", env.Tenant.ID, dan.ID); n != 1 {
			t.Errorf("the restriction set after the backup is not there after the restore")
		}
		if obs, err := c.Rights.Objections(bg, env.Tenant.ID, rights.ObjectionUpheld, false); err != nil || len(obs) != 1 || obs[0].SubjectID != cy.ID {
			t.Errorf("the objection upheld after the backup, after the restore: %+v %v", obs, err)
		}
		for name, id := range map[string]string{"the file purged": old.ID, "the erased person's file": annFile.ID} {
			if n := sqldbtest.Int(t, c.DB, "SELECT count(*) FROM nodes WHERE tenant_id = ? AND id = ?", env.Tenant.ID, id); n != 0 {
				t.Errorf("%s after the backup is back after the restore", name)
			}
		}
		if blobs := coretest.Files(t, filepath.Join(c.Config.DataDir, "regions", "local")); len(blobs) != 0 {
			t.Errorf("the purged file's or the erased person's content is back in the region: %v", blobs)
		}
		if v, err := c.Log.Verify(bg, env.Tenant.ID); err != nil || !v.OK {
			t.Errorf("audit verify: %s %v", v, err)
		}
		es, _, err := audit.NewReader(c.DB, c.Keys).Query(bg, env.Tenant.ID, audit.Filter{Action: "backup.replay"})
		if err != nil || len(es) != 1 {
			t.Fatalf("the trail's record of the replay: %+v %v", es, err)
		}
		applied, _ := es[0].Details["applied"].(map[string]any)
		if applied["subject.erase"] != float64(1) || applied["consent.withdraw"] != float64(1) || applied["token.revoke"] != float64(1) ||
			applied["file.purge"] != float64(1) || applied["subject.restrict"] != float64(1) || applied["objection.decide"] != float64(1) {
			t.Errorf("replayed: %+v", es[0].Details)
		}

		// An entry deleted from the ledger is found.
		files, _ := filepath.Glob(filepath.Join(backup.LedgerDir(setup.Dir), "*.jsonl"))
		if len(files) == 0 {
			t.Fatal("no ledger in the backup location")
		}
		b, _ := os.ReadFile(files[0])
		lines := strings.SplitAfter(string(b), "\n")
		os.WriteFile(files[0], []byte(strings.Join(append(lines[:1], lines[2:]...), "")), 0o600)
		if _, err := ledger.Read(setup.Trusted, backup.LedgerDir(setup.Dir)); err == nil || !strings.Contains(err.Error(), "entry 2 is missing") {
			t.Errorf("a ledger with an entry deleted: %v", err)
		}
	})
}

// After the backup: a member's folder grant is revoked, the member changes
// their password, an owner removes their second factor, an admin is
// demoted, a member is suspended and another's sign-in address is
// changed. Restored, none of it is undone: the grant stays revoked,
// neither the old password nor the new one signs in (a reset is needed),
// the factor is still gone, the demotion and the suspension hold, and the
// account whose address changed is suspended (the old address never signs
// in again) — on SQLite and PostgreSQL.
func TestRestoreReplaysAccountChanges(t *testing.T) {
	coretest.Engines(t, func(t *testing.T, databaseURL string) {
		env := coretest.New(t, databaseURL)
		ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
		_, owner := env.AsToken(t)
		users := map[string]identity.User{}
		for email, role := range map[string]string{"mo": "member", "al": "owner", "dee": "admin", "zed": "member", "vi": "member"} {
			users[email] = env.AddUser(t, email+"@acme.example", role, coretest.Password)
		}
		session := func(email, pw string) (identity.Principal, error) {
			res, err := env.Core.Identity.Login(ctx, identity.LoginInput{Tenant: "acme", Email: email, Password: pw})
			if err != nil {
				return identity.Principal{}, err
			}
			return env.Core.Identity.AuthenticateSession(ctx, res.Session)
		}
		mo, err := session("mo@acme.example", coretest.Password)
		if err != nil {
			t.Fatal(err)
		}
		al, err := session("al@acme.example", coretest.Password)
		if err != nil {
			t.Fatal(err)
		}
		enrol, err := env.Core.Identity.EnrolTOTP(ctx, al)
		if err != nil {
			t.Fatal(err)
		}
		c, err := totp.GenerateCodeCustom(enrol.Secret, env.Now.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Identity.ConfirmTOTP(ctx, al, c); err != nil {
			t.Fatal(err)
		}
		// Mo may read a folder.
		sp, err := env.Core.Spaces.Create(ctx, owner, "Clients", "local")
		if err != nil {
			t.Fatal(err)
		}
		folder, err := env.Core.Files.Mkdir(ctx, owner, sp.ID, "Ann")
		if err != nil {
			t.Fatal(err)
		}
		grant, err := env.Core.Files.GrantFolder(ctx, owner, folder.ID, space.GrantInput{UserID: users["mo"].ID, Access: space.Viewer})
		if err != nil {
			t.Fatal(err)
		}
		m, err := env.Core.Backups.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		env.Now.Advance(time.Minute)

		// After the backup.
		if err := env.Core.Files.RevokeFolder(ctx, owner, folder.ID, grant.ID); err != nil {
			t.Fatal(err)
		}
		if err := env.Core.Identity.ChangePassword(ctx, mo, coretest.Password, "a brand new passphrase 77"); err != nil {
			t.Fatal(err)
		}
		if err := env.Core.Identity.RemoveFactor(ctx, al, enrol.ID); err != nil {
			t.Fatal(err)
		}
		member, suspended, address := "member", "suspended", "vi.new@acme.example"
		for id, patch := range map[string]identity.UserPatch{users["dee"].ID: {Role: &member}, users["zed"].ID: {Status: &suspended}, users["vi"].ID: {Email: &address}} {
			if _, err := env.Core.Identity.UpdateUser(ctx, owner, id, patch); err != nil {
				t.Fatal(err)
			}
		}
		mail := env.Mail.Wait(t, address, "Confirm your new sign-in address", 5*time.Second)
		link := regexp.MustCompile(`/account/email/([A-Za-z0-9_-]{43})`).FindStringSubmatch(mail.Text)
		if link == nil {
			t.Fatalf("no link in %q", mail.Text)
		}
		if _, err := env.Core.Identity.ConfirmEmail(ctx, link[1], identity.Client{}); err != nil {
			t.Fatal(err)
		}
		anchorURL := env.Core.Config.AnchorURL
		if err := env.Core.Close(); err != nil {
			t.Fatal(err)
		}

		r := restoreWith(t, env, m, anchorURL, true)
		bg := context.Background()
		for _, pw := range []string{coretest.Password, "a brand new passphrase 77"} {
			if _, err := r.Identity.Login(bg, identity.LoginInput{Tenant: "acme", Email: "mo@acme.example", Password: pw}); err == nil {
				t.Errorf("after the restore, mo signs in with %q; want a reset needed", pw)
			}
		}
		if fs, err := r.Identity.Factors(bg, env.Tenant.ID, users["al"].ID); err != nil || len(fs) != 0 {
			t.Errorf("al's factor removed after the backup, after the restore: %+v %v", fs, err)
		}
		for name, want := range map[string][2]string{"dee": {"member", "active"}, "zed": {"member", "suspended"}, "vi": {"member", "suspended"}} {
			u, err := r.Identity.UserByID(bg, env.Tenant.ID, users[name].ID)
			if err != nil || u.Role != want[0] || u.Status != want[1] {
				t.Errorf("%s after the restore: %s/%s %v; want %v", name, u.Role, u.Status, err, want)
			}
		}
		if _, err := r.Identity.Login(bg, identity.LoginInput{Tenant: "acme", Email: "vi@acme.example", Password: coretest.Password}); err == nil {
			t.Errorf("the old sign-in address works after the restore")
		}
		gs, err := r.Files.FolderGrants(bg, owner, folder.ID)
		if err != nil || slices.ContainsFunc(gs, func(g space.Grant) bool { return g.UserID == users["mo"].ID }) {
			t.Errorf("the folder grant revoked after the backup, after the restore: %+v %v", gs, err)
		}
		if v, err := r.Log.Verify(bg, env.Tenant.ID); err != nil || !v.OK {
			t.Errorf("audit verify: %s %v", v, err)
		}
	})
}
