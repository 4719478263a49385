package files

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Files and folders are linked to the data subjects they are about. The
// person's access export carries every version of every file linked to
// them, or inside a folder linked to them; erasing the person deletes
// those items, or only the links, as the tenant's linked_files_on_erasure
// says.

// Link ties an item to a data subject.
type Link struct {
	ItemID    string    `json:"item_id"`
	SubjectID string    `json:"subject_id"`
	LinkedBy  string    `json:"linked_by"`
	LinkedAt  time.Time `json:"linked_at"`
}

// Linked is an item linked to a subject.
type Linked struct {
	Item
	LinkedAt time.Time `json:"linked_at"`
	InTrash  bool      `json:"in_trash"` // the item, a folder above it or its space is in the trash
}

// Link links the live item itemID to subject subjectID; p must be an
// editor of its space. It answers whether the link is new.
func (s *Service) Link(ctx context.Context, p identity.Principal, itemID, subjectID string) (Link, bool, error) {
	nd, _, err := s.fileByID(ctx, p, itemID, space.Editor)
	if err != nil {
		return Link{}, false, err
	}
	if l, err := s.link(ctx, s.db.Read(), p.TenantID, itemID, subjectID); err == nil {
		return l, false, nil
	} else if !errs.Is(err, errs.NotFound) {
		return Link{}, false, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	l := Link{ItemID: itemID, SubjectID: subjectID, LinkedBy: p.UserID, LinkedAt: now}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := s.subjects.Lock(ctx, tx, p.TenantID, subjectID); err != nil {
			return err
		}
		var at int64
		err := tx.QueryRow(ctx, "SELECT trashed_at FROM nodes WHERE tenant_id = ? AND id = ?"+s.db.ForUpdate(), p.TenantID, itemID).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) || at != 0 {
			return errs.E(errs.NotFound, "no such file")
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO file_subjects (tenant_id, node_id, subject_id, linked_by, linked_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, node_id, subject_id) DO NOTHING`, p.TenantID, itemID, subjectID, p.UserID, now.UnixMicro())
		return err
	}, audit.Event{Action: nd.kind + ".link", TargetType: nd.kind, TargetID: itemID, SubjectID: subjectID,
		Details: map[string]any{"space_id": nd.spaceID, "subject_id": subjectID}})
	return l, true, err
}

func (s *Service) link(ctx context.Context, q sqldb.Q, tenantID, itemID, subjectID string) (Link, error) {
	l := Link{ItemID: itemID, SubjectID: subjectID}
	var at int64
	err := q.QueryRow(ctx, "SELECT linked_by, linked_at FROM file_subjects WHERE tenant_id = ? AND node_id = ? AND subject_id = ?",
		tenantID, itemID, subjectID).Scan(&l.LinkedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return l, errs.E(errs.NotFound, "the item is not linked to this subject")
	}
	l.LinkedAt = time.UnixMicro(at).UTC()
	return l, err
}

// Unlink removes the link between itemID and subjectID.
func (s *Service) Unlink(ctx context.Context, p identity.Principal, itemID, subjectID string) error {
	nd, _, err := s.fileByID(ctx, p, itemID, space.Editor)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "DELETE FROM file_subjects WHERE tenant_id = ? AND node_id = ? AND subject_id = ?", p.TenantID, itemID, subjectID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errs.E(errs.NotFound, "the item is not linked to this subject")
		}
		return nil
	}, audit.Event{Action: nd.kind + ".unlink", TargetType: nd.kind, TargetID: itemID, SubjectID: subjectID,
		Details: map[string]any{"space_id": nd.spaceID, "subject_id": subjectID}})
}

// Links lists the subjects a live item is linked to; p must see its space.
func (s *Service) Links(ctx context.Context, p identity.Principal, itemID string) ([]Link, error) {
	if _, _, err := s.fileByID(ctx, p, itemID, space.Viewer); err != nil {
		return nil, err
	}
	rows, err := s.db.Read().Query(ctx, `SELECT subject_id, linked_by, linked_at FROM file_subjects WHERE tenant_id = ? AND node_id = ?
		ORDER BY linked_at, subject_id`, p.TenantID, itemID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Link{}
	for rows.Next() {
		l := Link{ItemID: itemID}
		var at int64
		if err := rows.Scan(&l.SubjectID, &l.LinkedBy, &at); err != nil {
			return nil, err
		}
		l.LinkedAt = time.UnixMicro(at).UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}

// linkedNode is a node linked to a subject, and when.
type linkedNode struct {
	node
	linkedAt int64
}

// linkedNodes lists the items linked to a subject, in the trash or not.
func (s *Service) linkedNodes(ctx context.Context, q sqldb.Q, tenantID, subjectID string) ([]linkedNode, error) {
	rows, err := q.Query(ctx, `SELECT n.id, n.space_id, n.parent_id, n.kind, n.name_ct, n.version, n.created_by, n.created_at, n.updated_at,
			n.trashed_at, n.trashed_by, f.linked_at
		FROM file_subjects f JOIN nodes n ON n.tenant_id = f.tenant_id AND n.id = f.node_id
		WHERE f.tenant_id = ? AND f.subject_id = ? ORDER BY f.linked_at, n.id`, tenantID, subjectID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []linkedNode
	for rows.Next() {
		var l linkedNode
		n := &l.node
		if err := rows.Scan(&n.id, &n.spaceID, &n.parentID, &n.kind, &n.nameCT, &n.version, &n.createdBy, &n.createdAt, &n.updatedAt,
			&n.trashedAt, &n.trashedBy, &l.linkedAt); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// inTrash tells whether n is in the trash: itself, a folder above it
// (live is false) or its space.
func (s *Service) inTrash(ctx context.Context, tenantID string, n node, live bool) (bool, error) {
	if n.trashedAt != 0 || !live {
		return true, nil
	}
	var at int64
	err := s.db.Read().QueryRow(ctx, "SELECT trashed_at FROM spaces WHERE tenant_id = ? AND id = ?", tenantID, n.spaceID).Scan(&at)
	return at != 0, err
}

// SubjectFiles lists the items linked to a subject that p may see, also
// those in the trash (an erasure reaches them too).
func (s *Service) SubjectFiles(ctx context.Context, p identity.Principal, subjectID string) ([]Linked, error) {
	if err := s.subjects.Exists(ctx, p.TenantID, subjectID); err != nil {
		return nil, err
	}
	ns, err := s.linkedNodes(ctx, s.db.Read(), p.TenantID, subjectID)
	if err != nil {
		return nil, err
	}
	out := []Linked{}
	for _, l := range ns {
		pl, err := s.placeOf(ctx, p.TenantID, l.node)
		if err != nil {
			return nil, err
		}
		if !space.Administers(p) {
			access, err := s.spaces.AccessIn(ctx, p, scopeOf(l.spaceID, pl.chain))
			if err != nil {
				return nil, err
			}
			if access == space.None {
				continue
			}
		}
		trash, err := s.inTrash(ctx, p.TenantID, l.node, pl.live)
		if err != nil {
			return nil, err
		}
		it, err := s.itemOf(ctx, p.TenantID, l.node, pl.path)
		if err != nil {
			return nil, err
		}
		out = append(out, Linked{Item: it, LinkedAt: time.UnixMicro(l.linkedAt).UTC(), InTrash: trash})
	}
	return out, nil
}

// Eraser is the files' part of an erasure (subject.Eraser). Under the
// tenant's policy "delete" the items linked to the subject go, with
// everything inside linked folders and every version, in the erasure's
// transaction (the keys of their content with them); their blobs are
// deleted once it commits, or by the sweeper. Under "keep" — and when a
// contact is anonymised — only the links go. The uploads an account had
// under way end with it.
func (s *Service) Eraser() subject.Eraser {
	return subject.Eraser{Name: "files", Tables: []string{"file_subjects"}, Erase: func(ctx context.Context, e *subject.Erasure) (func(context.Context), error) {
		var blobs []blobRef
		if !e.Anonymise {
			linked, err := s.eraseLinked(ctx, e)
			if err != nil {
				return nil, err
			}
			for _, b := range linked {
				e.Shred(b.region, b.key)
			}
			blobs = append(blobs, linked...)
		}
		if err := e.Delete(ctx, "file_subjects", "subject_id = ?", e.SubjectID); err != nil {
			return nil, err
		}
		if e.UserID != "" {
			uploads, n, err := s.dropUploads(ctx, e.Tx, e.TenantID, "created_by = ?", e.UserID)
			if err != nil {
				return nil, err
			}
			e.Count("upload_sessions", n)
			e.Count("upload_parts", len(uploads))
			blobs = append(blobs, uploads...)
		}
		if len(blobs) == 0 {
			return nil, nil
		}
		return func(ctx context.Context) { s.discardAll(ctx, e.TenantID, blobs) }, nil
	}}
}

// eraseLinked drops the items linked to the subject under the policy
// "delete", answering their blobs.
func (s *Service) eraseLinked(ctx context.Context, e *subject.Erasure) ([]blobRef, error) {
	var policy string
	if err := e.Tx.QueryRow(ctx, "SELECT linked_files_on_erasure FROM tenants WHERE id = ?", e.TenantID).Scan(&policy); err != nil {
		return nil, err
	}
	if policy == tenant.LinkedKeep {
		return nil, nil
	}
	ns, err := s.linkedNodes(ctx, e.Tx.Q, e.TenantID, e.SubjectID)
	if err != nil || len(ns) == 0 {
		return nil, err
	}
	var ids []string
	seen := map[string]bool{}
	for _, l := range ns {
		sub, err := s.subtree(ctx, e.Tx.Q, e.TenantID, l.spaceID, l.id)
		if err != nil {
			return nil, err
		}
		for _, id := range sub {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	blobs, _, err := s.dropNodes(ctx, e.Tx, e.TenantID, ids, e.Count)
	return blobs, err
}

// HeldFile is one stored version of a file linked to a subject, or inside
// a folder linked to them: what their access export hands them.
type HeldFile struct {
	FileID      string    `json:"file_id"`
	SpaceID     string    `json:"space_id"`
	Name        string    `json:"name"`
	Path        string    `json:"path"`
	InTrash     bool      `json:"in_trash"`
	VersionID   string    `json:"version_id"`
	Version     int       `json:"version"`
	Current     bool      `json:"current"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	CreatedAt   time.Time `json:"created_at"`
	LinkedAt    time.Time `json:"linked_at"`
	row         versionRow
}

// HeldFiles lists every stored version of the files a subject's access
// export must carry, oldest link first, then by path and version.
func (s *Service) HeldFiles(ctx context.Context, tenantID, subjectID string) ([]HeldFile, error) {
	q := s.db.Read()
	ns, err := s.linkedNodes(ctx, q, tenantID, subjectID)
	if err != nil {
		return nil, err
	}
	dk, err := s.keys.TenantDataKey(ctx, q, tenantID)
	if err != nil {
		return nil, err
	}
	out := []HeldFile{}
	seen := map[string]bool{}
	for _, l := range ns {
		ids, err := s.subtree(ctx, q, tenantID, l.spaceID, l.id)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			n, err := scanNode(q.QueryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE tenant_id = ? AND id = ?", tenantID, id))
			if err != nil {
				return nil, err
			}
			if n.kind != File {
				continue
			}
			path, live, err := s.pathOf(ctx, tenantID, n)
			if err != nil {
				return nil, err
			}
			trash, err := s.inTrash(ctx, tenantID, n, live)
			if err != nil {
				return nil, err
			}
			name, err := dk.Open("nodes", "name_ct", n.id, n.nameCT)
			if err != nil {
				return nil, err
			}
			vs, err := s.versionRows(ctx, q, tenantID, n.id)
			if err != nil {
				return nil, err
			}
			for _, v := range vs {
				pv, err := publicVersion(dk, v, n.version)
				if err != nil {
					return nil, err
				}
				out = append(out, HeldFile{FileID: n.id, SpaceID: n.spaceID, Name: string(name), Path: path, InTrash: trash,
					VersionID: v.id, Version: v.version, Current: pv.Current, Size: v.size, ContentType: v.contentType, SHA256: pv.SHA256,
					CreatedAt: pv.CreatedAt, LinkedAt: time.UnixMicro(l.linkedAt).UTC(), row: v})
			}
		}
	}
	return out, nil
}

// CheckHeld makes sure the content of every held version can be read —
// its region up, its blob there and whole — before an export sends its
// first byte: a region that is down answers Unavailable, a blob missing
// or cut short an internal error, instead of an export cut midway.
func (s *Service) CheckHeld(ctx context.Context, hs []HeldFile) error {
	for _, h := range hs {
		st, err := s.store(h.row.region)
		if err != nil {
			return err
		}
		size, err := st.Size(ctx, h.row.blobKey)
		if errs.Is(err, errs.NotFound) || err == nil && size != h.row.sealedSize {
			return fmt.Errorf("files: version %s of file %s: the blob in %s is missing or not whole (%d of %d bytes)",
				h.VersionID, h.FileID, h.row.region, size, h.row.sealedSize)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// OpenHeld opens the content of a held version, checked as it is read.
func (s *Service) OpenHeld(ctx context.Context, tenantID string, h HeldFile) (io.ReadCloser, error) {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return nil, err
	}
	return s.openBlob(ctx, dk, tenantID, h.row)
}
