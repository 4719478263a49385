package identity

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Group is a set of users that can be given access together. Tenant owners
// and admins manage groups; a group's admins add and remove its ordinary
// members. Group admins are members too.
type Group struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Members   int       `json:"members"`
	// Admin says whether the caller is an admin of this group.
	Admin bool `json:"admin"`
}

// Member is one user in a group.
type Member struct {
	UserID  string    `json:"user_id"`
	Email   string    `json:"email"`
	Admin   bool      `json:"admin"`
	AddedAt time.Time `json:"added_at"`
}

// GroupDetail is a group with its members.
type GroupDetail struct {
	Group
	MemberList []Member `json:"member_list"`
}

var errNoGroup = errs.E(errs.NotFound, "no such group")

// tenantAdmin reports whether p administers the tenant.
func tenantAdmin(p Principal) bool { return rank(p.Role) >= rank(RoleAdmin) }

func groupName(name string) (display, key string, err error) {
	display = strings.TrimSpace(norm.NFKC.String(name))
	if display == "" || utf8.RuneCountInString(display) > 100 {
		return "", "", errs.Field("name", "required, at most 100 characters")
	}
	return display, strings.ToLower(display), nil
}

// CreateGroup makes a group; only tenant owners and admins may.
func (s *Service) CreateGroup(ctx context.Context, p Principal, name string) (Group, error) {
	if !tenantAdmin(p) {
		return Group{}, errs.E(errs.Forbidden, "only owners and admins create groups")
	}
	display, key, err := groupName(name)
	if err != nil {
		return Group{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Group{}, err
	}
	g := Group{ID: id.String(), Name: display, CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	dk, idx, err := s.groupKeys(ctx, p.TenantID, key)
	if err != nil {
		return Group{}, err
	}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO user_groups (tenant_id, id, name_ct, name_idx, created_at) VALUES (?, ?, ?, ?, ?)",
			p.TenantID, g.ID, dk.Seal("user_groups", "name_ct", g.ID, []byte(display)), idx, g.CreatedAt.UnixMicro())
		if sqldb.IsUniqueViolation(err) {
			return errs.Field("name", "a group with this name already exists")
		}
		return err
	}, audit.Event{Action: "group.create", TargetType: "group", TargetID: g.ID})
	return g, err
}

func (s *Service) groupKeys(ctx context.Context, tenantID, key string) (*keyring.DataKey, []byte, error) {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return nil, nil, err
	}
	idx, err := s.keys.BlindIndex(ctx, s.db.Read(), tenantID, "group_name", key)
	return dk, idx, err
}

// RenameGroup changes a group's name (tenant owners and admins).
func (s *Service) RenameGroup(ctx context.Context, p Principal, id, name string) (Group, error) {
	if !tenantAdmin(p) {
		return Group{}, errs.E(errs.Forbidden, "only owners and admins rename groups")
	}
	if _, err := s.groupRole(ctx, p, id); err != nil {
		return Group{}, err
	}
	display, key, err := groupName(name)
	if err != nil {
		return Group{}, err
	}
	dk, idx, err := s.groupKeys(ctx, p.TenantID, key)
	if err != nil {
		return Group{}, err
	}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE user_groups SET name_ct = ?, name_idx = ? WHERE tenant_id = ? AND id = ?",
			dk.Seal("user_groups", "name_ct", id, []byte(display)), idx, p.TenantID, id)
		if sqldb.IsUniqueViolation(err) {
			return errs.Field("name", "a group with this name already exists")
		}
		return err
	}, audit.Event{Action: "group.update", TargetType: "group", TargetID: id, Details: map[string]any{"changed": []string{"name"}}})
	if err != nil {
		return Group{}, err
	}
	return s.groupByID(ctx, p, id)
}

// DeleteGroup removes a group, its memberships and the access granted to
// it (tenant owners and admins). The caller passes the statement that
// removes the group's grants, which live with the spaces.
func (s *Service) DeleteGroup(ctx context.Context, p Principal, id string, dropGrants func(ctx context.Context, tx *sqldb.Tx) error) error {
	if !tenantAdmin(p) {
		return errs.E(errs.Forbidden, "only owners and admins delete groups")
	}
	if _, err := s.groupRole(ctx, p, id); err != nil {
		return err
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := dropGrants(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM group_members WHERE tenant_id = ? AND group_id = ?", p.TenantID, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM user_groups WHERE tenant_id = ? AND id = ?", p.TenantID, id)
		return err
	}, audit.Event{Action: "group.delete", TargetType: "group", TargetID: id})
}

