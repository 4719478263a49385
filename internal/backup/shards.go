// Package backup makes and keeps Custodia's backups (docs/decisions/0025):
// a consistent copy of the database without the subjects' data keys, and
// those keys apart, in 256 shards that an erasure rewrites in every kept
// backup without decrypting anything.
package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/custodia/custodia/internal/anchor"
)

// Shards is how many key shards a backup has.
const Shards = 256

// ShardOf is the shard that holds a subject's key: the first byte of
// SHA-256 over the tenant and subject ids (ids are time-ordered; their
// hash spreads them).
func ShardOf(tenantID, subjectID string) int {
	h := sha256.Sum256([]byte(tenantID + "\x00" + subjectID))
	return int(h[0])
}

// shardName is the file of shard n.
func shardName(n int) string { return fmt.Sprintf("%02x", n) }

// KeyRecord is one subject's wrapped data key, as a shard keeps it:
// random ids and a key wrapped under the tenant's key, nothing personal.
type KeyRecord struct {
	Tenant     string `json:"tenant"`
	Subject    string `json:"subject"`
	KEKVersion int    `json:"kek_version"`
	Wrapped    []byte `json:"wrapped"`
	Created    int64  `json:"created"`
}

// ShardInfo is what a manifest says of one shard.
type ShardInfo struct {
	Name    string `json:"name"`
	Records int    `json:"records"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
}

// querier reads a snapshot, so that all it reads is of one instant: the
// SQLite copy (sqlQuerier) or PostgreSQL's repeatable-read transaction
// (pgxQuerier).
type querier interface {
	query(ctx context.Context, q string) (rows, error)
}

// rows are a query's results, as both drivers give them.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// sqlQuerier reads through database/sql.
type sqlQuerier struct{ db *sql.DB }

func (q sqlQuerier) query(ctx context.Context, query string) (rows, error) {
	return q.db.QueryContext(ctx, query)
}

// WriteShards writes every row of subject_keys of db into the 256 shard
// files of dir, each sorted by tenant and subject, durably, and answers
// what each holds.
func WriteShards(ctx context.Context, db querier, dir string) ([]ShardInfo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	shards := make([][]KeyRecord, Shards)
	rows, err := db.query(ctx, "SELECT tenant_id, subject_id, kek_version, wrapped, created_at FROM subject_keys ORDER BY tenant_id, subject_id")
	if err != nil {
		return nil, fmt.Errorf("read the data keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r KeyRecord
		if err := rows.Scan(&r.Tenant, &r.Subject, &r.KEKVersion, &r.Wrapped, &r.Created); err != nil {
			return nil, err
		}
		n := ShardOf(r.Tenant, r.Subject)
		shards[n] = append(shards[n], r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	infos := make([]ShardInfo, Shards)
	for n, rs := range shards {
		if infos[n], err = writeShard(filepath.Join(dir, shardName(n)), rs); err != nil {
			return nil, err
		}
	}
	return infos, nil
}

// writeShard replaces the shard at path with rs, durably (temporary file,
// fsync, rename, fsync of the directory): a crash leaves the old shard or
// the new one, never half of one.
func writeShard(path string, rs []KeyRecord) (ShardInfo, error) {
	var b []byte
	for _, r := range rs {
		line, err := json.Marshal(r)
		if err != nil {
			return ShardInfo{}, err
		}
		b = append(append(b, line...), '\n')
	}
	info, err := writeShardBytes(path, b)
	info.Records = len(rs)
	return info, err
}

// writeShardBytes replaces the file at path with b, durably, and answers
// its name, size and SHA-256.
func writeShardBytes(path string, b []byte) (ShardInfo, error) {
	if err := anchor.WriteFileDurably(path, b); err != nil {
		return ShardInfo{}, fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	sum := sha256.Sum256(b)
	return ShardInfo{Name: filepath.Base(path), Bytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// ReadShard reads the records of the shard file at path.
func ReadShard(path string) ([]KeyRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []KeyRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r KeyRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("key shard %s: %w", filepath.Base(path), err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// ForgetKey removes a subject's key from the shards of dir (a kept backup's
// keys/): their shard is written again without it. Nothing is decrypted.
// It answers the shard's new description and whether the key was there.
func ForgetKey(dir, tenantID, subjectID string) (ShardInfo, bool, error) {
	path := filepath.Join(dir, shardName(ShardOf(tenantID, subjectID)))
	rs, err := ReadShard(path)
	if errors.Is(err, os.ErrNotExist) {
		return ShardInfo{}, false, fmt.Errorf("key shard %s is missing from %s", filepath.Base(path), dir)
	}
	if err != nil {
		return ShardInfo{}, false, err
	}
	i := slices.IndexFunc(rs, func(r KeyRecord) bool { return r.Tenant == tenantID && r.Subject == subjectID })
	if i < 0 {
		info, err := describe(path, len(rs))
		return info, false, err
	}
	info, err := writeShard(path, slices.Delete(rs, i, i+1))
	return info, true, err
}

// describe says what the shard at path holds as it is.
func describe(path string, records int) (ShardInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return ShardInfo{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return ShardInfo{Name: filepath.Base(path), Records: records, Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, err
}
