package backup_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// liveKeys reads every wrapped data key of the live database.
func liveKeys(t *testing.T, env *coretest.Env) map[string][]byte {
	t.Helper()
	rows, err := env.Core.DB.Read().Query(context.Background(), "SELECT tenant_id, subject_id, wrapped FROM subject_keys")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var tid, sid string
		var w []byte
		if err := rows.Scan(&tid, &sid, &w); err != nil {
			t.Fatal(err)
		}
		out[tid+"/"+sid] = w
	}
	return out
}

// A snapshot is a copy of the database that opens, holds the subjects'
// rows and none of their data keys (not even in a free page), and the keys
// apart: each in the shard of its ids, every one of them.
func TestSnapshotKeepsTheKeysApart(t *testing.T) {
	env := coretest.New(t, "")
	ctx := context.Background()
	var ids []string
	for _, email := range []string{"ann@example.org", "bob@example.org", "cy@example.org"} {
		s, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: email})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	keys := liveKeys(t, env)
	dir := t.TempDir()
	snap, err := backup.SnapshotSQLite(ctx, env.Core.DB, dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(snap.Database)
	if err != nil {
		t.Fatal(err)
	}
	for id, w := range keys {
		if bytes.Contains(raw, w) {
			t.Errorf("the copy holds the wrapped key of %s", id)
		}
	}
	cp, err := sql.Open("sqlite", "file:"+snap.Database+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	var subjects, wrapped int
	if err := cp.QueryRow("SELECT (SELECT count(*) FROM subjects), (SELECT count(*) FROM subject_keys)").Scan(&subjects, &wrapped); err != nil {
		t.Fatal(err)
	}
	if subjects < len(ids) || wrapped != 0 {
		t.Errorf("the copy: %d subjects, %d data keys; want at least %d subjects and no key", subjects, wrapped, len(ids))
	}
	found, total := 0, 0
	for n, info := range snap.Keys {
		rs, err := backup.ReadShard(filepath.Join(dir, "keys", info.Name))
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != info.Records {
			t.Errorf("shard %s: %d records; the snapshot says %d", info.Name, len(rs), info.Records)
		}
		for _, r := range rs {
			total++
			if backup.ShardOf(r.Tenant, r.Subject) != n {
				t.Errorf("%s/%s is in shard %d; its shard is %d", r.Tenant, r.Subject, n, backup.ShardOf(r.Tenant, r.Subject))
			}
			if w, ok := keys[r.Tenant+"/"+r.Subject]; ok && bytes.Equal(w, r.Wrapped) {
				found++
			}
		}
	}
	if found != len(keys) || total != len(keys) {
		t.Errorf("the shards hold %d keys, %d of them the live ones; want all %d", total, found, len(keys))
	}

	// Forgetting a person rewrites their shard only, without their key.
	before := map[string]string{}
	for _, info := range snap.Keys {
		before[info.Name] = info.SHA256
	}
	gone := ids[1]
	info, was, err := backup.ForgetKey(filepath.Join(dir, "keys"), env.Tenant.ID, gone)
	if err != nil || !was {
		t.Fatalf("forget: %v %v", was, err)
	}
	shard, err := os.ReadFile(filepath.Join(dir, "keys", info.Name))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(shard, []byte(gone)) || info.SHA256 == before[info.Name] {
		t.Errorf("shard %s still names the person, or is unchanged", info.Name)
	}
	for _, other := range ids {
		if other == gone {
			continue
		}
		rs, err := backup.ReadShard(filepath.Join(dir, "keys", info.Name))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Subject == other && !bytes.Equal(r.Wrapped, keys[env.Tenant.ID+"/"+other]) {
				t.Errorf("the key of %s changed", other)
			}
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "keys"))
	if len(entries) != backup.Shards {
		t.Errorf("%d files in keys/ after the rewrite; want %d (no temporary file left)", len(entries), backup.Shards)
	}
	if _, was, err := backup.ForgetKey(filepath.Join(dir, "keys"), env.Tenant.ID, gone); err != nil || was {
		t.Errorf("forgetting again: %v %v", was, err)
	}
}

