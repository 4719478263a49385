package files

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
)

// Kind of a trashed space.
const Space = "space"

// TrashItem is a file, folder or space in the trash. What is inside a
// trashed folder or space goes and comes back with it.
type TrashItem struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // file, folder or space
	Name      string    `json:"name"`
	SpaceID   string    `json:"space_id"`
	Path      string    `json:"path,omitempty"` // where a file or folder was
	Versions  int       `json:"versions"`       // stored file versions inside it
	Bytes     int64     `json:"bytes"`          // their size
	CreatedBy string    `json:"created_by"`
	TrashedBy string    `json:"trashed_by"`
	TrashedAt time.Time `json:"trashed_at"`
	PurgeAt   time.Time `json:"purge_at"`
}

// Trash moves the file or folder at path to the trash.
func (s *Service) Trash(ctx context.Context, p identity.Principal, spaceID, path string) (TrashItem, error) {
	names, err := SplitPath("path", path)
	if err != nil {
		return TrashItem{}, err
	}
	if len(names) == 0 {
		return TrashItem{}, errs.Field("path", "name a file or a folder (DELETE /api/v1/spaces/{id} trashes the space)")
	}
	n, err := s.itemAt(ctx, p, spaceID, names, space.Editor)
	if err != nil {
		return TrashItem{}, err
	}
	// Like a move or a rename, trashing changes the folder the item is in:
	// it takes an editor there. A grant on a folder is for what it holds,
	// not for the folder itself.
	if _, err := s.locate(ctx, s.db.Read(), p, spaceID, names[:len(names)-1], space.Editor); err != nil {
		return TrashItem{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond).UnixMicro()
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		r, err := tx.Exec(ctx, "UPDATE nodes SET trashed_at = ?, trashed_by = ? WHERE tenant_id = ? AND id = ? AND trashed_at = 0", now, p.UserID, p.TenantID, n.id)
		if err != nil {
			return err
		}
		if k, _ := r.RowsAffected(); k == 0 {
			return errs.E(errs.NotFound, "nothing at this path")
		}
		return nil
	}, audit.Event{Action: n.kind + ".trash", TargetType: n.kind, TargetID: n.id, Details: map[string]any{"space_id": spaceID}})
	if err != nil {
		return TrashItem{}, err
	}
	return s.trashItem(ctx, p.TenantID, n.id)
}

// TrashSpace moves a whole space to the trash (editors of the space).
func (s *Service) TrashSpace(ctx context.Context, p identity.Principal, spaceID string) (TrashItem, error) {
	if _, err := s.spaces.Need(ctx, p, spaceID, space.Editor); err != nil {
		return TrashItem{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond).UnixMicro()
	err := s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		r, err := tx.Exec(ctx, "UPDATE spaces SET trashed_at = ?, trashed_by = ? WHERE tenant_id = ? AND id = ? AND trashed_at = 0", now, p.UserID, p.TenantID, spaceID)
		if err != nil {
			return err
		}
		if k, _ := r.RowsAffected(); k == 0 {
			return errs.E(errs.NotFound, "no such space")
		}
		return nil
	}, audit.Event{Action: "space.trash", TargetType: "space", TargetID: spaceID})
	if err != nil {
		return TrashItem{}, err
	}
	return s.trashItem(ctx, p.TenantID, spaceID)
}

// trashed is a row of the trash: a trashed space or a trashed node in a
// live space.
type trashed struct {
	item   TrashItem
	nameCT []byte
	node   node
}

