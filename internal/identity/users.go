package identity

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Account is a user as an admin sees it: with the email.
type Account struct {
	User
	Email string `json:"email"`
}

// rank orders roles: a principal may grant or change only what ranks at
// most as high as its own role.
func rank(role string) int {
	switch role {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	}
	return 0
}

// Users lists the tenant's accounts with their emails, oldest first; the
// read is audited.
func (s *Service) Users(ctx context.Context, tenantID string) ([]Account, error) {
	rows, err := s.db.Read().Query(ctx, "SELECT "+userColumns+" FROM users WHERE tenant_id = ? ORDER BY id", tenantID)
	if err != nil {
		return nil, err
	}
	var us []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		us = append(us, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Account, 0, len(us))
	for _, u := range us {
		a, err := s.withEmail(ctx, tenantID, u)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, s.log.Record(ctx, tenantID, audit.Event{Action: "user.list", TargetType: "user",
		Details: map[string]any{"count": len(out)}})
}

// Account returns one account with its email; the read is audited.
func (s *Service) Account(ctx context.Context, tenantID, id string) (Account, error) {
	u, err := s.UserByID(ctx, tenantID, id)
	if err != nil {
		return Account{}, err
	}
	a, err := s.withEmail(ctx, tenantID, u)
	if err != nil {
		return Account{}, err
	}
	return a, s.log.Record(ctx, tenantID, audit.Event{Action: "user.read", TargetType: "user", TargetID: id, SubjectID: u.SubjectID})
}

func (s *Service) withEmail(ctx context.Context, tenantID string, u User) (Account, error) {
	email, _, err := s.subjects.Email(ctx, tenantID, u.SubjectID)
	return Account{User: u, Email: email}, err
}

// CreateUserAs is CreateUser on behalf of p, who may not grant a role
// above their own.
func (s *Service) CreateUserAs(ctx context.Context, p Principal, in NewUser) (User, error) {
	if in.Role == "" {
		in.Role = RoleMember
	}
	if err := validRole(in.Role); err != nil {
		return User{}, err
	}
	if rank(in.Role) > rank(p.Role) {
		return User{}, errs.E(errs.Forbidden, "a %s cannot make someone %s", p.Role, in.Role)
	}
	return s.CreateUser(ctx, p.TenantID, in)
}

// UserPatch changes an account; nil fields stay.
type UserPatch struct {
	Role   *string `json:"role"`
	Status *string `json:"status"` // active | suspended
}

// UpdateUser changes role or status on behalf of p. Nobody changes an
// account ranking above themselves or grants a role above their own; the
// last active owner can be neither demoted nor suspended. Suspending ends
// the user's sessions (tokens stop working while suspended).
func (s *Service) UpdateUser(ctx context.Context, p Principal, id string, patch UserPatch) (User, error) {
	if patch.Role != nil {
		if err := validRole(*patch.Role); err != nil {
			return User{}, err
		}
		if rank(*patch.Role) > rank(p.Role) {
			return User{}, errs.E(errs.Forbidden, "a %s cannot make someone %s", p.Role, *patch.Role)
		}
	}
	if patch.Status != nil && *patch.Status != StatusActive && *patch.Status != StatusSuspended {
		return User{}, errs.Field("status", "one of active, suspended")
	}
	u, err := s.UserByID(ctx, p.TenantID, id)
	if err != nil {
		return User{}, err
	}
	if u.Status == StatusInvited && patch.Status != nil && *patch.Status == StatusActive {
		return User{}, errs.Field("status", "an invited user becomes active by accepting the invitation")
	}
	if rank(u.Role) > rank(p.Role) {
		return User{}, errs.E(errs.Forbidden, "a %s cannot change an %s", p.Role, u.Role)
	}
	next := u
	setIf(&next.Role, patch.Role)
	setIf(&next.Status, patch.Status)
	if next == u {
		return u, nil
	}
	err = s.log.Commit(ctx, p.TenantID, func(tx *sqldb.Tx) error {
		if u.Role == RoleOwner && (next.Role != RoleOwner || next.Status != StatusActive) {
			var owners int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM users WHERE tenant_id = ? AND role = ? AND status = 'active' AND id <> ?",
				p.TenantID, RoleOwner, id).Scan(&owners); err != nil {
				return err
			}
			if owners == 0 {
				return errs.E(errs.Conflict, "this is the last owner: make someone else owner first")
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE users SET role = ?, status = ? WHERE tenant_id = ? AND id = ?",
			next.Role, next.Status, p.TenantID, id); err != nil {
			return err
		}
		if next.Status != StatusActive {
			return revokeSessions(ctx, tx, p.TenantID, id, "", s.now().UnixMicro())
		}
		return nil
	}, audit.Event{Action: "user.update", TargetType: "user", TargetID: id, SubjectID: u.SubjectID,
		Details: map[string]any{"role": []string{u.Role, next.Role}, "status": []string{u.Status, next.Status}}})
	return next, err
}