// Backups: daily runs keep the 5 newest; nothing personal in clear in any
// file; the database copy opens with the age identity; a flipped byte in
// any part, or an edited manifest, fails verification naming it; and an
// erased person's key leaves every kept backup, which still verifies.
func TestBackups(t *testing.T) {
	env := coretest.New(t, "")
	ctx := context.Background()
	marker := "zz-marker-7f3a@example.org"
	ann, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: marker, Attributes: map[string]any{"note": marker}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := backup.Options{Dir: dir, Recipients: []age.Recipient{id.Recipient()}, Signer: key, Now: env.Now.Now}
	for range 7 {
		if _, err := backup.Run(ctx, env.Core.DB, o); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Prune(dir, 5, pub); err != nil {
			t.Fatal(err)
		}
		env.Now.Advance(24 * time.Hour)
	}
	ms, err := backup.List(dir, pub)
	if err != nil || len(ms) != 5 {
		t.Fatalf("kept %d backups (%v); want 5", len(ms), err)
	}
	if !ms[0].CreatedAt.After(ms[4].CreatedAt) {
		t.Errorf("not newest first: %v … %v", ms[0].CreatedAt, ms[4].CreatedAt)
	}
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("zz-marker")) {
				t.Errorf("%s holds the marker in clear", path)
			}
		}
		return err
	})

	// The copy opens with the identity.
	newest := filepath.Join(dir, ms[0].ID)
	f, err := os.Open(filepath.Join(newest, "database.age"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.sqlite")
	out, _ := os.Create(copyPath)
	if _, err := io.Copy(out, plain); err != nil {
		t.Fatal(err)
	}
	out.Close()
	f.Close()
	cp, err := sql.Open("sqlite", "file:"+copyPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var subjects, keys int
	if err := cp.QueryRow("SELECT (SELECT count(*) FROM subjects), (SELECT count(*) FROM subject_keys)").Scan(&subjects, &keys); err != nil || subjects == 0 || keys != 0 {
		t.Errorf("the decrypted copy: %d subjects, %d keys, %v", subjects, keys, err)
	}
	cp.Close()

	// Damage is found, and named.
	for _, part := range []string{"database.age", filepath.Join("keys", ms[0].Keys[backup.ShardOf(env.Tenant.ID, ann.ID)].Name)} {
		if err := backup.Verify(dir, ms[0].ID, pub); err != nil {
			t.Fatalf("before damage: %v", err)
		}
		path := filepath.Join(newest, part)
		b, _ := os.ReadFile(path)
		b[len(b)/2] ^= 1
		os.WriteFile(path, b, 0o600)
		if err := backup.Verify(dir, ms[0].ID, pub); err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("a flipped byte in %s: %v", part, err)
		}
		b[len(b)/2] ^= 1
		os.WriteFile(path, b, 0o600)
	}
	mpath := filepath.Join(newest, "manifest.json")
	mb, _ := os.ReadFile(mpath)
	os.WriteFile(mpath, bytes.Replace(mb, []byte(`"generation": 0`), []byte(`"generation": 9`), 1), 0o600)
	if err := backup.Verify(dir, ms[0].ID, pub); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("an edited manifest: %v", err)
	}
	os.WriteFile(mpath, mb, 0o600)

	// Ann is erased: her key leaves every kept backup.
	wrapped := liveKeys(t, env)[env.Tenant.ID+"/"+ann.ID]
	if _, err := env.Core.Subjects.Erase(ctx, env.Tenant.ID, ann.ID, subject.EraseInput{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	held, err := backup.Forget(dir, env.Tenant.ID, ann.ID, key)
	if err != nil || held != 5 {
		t.Fatalf("forget: %d backups held the key (%v); want 5", held, err)
	}
	for _, m := range ms {
		if err := backup.Verify(dir, m.ID, pub); err != nil {
			t.Errorf("after the erasure: %v", err)
		}
		rs, err := backup.ReadShard(filepath.Join(dir, m.ID, "keys", m.Keys[backup.ShardOf(env.Tenant.ID, ann.ID)].Name))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Subject == ann.ID || bytes.Equal(r.Wrapped, wrapped) {
				t.Errorf("backup %s still holds the erased person's key", m.ID)
			}
		}
		shards, _ := os.ReadDir(filepath.Join(dir, m.ID, "keys"))
		for _, s := range shards {
			if b, _ := os.ReadFile(filepath.Join(dir, m.ID, "keys", s.Name())); bytes.Contains(b, []byte(ann.ID)) {
				t.Errorf("backup %s shard %s names the erased person", m.ID, s.Name())
			}
		}
	}
}

// Erasure reaches the kept backups through the keeper: the erasure queues
// the person in its own transaction, the keeper rewrites their shard in
// every kept backup right after the commit, records it in the tenant's
// trail, and leaves nothing queued; a backup made after the erasure never
// held the key.
func TestErasureReachesKeptBackups(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ann, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "ann@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := env.Core.Backups.Run(ctx); err != nil {
				t.Fatal(err)
			}
			env.Now.Advance(24 * time.Hour)
		}
		setup := env.Core.Backups.Setup()
		wrapped := liveKeys(t, env)[env.Tenant.ID+"/"+ann.ID]
		if _, err := env.Core.Subjects.Erase(ctx, env.Tenant.ID, ann.ID, subject.EraseInput{Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		filepath.Walk(setup.Dir, func(path string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				if b, _ := os.ReadFile(path); bytes.Contains(b, wrapped) || bytes.Contains(b, []byte(ann.ID)) && strings.Contains(path, "keys") {
					t.Errorf("%s still holds the erased person's key", path)
				}
			}
			return err
		})
		if left := sqldbtest.Strings(t, env.Core.DB, "SELECT subject_id FROM backup_forget"); len(left) != 0 {
			t.Errorf("still queued: %v", left)
		}
		es, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "backup.forget", SubjectID: ann.ID})
		if err != nil || len(es) != 1 || es[0].Details["backups"] != float64(2) {
			t.Errorf("the trail's record: %+v %v", es, err)
		}
		if c, err := env.Core.Subjects.ErasureCertificate(ctx, env.Tenant.ID, ann.ID); err != nil || c.BackupsReachedAt == nil || c.BackupsHeld != 2 {
			t.Errorf("the certificate says nothing of the backups: %+v %v", c, err)
		}
		pub := setup.Signer.Public().(ed25519.PublicKey)
		ms, _ := backup.List(setup.Dir, pub)
		for _, m := range ms {
			if err := backup.Verify(setup.Dir, m.ID, pub); err != nil || m.Forgotten != 1 {
				t.Errorf("backup %s after the erasure: forgotten %d, %v", m.ID, m.Forgotten, err)
			}
		}

		// Queued work left by a crash is done by the job.
		bo, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "bo@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Backups.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO backup_forget (tenant_id, subject_id, queued_at) VALUES (?, ?, 1)", env.Tenant.ID, bo.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n, err := env.Core.Backups.ForgetPending(ctx); err != nil || n != 1 {
			t.Errorf("the job did %d (%v); want 1", n, err)
		}
	})
}

