// Package files keeps the folders and files of spaces, their versions and
// the trash (of files, folders and whole spaces), and reports where each
// space's data lives.
//
// Content is written only to the region of its space: it is sealed in
// 64 KiB segments (segcrypt) under a key of its own, bound to the file and
// the version, and streamed to the region's blob store, so memory stays
// constant whatever the size. The key is kept in the version's row,
// sealed under the tenant's data key: deleting the row shreds the
// content. Names are sealed too; a keyed MAC of each name keeps names
// unique in their folder without revealing them.
//
// A blob is announced in blob_intents before its first byte is written
// and the announcement removed only once a version refers to it or it is
// deleted; the sweeper deletes what a crash or a failed delete left, so no
// blob outlives its purpose. Access follows the grants on the space and
// on the folders above an item (viewer reads, editor writes; see package
// space); every change and every read of content is audited with ids,
// sizes and regions, never names.
package files

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"mime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Kinds of items.
const (
	Folder = "folder"
	File   = "file"
)

// Limits on paths.
const (
	MaxName  = 255 // bytes of one name, after NFC normalisation
	MaxDepth = 32  // names in a path
)

// Item is a folder or a file as its viewers see it.
type Item struct {
	ID          string    `json:"id"`
	SpaceID     string    `json:"space_id"`
	Kind        string    `json:"kind"`
	Name        string    `json:"name"`
	Path        string    `json:"path"`
	Size        int64     `json:"size"`                   // a file's current version; 0 for folders
	Version     int       `json:"version,omitempty"`      // a file's current version number
	ContentType string    `json:"content_type,omitempty"` // a file's current version
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Service manages folders, files, versions and the trash.
type Service struct {
	db       *sqldb.DB
	keys     *keyring.Keyring
	log      *audit.Log
	spaces   *space.Service
	tenants  *tenant.Service
	subjects *subject.Service
	regions  *blobstore.Regions
	logger   *slog.Logger
	now      func() time.Time
	moving   sync.Map // ids of spaces this process is moving to another region
}

// Deps are what the Service is built from.
type Deps struct {
	DB       *sqldb.DB
	Keys     *keyring.Keyring
	Log      *audit.Log
	Spaces   *space.Service
	Tenants  *tenant.Service
	Subjects *subject.Service
	Regions  *blobstore.Regions
	Logger   *slog.Logger
	Now      func() time.Time
}

// NewService returns a Service.
func NewService(d Deps) *Service {
	return &Service{db: d.DB, keys: d.Keys, log: d.Log, spaces: d.Spaces, tenants: d.Tenants, subjects: d.Subjects,
		regions: d.Regions, logger: d.Logger, now: d.Now}
}

// SplitPath checks a path inside a space and returns its names: relative,
// '/'-separated, each name NFC-normalised, non-empty, not '.' or '..', at
// most MaxName bytes, without '\', control characters or invisible format
// characters (space.Hidden: bidirectional overrides spoof extensions). "" is the top of
// the space. Errors name the field.
func SplitPath(field, raw string) ([]string, error) {
	if strings.HasPrefix(raw, "/") {
		return nil, errs.Field(field, "must be relative to the space (no leading '/')")
	}
	raw = strings.TrimSuffix(raw, "/")
	if raw == "" {
		return nil, nil
	}
	if !utf8.ValidString(raw) {
		return nil, errs.Field(field, "must be valid UTF-8")
	}
	names := strings.Split(raw, "/")
	if len(names) > MaxDepth {
		return nil, errs.Field(field, "at most %d levels deep", MaxDepth)
	}
	for i, n := range names {
		n = norm.NFC.String(n)
		switch {
		case n == "" || n == "." || n == "..":
			return nil, errs.Field(field, "empty names, '.' and '..' are not allowed")
		case len(n) > MaxName:
			return nil, errs.Field(field, "a name is at most %d bytes", MaxName)
		case strings.ContainsRune(n, '\\'):
			return nil, errs.Field(field, "names may not contain '\\'")
		case strings.ContainsFunc(n, space.Hidden):
			return nil, errs.Field(field, "names may not contain control characters or invisible formatting (such as right-to-left overrides)")
		}
		names[i] = n
	}
	return names, nil
}

// node is a row of nodes.
type node struct {
	id, spaceID, parentID, kind string
	nameCT                      []byte
	version                     int
	createdBy                   string
	createdAt, updatedAt        int64
	trashedAt                   int64
	trashedBy                   string
}

const nodeCols = "id, space_id, parent_id, kind, name_ct, version, created_by, created_at, updated_at, trashed_at, trashed_by"

func scanNode(row interface{ Scan(...any) error }) (node, error) {
	var n node
	err := row.Scan(&n.id, &n.spaceID, &n.parentID, &n.kind, &n.nameCT, &n.version, &n.createdBy, &n.createdAt, &n.updatedAt, &n.trashedAt, &n.trashedBy)
	return n, err
}

// nameIdx is the keyed MAC that keeps names unique in a folder.
func (s *Service) nameIdx(ctx context.Context, q sqldb.Q, tenantID, spaceID, parentID, name string) ([]byte, error) {
	return s.keys.MAC(ctx, q, tenantID, "node-name", spaceID, parentID, name)
}

// child finds the live item called name in folder parentID.
func (s *Service) child(ctx context.Context, q sqldb.Q, tenantID, spaceID, parentID, name string) (node, bool, error) {
	idx, err := s.nameIdx(ctx, q, tenantID, spaceID, parentID, name)
	if err != nil {
		return node{}, false, err
	}
	n, err := scanNode(q.QueryRow(ctx, "SELECT "+nodeCols+` FROM nodes
		WHERE tenant_id = ? AND space_id = ? AND parent_id = ? AND name_idx = ? AND trashed_at = 0`, tenantID, spaceID, parentID, idx))
	if errors.Is(err, sql.ErrNoRows) {
		return node{}, false, nil
	}
	return n, err == nil, err
}

// walk resolves names from the top of the space as far as they exist:
// the items found, in order. Only the last may be a file: a path through
// a file is an error, returned with the items up to that file.
func (s *Service) walk(ctx context.Context, q sqldb.Q, tenantID, spaceID string, names []string) ([]node, error) {
	var found []node
	parent := ""
	for i, name := range names {
		n, ok, err := s.child(ctx, q, tenantID, spaceID, parent, name)
		if err != nil || !ok {
			return found, err
		}
		if n.kind == File && i < len(names)-1 {
			return append(found, n), errs.Field("path", "%q is a file, not a folder", strings.Join(names[:i+1], "/"))
		}
		found = append(found, n)
		parent = n.id
	}
	return found, nil
}

var errNothing = errs.E(errs.NotFound, "nothing at this path")

// locate walks names as far as they exist, like walk, once p is found to
// hold want where they lead: the access p holds on the space, raised by
// grants on the folders on the way. Whoever holds nothing there learns
// nothing of what is there — not even that the space exists.
func (s *Service) locate(ctx context.Context, q sqldb.Q, p identity.Principal, spaceID string, names []string, want string) ([]node, error) {
	found, err := s.walk(ctx, q, p.TenantID, spaceID, names)
	if _, nerr := s.spaces.NeedIn(ctx, p, scopeOf(spaceID, found), want); nerr != nil {
		if errs.Is(nerr, errs.NotFound) {
			return nil, errNothing
		}
		return nil, nerr
	}
	return found, err
}

// scopeOf is where access is asked for along chain: its folders.
func scopeOf(spaceID string, chain []node) space.Scope {
	sc := space.Scope{SpaceID: spaceID}
	for _, n := range chain {
		if n.kind == Folder {
			sc.Folders = append(sc.Folders, n.id)
		}
	}
	return sc
}

// Need checks that p holds want at path in the space (as far as the path
// exists: a path to be made is reached through the folders above it).
// Whoever holds nothing there is told nothing is there.
func (s *Service) Need(ctx context.Context, p identity.Principal, spaceID, path, want string) error {
	names, err := SplitPath("path", path)
	if err != nil {
		return err
	}
	_, err = s.locate(ctx, s.db.Read(), p, spaceID, names, want)
	return err
}

// itemAt finds the item at names once p holds want on it (see locate);
// NotFound when there is none. No names is the top of the space (a
// zero node).
func (s *Service) itemAt(ctx context.Context, p identity.Principal, spaceID string, names []string, want string) (node, error) {
	found, err := s.locate(ctx, s.db.Read(), p, spaceID, names, want)
	switch {
	case err != nil:
		return node{}, err
	case len(found) < len(names):
		return node{}, errNothing
	case len(names) == 0:
		return node{}, nil
	}
	return found[len(found)-1], nil
}

// resolve finds the item at names, whoever asks; NotFound when there is
// none.
func (s *Service) resolve(ctx context.Context, q sqldb.Q, tenantID, spaceID string, names []string) (node, error) {
	found, err := s.walk(ctx, q, tenantID, spaceID, names)
	if err != nil {
		return node{}, err
	}
	if len(found) < len(names) {
		return node{}, errNothing
	}
	return found[len(found)-1], nil
}

// ensureFolders makes the folders of names that do not exist yet, inside
// tx, and returns the id of the last one ("" for the top of the space).
func (s *Service) ensureFolders(ctx context.Context, tx *sqldb.Tx, dk *keyring.DataKey, p identity.Principal, spaceID string, names []string, now int64) (string, int, error) {
	found, err := s.walk(ctx, tx.Q, p.TenantID, spaceID, names)
	if err != nil {
		return "", 0, err
	}
	parent := ""
	for _, n := range found {
		if n.kind != Folder {
			return "", 0, errs.Field("path", "a file has the name of a folder in this path")
		}
		parent = n.id
	}
	made := 0
	for _, name := range names[len(found):] {
		id, err := s.insertNode(ctx, tx, dk, p, spaceID, parent, Folder, name, now)
		if err != nil {
			return "", 0, err
		}
		parent = id
		made++
	}
	return parent, made, nil
}

// insertNode adds an item; a live item of the same name in the folder is
// a Conflict.
func (s *Service) insertNode(ctx context.Context, tx *sqldb.Tx, dk *keyring.DataKey, p identity.Principal, spaceID, parentID, kind, name string, now int64) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return id.String(), s.insertNodeID(ctx, tx, dk, p, id.String(), spaceID, parentID, kind, name, now)
}

