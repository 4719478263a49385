package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

func TestMigrateIsIdempotent(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		n, err := db.Migrate(ctx)
		if err != nil || n != 0 {
			t.Fatalf("second Migrate applied %d, %v; want 0", n, err)
		}
		if p, err := db.Pending(ctx); err != nil || p != 0 {
			t.Fatalf("Pending = %d, %v", p, err)
		}
	})
}

func TestPlaceholdersAndErrors(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		// A literal question mark inside quotes is not a placeholder.
		var s string
		var n int
		if err := db.Read().QueryRow(ctx, "SELECT 'why?', CAST(? AS INTEGER) + CAST(? AS INTEGER)", 2, 3).Scan(&s, &n); err != nil || s != "why?" || n != 5 {
			t.Fatalf("got %q %d, %v", s, n, err)
		}
		insert := func(tx *sqldb.Tx, id string) error {
			_, err := tx.Exec(ctx, "INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES (?, ?, 'n', 'local', 'active', 0)", id, id)
			return err
		}
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return insert(tx, "t1") }); err != nil {
			t.Fatal(err)
		}
		err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return insert(tx, "t1") })
		if !sqldb.IsUniqueViolation(err) || sqldb.IsForeignKeyViolation(err) {
			t.Errorf("duplicate key: %v not classified as a unique violation", err)
		}
		err = db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO tenant_keys (tenant_id, version, state, wrapped, created_at) VALUES ('nope', 1, 'active', ?, 0)", []byte{1})
			return err
		})
		if !sqldb.IsForeignKeyViolation(err) || sqldb.IsUniqueViolation(err) {
			t.Errorf("missing parent: %v not classified as a foreign key violation", err)
		}
	})
}

func TestTransactionsAndSavepoints(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		count := func() int {
			var n int
			if err := db.Read().QueryRow(ctx, "SELECT count(*) FROM tenants").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		ins := func(tx *sqldb.Tx, id string) error {
			_, err := tx.Exec(ctx, "INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES (?, ?, 'n', 'local', 'active', 0)", id, id)
			return err
		}
		boom := errors.New("boom")
		// A failing closure rolls everything back.
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			if err := ins(tx, "a"); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) || count() != 0 {
			t.Fatalf("rollback: %v, %d rows", err, count())
		}
		// A failing savepoint undoes only its own work, even after an SQL error.
		err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			if err := ins(tx, "b"); err != nil {
				return err
			}
			if err := tx.Savepoint(ctx, "sp", func() error {
				if err := ins(tx, "c"); err != nil {
					return err
				}
				return ins(tx, "b") // duplicate: aborts the statement
			}); !sqldb.IsUniqueViolation(err) {
				t.Errorf("savepoint error = %v", err)
			}
			return tx.Savepoint(ctx, "sp", func() error { return ins(tx, "d") })
		})
		if err != nil {
			t.Fatal(err)
		}
		ids := sqldbtest.Strings(t, db, "SELECT id FROM tenants ORDER BY id")
		if len(ids) != 2 || ids[0] != "b" || ids[1] != "d" {
			t.Fatalf("rows after savepoints: %v; want [b d]", ids)
		}
	})
}

// TestSteps: a failing step undoes only its own work, after an SQL error
// too; what ran after an earlier step (inside its open savepoint) stays;
// a Savepoint nests inside a step.
func TestSteps(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		ins := func(tx *sqldb.Tx, id string) error {
			_, err := tx.Exec(ctx, "INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES (?, ?, 'n', 'local', 'active', 0)", id, id)
			return err
		}
		boom := errors.New("boom")
		err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			if err := tx.Step(ctx, func() error { return ins(tx, "a") }); err != nil {
				return err
			}
			if err := ins(tx, "between"); err != nil { // inside a's savepoint, never rolled back to
				return err
			}
			if err := tx.Step(ctx, func() error {
				if err := ins(tx, "b"); err != nil {
					return err
				}
				return ins(tx, "a") // duplicate: aborts the statement
			}); !sqldb.IsUniqueViolation(err) {
				t.Errorf("step error = %v", err)
			}
			if err := tx.Step(ctx, func() error {
				if err := ins(tx, "c"); err != nil {
					return err
				}
				return boom
			}); !errors.Is(err, boom) {
				t.Errorf("step error = %v", err)
			}
			// Steps that send nothing, failing or not, leave nothing to undo.
			if err := tx.Step(ctx, func() error { return boom }); !errors.Is(err, boom) {
				t.Errorf("an empty step's error = %v", err)
			}
			if err := tx.Step(ctx, func() error { return nil }); err != nil {
				t.Errorf("an empty step: %v", err)
			}
			// A read first; then a write undone.
			if err := tx.Step(ctx, func() error {
				var n int
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM tenants").Scan(&n); err != nil || n != 2 {
					return fmt.Errorf("count in a step: %d, %v", n, err)
				}
				if err := ins(tx, "f"); err != nil {
					return err
				}
				return boom
			}); !errors.Is(err, boom) {
				t.Errorf("step error = %v", err)
			}
			// Statements run together: kept, or undone with ErrNoChange.
			rename := func(id, to string) sqldb.Stmt {
				return sqldb.Stmt{SQL: "UPDATE tenants SET slug = ? WHERE id = ?", Args: []any{to, id}, Changes: true}
			}
			insert := func(id string) sqldb.Stmt {
				return sqldb.Stmt{SQL: "INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES (?, ?, 'n', 'local', 'active', 0)", Args: []any{id, id}}
			}
			if err := tx.Step(ctx, func() error { return tx.Run(ctx, []sqldb.Stmt{insert("g"), rename("g", "g2")}) }); err != nil {
				t.Errorf("statements together: %v", err)
			}
			if err := tx.Step(ctx, func() error { return tx.Run(ctx, []sqldb.Stmt{insert("h"), rename("nobody", "x")}) }); !errors.Is(err, sqldb.ErrNoChange) {
				t.Errorf("statements together, one changing nothing: %v", err)
			}
			return tx.Step(ctx, func() error {
				if err := tx.Savepoint(ctx, "nested", func() error {
					if err := ins(tx, "e"); err != nil {
						return err
					}
					return boom
				}); !errors.Is(err, boom) {
					t.Errorf("nested savepoint error = %v", err)
				}
				return ins(tx, "d")
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		ids := sqldbtest.Strings(t, db, "SELECT id || ':' || slug FROM tenants ORDER BY id")
		if fmt.Sprint(ids) != "[a:a between:between d:d g:g2]" {
			t.Fatalf("rows after steps: %v; want [a:a between:between d:d g:g2]", ids)
		}
	})
}

