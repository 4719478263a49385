package sqldb_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A database that is full refuses with errs.NoSpace (507), from a
// transaction and from a savepoint alike, writes nothing, and takes
// writes again once there is room. SQLite's max_page_count makes a real
// "database or disk is full".
func TestAFullDatabaseIsNoSpace(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.SQLite(t)
	exec := func(q string) error {
		return db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { _, err := tx.Exec(ctx, q); return err })
	}
	if err := exec("CREATE TABLE filler (b BLOB NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		return tx.QueryRow(ctx, "PRAGMA page_count").Scan(&pages)
	}); err != nil {
		t.Fatal(err)
	}
	if err := exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages+4)); err != nil {
		t.Fatal(err)
	}
	insert := func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO filler (b) VALUES (?)", bytes.Repeat([]byte{1}, 64<<10))
		return err
	}
	err := db.WithTx(ctx, insert)
	if !errs.Is(err, errs.NoSpace) {
		t.Fatalf("a full database answered %v (kind %v)", err, errs.KindOf(err))
	}
	err = db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		return tx.Savepoint(ctx, "unit", func() error { return insert(ctx, tx) })
	})
	if !errs.Is(err, errs.NoSpace) {
		t.Fatalf("a full database in a savepoint answered %v", err)
	}
	if n := sqldbtest.Strings(t, db, "SELECT COUNT(*) FROM filler")[0]; n != "0" {
		t.Errorf("%s rows written by refused transactions", n)
	}
	if err := exec("PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if err := db.WithTx(ctx, insert); err != nil {
		t.Errorf("after room was made: %v", err)
	}
}

// PostgreSQL's disk_full (53100) maps the same way; other errors of its
// class (out of memory, too many connections) do not.
func TestPostgresDiskFullMapping(t *testing.T) {
	db := sqldbtest.SQLite(t) // the mapping is the driver's error, whatever ran it
	for code, want := range map[string]errs.Kind{"53100": errs.NoSpace, "53200": errs.Internal, "53300": errs.Internal} {
		err := db.WithTx(context.Background(), func(context.Context, *sqldb.Tx) error {
			return fmt.Errorf("insert: %w", &pgconn.PgError{Code: code, Message: "could not extend file"})
		})
		if got := errs.KindOf(err); got != want {
			t.Errorf("SQLSTATE %s: kind %v, want %v", code, got, want)
		}
	}
}