// trashRows lists the tenant's trash, or the one item id when id != "".
func (s *Service) trashRows(ctx context.Context, q sqldb.Q, tenantID, id string) ([]trashed, error) {
	filter, args := "", []any{tenantID}
	if id != "" {
		filter, args = " AND s.id = ?", append(args, id)
	}
	args = append(args, tenantID)
	if id != "" {
		args = append(args, id)
	}
	rows, err := q.Query(ctx, `SELECT 'space', s.id, s.id, '', s.name_ct, s.created_by, s.trashed_by, s.trashed_at, 0, t.trash_days,
			(SELECT COUNT(*) FROM file_versions v WHERE v.tenant_id = s.tenant_id AND v.space_id = s.id),
			(SELECT COALESCE(SUM(v.size), 0) FROM file_versions v WHERE v.tenant_id = s.tenant_id AND v.space_id = s.id)
		FROM spaces s JOIN tenants t ON t.id = s.tenant_id
		WHERE s.tenant_id = ? AND s.trashed_at > 0`+filter+`
		UNION ALL
		SELECT n.kind, n.id, n.space_id, n.parent_id, n.name_ct, n.created_by, n.trashed_by, n.trashed_at, n.version, t.trash_days, 0, 0
		FROM nodes n JOIN spaces s ON s.tenant_id = n.tenant_id AND s.id = n.space_id AND s.trashed_at = 0 JOIN tenants t ON t.id = n.tenant_id
		WHERE n.tenant_id = ? AND n.trashed_at > 0`+strings.ReplaceAll(filter, "s.id", "n.id")+`
		ORDER BY 8 DESC`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []trashed
	for rows.Next() {
		var r trashed
		var at int64
		var days int
		if err := rows.Scan(&r.item.Kind, &r.item.ID, &r.item.SpaceID, &r.node.parentID, &r.nameCT, &r.item.CreatedBy, &r.item.TrashedBy, &at, &r.node.version, &days,
			&r.item.Versions, &r.item.Bytes); err != nil {
			return nil, err
		}
		r.item.TrashedAt = time.UnixMicro(at).UTC()
		r.item.PurgeAt = r.item.TrashedAt.AddDate(0, 0, days)
		r.node.id, r.node.spaceID, r.node.kind, r.node.nameCT, r.node.trashedAt = r.item.ID, r.item.SpaceID, r.item.Kind, r.nameCT, at
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].item.Kind == Space {
			continue
		}
		ids, err := s.subtree(ctx, q, tenantID, out[i].item.SpaceID, out[i].item.ID)
		if err != nil {
			return nil, err
		}
		for _, nid := range ids {
			var k int
			var b int64
			if err := q.QueryRow(ctx, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM file_versions WHERE tenant_id = ? AND node_id = ?", tenantID, nid).Scan(&k, &b); err != nil {
				return nil, err
			}
			out[i].item.Versions += k
			out[i].item.Bytes += b
		}
	}
	return out, nil
}

// subtree is the ids of root and everything inside it.
func (s *Service) subtree(ctx context.Context, q sqldb.Q, tenantID, spaceID, root string) ([]string, error) {
	ids := []string{root}
	for i := 0; i < len(ids); i++ {
		kids, err := q.Strings(ctx, "SELECT id FROM nodes WHERE tenant_id = ? AND space_id = ? AND parent_id = ?", tenantID, spaceID, ids[i])
		if err != nil {
			return nil, err
		}
		ids = append(ids, kids...)
	}
	return ids, nil
}

// named fills in the item's name and former path.
func (s *Service) named(ctx context.Context, tenantID string, r trashed) (TrashItem, error) {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return TrashItem{}, err
	}
	it := r.item
	if it.Kind == Space {
		name, err := dk.Open("spaces", "name_ct", it.ID, r.nameCT)
		if err != nil {
			return TrashItem{}, err
		}
		it.Name = string(name)
		return it, nil
	}
	name, err := dk.Open("nodes", "name_ct", it.ID, r.nameCT)
	if err != nil {
		return TrashItem{}, err
	}
	it.Name = string(name)
	if it.Path, _, err = s.pathOf(ctx, tenantID, r.node); err != nil {
		return TrashItem{}, err
	}
	return it, nil
}

func (s *Service) trashItem(ctx context.Context, tenantID, id string) (TrashItem, error) {
	rs, err := s.trashRows(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return TrashItem{}, err
	}
	if len(rs) == 0 {
		return TrashItem{}, errs.E(errs.NotFound, "no such item in the trash")
	}
	return s.named(ctx, tenantID, rs[0])
}

// mayRetrieve reports whether p may see, restore and purge a trashed
// item: admins always; otherwise whoever made or trashed it — for a file
// or folder, while they are still an editor where it was (by a grant on
// its space or on a folder above it).
func (s *Service) mayRetrieve(ctx context.Context, p identity.Principal, r trashed) (bool, error) {
	if space.Administers(p) {
		return true, nil
	}
	if r.item.CreatedBy != p.UserID && r.item.TrashedBy != p.UserID {
		return false, nil
	}
	if r.item.Kind == Space {
		return true, nil
	}
	pl, err := s.placeOf(ctx, p.TenantID, r.node)
	if err != nil {
		return false, err
	}
	a, err := s.spaces.AccessIn(ctx, p, scopeOf(r.item.SpaceID, pl.chain))
	return a == space.Editor, err
}

