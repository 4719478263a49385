package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/sqldb"
)

// Progress is told how far a restore is: bytes done of the total.
type Progress func(done, total int64)

// RestoreSQLite writes the backup id of dir, whose manifest the key of
// fingerprint signed, into the SQLite database file dst, which must not
// exist yet: every part is checked against the manifest, the database
// copy decrypted with ids and the subjects' data keys put back from the
// key shards (an erased person's, removed from the shards, stays gone).
// The file appears whole or not at all. It answers the manifest.
func RestoreSQLite(ctx context.Context, dir, id, fingerprint string, ids []age.Identity, dst string, progress Progress) (Manifest, error) {
	m, _, err := Trusted(dir, id, fingerprint)
	if err != nil {
		return m, err
	}
	return m, restoreSQLite(ctx, dir, m, ids, dst, progress)
}

// restoreSQLite is RestoreSQLite once the manifest m is trusted.
func restoreSQLite(ctx context.Context, dir string, m Manifest, ids []age.Identity, dst string, progress Progress) error {
	id := m.ID
	if m.Engine != sqldb.SQLite.String() {
		return fmt.Errorf("backup %s is of a %s database: restore it into %s", id, m.Engine, m.Engine)
	}
	if m.Schema > sqldb.NewestSchema() {
		return fmt.Errorf("backup %s has schema version %d, newer than this program's %d: restore it with a newer custodia", id, m.Schema, sqldb.NewestSchema())
	}
	if err := verifyParts(filepath.Join(dir, id), m); err != nil {
		return err
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s exists: a backup is restored into an empty data directory", dst)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	work := dst + ".restoring"
	_ = os.Remove(work) // what a restore cut short left
	defer os.Remove(work)
	if err := decrypt(filepath.Join(dir, id, m.Database.Name), work, ids, m.Database.Bytes, progress); err != nil {
		return err
	}
	if err := putKeysBack(ctx, work, filepath.Join(dir, id, "keys"), m); err != nil {
		return err
	}
	if err := os.Rename(work, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// decrypt writes the age decryption of src into dst, durably, telling
// progress of the bytes read.
func decrypt(src, dst string, ids []age.Identity, total int64, progress Progress) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	r, err := age.Decrypt(&progressReader{r: in, total: total, tell: progress}, ids...)
	if err != nil {
		return fmt.Errorf("decrypt %s: %w (is this the identity the backups are encrypted to?)", filepath.Base(src), err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, r); err != nil {
		return fmt.Errorf("decrypt %s: %w", filepath.Base(src), err)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

type progressReader struct {
	r           io.Reader
	done, total int64
	tell        Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.tell(p.done, p.total)
	return n, err
}

// putKeysBack inserts the key shards' records into the subject_keys of
// the database copy at path, in one transaction.
func putKeysBack(ctx context.Context, path, keys string, m Manifest) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, "INSERT INTO subject_keys (tenant_id, subject_id, kek_version, wrapped, created_at) VALUES (?, ?, ?, ?, ?)")
	if err != nil {
		return err
	}
	defer ins.Close()
	for _, k := range m.Keys {
		rs, err := ReadShard(filepath.Join(keys, k.Name))
		if err != nil {
			return err
		}
		for _, r := range rs {
			if _, err := ins.ExecContext(ctx, r.Tenant, r.Subject, r.KEKVersion, r.Wrapped, r.Created); err != nil {
				return fmt.Errorf("put the data keys back (shard %s): %w", k.Name, err)
			}
		}
	}
	// The backup's own hold on content deletions was copied too.
	if _, err := tx.ExecContext(ctx, "DELETE FROM blob_holds"); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return db.Close()
}