func (s *Service) insertNodeID(ctx context.Context, tx *sqldb.Tx, dk *keyring.DataKey, p identity.Principal, id, spaceID, parentID, kind, name string, now int64) error {
	idx, err := s.nameIdx(ctx, tx.Q, p.TenantID, spaceID, parentID, name)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO nodes (tenant_id, id, space_id, parent_id, kind, name_ct, name_idx, created_by, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.TenantID, id, spaceID, parentID, kind, dk.Seal("nodes", "name_ct", id, []byte(name)), idx, p.UserID, now, now)
	if sqldb.IsUniqueViolation(err) {
		return errs.E(errs.Conflict, "something of this name was made in the folder at the same moment; try again")
	}
	return err
}

// spaceRegion is the region content of a live space is written to, read
// in q (locking the space's row in a transaction); a space moving to
// another region takes no content until it has arrived (Conflict).
func (s *Service) spaceRegion(ctx context.Context, q sqldb.Q, tenantID, spaceID, lock string) (string, error) {
	var region, moving string
	err := q.QueryRow(ctx, "SELECT region, migrating_to FROM spaces WHERE tenant_id = ? AND id = ? AND trashed_at = 0"+lock,
		tenantID, spaceID).Scan(&region, &moving)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errs.E(errs.NotFound, "no such space")
	}
	if err == nil && moving != "" {
		return "", errs.E(errs.Conflict, "the space is moving from %s to %s: content can be added again once it has arrived", region, moving)
	}
	return region, err
}