// One backup at a time in a location, across processes: while another
// holds the location's lock, a run says so (and is no failure), the daily
// check leaves it to the other, and a run goes ahead once it is free.
func TestOneRunAtATime(t *testing.T) {
	env := coretest.New(t, "")
	ctx := context.Background()
	dir := env.Core.Backups.Setup().Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	other, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX); err != nil { // as another process would
		t.Fatal(err)
	}
	if _, err := env.Core.Backups.Run(ctx); err == nil || !strings.Contains(err.Error(), "another backup is being made") {
		t.Errorf("a run beside another: %v", err)
	}
	if err := env.Core.Backups.RunIfDue(ctx); err != nil {
		t.Errorf("the daily check beside another run: %v", err)
	}
	if n := env.Core.Backups.Failures(); n != 0 {
		t.Errorf("%d failures counted; a run under way elsewhere is none", n)
	}
	other.Close()
	if _, err := env.Core.Backups.Run(ctx); err != nil {
		t.Errorf("once the location is free: %v", err)
	}
}

// The daily backup, as the hourly job makes it on SQLite and PostgreSQL:
// at once when there is none, then once a day from the configured time
// (02:00 UTC); a week of hourly checks makes 8 and keeps the newest 5.
func TestDailyBackups(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		start := env.Now.Now().UTC()
		env.Now.Advance(time.Date(start.Year(), start.Month(), start.Day()+1, 0, 30, 0, 0, time.UTC).Sub(start)) // 00:30
		setup := env.Core.Backups.Setup()
		var made []time.Time
		for hour := range 7 * 24 {
			if err := env.Core.Backups.RunIfDue(ctx); err != nil {
				t.Fatalf("hour %d: %v", hour, err)
			}
			ms, err := backup.List(setup.Dir, setup.Trusted...)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) > 0 && (len(made) == 0 || ms[0].CreatedAt.After(made[len(made)-1])) {
				made = append(made, ms[0].CreatedAt)
			}
			env.Now.Advance(time.Hour)
		}
		// 00:30 (none yet), then 02:30 on each of the 7 days.
		if len(made) != 8 || made[0].Hour() != 0 || made[1].Hour() != 2 || made[1].Day() != made[0].Day() || made[7].Hour() != 2 {
			t.Errorf("backups made at %v; want the first at once (00:30), then one a day at 02:30", made)
		}
		ms, err := backup.List(setup.Dir, setup.Trusted...)
		if err != nil || len(ms) != 5 || !ms[0].CreatedAt.Equal(made[7]) || !ms[4].CreatedAt.Equal(made[3]) {
			t.Errorf("kept %d: %v", len(ms), err)
		}
	})
}