// groupRole is p's standing in group id: "tenant" for tenant owners and
// admins, "admin" or "member" for the group's own. Anyone else gets
// NotFound, as for a group that does not exist.
func (s *Service) groupRole(ctx context.Context, p Principal, id string) (string, error) {
	var exists int
	var admin sql.NullInt64
	err := s.db.Read().QueryRow(ctx, `SELECT 1, m.is_admin FROM user_groups g
		LEFT JOIN group_members m ON m.tenant_id = g.tenant_id AND m.group_id = g.id AND m.user_id = ?
		WHERE g.tenant_id = ? AND g.id = ?`, p.UserID, p.TenantID, id).Scan(&exists, &admin)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", errNoGroup
	case err != nil:
		return "", err
	case tenantAdmin(p):
		return "tenant", nil
	case !admin.Valid:
		return "", errNoGroup
	case admin.Int64 == 1:
		return "admin", nil
	default:
		return "member", nil
	}
}

// Groups lists the groups p can see: all of them for tenant owners and
// admins, the ones p belongs to for everyone else.
func (s *Service) Groups(ctx context.Context, p Principal) ([]Group, error) {
	q := `SELECT g.id, g.name_ct, g.created_at, COALESCE(me.is_admin, 0),
			(SELECT count(*) FROM group_members c WHERE c.tenant_id = g.tenant_id AND c.group_id = g.id)
		FROM user_groups g
		LEFT JOIN group_members me ON me.tenant_id = g.tenant_id AND me.group_id = g.id AND me.user_id = ?
		WHERE g.tenant_id = ?`
	if !tenantAdmin(p) {
		q += " AND me.user_id IS NOT NULL"
	}
	return s.scanGroups(ctx, p.TenantID, q+" ORDER BY g.id", p.UserID, p.TenantID)
}

func (s *Service) scanGroups(ctx context.Context, tenantID, q string, args ...any) ([]Group, error) {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Read().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Group{}
	for rows.Next() {
		var g Group
		var ct []byte
		var created, admin int64
		if err := rows.Scan(&g.ID, &ct, &created, &admin, &g.Members); err != nil {
			return nil, err
		}
		name, err := dk.Open("user_groups", "name_ct", g.ID, ct)
		if err != nil {
			return nil, err
		}
		g.Name, g.CreatedAt, g.Admin = string(name), micros(created), admin == 1
		out = append(out, g)
	}
	return out, rows.Err()
}

func (s *Service) groupByID(ctx context.Context, p Principal, id string) (Group, error) {
	gs, err := s.scanGroups(ctx, p.TenantID, `SELECT g.id, g.name_ct, g.created_at, COALESCE(me.is_admin, 0),
			(SELECT count(*) FROM group_members c WHERE c.tenant_id = g.tenant_id AND c.group_id = g.id)
		FROM user_groups g
		LEFT JOIN group_members me ON me.tenant_id = g.tenant_id AND me.group_id = g.id AND me.user_id = ?
		WHERE g.tenant_id = ? AND g.id = ?`, p.UserID, p.TenantID, id)
	if err != nil {
		return Group{}, err
	}
	if len(gs) == 0 {
		return Group{}, errNoGroup
	}
	return gs[0], nil
}

// GroupDetail returns a group with its members (and their emails) to a
// tenant admin or a member of the group; the read is audited.
func (s *Service) GroupDetail(ctx context.Context, p Principal, id string) (GroupDetail, error) {
	if _, err := s.groupRole(ctx, p, id); err != nil {
		return GroupDetail{}, err
	}
	g, err := s.groupByID(ctx, p, id)
	if err != nil {
		return GroupDetail{}, err
	}
	rows, err := s.db.Read().Query(ctx, `SELECT m.user_id, u.subject_id, m.is_admin, m.added_at FROM group_members m
		JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
		WHERE m.tenant_id = ? AND m.group_id = ? ORDER BY m.added_at, m.user_id`, p.TenantID, id)
	if err != nil {
		return GroupDetail{}, err
	}
	type row struct {
		m       Member
		subject string
	}
	var rs []row
	for rows.Next() {
		var r row
		var admin, added int64
		if err := rows.Scan(&r.m.UserID, &r.subject, &admin, &added); err != nil {
			rows.Close()
			return GroupDetail{}, err
		}
		r.m.Admin, r.m.AddedAt = admin == 1, micros(added)
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return GroupDetail{}, err
	}
	d := GroupDetail{Group: g, MemberList: make([]Member, 0, len(rs))}
	for _, r := range rs {
		if r.m.Email, _, err = s.subjects.Email(ctx, p.TenantID, r.subject); err != nil {
			return GroupDetail{}, err
		}
		d.MemberList = append(d.MemberList, r.m)
	}
	return d, s.log.Record(ctx, p.TenantID, audit.Event{Action: "group.read", TargetType: "group", TargetID: id,
		Details: map[string]any{"members": len(d.MemberList)}})
}

