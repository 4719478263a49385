package backup_test

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/core/coretest"
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
	info, was, err := backup.Forget(filepath.Join(dir, "keys"), env.Tenant.ID, gone)
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
	if _, was, err := backup.Forget(filepath.Join(dir, "keys"), env.Tenant.ID, gone); err != nil || was {
		t.Errorf("forgetting again: %v %v", was, err)
	}
}
