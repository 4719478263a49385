package sqldb_test

import (
	"context"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// Every change a cache could have copied moves its epoch, in the same
// transaction; the changes that do not matter to a copy (a token's last
// use) leave it standing, so a busy node keeps its caches.
func TestEpochsMoveWithTheRowsCachesCopy(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		exec := func(q string, args ...any) { t.Helper(); sqldbtest.Exec(t, db, q, args...) }
		exec("INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES ('t', 't', 'n', 'local', 'active', 0)")
		exec("INSERT INTO tenant_keys (tenant_id, version, state, wrapped, created_at) VALUES ('t', 1, 'active', ?, 0)", []byte{1})
		exec("INSERT INTO subjects (tenant_id, id, status, created_at, updated_at) VALUES ('t', 's', 'active', 0, 0)")
		exec("INSERT INTO subject_keys (tenant_id, subject_id, kek_version, wrapped, created_at) VALUES ('t', 's', 1, ?, 0)", []byte{1})
		exec("INSERT INTO users (tenant_id, id, subject_id, role, status, created_at) VALUES ('t', 'u', 's', 'owner', 'active', 0)")
		exec("INSERT INTO api_tokens (tenant_id, id, user_id, name, hash, scopes, created_at, expires_at) VALUES ('t', 'k', 'u', 'n', ?, 'subjects:read', 0, 9)", []byte{2})
		before, err := db.Epochs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			sql              string
			access, subjects bool
		}{
			{"INSERT INTO subjects (tenant_id, id, status, created_at, updated_at) VALUES ('t', 's2', 'active', 0, 0)", false, false},
			{"INSERT INTO users (tenant_id, id, subject_id, role, status, created_at) VALUES ('t', 'u2', 's2', 'member', 'active', 0)", true, false},
			{"UPDATE api_tokens SET last_used_at = 5", false, false},
			{"UPDATE users SET created_at = 5", false, false},
			{"UPDATE subjects SET updated_at = 5", false, false},
			{"UPDATE api_tokens SET revoked_at = 5", true, false},
			{"UPDATE api_tokens SET scopes = ''", true, false},
			{"UPDATE users SET role = 'viewer'", true, false},
			{"UPDATE users SET status = 'suspended'", true, false},
			{"UPDATE tenants SET status = 'suspended'", true, false},
			{"UPDATE subjects SET email_ct = ?", false, true},
			{"UPDATE subjects SET status = 'anonymised'", false, true},
			{"UPDATE subject_keys SET wrapped = ?", false, true},
			{"UPDATE tenant_keys SET state = 'retired'", false, true},
			{"DELETE FROM api_tokens", true, false},
			{"DELETE FROM users", true, false},
			{"DELETE FROM subject_keys", false, true},
		} {
			var args []any
			if c.sql == "UPDATE subjects SET email_ct = ?" || c.sql == "UPDATE subject_keys SET wrapped = ?" {
				args = []any{[]byte{3}}
			}
			exec(c.sql, args...)
			after, err := db.Epochs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if (after.Access != before.Access) != c.access || (after.Subjects != before.Subjects) != c.subjects {
				t.Errorf("%s: epochs %+v → %+v; want access moved %v, subjects moved %v", c.sql, before, after, c.access, c.subjects)
			}
			before = after
		}
	})
}

func TestCacheAnswersOnlyUnderTheEpochItWasFilledIn(t *testing.T) {
	db := sqldbtest.SQLite(t)
	ctx := context.Background()
	c := sqldb.NewCache[string, int](db, 3, sqldb.FollowAccess)
	bump := func() {
		t.Helper()
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE cache_epochs SET access = access + 1")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Without epochs in the context (a job, a transaction's reads): nothing.
	c.Put(ctx, "a", 1)
	if _, ok := c.Get(ctx, "a"); ok || c.Len() != 0 {
		t.Fatalf("a context without epochs filled or read the cache")
	}
	req := db.WithEpochs(ctx)
	c.Put(req, "a", 1)
	if v, ok := c.Get(req, "a"); !ok || v != 1 {
		t.Fatalf("Get = %v, %v; want 1", v, ok)
	}
	// A change: the next request misses, and the copy is gone from memory.
	bump()
	next := db.WithEpochs(ctx)
	if c.Len() != 0 {
		t.Fatalf("a newer epoch left %d values in memory", c.Len())
	}
	if _, ok := c.Get(next, "a"); ok {
		t.Fatal("a value of an older epoch was answered")
	}
	// A request that began before the change neither reads nor fills.
	c.Put(req, "b", 2)
	if _, ok := c.Get(req, "b"); ok || c.Len() != 0 {
		t.Fatal("a request of an older epoch filled the cache")
	}
	// Sweep empties it with no request at all.
	c.Put(next, "c", 3)
	bump()
	if err := db.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 0 {
		t.Fatal("Sweep left a value of an older epoch")
	}
	// Bounded.
	now := db.WithEpochs(ctx)
	for i, k := range []string{"p", "q", "r", "s", "t"} {
		c.Put(now, k, i)
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d; want the bound, 3", c.Len())
	}
	c.Delete("t")
	if _, ok := c.Get(now, "t"); ok {
		t.Fatal("Delete kept the value")
	}
}