// TestPipeline: all of a pipeline or none of it — a failing statement or
// one marked Changes that changes no row leaves nothing of those before.
func TestPipeline(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		ins := func(id string) sqldb.Stmt {
			return sqldb.Stmt{SQL: "INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES (?, ?, 'n', 'local', 'active', 0)", Args: []any{id, id}}
		}
		rename := func(id, from, to string) sqldb.Stmt {
			return sqldb.Stmt{SQL: "UPDATE tenants SET name = ? WHERE id = ? AND name = ?", Args: []any{to, id, from}, Changes: true}
		}
		if err := db.Pipeline(ctx, []sqldb.Stmt{ins("a"), ins("b"), rename("a", "n", "renamed")}); err != nil {
			t.Fatal(err)
		}
		if err := db.Pipeline(ctx, []sqldb.Stmt{ins("c"), ins("a"), ins("d")}); !sqldb.IsUniqueViolation(err) {
			t.Errorf("a duplicate in the pipeline: %v", err)
		}
		if err := db.Pipeline(ctx, []sqldb.Stmt{ins("e"), rename("b", "not its name", "x"), ins("f")}); !errors.Is(err, sqldb.ErrNoChange) {
			t.Errorf("an update that changed nothing: %v", err)
		}
		rows := sqldbtest.Strings(t, db, "SELECT id || ':' || name FROM tenants ORDER BY id")
		if fmt.Sprint(rows) != "[a:renamed b:n]" {
			t.Fatalf("rows after the pipelines: %v; want [a:renamed b:n]", rows)
		}
	})
}

func TestOpenRejectsUnknownURLs(t *testing.T) {
	if _, err := sqldb.Open(context.Background(), "mysql://x", t.TempDir()); err == nil {
		t.Fatal("mysql:// accepted")
	}
}

// TestSQLiteSyncsUnlessATestSaysNot: a SQLite commit is on disk before the
// caller hears of it (synchronous=FULL) unless a test opened the database
// with sqldb.TestOptions{NoSync: true} (refused outside test binaries:
// cmd/custodia's TestTestOptionsOnlyInTests). A fresh file migrates from
// scratch.
func TestSQLiteSyncsUnlessATestSaysNot(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		opt  sqldb.TestOptions
		want int // PRAGMA synchronous: 0 OFF, 2 FULL
	}{{sqldb.TestOptions{}, 2}, {sqldb.TestOptions{NoSync: true}, 0}} {
		db, err := sqldb.OpenWith(ctx, "", t.TempDir(), c.opt)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if n, err := db.Migrate(ctx); err != nil || n < 20 {
			t.Fatalf("Migrate from scratch applied %d, %v", n, err)
		}
		var got int
		if err := db.Read().QueryRow(ctx, "PRAGMA synchronous").Scan(&got); err != nil || got != c.want {
			t.Errorf("%+v: reader has synchronous=%d, %v; want %d", c.opt, got, err, c.want)
		}
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			return tx.QueryRow(ctx, "PRAGMA synchronous").Scan(&got)
		}); err != nil || got != c.want {
			t.Errorf("%+v: writer has synchronous=%d, %v; want %d", c.opt, got, err, c.want)
		}
	}
}

func TestInsertRows(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		var rows [][]any
		for i := range 70 { // 32 + 32 + 4 + 2
			id := fmt.Sprintf("t%02d", i)
			rows = append(rows, []any{id, id, "n", "local", "active", int64(i)})
		}
		cols := []string{"id", "slug", "name", "region", "status", "created_at"}
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			return tx.InsertRows(ctx, "tenants", cols, rows)
		}); err != nil {
			t.Fatal(err)
		}
		ids := sqldbtest.Strings(t, db, "SELECT id FROM tenants ORDER BY created_at")
		if len(ids) != 70 || ids[0] != "t00" || ids[69] != "t69" {
			t.Fatalf("inserted %d rows (%v…); want 70 in order", len(ids), ids[:min(3, len(ids))])
		}
		// A duplicate fails its statement; the transaction's caller sees the unique violation.
		err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			return tx.InsertRows(ctx, "tenants", cols, [][]any{{"new", "new", "n", "local", "active", 0}, rows[5]})
		})
		if !sqldb.IsUniqueViolation(err) || sqldbtest.Int(t, db, "SELECT count(*) FROM tenants") != 70 {
			t.Fatalf("a duplicate: %v; want a unique violation and nothing inserted", err)
		}
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			return tx.InsertRows(ctx, "tenants", cols, [][]any{{"short"}})
		}); err == nil {
			t.Fatal("a row with too few values was accepted")
		}
	})
}