// ListTrash lists what p may retrieve from the trash, most recently
// trashed first.
func (s *Service) ListTrash(ctx context.Context, p identity.Principal) ([]TrashItem, error) {
	rs, err := s.trashRows(ctx, s.db.Read(), p.TenantID, "")
	if err != nil {
		return nil, err
	}
	out := []TrashItem{}
	for _, r := range rs {
		ok, err := s.mayRetrieve(ctx, p, r)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		it, err := s.named(ctx, p.TenantID, r)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// retrievable finds trash item id that p may retrieve; NotFound otherwise.
func (s *Service) retrievable(ctx context.Context, p identity.Principal, id string) (TrashItem, error) {
	rs, err := s.trashRows(ctx, s.db.Read(), p.TenantID, id)
	if err != nil {
		return TrashItem{}, err
	}
	ok := len(rs) > 0
	if ok {
		if ok, err = s.mayRetrieve(ctx, p, rs[0]); err != nil {
			return TrashItem{}, err
		}
	}
	if !ok {
		return TrashItem{}, errs.E(errs.NotFound, "no such item in the trash")
	}
	return s.named(ctx, p.TenantID, rs[0])
}

// Restored says where a restored item is now.
type Restored struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	SpaceID string `json:"space_id"`
	Path    string `json:"path,omitempty"`
}

// Restore brings an item back from the trash: a space as it was; a file
// or folder to where it was, or to the top of the space when that folder
// is gone, renamed "name (restored)" when its name is taken.
func (s *Service) Restore(ctx context.Context, p identity.Principal, id string) (Restored, error) {
	it, err := s.retrievable(ctx, p, id)
	if err != nil {
		return Restored{}, err
	}
	out := Restored{ID: it.ID, Kind: it.Kind, SpaceID: it.SpaceID}
	if it.Kind == Space {
		err := s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
			r, err := tx.Exec(ctx, "UPDATE spaces SET trashed_at = 0, trashed_by = '' WHERE tenant_id = ? AND id = ? AND trashed_at > 0", p.TenantID, id)
			if err != nil {
				return err
			}
			if k, _ := r.RowsAffected(); k == 0 {
				return errs.E(errs.NotFound, "no such item in the trash")
			}
			return nil
		}, audit.Event{Action: "space.restore", TargetType: "space", TargetID: id})
		return out, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Restored{}, err
	}
	nd, err := scanNode(s.db.Read().QueryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE tenant_id = ? AND id = ?", p.TenantID, id))
	if err != nil {
		return Restored{}, err
	}
	parent, parentPath := nd.parentID, ""
	if parent != "" {
		pn, err := scanNode(s.db.Read().QueryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE tenant_id = ? AND id = ?", p.TenantID, parent))
		live := false
		if err == nil && pn.trashedAt == 0 {
			parentPath, live, err = s.pathOf(ctx, p.TenantID, pn)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Restored{}, err
		}
		if !live {
			parent, parentPath = "", ""
		}
	}
	if nd.parentID != "" && parent == "" {
		// Its folder is gone: it would land at the top of the space,
		// which takes an editor of the whole space.
		if _, err := s.spaces.Need(ctx, p, nd.spaceID, space.Editor); errs.Is(err, errs.Forbidden) || errs.Is(err, errs.NotFound) {
			return Restored{}, errs.E(errs.Forbidden, "the folder it was in is gone and it would return to the top of the space, where you are not an editor; ask one")
		} else if err != nil {
			return Restored{}, err
		}
	}
	name, err := dk.Open("nodes", "name_ct", nd.id, nd.nameCT)
	if err != nil {
		return Restored{}, err
	}
	ev := audit.Event{Action: nd.kind + ".restore", TargetType: nd.kind, TargetID: nd.id, Details: map[string]any{"space_id": nd.spaceID, "renamed": false}}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		final := string(name)
		for i := 1; ; i++ {
			_, taken, err := s.child(ctx, tx.Q, p.TenantID, nd.spaceID, parent, final)
			if err != nil {
				return err
			}
			if !taken {
				break
			}
			if i > 100 {
				return errs.E(errs.Conflict, "the name is taken in the folder it would return to; rename what is there")
			}
			final = restoredName(string(name), i)
			ev.Details["renamed"] = true
		}
		idx, err := s.nameIdx(ctx, tx.Q, p.TenantID, nd.spaceID, parent, final)
		if err != nil {
			return err
		}
		r, err := tx.Exec(ctx, "UPDATE nodes SET trashed_at = 0, trashed_by = '', parent_id = ?, name_ct = ?, name_idx = ? WHERE tenant_id = ? AND id = ? AND trashed_at > 0",
			parent, dk.Seal("nodes", "name_ct", nd.id, []byte(final)), idx, p.TenantID, nd.id)
		if err != nil {
			return err
		}
		if k, _ := r.RowsAffected(); k == 0 {
			return errs.E(errs.NotFound, "no such item in the trash")
		}
		out.Path = final
		if parentPath != "" {
			out.Path = parentPath + "/" + final
		}
		return nil
	}, ev)
	return out, err
}

