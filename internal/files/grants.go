package files

import (
	"context"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
)

// Grants on folders: viewer or editor on one folder and so on everything
// inside it, on top of what the space's grants give (package space keeps
// them and computes access; this side knows which folders are above an
// item). A file has the access of its folder.

// folderScope finds the live folder id for p (a viewer at least, else
// not found) and where grants on it apply.
func (s *Service) folderScope(ctx context.Context, p identity.Principal, id string) (space.Scope, error) {
	nd, pl, err := s.fileByID(ctx, p, id, space.Viewer)
	if err != nil {
		return space.Scope{}, err
	}
	if nd.kind != Folder {
		return space.Scope{}, errs.Field("id", "grants are on folders and spaces; a file has the access of its folder")
	}
	return scopeOf(nd.spaceID, pl.chain), nil
}

// FolderGrants lists the grants that reach folder id — on it, on the
// folders above it and on its space (inherited) — for its editors.
func (s *Service) FolderGrants(ctx context.Context, p identity.Principal, id string) ([]space.Grant, error) {
	sc, err := s.folderScope(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return s.spaces.GrantsIn(ctx, p, sc)
}

// GrantFolder gives a user or a group access to folder id and what it
// holds (editors of the folder, up to their own access).
func (s *Service) GrantFolder(ctx context.Context, p identity.Principal, id string, in space.GrantInput) (space.Grant, error) {
	sc, err := s.folderScope(ctx, p, id)
	if err != nil {
		return space.Grant{}, err
	}
	return s.spaces.GrantIn(ctx, p, sc, in)
}

// RevokeFolder removes a grant on folder id (editors of the folder, up to
// their own access).
func (s *Service) RevokeFolder(ctx context.Context, p identity.Principal, id, grantID string) error {
	sc, err := s.folderScope(ctx, p, id)
	if err != nil {
		return err
	}
	return s.spaces.RevokeIn(ctx, p, sc, grantID)
}

// SharedFolder is a folder p holds a grant on, with the access p has
// there (from every grant that reaches it).
type SharedFolder struct {
	Item
	Access string `json:"access"`
}

// Shared lists the live folders that carry a grant to p or to one of p's
// groups — how someone with access to a folder but not to its space finds
// it. Oldest grant first.
func (s *Service) Shared(ctx context.Context, p identity.Principal) ([]SharedFolder, error) {
	ids, err := s.db.Read().Strings(ctx, `SELECT n.id FROM space_grants g
		JOIN nodes n ON n.tenant_id = g.tenant_id AND n.id = g.node_id AND n.trashed_at = 0
		JOIN spaces sp ON sp.tenant_id = g.tenant_id AND sp.id = g.space_id AND sp.trashed_at = 0
		WHERE g.tenant_id = ? AND g.node_id <> '' AND (`+space.Holds+`
		GROUP BY n.id ORDER BY MIN(g.granted_at), n.id`, p.TenantID, p.UserID, p.TenantID, p.UserID)
	if err != nil {
		return nil, err
	}
	out := []SharedFolder{}
	for _, id := range ids {
		nd, pl, err := s.fileByID(ctx, p, id, space.Viewer)
		if errs.Is(err, errs.NotFound) {
			continue // in a folder in the trash
		}
		if err != nil {
			return nil, err
		}
		access, err := s.spaces.AccessIn(ctx, p, scopeOf(nd.spaceID, pl.chain))
		if err != nil {
			return nil, err
		}
		it, err := s.itemOf(ctx, p.TenantID, nd, pl.path)
		if err != nil {
			return nil, err
		}
		out = append(out, SharedFolder{Item: it, Access: access})
	}
	return out, nil
}
