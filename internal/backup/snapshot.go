package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custodia/custodia/internal/anchor"
	"github.com/custodia/custodia/internal/sqldb"
)

// Snapshot is a consistent copy of the database without the subjects'
// data keys, and those keys in shards, both of one instant.
type Snapshot struct {
	Database string                 // the copy's file
	Keys     []ShardInfo            // the shards, in dir/keys
	Schema   int                    // the copy's schema version
	Heads    map[string]anchor.Head // each tenant's signed audit head in the copy
	Blobs    map[string][]string    // the content the copy refers to: region → keys, sorted
}

// SnapshotSQLite copies the live SQLite database into dir at one instant
// (VACUUM INTO, one read transaction), writes the copy's data keys into
// the shards of dir/keys, then empties the copy's subject_keys and
// vacuums it with secure_delete, so that no page of the copy holds a
// wrapped key. The copy holds what the database holds: ciphertext, blind
// indexes, ids — never a person's data in clear.
func SnapshotSQLite(ctx context.Context, live *sqldb.DB, dir string) (Snapshot, error) {
	if live.Dialect() != sqldb.SQLite {
		return Snapshot{}, errors.New("backup: not an SQLite database")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{Database: filepath.Join(dir, "database.sqlite")}
	// A connection of its own: the server's readers are query-only, which
	// refuses VACUUM INTO; in WAL mode the copy is one read transaction
	// and writers go on meanwhile.
	src, err := sql.Open("sqlite", "file:"+live.Path()+"?_pragma=busy_timeout(15000)")
	if err != nil {
		return Snapshot{}, err
	}
	defer src.Close()
	if _, err := src.ExecContext(ctx, "VACUUM INTO ?", s.Database); err != nil {
		return Snapshot{}, fmt.Errorf("copy the database: %w", err)
	}
	if err := src.Close(); err != nil {
		return Snapshot{}, err
	}
	if err := os.Chmod(s.Database, 0o600); err != nil {
		return Snapshot{}, err
	}
	cp, err := sql.Open("sqlite", "file:"+s.Database+"?_pragma=secure_delete(1)&_pragma=journal_mode(DELETE)")
	if err != nil {
		return Snapshot{}, err
	}
	defer cp.Close()
	if err := readSnapshot(ctx, sqlQuerier{cp}, dir, &s); err != nil {
		return Snapshot{}, err
	}
	for _, q := range []string{"DELETE FROM subject_keys", "VACUUM"} {
		if _, err := cp.ExecContext(ctx, q); err != nil {
			return Snapshot{}, fmt.Errorf("take the keys out of the copy: %w", err)
		}
	}
	return s, cp.Close()
}

// readSnapshot writes the snapshot's data keys into the shards of
// dir/keys and reads what the manifest says of it.
func readSnapshot(ctx context.Context, q querier, dir string, s *Snapshot) error {
	var err error
	if s.Keys, err = WriteShards(ctx, q, filepath.Join(dir, "keys")); err != nil {
		return err
	}
	if s.Schema, s.Heads, err = describeCopy(ctx, q); err != nil {
		return err
	}
	s.Blobs, err = contentOf(ctx, q)
	return err
}

// describeCopy reads a copy's schema version and each tenant's signed
// audit head, for the manifest: a restore and a verify with the identity
// check the copy's chains against them.
func describeCopy(ctx context.Context, cp querier) (int, map[string]anchor.Head, error) {
	var schema int
	rows, err := cp.query(ctx, "SELECT max(version) FROM schema_migrations")
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&schema); err != nil {
			return 0, nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	heads := map[string]anchor.Head{}
	if rows, err = cp.query(ctx, "SELECT tenant_id, seq, hash, signed_at, signature FROM audit_heads WHERE seq > 0"); err != nil {
		return 0, nil, fmt.Errorf("read the audit heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var h anchor.Head
		if err := rows.Scan(&id, &h.Seq, &h.Hash, &h.At, &h.Signature); err != nil {
			return 0, nil, err
		}
		heads[id] = h
	}
	return schema, heads, rows.Err()
}

// contentOf answers the content blobs a copy refers to, region → keys,
// sorted.
func contentOf(ctx context.Context, cp querier) (map[string][]string, error) {
	rows, err := cp.query(ctx, "SELECT region, blob_key FROM file_versions ORDER BY region, blob_key")
	if err != nil {
		return nil, fmt.Errorf("read the files' content keys: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var region, key string
		if err := rows.Scan(&region, &key); err != nil {
			return nil, err
		}
		out[region] = append(out[region], key)
	}
	return out, rows.Err()
}