// SetMember adds a user to a group or changes whether they are one of its
// admins. Tenant owners and admins may do either; a group admin may add
// ordinary members only, and not change another admin.
func (s *Service) SetMember(ctx context.Context, p Principal, groupID, userID string, admin bool) error {
	standing, err := s.groupRole(ctx, p, groupID)
	if err != nil {
		return err
	}
	u, err := s.UserByID(ctx, p.TenantID, userID)
	if err != nil {
		return err
	}
	current, err := s.membership(ctx, p.TenantID, groupID, userID)
	if err != nil {
		return err
	}
	switch standing {
	case "tenant":
	case "admin":
		if admin || current == "admin" {
			return errs.E(errs.Forbidden, "only owners and admins of the organisation appoint group admins")
		}
	default:
		return errs.E(errs.Forbidden, "only the group's admins add members")
	}
	want := "member"
	if admin {
		want = "admin"
	}
	if current == want {
		return nil
	}
	action := "group.member.add"
	if current != "" {
		action = "group.member.update"
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO group_members (tenant_id, group_id, user_id, is_admin, added_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, group_id, user_id) DO UPDATE SET is_admin = excluded.is_admin`,
			p.TenantID, groupID, userID, boolInt(admin), s.now().UnixMicro())
		return err
	}, audit.Event{Action: action, TargetType: "group", TargetID: groupID, SubjectID: u.SubjectID,
		Details: map[string]any{"user_id": userID, "admin": admin}})
}

// RemoveMember takes a user out of a group. Tenant owners and admins may
// remove anyone; a group admin may remove ordinary members; anyone may
// leave.
func (s *Service) RemoveMember(ctx context.Context, p Principal, groupID, userID string) error {
	standing, err := s.groupRole(ctx, p, groupID)
	if err != nil {
		return err
	}
	current, err := s.membership(ctx, p.TenantID, groupID, userID)
	if err != nil {
		return err
	}
	if current == "" {
		return errs.E(errs.NotFound, "this user is not in the group")
	}
	switch {
	case standing == "tenant", userID == p.UserID:
	case standing == "admin" && current == "member":
	default:
		return errs.E(errs.Forbidden, "only the organisation's owners and admins remove a group admin")
	}
	u, err := s.UserByID(ctx, p.TenantID, userID)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM group_members WHERE tenant_id = ? AND group_id = ? AND user_id = ?", p.TenantID, groupID, userID)
		return err
	}, audit.Event{Action: "group.member.remove", TargetType: "group", TargetID: groupID, SubjectID: u.SubjectID,
		Details: map[string]any{"user_id": userID}})
}

// membership is "admin", "member" or "" for a user in a group.
func (s *Service) membership(ctx context.Context, tenantID, groupID, userID string) (string, error) {
	var admin int64
	err := s.db.Read().QueryRow(ctx, "SELECT is_admin FROM group_members WHERE tenant_id = ? AND group_id = ? AND user_id = ?",
		tenantID, groupID, userID).Scan(&admin)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", err
	case admin == 1:
		return "admin", nil
	default:
		return "member", nil
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// GroupSubjects answers the person ids (subject ids) of the members of
// the group id — for filtering the audit trail by group; ids only, so no
// read of personal data is recorded.
func (s *Service) GroupSubjects(ctx context.Context, tenantID, id string) ([]string, error) {
	var n int
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM user_groups WHERE tenant_id = ? AND id = ?", tenantID, id).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errs.Field("group", "no such group")
	}
	ids, err := s.db.Read().Strings(ctx, `SELECT u.subject_id FROM group_members m JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
		WHERE m.tenant_id = ? AND m.group_id = ?`, tenantID, id)
	if ids == nil {
		ids = []string{}
	}
	return ids, err
}
