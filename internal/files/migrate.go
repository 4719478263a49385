package files

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/segcrypt"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
)

// A space moves to another region by an explicit migration: the space is
// marked (spaces.migrating_to), content writes to it are refused (409),
// then each stored version is copied — opened and checked in the old
// region, sealed anew under a fresh key in the new one, read back and
// compared with its recorded SHA-256 — and switched to its copy in one
// transaction that marks the old blob for deletion, which follows. Once
// every version is in the new region the space's region switches and the
// mark goes. A migration interrupted (a crash, a region down) resumes from
// where it stopped: on the next start or hourly run, or by asking again.

// Migration is where a space's move stands.
type Migration struct {
	SpaceID  string `json:"space_id"`
	Region   string `json:"region"`       // where the space is (its region switches at the end)
	To       string `json:"migrating_to"` // "" once done
	Versions int    `json:"versions"`     // stored versions of the space's files
	Moved    int    `json:"moved"`        // of them, in the target region
	Done     bool   `json:"done"`
}

// migrationOf reads a space's migration state.
func (s *Service) migrationOf(ctx context.Context, tenantID, spaceID string) (Migration, error) {
	m := Migration{SpaceID: spaceID}
	err := s.db.Read().QueryRow(ctx, "SELECT region, migrating_to FROM spaces WHERE tenant_id = ? AND id = ? AND trashed_at = 0",
		tenantID, spaceID).Scan(&m.Region, &m.To)
	if errors.Is(err, sql.ErrNoRows) {
		return m, errs.E(errs.NotFound, "no such space")
	}
	if err != nil {
		return m, err
	}
	target := m.To
	if target == "" {
		target = m.Region
	}
	if err := s.db.Read().QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN region = ? THEN 1 ELSE 0 END), 0)
		FROM file_versions WHERE tenant_id = ? AND space_id = ?`, target, tenantID, spaceID).Scan(&m.Versions, &m.Moved); err != nil {
		return m, err
	}
	m.Done = m.To == ""
	return m, nil
}

// MigrationStatus answers where a space's move stands (viewers).
func (s *Service) MigrationStatus(ctx context.Context, p identity.Principal, spaceID string) (Migration, error) {
	if _, err := s.spaces.Need(ctx, p, spaceID, space.Viewer); err != nil {
		return Migration{}, err
	}
	return s.migrationOf(ctx, p.TenantID, spaceID)
}

// StartMigration marks a space for moving to region and starts moving it
// in the background; asking again for the same region resumes a move
// that stopped, asking for the region it is leaving calls it back (what
// moved already returns). Only the tenant's owners and admins move spaces.
func (s *Service) StartMigration(ctx context.Context, p identity.Principal, spaceID, region string) (Migration, error) {
	if _, err := s.spaces.Need(ctx, p, spaceID, space.Viewer); err != nil {
		return Migration{}, err
	}
	if !space.Administers(p) {
		return Migration{}, errs.E(errs.Forbidden, "only the organisation's owners and admins move spaces between regions")
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return Migration{}, err
	}
	if err := s.tenants.CheckAllowed(t, region); err != nil {
		return Migration{}, err
	}
	if _, err := s.store(region); err != nil {
		return Migration{}, err
	}
	cur, err := s.migrationOf(ctx, p.TenantID, spaceID)
	if err != nil {
		return Migration{}, err
	}
	switch {
	case cur.To == region: // resume
	case cur.To != "" && region != cur.Region:
		return cur, errs.E(errs.Conflict, "the space is moving to %s already; let that finish, or move it back to %s", cur.To, cur.Region)
	case cur.To == "" && cur.Region == region:
		return cur, errs.Field("region", "the space is in %s already", region)
	default: // a new move, or back where a move began (what moved already returns)
		var cancelled []blobRef
		ev := audit.Event{Action: "space.migration_start", TargetType: "space", TargetID: spaceID,
			Details: map[string]any{"from": cur.Region, "to": region, "versions": cur.Versions, "called_back_from": cur.To}}
		err := s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
			res, err := tx.Exec(ctx, "UPDATE spaces SET migrating_to = ? WHERE tenant_id = ? AND id = ? AND migrating_to = ? AND region = ?",
				region, p.TenantID, spaceID, cur.To, cur.Region)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errs.E(errs.Conflict, "the space changed meanwhile; read it again")
			}
			// Uploads under way would leave parts in the region being
			// left: they are cancelled.
			var uploads int
			cancelled, uploads, err = s.dropUploads(ctx, tx, p.TenantID, "space_id = ?", spaceID)
			ev.Details["uploads_cancelled"] = uploads
			return err
		}, ev)
		if err != nil {
			return Migration{}, err
		}
		s.discardAll(context.WithoutCancel(ctx), p.TenantID, cancelled)
	}
	go func() {
		if err := s.migrate(context.WithoutCancel(ctx), p.TenantID, spaceID); err != nil {
			s.logger.Error("space migration stopped; it resumes on the next run", "space", spaceID, "error", err.Error())
		}
	}()
	return s.migrationOf(ctx, p.TenantID, spaceID)
}

// ResumeMigrations goes on with every move that is not finished.
func (s *Service) ResumeMigrations(ctx context.Context) error {
	rows, err := s.db.Read().Query(ctx, "SELECT tenant_id, id FROM spaces WHERE migrating_to <> ''")
	if err != nil {
		return err
	}
	var todo [][2]string
	for rows.Next() {
		var t, id string
		if err := rows.Scan(&t, &id); err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, [2]string{t, id})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, m := range todo {
		if err := s.migrate(ctx, m[0], m[1]); err != nil {
			s.logger.Error("space migration stopped; it resumes on the next run", "space", m[1], "error", err.Error())
		}
	}
	return nil
}

// migrate moves what is left of a space's move, one version at a time,
// then switches the space. One run per space at a time in this process;
// runs elsewhere are harmless (a version switches once; a losing copy is
// deleted).
func (s *Service) migrate(ctx context.Context, tenantID, spaceID string) error {
	if _, busy := s.moving.LoadOrStore(spaceID, true); busy {
		return nil // the run under way sees a changed target before its next version
	}
	defer s.moving.Delete(spaceID)
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSystem, ID: "space-migration"})
	for {
		err := s.migrateTo(ctx, tenantID, spaceID)
		if !errors.Is(err, errRetargeted) {
			return err
		}
	}
}

// errRetargeted ends a run whose move was called back or sent elsewhere.
var errRetargeted = errors.New("files: the move's target changed")

// migrateTo moves the space's versions to where its mark says, then
// switches the space; errRetargeted when the mark changes meanwhile.
func (s *Service) migrateTo(ctx context.Context, tenantID, spaceID string) error {
	target := func() (string, string, error) {
		var from, to string
		err := s.db.Read().QueryRow(ctx, "SELECT region, migrating_to FROM spaces WHERE tenant_id = ? AND id = ?", tenantID, spaceID).Scan(&from, &to)
		return from, to, err
	}
	from, to, err := target()
	if err != nil || to == "" {
		return err
	}
	dst, err := s.store(to)
	if err != nil {
		return err
	}
	moved, bytes := 0, int64(0)
	for {
		if _, now, err := target(); err != nil {
			return err
		} else if now != to {
			return errRetargeted
		}
		v, err := scanVersion(s.db.Read().QueryRow(ctx, "SELECT "+versionCols+` FROM file_versions
			WHERE tenant_id = ? AND space_id = ? AND region <> ? ORDER BY id LIMIT 1`, tenantID, spaceID, to))
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return err
		}
		if err := s.moveVersion(ctx, tenantID, v, dst); err != nil {
			return fmt.Errorf("version %s: %w", v.id, err)
		}
		moved, bytes = moved+1, bytes+v.size
	}
	return s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE spaces SET region = ?, migrating_to = '' WHERE tenant_id = ? AND id = ? AND migrating_to = ?",
			to, tenantID, spaceID, to)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errRetargeted
		}
		var left int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM file_versions WHERE tenant_id = ? AND space_id = ? AND region <> ?",
			tenantID, spaceID, to).Scan(&left); err != nil {
			return err
		}
		if left > 0 { // cannot happen while content writes are refused; never switch with a version behind
			return fmt.Errorf("files: %d versions of space %s are outside %s", left, spaceID, to)
		}
		return nil
	}, audit.Event{Action: "space.migrate", TargetType: "space", TargetID: spaceID,
		Details: map[string]any{"from": from, "to": to, "versions_moved_by_this_run": moved, "bytes": bytes}})
}

// moveVersion copies v into dst under a fresh key, reads the copy back
// and compares it with the version's recorded SHA-256, and switches v to
// it; the old blob is deleted after the switch (or by the sweeper).
func (s *Service) moveVersion(ctx context.Context, tenantID string, v versionRow, dst *blobstore.Store) error {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return err
	}
	src, err := s.openBlob(ctx, dk, tenantID, v)
	if err != nil {
		return err
	}
	defer src.Close()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	blobKey := tenantID + "/" + v.spaceID + "/" + id.String()
	ad := associatedData(tenantID, v.nodeID, v.id)
	sealed, err := s.write(ctx, tenantID, dst, blobKey, key, ad, src)
	if err != nil {
		return err
	}
	drop := func() { s.discard(context.WithoutCancel(ctx), dst, tenantID, blobKey) }
	want, err := dk.Open("file_versions", "sha256_ct", v.id, v.sumCT)
	if err != nil {
		drop()
		return err
	}
	back, err := segcrypt.Open(sealed, key, ad, func(off int64) (io.ReadCloser, error) { return dst.Get(ctx, blobKey, off, -1) })
	if err != nil {
		drop()
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, back)
	back.Close()
	if err != nil || n != v.size || !bytes.Equal(h.Sum(nil), want) {
		drop()
		return fmt.Errorf("the copy in %s does not read back as the original (%d of %d bytes): %v", dst.Region, n, v.size, err)
	}
	switched := false
	err = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE file_versions SET region = ?, blob_key = ?, sealed_size = ?, key_ct = ?
			WHERE tenant_id = ? AND id = ? AND region = ? AND blob_key = ?`,
			dst.Region, blobKey, sealed, dk.Seal("file_versions", "key_ct", v.id, key), tenantID, v.id, v.region, v.blobKey)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil // purged, or moved by another run, meanwhile
		}
		switched = true
		if _, err := tx.Exec(ctx, "DELETE FROM blob_intents WHERE region = ? AND blob_key = ?", dst.Region, blobKey); err != nil {
			return err
		}
		return s.markDeleting(ctx, tx, tenantID, []blobRef{{v.region, v.blobKey}})
	})
	if err != nil || !switched {
		drop()
		return err
	}
	s.discardAll(context.WithoutCancel(ctx), tenantID, []blobRef{{v.region, v.blobKey}})
	return nil
}