// restoredName is "report (restored).pdf", "report (restored 2).pdf", …
func restoredName(name string, i int) string {
	base, ext := name, ""
	if k := strings.LastIndex(name, "."); k > 0 {
		base, ext = name[:k], name[k:]
	}
	tag := " (restored)"
	if i > 1 {
		tag = fmt.Sprintf(" (restored %d)", i)
	}
	if len(base)+len(tag)+len(ext) > MaxName {
		base = base[:max(0, MaxName-len(tag)-len(ext))]
	}
	return base + tag + ext
}

// Purge deletes an item in the trash for good: its rows (with the keys
// that open its content) in one transaction, then its blobs.
func (s *Service) Purge(ctx context.Context, p identity.Principal, id string) error {
	it, err := s.retrievable(ctx, p, id)
	if err != nil {
		return err
	}
	return s.purge(ctx, p.TenantID, it, "on demand")
}

// ReplayPurge deletes for good, again, an item (kind file, folder or
// space) purged after the backup a restore came from — in the trash or
// not, as the backup has it. It answers whether the item was there.
func (s *Service) ReplayPurge(ctx context.Context, tenantID, kind, id, spaceID string) (bool, error) {
	if kind != Space && kind != "file" && kind != "folder" {
		return false, nil
	}
	err := s.purge(ctx, tenantID, TrashItem{Kind: kind, ID: id, SpaceID: spaceID}, replayedPurge)
	if errs.Is(err, errs.NotFound) {
		return false, nil
	}
	return err == nil, err
}

// replayedPurge is why a purge replayed after a restore is made: it goes
// whether or not the item is in the trash.
const replayedPurge = "replayed from the ledger after a restore"

// purge deletes it and what it holds, audited with why.
func (s *Service) purge(ctx context.Context, tenantID string, it TrashItem, why string) error {
	var blobs []blobRef
	ev := audit.Event{Action: it.Kind + ".purge", TargetType: it.Kind, TargetID: it.ID,
		Details: map[string]any{"space_id": it.SpaceID, "reason": why}}
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var ids []string
		if it.Kind == Space {
			var at int64
			if err := tx.QueryRow(ctx, "SELECT trashed_at FROM spaces WHERE tenant_id = ? AND id = ?"+s.db.ForUpdate(), tenantID, it.ID).Scan(&at); err != nil || (at == 0 && why != replayedPurge) {
				return errs.E(errs.NotFound, "no such item in the trash")
			}
			var err error
			if ids, err = tx.Q.Strings(ctx, "SELECT id FROM nodes WHERE tenant_id = ? AND space_id = ?", tenantID, it.ID); err != nil {
				return err
			}
		} else {
			var at int64
			if err := tx.QueryRow(ctx, "SELECT trashed_at FROM nodes WHERE tenant_id = ? AND id = ?"+s.db.ForUpdate(), tenantID, it.ID).Scan(&at); err != nil || (at == 0 && why != replayedPurge) {
				return errs.E(errs.NotFound, "no such item in the trash")
			}
			var err error
			if ids, err = s.subtree(ctx, tx.Q, tenantID, it.SpaceID, it.ID); err != nil {
				return err
			}
		}
		counts := map[string]int{}
		var bytes int64
		var err error
		if blobs, bytes, err = s.dropNodes(ctx, tx, tenantID, ids, func(t string, n int) { counts[t] += n }); err != nil {
			return err
		}
		if it.Kind == Space {
			ups, _, err := s.dropUploads(ctx, tx, tenantID, "space_id = ?", it.ID)
			if err != nil {
				return err
			}
			blobs = append(blobs, ups...)
			for _, q := range []string{"DELETE FROM space_grants WHERE tenant_id = ? AND space_id = ?", "DELETE FROM spaces WHERE tenant_id = ? AND id = ?"} {
				if _, err := tx.Exec(ctx, q, tenantID, it.ID); err != nil {
					return err
				}
			}
		}
		ev.Details["items"], ev.Details["versions"], ev.Details["bytes"] = len(ids), len(blobs), bytes
		if counts["file_subjects"] > 0 {
			ev.Details["subject_links"] = counts["file_subjects"]
		}
		if counts["space_grants"] > 0 {
			ev.Details["folder_grants"] = counts["space_grants"]
		}
		return nil
	}, ev)
	if err != nil {
		return err
	}
	s.discardAll(context.WithoutCancel(ctx), tenantID, blobs)
	return nil
}