// item builds what viewers see of n at path.
func (s *Service) item(dk *keyring.DataKey, n node, path string, v *versionRow) (Item, error) {
	name, err := dk.Open("nodes", "name_ct", n.id, n.nameCT)
	if err != nil {
		return Item{}, err
	}
	if path == "" {
		path = string(name)
	}
	it := Item{ID: n.id, SpaceID: n.spaceID, Kind: n.kind, Name: string(name), Path: path, CreatedBy: n.createdBy,
		CreatedAt: time.UnixMicro(n.createdAt).UTC(), UpdatedAt: time.UnixMicro(n.updatedAt).UTC()}
	if v != nil {
		it.Size, it.Version, it.ContentType = v.size, v.version, v.contentType
	}
	return it, nil
}

// Stat returns the item at path.
func (s *Service) Stat(ctx context.Context, p identity.Principal, spaceID, path string) (Item, error) {
	names, err := SplitPath("path", path)
	if err != nil {
		return Item{}, err
	}
	if len(names) == 0 {
		return Item{}, errs.Field("path", "name a folder or a file")
	}
	n, err := s.itemAt(ctx, p, spaceID, names, space.Viewer)
	if err != nil {
		return Item{}, err
	}
	return s.itemOf(ctx, p.TenantID, n, strings.Join(names, "/"))
}

