// Package space keeps spaces — the top-level folders a tenant's files live
// in, each pinned to a region — and who may see or change them.
//
// Access is denied by default. A grant gives a user or a group viewer or
// editor on a space, or on one folder in it (and so on everything inside
// the folder). A user's access somewhere is the highest of the grants
// that reach it — on the space and on every folder above — their own and
// their groups'. Grants only add: nothing below a grant takes it away.
// Tenant owners and admins administer every space (they count as
// editors). Whoever grants must be an editor where they grant and can
// grant at most the access they hold there; every grant and revocation is
// audited. Space names are sealed under the tenant's data key: they may
// name people.
package space

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Access levels, lowest first.
const (
	None   = ""
	Viewer = "viewer"
	Editor = "editor"
)

func level(access string) int { return slices.Index([]string{None, Viewer, Editor}, access) }

// Space is a top-level folder as its viewers see it.
type Space struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Region    string    `json:"region"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	Access    string    `json:"access"` // the caller's: viewer or editor
}

// Grant gives a user or a group access to a space or to a folder in it.
type Grant struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id,omitempty"`
	GroupID   string    `json:"group_id,omitempty"`
	Access    string    `json:"access"`
	FolderID  string    `json:"folder_id,omitempty"` // the folder it is on; none for the whole space
	Inherited bool      `json:"inherited"`           // it is on the space or a folder above where it was listed
	GrantedBy string    `json:"granted_by"`
	GrantedAt time.Time `json:"granted_at"`
}

// Scope is where access is asked for: a space, or a folder in it given
// with the folders above it, from the top down. Grants on any of them
// reach it.
type Scope struct {
	SpaceID string
	Folders []string
}

// at is the folder a grant in sc is on; "" for the space.
func (sc Scope) at() string {
	if len(sc.Folders) == 0 {
		return ""
	}
	return sc.Folders[len(sc.Folders)-1]
}

// where names sc in messages.
func (sc Scope) where() string {
	if len(sc.Folders) == 0 {
		return "the space"
	}
	return "this folder"
}

// reach is the SQL condition (on space_grants g) and its arguments for
// the grants of tenantID that reach sc: on the space and on its folders.
func (sc Scope) reach(tenantID string) (string, []any) {
	args := []any{tenantID, sc.SpaceID, ""}
	marks := "?"
	for _, f := range sc.Folders {
		marks += ", ?"
		args = append(args, f)
	}
	return "g.tenant_id = ? AND g.space_id = ? AND g.node_id IN (" + marks + ")", args
}

// Holds completes a condition on space_grants g, after an opening
// parenthesis: the grant is to a user or to one of the user's groups
// (arguments: user id, tenant id, user id).
const Holds = `g.grantee_type = 'user' AND g.grantee_id = ? OR
	g.grantee_type = 'group' AND g.grantee_id IN (SELECT group_id FROM group_members WHERE tenant_id = ? AND user_id = ?))`

// Service manages spaces and grants.
type Service struct {
	db       *sqldb.DB
	keys     *keyring.Keyring
	log      *audit.Log
	tenants  *tenant.Service
	identity *identity.Service
	now      func() time.Time
}

// NewService returns a Service.
func NewService(db *sqldb.DB, keys *keyring.Keyring, log *audit.Log, tenants *tenant.Service, ids *identity.Service, now func() time.Time) *Service {
	return &Service{db: db, keys: keys, log: log, tenants: tenants, identity: ids, now: now}
}

var errNoSpace = errs.E(errs.NotFound, "no such space")

func spaceName(name string) (string, error) {
	name = strings.TrimSpace(norm.NFKC.String(name))
	if name == "" || utf8.RuneCountInString(name) > 200 {
		return "", errs.Field("name", "required, at most 200 characters")
	}
	if strings.ContainsAny(name, "/\\\x00") {
		return "", errs.Field("name", "may not contain '/', '\\' or NUL")
	}
	if strings.ContainsFunc(name, Hidden) {
		return "", errs.Field("name", "may not contain control characters or invisible formatting (such as right-to-left overrides)")
	}
	return name, nil
}