// blobRef names a stored blob.
type blobRef struct{ region, key string }

// dropNodes deletes the items ids inside tx — their links to subjects,
// their versions (and with them the keys of their content), the items —
// after marking their blobs for deletion, so that the sweeper deletes
// them should discardAll not run. It counts rows by table in counts and
// answers the blobs and the bytes of content they held.
func (s *Service) dropNodes(ctx context.Context, tx *sqldb.Tx, tenantID string, ids []string, count func(table string, n int)) ([]blobRef, int64, error) {
	var blobs []blobRef
	var bytes int64
	for _, nid := range ids {
		bs, n, err := versionBlobs(ctx, tx.Q, "tenant_id = ? AND node_id = ?", tenantID, nid)
		if err != nil {
			return nil, 0, err
		}
		blobs, bytes = append(blobs, bs...), bytes+n
	}
	if err := s.markDeleting(ctx, tx, tenantID, blobs); err != nil {
		return nil, 0, err
	}
	del := func(table, where, id string) error {
		res, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE tenant_id = ? AND "+where, tenantID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			count(table, int(n))
		}
		return nil
	}
	for i := len(ids) - 1; i >= 0; i-- { // children before their folders
		for _, d := range [][2]string{{"file_subjects", "node_id = ?"}, {"space_grants", "node_id = ?"}, {"file_versions", "node_id = ?"}, {"nodes", "id = ?"}} {
			if err := del(d[0], d[1], ids[i]); err != nil {
				return nil, 0, err
			}
		}
	}
	return blobs, bytes, nil
}

// discardAll deletes blobs whose rows are gone.
func (s *Service) discardAll(ctx context.Context, tenantID string, blobs []blobRef) {
	for _, b := range blobs {
		if st, err := s.regions.Store(b.region); err == nil {
			s.discard(ctx, st, tenantID, b.key)
		}
	}
}

// PurgeDue purges what has been in the trash longer than its tenant's
// trash window, and answers how many items it purged.
func (s *Service) PurgeDue(ctx context.Context) (int, error) {
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSystem, ID: "trash-purge"})
	now := s.now().UnixMicro()
	rows, err := s.db.Read().Query(ctx, `SELECT s.tenant_id, s.id FROM spaces s JOIN tenants t ON t.id = s.tenant_id
			WHERE s.trashed_at > 0 AND s.trashed_at <= ? - t.trash_days * 86400000000
		UNION ALL
		SELECT n.tenant_id, n.id FROM nodes n JOIN tenants t ON t.id = n.tenant_id
			WHERE n.trashed_at > 0 AND n.trashed_at <= ? - t.trash_days * 86400000000`, now, now)
	if err != nil {
		return 0, err
	}
	var due [][2]string
	for rows.Next() {
		var tid, id string
		if err := rows.Scan(&tid, &id); err != nil {
			rows.Close()
			return 0, err
		}
		due = append(due, [2]string{tid, id})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range due {
		it, err := s.trashItem(ctx, d[0], d[1])
		if errs.Is(err, errs.NotFound) {
			continue // inside a trashed space: purged with it
		}
		if err != nil {
			return n, err
		}
		if err := s.purge(ctx, d[0], it, "trash window ended"); err != nil && !errs.Is(err, errs.NotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}