func (s *Service) itemOf(ctx context.Context, tenantID string, n node, path string) (Item, error) {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return Item{}, err
	}
	var v *versionRow
	if n.kind == File {
		cur, err := s.version(ctx, s.db.Read(), tenantID, n.id, n.version)
		if err != nil {
			return Item{}, err
		}
		v = &cur
	}
	return s.item(dk, n, path, v)
}

// List returns what the folder at path holds ("" for the top of the
// space), folders first, then by name.
func (s *Service) List(ctx context.Context, p identity.Principal, spaceID, path string) ([]Item, error) {
	names, err := SplitPath("path", path)
	if err != nil {
		return nil, err
	}
	n, err := s.itemAt(ctx, p, spaceID, names, space.Viewer)
	if err != nil {
		return nil, err
	}
	parent := ""
	if len(names) > 0 {
		if n.kind != Folder {
			return nil, errs.Field("path", "not a folder")
		}
		parent = n.id
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Read().Query(ctx, `SELECT n.id, n.space_id, n.parent_id, n.kind, n.name_ct, n.version, n.created_by, n.created_at, n.updated_at, n.trashed_at, n.trashed_by,
			COALESCE(v.size, 0), COALESCE(v.content_type, '')
		FROM nodes n LEFT JOIN file_versions v ON v.tenant_id = n.tenant_id AND v.node_id = n.id AND v.version = n.version
		WHERE n.tenant_id = ? AND n.space_id = ? AND n.parent_id = ? AND n.trashed_at = 0`, p.TenantID, spaceID, parent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Item{}
	prefix := strings.Join(names, "/")
	for rows.Next() {
		var n node
		var v versionRow
		if err := rows.Scan(&n.id, &n.spaceID, &n.parentID, &n.kind, &n.nameCT, &n.version, &n.createdBy, &n.createdAt, &n.updatedAt, &n.trashedAt, &n.trashedBy,
			&v.size, &v.contentType); err != nil {
			return nil, err
		}
		v.version = n.version
		var vp *versionRow
		if n.kind == File {
			vp = &v
		}
		it, err := s.item(dk, n, "", vp)
		if err != nil {
			return nil, err
		}
		if prefix != "" {
			it.Path = prefix + "/" + it.Name
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sortItems(out)
	return out, nil
}

func sortItems(items []Item) {
	less := func(a, b Item) bool {
		if a.Kind != b.Kind {
			return a.Kind == Folder
		}
		return a.Name < b.Name
	}
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && less(items[j], items[j-1]); j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}

// Mkdir makes the folder at path and any missing folder above it; a path
// that exists already is a Conflict.
func (s *Service) Mkdir(ctx context.Context, p identity.Principal, spaceID, path string) (Item, error) {
	names, err := SplitPath("path", path)
	if err != nil {
		return Item{}, err
	}
	if _, err := s.locate(ctx, s.db.Read(), p, spaceID, names, space.Editor); err != nil {
		return Item{}, err
	}
	if len(names) == 0 {
		return Item{}, errs.Field("path", "required")
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Item{}, err
	}
	now := s.now().UTC().UnixMicro()
	ev := audit.Event{Action: "folder.create", TargetType: "space", TargetID: spaceID, Details: map[string]any{}}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		id, made, err := s.ensureFolders(ctx, tx, dk, p, spaceID, names, now)
		if err != nil {
			return err
		}
		if made == 0 {
			return errs.E(errs.Conflict, "a folder is at this path already")
		}
		ev.Details["node_id"], ev.Details["folders_made"] = id, made
		return nil
	}, ev)
	if err != nil {
		return Item{}, err
	}
	return s.Stat(ctx, p, spaceID, strings.Join(names, "/"))
}

// Move renames or moves the item at path to newPath in the same space.
// The folder newPath names must exist; nothing may be at newPath; a folder
// cannot move into itself.
func (s *Service) Move(ctx context.Context, p identity.Principal, spaceID, path, newPath string) (Item, error) {
	// Moving changes who can reach the item: it takes an editor where it
	// is and where it goes.
	from, err := SplitPath("path", path)
	if err != nil {
		return Item{}, err
	}
	if _, err := s.itemAt(ctx, p, spaceID, from, space.Editor); err != nil {
		return Item{}, err
	}
	to, err := SplitPath("path", newPath)
	if err != nil {
		return Item{}, err
	}
	if len(from) == 0 || len(to) == 0 {
		return Item{}, errs.Field("path", "name an item and where it goes")
	}
	if _, err := s.locate(ctx, s.db.Read(), p, spaceID, to[:len(to)-1], space.Editor); err != nil {
		return Item{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Item{}, err
	}
	now := s.now().UTC().UnixMicro()
	ev := audit.Event{Action: "file.move", TargetType: "space", TargetID: spaceID, Details: map[string]any{}}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		n, err := s.resolve(ctx, tx.Q, p.TenantID, spaceID, from)
		if err != nil {
			return err
		}
		dest, err := s.walk(ctx, tx.Q, p.TenantID, spaceID, to[:len(to)-1])
		if err != nil {
			return err
		}
		if len(dest) < len(to)-1 || len(dest) > 0 && dest[len(dest)-1].kind != Folder {
			return errs.Field("path", "the folder to move into does not exist")
		}
		parent := ""
		for _, d := range dest {
			if d.id == n.id {
				return errs.Field("path", "a folder cannot move into itself")
			}
			parent = d.id
		}
		name := to[len(to)-1]
		if _, taken, err := s.child(ctx, tx.Q, p.TenantID, spaceID, parent, name); err != nil || taken {
			if taken {
				return errs.E(errs.Conflict, "something is at the new path already")
			}
			return err
		}
		idx, err := s.nameIdx(ctx, tx.Q, p.TenantID, spaceID, parent, name)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE nodes SET parent_id = ?, name_ct = ?, name_idx = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
			parent, dk.Seal("nodes", "name_ct", n.id, []byte(name)), idx, now, p.TenantID, n.id)
		if sqldb.IsUniqueViolation(err) {
			return errs.E(errs.Conflict, "something is at the new path already")
		}
		ev.Details["node_id"], ev.Details["kind"] = n.id, n.kind
		return err
	}, ev)
	if err != nil {
		return Item{}, err
	}
	return s.Stat(ctx, p, spaceID, strings.Join(to, "/"))
}

// contentType is a well-formed media type or application/octet-stream.
func contentType(v string) string {
	t, params, err := mime.ParseMediaType(v)
	if err != nil || len(v) > 200 {
		return "application/octet-stream"
	}
	return mime.FormatMediaType(t, params)
}
