package backup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/anchor"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Drill is what a restore drill found: a backup decrypted with the
// identity, opened, and every tenant's chain verified against the heads
// signed in its manifest, with the master key.
type Drill struct {
	At      time.Time `json:"at"`
	Backup  string    `json:"backup"`
	Made    time.Time `json:"backup_made_at"`
	Tenants int       `json:"tenants"`
	Events  int64     `json:"events"`
	Files   int       `json:"files"`
	OK      bool      `json:"ok"`
	Problem string    `json:"problem,omitempty"`
}

// drillFile, in the backup location, records the last drill.
const drillFile = "last-drill.json"

// RunDrill restores the backup id of dir with the identities — into a
// temporary directory, or for a PostgreSQL backup into a schema of its own
// in the database at pgURL, dropped after — and checks it whole: every part and every content copy
// (read and hashed), the schema, and every tenant's audit chain — its
// events, checkpoints and head — against the head the manifest signed,
// with the tenant keys the master key (in keys) opens. It records the
// result in the backup location, for the console; a failed check is a
// Drill that is not OK, an error only what kept the drill from running.
func RunDrill(ctx context.Context, dir, id string, trusted []ed25519.PublicKey, ids []age.Identity, keys *keyring.Keyring, regions Regions, pgURL string, now func() time.Time) (Drill, error) {
	d := Drill{At: now().UTC(), Backup: id}
	m, err := readManifest(filepath.Join(dir, id), trusted...)
	if err != nil {
		return d, err
	}
	d.Made = m.CreatedAt
	tmp, err := os.MkdirTemp("", "custodia-drill-")
	if err != nil {
		return d, err
	}
	defer os.RemoveAll(tmp)
	failed := func(err error) (Drill, error) {
		d.Problem = err.Error()
		return d, recordDrill(dir, d)
	}
	db, cleanup, err := drillDatabase(ctx, dir, m, ids, tmp, pgURL)
	if err != nil {
		return failed(err)
	}
	defer cleanup()
	if regions != nil {
		if err := VerifyContent(ctx, regions, dir, m, true); err != nil {
			return failed(err)
		}
	}
	for _, f := range m.Files {
		d.Files += f.Objects
	}
	if _, err := db.Migrate(ctx); err != nil {
		return failed(fmt.Errorf("the database copy's schema (version %d) does not migrate to this program's: %w", m.Schema, err))
	}
	anc, err := anchor.Open(ctx, "file://"+filepath.Join(tmp, "anchor"), "drill", anchor.Options{Manual: true})
	if err != nil {
		return d, err
	}
	defer anc.Close()
	for tenantID, h := range m.Heads {
		anc.Note(tenantID, h)
	}
	log := audit.New(db, keys, now, audit.Options{Anchor: anc})
	defer log.Close()
	for _, tenantID := range slices.Sorted(maps.Keys(m.Heads)) {
		v, err := log.Verify(ctx, tenantID)
		if err != nil {
			return failed(fmt.Errorf("tenant %s: %w (is this the master key the backup was made under?)", tenantID, err))
		}
		if !v.OK || v.Anchored != m.Heads[tenantID].Seq {
			return failed(fmt.Errorf("tenant %s: %s", tenantID, v))
		}
		d.Tenants++
		d.Events += v.Events
	}
	d.OK = true
	return d, recordDrill(dir, d)
}

// recordDrill writes d as the location's last drill.
func recordDrill(dir string, d Drill) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return anchor.WriteFileDurably(filepath.Join(dir, drillFile), b)
}

// LastDrill answers the last drill recorded in the backup location dir;
// ok is false when none was.
func LastDrill(dir string) (d Drill, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, drillFile))
	if errors.Is(err, os.ErrNotExist) {
		return d, false, nil
	}
	if err != nil {
		return d, false, err
	}
	return d, true, json.Unmarshal(b, &d)
}

// drillDatabase restores the backup m for a drill and answers the
// database, and what removes it.
func drillDatabase(ctx context.Context, dir string, m Manifest, ids []age.Identity, tmp, pgURL string) (*sqldb.DB, func(), error) {
	if m.Engine != sqldb.Postgres.String() {
		path := filepath.Join(tmp, "custodia.db")
		if err := restoreSQLite(ctx, dir, m, ids, path, nil); err != nil {
			return nil, nil, err
		}
		db, err := sqldb.Open(ctx, "sqlite://"+path, tmp)
		if err != nil {
			return nil, nil, fmt.Errorf("the database copy does not open: %w", err)
		}
		return db, func() { db.Close() }, nil
	}
	if pgURL == "" {
		return nil, nil, errors.New("a backup of PostgreSQL is drilled in PostgreSQL: give the database URL")
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return nil, nil, err
	}
	schema := "custodia_drill_" + hex.EncodeToString(suffix)
	admin, err := sqldb.Open(ctx, pgURL, tmp)
	if err != nil {
		return nil, nil, err
	}
	exec := func(ctx context.Context, q string) error {
		return admin.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { _, err := tx.Exec(ctx, q); return err })
	}
	drop := func() {
		_ = exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		admin.Close()
	}
	if err := exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("a schema of its own for the drill: %w", err)
	}
	u, err := url.Parse(pgURL)
	if err != nil {
		drop()
		return nil, nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := sqldb.Open(ctx, u.String(), tmp)
	if err == nil {
		err = restorePostgres(ctx, dir, m, ids, db, nil)
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		drop()
		return nil, nil, err
	}
	return db, func() { db.Close(); drop() }, nil
}
