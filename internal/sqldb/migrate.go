package sqldb

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Migrations are numbered files NNNN_name.sql shared by both engines. Where
// the SQL really differs, NNNN_name.sqlite.sql and NNNN_name.postgres.sql
// replace the shared file for their engine.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func (db *DB) migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	byVersion := map[int]migration{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".sql")
		base, variant, hasVariant := strings.Cut(name, ".")
		if hasVariant && variant != db.dialect.String() {
			continue
		}
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and _", e.Name())
		}
		if prev, dup := byVersion[v]; dup && !hasVariant {
			if prev.name != base {
				return nil, fmt.Errorf("migration %d defined twice", v)
			}
			continue // the dialect variant wins over the shared file
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		byVersion[v] = migration{version: v, name: base, sql: string(b)}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %d missing", i+1)
		}
	}
	return out, nil
}

// Migrate applies every migration not yet applied, each in its own
// transaction. Several processes may call it at once.
func (db *DB) Migrate(ctx context.Context) (applied int, err error) {
	return db.MigrateTo(ctx, NewestSchema())
}

// MigrateTo applies the migrations not yet applied up to version (a
// restore builds the schema of its backup, then loads the rows, then
// migrates the rest).
func (db *DB) MigrateTo(ctx context.Context, version int) (applied int, err error) {
	ms, err := db.migrations()
	if err != nil {
		return 0, err
	}
	ms = ms[:min(len(ms), max(version, 0))]
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		err := db.WithTx(ctx, func(ctx context.Context, tx *Tx) error {
			if db.dialect == Postgres {
				if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7262387)"); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			applied++
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.version, m.name, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
		}
	}
	return applied, nil
}

// NewestSchema answers the newest schema version this program knows (the
// migrations are numbered from 1 without a gap, in both dialects).
func NewestSchema() int {
	ms, _ := (&DB{dialect: SQLite}).migrations() // embedded: checked by every Migrate
	return len(ms)
}

// Pending reports how many migrations are not applied yet; readiness checks use it.
func (db *DB) Pending(ctx context.Context) (int, error) {
	ms, err := db.migrations()
	if err != nil {
		return 0, err
	}
	var n int
	if err := db.read.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		return len(ms), nil
	}
	return len(ms) - n, nil
}