// Hidden reports the characters refused in the names of spaces, folders
// and files: controls (C0 and C1) and invisible format characters — the
// bidirectional overrides, embeddings, isolates and marks that make
// "invoice\u202Efdp.exe" show as "invoiceexe.pdf", zero-width spaces and
// the byte order mark. The zero-width joiner and non-joiner (needed by
// several scripts and by emoji sequences) and emoji tag characters stay.
func Hidden(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == 0x200C || r == 0x200D || r >= 0xE0020 && r <= 0xE007F:
		return false
	}
	return unicode.Is(unicode.Cf, r)
}

// Create makes a space in region ("" for the tenant's default); its
// creator becomes an editor of it.
func (s *Service) Create(ctx context.Context, p identity.Principal, name, region string) (Space, error) {
	name, err := spaceName(name)
	if err != nil {
		return Space{}, err
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return Space{}, err
	}
	if region == "" {
		region = t.Region
	}
	if err := s.tenants.CheckAllowed(t, region); err != nil {
		return Space{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Space{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Space{}, err
	}
	grantID, err := uuid.NewV7()
	if err != nil {
		return Space{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	sp := Space{ID: id.String(), Name: name, Region: region, CreatedBy: p.UserID, CreatedAt: now, Access: Editor}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO spaces (tenant_id, id, name_ct, region, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
			p.TenantID, sp.ID, dk.Seal("spaces", "name_ct", sp.ID, []byte(name)), region, p.UserID, now.UnixMicro()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO space_grants (tenant_id, id, space_id, grantee_type, grantee_id, access, granted_by, granted_at)
			VALUES (?, ?, ?, 'user', ?, ?, ?, ?)`, p.TenantID, grantID.String(), sp.ID, p.UserID, Editor, p.UserID, now.UnixMicro())
		return err
	}, audit.Event{Action: "space.create", TargetType: "space", TargetID: sp.ID, Details: map[string]any{"region": region}},
		audit.Event{Action: "space.grant", TargetType: "space", TargetID: sp.ID, SubjectID: p.SubjectID,
			Details: map[string]any{"grant_id": grantID.String(), "user_id": p.UserID, "access": []string{None, Editor}}})
	return sp, err
}

// AccessOf is the access p holds on space id: the highest of p's own grant
// and p's groups' grants, editor for tenant owners and admins, None when
// the space does not exist.
func (s *Service) AccessOf(ctx context.Context, p identity.Principal, id string) (string, error) {
	return s.AccessIn(ctx, p, Scope{SpaceID: id})
}

// AccessIn is the access p holds in sc: the highest of the grants that
// reach it, editor for tenant owners and admins, None when the space does
// not exist or is in the trash.
func (s *Service) AccessIn(ctx context.Context, p identity.Principal, sc Scope) (string, error) {
	var exists int
	err := s.db.Read().QueryRow(ctx, "SELECT 1 FROM spaces WHERE tenant_id = ? AND id = ? AND trashed_at = 0", p.TenantID, sc.SpaceID).Scan(&exists)
	if errors.Is(err, sql.ErrNoRows) {
		return None, nil
	}
	if err != nil {
		return None, err
	}
	if Administers(p) {
		return Editor, nil
	}
	cond, args := sc.reach(p.TenantID)
	rows, err := s.db.Read().Query(ctx, "SELECT g.access FROM space_grants g WHERE "+cond+" AND ("+Holds,
		append(args, p.UserID, p.TenantID, p.UserID)...)
	if err != nil {
		return None, err
	}
	defer rows.Close()
	best := None
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return None, err
		}
		if level(a) > level(best) {
			best = a
		}
	}
	return best, rows.Err()
}

// Administers reports whether p is a tenant owner or admin, who administer
// every space.
func Administers(p identity.Principal) bool {
	return p.Role == identity.RoleOwner || p.Role == identity.RoleAdmin
}

// Need returns p's access on space id when it is at least want: NotFound
// when p has none (as if the space did not exist), Forbidden when too low.
// A space in the trash is not found.
func (s *Service) Need(ctx context.Context, p identity.Principal, id, want string) (string, error) {
	return s.NeedIn(ctx, p, Scope{SpaceID: id}, want)
}

// NeedIn is Need for a space or a folder.
func (s *Service) NeedIn(ctx context.Context, p identity.Principal, sc Scope, want string) (string, error) {
	a, err := s.AccessIn(ctx, p, sc)
	if err != nil {
		return None, err
	}
	if a == None {
		return None, errNoSpace
	}
	if level(a) < level(want) {
		return a, errs.E(errs.Forbidden, "this needs %s access to %s; you have %s", want, sc.where(), a)
	}
	return a, nil
}

// List returns the spaces p can see, oldest first, each with p's access.
func (s *Service) List(ctx context.Context, p identity.Principal) ([]Space, error) {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Read().Query(ctx, `SELECT s.id, s.name_ct, s.region, s.created_by, s.created_at, COALESCE(g.access, '')
		FROM spaces s
		LEFT JOIN space_grants g ON g.tenant_id = s.tenant_id AND g.space_id = s.id AND g.node_id = '' AND (`+Holds+`
		WHERE s.tenant_id = ? AND s.trashed_at = 0 ORDER BY s.id`, p.UserID, p.TenantID, p.UserID, p.TenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Space{}
	for rows.Next() {
		var sp Space
		var ct []byte
		var created int64
		var access string
		if err := rows.Scan(&sp.ID, &ct, &sp.Region, &sp.CreatedBy, &created, &access); err != nil {
			return nil, err
		}
		if Administers(p) {
			access = Editor
		}
		if n := len(out); n > 0 && out[n-1].ID == sp.ID { // one row per grant that applies
			if level(access) > level(out[n-1].Access) {
				out[n-1].Access = access
			}
			continue
		}
		if access == None {
			continue
		}
		name, err := dk.Open("spaces", "name_ct", sp.ID, ct)
		if err != nil {
			return nil, err
		}
		sp.Name, sp.CreatedAt, sp.Access = string(name), time.UnixMicro(created).UTC(), access
		out = append(out, sp)
	}
	return out, rows.Err()
}

// Get returns a space p can see.
func (s *Service) Get(ctx context.Context, p identity.Principal, id string) (Space, error) {
	a, err := s.Need(ctx, p, id, Viewer)
	if err != nil {
		return Space{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Space{}, err
	}
	sp := Space{ID: id, Access: a}
	var ct []byte
	var created int64
	if err := s.db.Read().QueryRow(ctx, "SELECT name_ct, region, created_by, created_at FROM spaces WHERE tenant_id = ? AND id = ?",
		p.TenantID, id).Scan(&ct, &sp.Region, &sp.CreatedBy, &created); err != nil {
		return Space{}, err
	}
	name, err := dk.Open("spaces", "name_ct", id, ct)
	if err != nil {
		return Space{}, err
	}
	sp.Name, sp.CreatedAt = string(name), time.UnixMicro(created).UTC()
	return sp, nil
}

// Rename changes a space's name (editors).
func (s *Service) Rename(ctx context.Context, p identity.Principal, id, name string) (Space, error) {
	if _, err := s.Need(ctx, p, id, Editor); err != nil {
		return Space{}, err
	}
	name, err := spaceName(name)
	if err != nil {
		return Space{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Space{}, err
	}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE spaces SET name_ct = ? WHERE tenant_id = ? AND id = ?",
			dk.Seal("spaces", "name_ct", id, []byte(name)), p.TenantID, id)
		return err
	}, audit.Event{Action: "space.update", TargetType: "space", TargetID: id, Details: map[string]any{"changed": []string{"name"}}})
	if err != nil {
		return Space{}, err
	}
	return s.Get(ctx, p, id)
}

// Grants lists who has access to a space (editors).
func (s *Service) Grants(ctx context.Context, p identity.Principal, id string) ([]Grant, error) {
	return s.GrantsIn(ctx, p, Scope{SpaceID: id})
}

// GrantsIn lists the grants that reach sc (editors there): those on it
// and, for a folder, those inherited from the space and the folders above.
func (s *Service) GrantsIn(ctx context.Context, p identity.Principal, sc Scope) ([]Grant, error) {
	if _, err := s.NeedIn(ctx, p, sc, Editor); err != nil {
		return nil, err
	}
	cond, args := sc.reach(p.TenantID)
	rows, err := s.db.Read().Query(ctx, "SELECT "+grantCols+" FROM space_grants g WHERE "+cond+" ORDER BY g.granted_at, g.id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Grant{}
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, err
		}
		g.Inherited = g.FolderID != sc.at()
		out = append(out, g)
	}
	return out, rows.Err()
}

const grantCols = "id, node_id, grantee_type, grantee_id, access, granted_by, granted_at"

func scanGrant(row interface{ Scan(...any) error }) (Grant, error) {
	var g Grant
	var kind, who string
	var at int64
	if err := row.Scan(&g.ID, &g.FolderID, &kind, &who, &g.Access, &g.GrantedBy, &at); err != nil {
		return Grant{}, err
	}
	if kind == "group" {
		g.GroupID = who
	} else {
		g.UserID = who
	}
	g.GrantedAt = time.UnixMicro(at).UTC()
	return g, nil
}

// GrantInput names who gets what: exactly one of UserID and GroupID.
type GrantInput struct {
	UserID  string `json:"user_id"`
	GroupID string `json:"group_id"`
	Access  string `json:"access"`
}

// Grant gives a user or a group access to a space, or changes the access
// they have. The granter must be an editor of the space and cannot grant
// more than they hold.
func (s *Service) Grant(ctx context.Context, p identity.Principal, spaceID string, in GrantInput) (Grant, error) {
	return s.GrantIn(ctx, p, Scope{SpaceID: spaceID}, in)
}

// GrantIn is Grant on the space or the folder sc names. The granter must
// be an editor there.
func (s *Service) GrantIn(ctx context.Context, p identity.Principal, sc Scope, in GrantInput) (Grant, error) {
	held, err := s.NeedIn(ctx, p, sc, Editor)
	if err != nil {
		return Grant{}, err
	}
	if in.Access != Viewer && in.Access != Editor {
		return Grant{}, errs.Field("access", "one of viewer, editor")
	}
	kind, who := "user", in.UserID
	switch {
	case in.UserID != "" && in.GroupID != "":
		return Grant{}, errs.Field("group_id", "give either user_id or group_id, not both")
	case in.GroupID != "":
		kind, who = "group", in.GroupID
	case in.UserID == "":
		return Grant{}, errs.Field("user_id", "required (or group_id)")
	}
	if level(in.Access) > level(held) {
		return Grant{}, errs.E(errs.Forbidden, "you can grant at most %s", held)
	}
	subjectID, err := s.grantee(ctx, p, kind, who)
	if err != nil {
		return Grant{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Grant{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	var before string
	err = s.db.Read().QueryRow(ctx, "SELECT access FROM space_grants WHERE tenant_id = ? AND space_id = ? AND node_id = ? AND grantee_type = ? AND grantee_id = ?",
		p.TenantID, sc.SpaceID, sc.at(), kind, who).Scan(&before)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Grant{}, err
	}
	var g Grant
	ev := sc.event("grant", subjectID, map[string]any{kind + "_id": who, "access": []string{before, in.Access}})
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var err error
		g, err = scanGrant(tx.QueryRow(ctx, `INSERT INTO space_grants (tenant_id, id, space_id, node_id, grantee_type, grantee_id, access, granted_by, granted_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, space_id, node_id, grantee_type, grantee_id) DO UPDATE SET
				access = excluded.access, granted_by = excluded.granted_by, granted_at = excluded.granted_at
			RETURNING `+grantCols,
			p.TenantID, id.String(), sc.SpaceID, sc.at(), kind, who, in.Access, p.UserID, now.UnixMicro()))
		if err == nil {
			ev.Details["grant_id"] = g.ID
		}
		return err
	}, ev)
	return g, err
}

// event is the audit event of a grant or revocation in sc: on the space
// (space.grant) or on a folder (folder.grant, with its space).
func (sc Scope) event(verb, subjectID string, details map[string]any) audit.Event {
	if f := sc.at(); f != "" {
		details["space_id"] = sc.SpaceID
		return audit.Event{Action: "folder." + verb, TargetType: "folder", TargetID: f, SubjectID: subjectID, Details: details}
	}
	return audit.Event{Action: "space." + verb, TargetType: "space", TargetID: sc.SpaceID, SubjectID: subjectID, Details: details}
}

// grantee checks that the user or group exists in p's tenant and returns
// the user's subject id (for the audit event).
func (s *Service) grantee(ctx context.Context, p identity.Principal, kind, id string) (string, error) {
	if kind == "group" {
		var one int
		err := s.db.Read().QueryRow(ctx, "SELECT 1 FROM user_groups WHERE tenant_id = ? AND id = ?", p.TenantID, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return "", errs.Field("group_id", "no such group")
		}
		return "", err
	}
	u, err := s.identity.UserByID(ctx, p.TenantID, id)
	if errs.Is(err, errs.NotFound) {
		return "", errs.Field("user_id", "no such user")
	}
	return u.SubjectID, err
}

// Revoke removes a grant (editors, for grants up to their own access).
func (s *Service) Revoke(ctx context.Context, p identity.Principal, spaceID, grantID string) error {
	return s.RevokeIn(ctx, p, Scope{SpaceID: spaceID}, grantID)
}

// RevokeIn is Revoke of a grant on the space or the folder sc names (not
// one it inherits: that is revoked where it is).
func (s *Service) RevokeIn(ctx context.Context, p identity.Principal, sc Scope, grantID string) error {
	held, err := s.NeedIn(ctx, p, sc, Editor)
	if err != nil {
		return err
	}
	g, err := scanGrant(s.db.Read().QueryRow(ctx, `SELECT `+grantCols+` FROM space_grants
		WHERE tenant_id = ? AND space_id = ? AND node_id = ? AND id = ?`, p.TenantID, sc.SpaceID, sc.at(), grantID))
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(errs.NotFound, "no such grant on %s", sc.where())
	}
	if err != nil {
		return err
	}
	if level(g.Access) > level(held) {
		return errs.E(errs.Forbidden, "you can revoke at most %s", held)
	}
	details := map[string]any{"grant_id": g.ID, "access": []string{g.Access, None}}
	var subjectID string
	if g.UserID != "" {
		details["user_id"] = g.UserID
		if u, err := s.identity.UserByID(ctx, p.TenantID, g.UserID); err == nil {
			subjectID = u.SubjectID
		}
	} else {
		details["group_id"] = g.GroupID
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM space_grants WHERE tenant_id = ? AND id = ?", p.TenantID, grantID)
		return err
	}, sc.event("revoke", subjectID, details))
}

// DropGroupGrants removes every grant to a group, inside the transaction
// that deletes the group.
func DropGroupGrants(ctx context.Context, tx *sqldb.Tx, tenantID, groupID string) error {
	_, err := tx.Exec(ctx, "DELETE FROM space_grants WHERE tenant_id = ? AND grantee_type = 'group' AND grantee_id = ?", tenantID, groupID)
	return err
}

// Eraser is the spaces' part of erasing a person who has an account
// (subject.Eraser): the grants made to the account go (their groups'
// grants stay, with the groups).
func (s *Service) Eraser() subject.Eraser {
	return subject.Eraser{Name: "spaces", Erase: func(ctx context.Context, e *subject.Erasure) (func(context.Context), error) {
		if e.UserID == "" {
			return nil, nil
		}
		return nil, e.Delete(ctx, "space_grants", "grantee_type = 'user' AND grantee_id = ?", e.UserID)
	}}
}

// ReplayRevoke revokes a grant again by its id (a restore replaying a
// revocation made after its backup); a grant gone already is left alone.
// It answers whether it revoked one.
func (s *Service) ReplayRevoke(ctx context.Context, tenantID, grantID string) (bool, error) {
	var spaceID, nodeID string
	err := s.db.Read().QueryRow(ctx, "SELECT space_id, node_id FROM space_grants WHERE tenant_id = ? AND id = ?", tenantID, grantID).Scan(&spaceID, &nodeID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sc := Scope{SpaceID: spaceID}
	if nodeID != "" {
		sc.Folders = []string{nodeID} // its events name the folder: at() is the last of Folders
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM space_grants WHERE tenant_id = ? AND id = ?", tenantID, grantID)
		return err
	}, sc.event("revoke", "", map[string]any{"grant_id": grantID, "reason": "replayed from the ledger after a restore"}))
	return err == nil, err
}
