package files

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/sqldb"
)

// Versions beyond what the tenant keeps (versions_kept, the newest; 0
// keeps all) are deleted like purged items: rows — with the keys of their
// content — in a transaction that marks their blobs for deletion, blobs
// after it commits (or by the sweeper). An upload prunes its own file; the
// hourly job prunes every file once the setting is lowered.

// versionBlobs answers the blobs of the versions that match where (on
// file_versions) and the bytes of content they hold.
func versionBlobs(ctx context.Context, q sqldb.Q, where string, args ...any) ([]blobRef, int64, error) {
	rows, err := q.Query(ctx, "SELECT region, blob_key, size FROM file_versions WHERE "+where, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var blobs []blobRef
	var bytes int64
	for rows.Next() {
		var b blobRef
		var size int64
		if err := rows.Scan(&b.region, &b.key, &size); err != nil {
			return nil, 0, err
		}
		blobs, bytes = append(blobs, b), bytes+size
	}
	return blobs, bytes, rows.Err()
}

// markDeleting records inside tx that blobs are to be deleted, so that
// the sweeper deletes them should the deletion after the commit not
// happen.
func (s *Service) markDeleting(ctx context.Context, tx *sqldb.Tx, tenantID string, blobs []blobRef) error {
	now := s.now().UnixMicro()
	for _, b := range blobs {
		if _, err := tx.Exec(ctx, `INSERT INTO blob_intents (region, blob_key, tenant_id, state, touched_at) VALUES (?, ?, ?, 'deleting', ?)
			ON CONFLICT (region, blob_key) DO UPDATE SET state = 'deleting'`, b.region, b.key, tenantID, now); err != nil {
			return err
		}
	}
	return nil
}

// pruneVersions deletes inside tx the versions of file nodeID numbered
// upTo or lower, and answers their blobs (to delete after the commit) and
// bytes.
func (s *Service) pruneVersions(ctx context.Context, tx *sqldb.Tx, tenantID, nodeID string, upTo int) ([]blobRef, int64, error) {
	blobs, bytes, err := versionBlobs(ctx, tx.Q, "tenant_id = ? AND node_id = ? AND version <= ?", tenantID, nodeID, upTo)
	if err != nil || len(blobs) == 0 {
		return nil, 0, err
	}
	if err := s.markDeleting(ctx, tx, tenantID, blobs); err != nil {
		return nil, 0, err
	}
	_, err = tx.Exec(ctx, "DELETE FROM file_versions WHERE tenant_id = ? AND node_id = ? AND version <= ?", tenantID, nodeID, upTo)
	return blobs, bytes, err
}

// PruneVersions deletes, for every tenant that keeps a bounded number of
// versions, the older versions of each file beyond it (files in the trash
// too; not in a space that is moving), audited per file as the system.
// It answers how many versions it deleted.
func (s *Service) PruneVersions(ctx context.Context) (int, error) {
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSystem, ID: "version-prune"})
	type due struct {
		tenantID, spaceID, nodeID string
		upTo                      int
	}
	rows, err := s.db.Read().Query(ctx, `SELECT n.tenant_id, n.space_id, n.id, n.version - t.versions_kept FROM nodes n
		JOIN tenants t ON t.id = n.tenant_id
		JOIN spaces sp ON sp.tenant_id = n.tenant_id AND sp.id = n.space_id AND sp.migrating_to = ''
		WHERE t.versions_kept > 0 AND n.kind = 'file' AND EXISTS (SELECT 1 FROM file_versions v
			WHERE v.tenant_id = n.tenant_id AND v.node_id = n.id AND v.version <= n.version - t.versions_kept)`)
	if err != nil {
		return 0, err
	}
	var dues []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.tenantID, &d.spaceID, &d.nodeID, &d.upTo); err != nil {
			rows.Close()
			return 0, err
		}
		dues = append(dues, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	pruned := 0
	for _, d := range dues {
		var blobs []blobRef
		ev := audit.Event{Action: "file.prune", TargetType: "file", TargetID: d.nodeID,
			Details: map[string]any{"space_id": d.spaceID, "reason": "versions_kept", "up_to_version": d.upTo}}
		err := s.log.Commit(ctx, d.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
			var bytes int64
			var err error
			blobs, bytes, err = s.pruneVersions(ctx, tx, d.tenantID, d.nodeID, d.upTo)
			ev.Details["versions"], ev.Details["bytes"] = len(blobs), bytes
			return err
		}, ev)
		if err != nil {
			return pruned, err
		}
		s.discardAll(context.WithoutCancel(ctx), d.tenantID, blobs)
		pruned += len(blobs)
	}
	return pruned, nil
}
