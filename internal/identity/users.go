package identity

import (
	"context"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// Account is a user as an admin sees it: with email and name.
type Account struct {
	User
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Rank orders roles: a principal may grant or change only what ranks at
// most as high as its own role.
func Rank(role string) int { return rank(role) }

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

// users lists the accounts matching where (with its args).
func (s *Service) users(ctx context.Context, where string, args ...any) ([]User, error) {
	rows, err := s.db.Read().Query(ctx, "SELECT "+userColumns+" FROM users WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var us []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		us = append(us, u)
	}
	return us, rows.Err()
}

// accounts answers every account of the tenant with its email and name,
// oldest first, without recording a read (the caller records its own).
func (s *Service) accounts(ctx context.Context, tenantID string) ([]Account, error) {
	us, err := s.users(ctx, "tenant_id = ? ORDER BY created_at, id", tenantID)
	if err != nil {
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
	return out, nil
}

// withFactor answers which of the accounts ids have a confirmed second
// factor, in one query.
func (s *Service) withFactor(ctx context.Context, tenantID string, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")
	args := []any{tenantID}
	for _, id := range ids {
		args = append(args, id)
	}
	has, err := s.db.Read().Strings(ctx, "SELECT DISTINCT user_id FROM mfa_factors WHERE tenant_id = ? AND confirmed_at <> 0 AND user_id IN ("+marks+")", args...)
	for _, id := range has {
		out[id] = true
	}
	return out, err
}

// UserQuery selects a page of a tenant's accounts.
type UserQuery struct {
	Email  string // exact, through the email's blind index ("" for any)
	Name   string // whole words of the name, any case and order, through their blind indexes
	Role   string // "" for any
	Status string // "" for any
	// Locked keeps the accounts locked now after wrong passwords.
	Locked bool
	// SecondFactor, when set, keeps the accounts with a confirmed second
	// factor (true) or without one (false).
	SecondFactor *bool
	Offset       int
	Limit        int // 1 to 500; default 50
}

// UserPage is a page of accounts, oldest first, and how many match in all.
type UserPage struct {
	Items []UserRow `json:"items"`
	Total int       `json:"total"`
}

// Attention counts what needs an owner's or an administrator's eye:
// accounts locked now, and active owners and administrators without a
// second factor. Nothing personal is read.
type Attention struct {
	Locked          int
	AdminsNoFactor  int
	FactorsRequired bool // second factors are required of owners and administrators
}

// NeedsAttention answers the tenant's Attention.
func (s *Service) NeedsAttention(ctx context.Context, tenantID string) (Attention, error) {
	var a Attention
	sec, err := s.SecuritySettings(ctx, tenantID)
	if err != nil {
		return a, err
	}
	a.FactorsRequired = sec.MFARequired == "admins" || sec.MFARequired == "all"
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM users WHERE tenant_id = ? AND locked_until > ?", tenantID, s.now().UnixMicro()).Scan(&a.Locked); err != nil {
		return a, err
	}
	err = s.db.Read().QueryRow(ctx, `SELECT count(*) FROM users WHERE tenant_id = ? AND status = ? AND role IN (?, ?)
		AND NOT EXISTS (SELECT 1 FROM mfa_factors f WHERE f.tenant_id = users.tenant_id AND f.user_id = users.id AND f.confirmed_at <> 0)`,
		tenantID, StatusActive, RoleOwner, RoleAdmin).Scan(&a.AdminsNoFactor)
	return a, err
}

// Users answers a page of the tenant's accounts matching q, with their
// emails and names; the read is audited once, naming the accounts shown.
func (s *Service) Users(ctx context.Context, tenantID string, q UserQuery) (UserPage, error) {
	switch {
	case q.Limit == 0:
		q.Limit = 50
	case q.Limit < 1 || q.Limit > 500:
		return UserPage{}, errs.Field("limit", "between 1 and 500")
	}
	if q.Offset < 0 {
		return UserPage{}, errs.Field("cursor", "not a cursor of this list")
	}
	where, args := "tenant_id = ?", []any{tenantID}
	if q.Role != "" {
		if err := validRole(q.Role); err != nil {
			return UserPage{}, err
		}
		where, args = where+" AND role = ?", append(args, q.Role)
	}
	if q.Status != "" {
		if !slices.Contains([]string{StatusInvited, StatusActive, StatusSuspended}, q.Status) {
			return UserPage{}, errs.Field("status", "one of invited, active, suspended")
		}
		where, args = where+" AND status = ?", append(args, q.Status)
	}
	if q.Locked {
		where, args = where+" AND locked_until > ?", append(args, s.now().UnixMicro())
	}
	if q.SecondFactor != nil {
		has := "EXISTS (SELECT 1 FROM mfa_factors f WHERE f.tenant_id = users.tenant_id AND f.user_id = users.id AND f.confirmed_at <> 0)"
		if !*q.SecondFactor {
			has = "NOT " + has
		}
		where += " AND " + has
	}
	if q.Email != "" {
		id, err := s.subjects.IDByEmail(ctx, s.db.Read(), tenantID, q.Email)
		switch {
		case errs.Is(err, errs.NotFound):
			id = "-" // no account has it
		case err != nil:
			return UserPage{}, err
		}
		where, args = where+" AND subject_id = ?", append(args, id)
	}
	if q.Name != "" {
		words, err := s.nameIndexes(ctx, tenantID, q.Name)
		if err != nil {
			return UserPage{}, err
		}
		if len(words) == 0 {
			return UserPage{}, errs.Field("name", "give a word of the name")
		}
		for _, w := range words {
			where, args = where+" AND id IN (SELECT user_id FROM user_name_words WHERE tenant_id = ? AND word_bidx = ?)", append(args, tenantID, w)
		}
	}
	var page UserPage
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM users WHERE "+where, args...).Scan(&page.Total); err != nil {
		return UserPage{}, err
	}
	us, err := s.users(ctx, where+" ORDER BY created_at, id LIMIT ? OFFSET ?", append(args, q.Limit, q.Offset)...)
	if err != nil {
		return UserPage{}, err
	}
	page.Items = make([]UserRow, 0, len(us))
	ids := make([]string, 0, len(us))
	people := make([]string, 0, len(us))
	for _, u := range us {
		ids, people = append(ids, u.ID), append(people, u.SubjectID)
	}
	withFactor, err := s.withFactor(ctx, tenantID, ids)
	if err != nil {
		return UserPage{}, err
	}
	for _, u := range us {
		a, err := s.withEmail(ctx, tenantID, u)
		if err != nil {
			return UserPage{}, err
		}
		page.Items = append(page.Items, UserRow{Account: a, SecondFactor: withFactor[u.ID]})
	}
	return page, s.log.Record(ctx, tenantID, audit.Event{Action: "user.list", TargetType: "user", Subjects: people,
		Details: map[string]any{"count": len(ids), "ids": ids, "total": page.Total}})
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
	pr, err := s.subjects.Profile(ctx, tenantID, u.SubjectID)
	return Account{User: u, Email: pr.Email, Name: pr.Name}, err
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
	Name   *string `json:"name"`   // "" clears
	Email  *string `json:"email"`
}

// maxName bounds a person's name, in characters.
const maxName = 200

// profilePatch turns name and email changes into a rectification of the
// user's data subject.
func profilePatch(name, email *string) (subject.Patch, error) {
	var sp subject.Patch
	if name != nil {
		n := strings.TrimSpace(*name)
		if utf8.RuneCountInString(n) > maxName {
			return sp, errs.Field("name", "at most %d characters", maxName)
		}
		var v any = n
		if n == "" {
			v = nil
		}
		sp.Attributes = subject.Optional[map[string]any]{Set: true, Value: map[string]any{"name": v}}
	}
	if email != nil {
		e, err := subject.NormalizeEmail(*email)
		if err != nil {
			return sp, err
		}
		sp.Email = subject.Optional[string]{Set: true, Value: e}
	}
	return sp, nil
}

// checkProfile validates name and email changes for u: the patch to its
// data subject, refusing another person's email.
func (s *Service) checkProfile(ctx context.Context, tenantID string, u User, name, email *string) (subject.Patch, error) {
	sp, err := profilePatch(name, email)
	if err != nil || !sp.Email.Set {
		return sp, err
	}
	other, err := s.subjects.IDByEmail(ctx, s.db.Read(), tenantID, sp.Email.Value)
	switch {
	case err == nil && other != u.SubjectID:
		return sp, errs.Field("email", "another person in this organisation has this email")
	case err != nil && !errs.Is(err, errs.NotFound):
		return sp, err
	}
	return sp, nil
}

// rectify applies a checked profile patch to u's data subject (audited
// there by field name, never value).
func (s *Service) rectify(ctx context.Context, tenantID string, u User, sp subject.Patch) error {
	if !sp.Email.Set && !sp.Attributes.Set {
		return nil
	}
	_, err := s.subjects.RectifyAccount(ctx, tenantID, u.SubjectID, sp)
	return err
}

// SetTimeZone sets the principal's own time zone (an IANA name such as
// Europe/Paris), or "" for the organisation's. It is kept as an attribute
// of their person, encrypted and erased with the rest.
func (s *Service) SetTimeZone(ctx context.Context, p Principal, zone string) error {
	zone = strings.TrimSpace(zone)
	var v any = zone
	if zone == "" {
		v = nil
	} else if _, err := time.LoadLocation(zone); err != nil || zone == "Local" {
		return errs.Field("time_zone", "must be an IANA time zone name, such as Europe/Paris")
	}
	u, err := s.UserByID(ctx, p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	return s.rectify(ctx, p.TenantID, u, subject.Patch{Attributes: subject.Optional[map[string]any]{Set: true, Value: map[string]any{"time_zone": v}}})
}

// UpdateProfile lets the principal change their own name.
func (s *Service) UpdateProfile(ctx context.Context, p Principal, name string) (Account, error) {
	u, err := s.UserByID(ctx, p.TenantID, p.UserID)
	if err != nil {
		return Account{}, err
	}
	sp, err := s.checkProfile(ctx, p.TenantID, u, &name, nil)
	if err != nil {
		return Account{}, err
	}
	if err := s.rectify(ctx, p.TenantID, u, sp); err != nil {
		return Account{}, err
	}
	if err := s.indexName(ctx, p.TenantID, u); err != nil {
		return Account{}, err
	}
	return s.withEmail(ctx, p.TenantID, u)
}

// EraseUser erases the account id and the person behind it, on behalf of
// p, with the account's rules: never by an API token, never an account
// ranking above p (an admin never erases an owner), never p's own (they
// close it, with its grace period: POST /api/v1/me/closure), never the
// last active owner (subject.Erase refuses it).
func (s *Service) EraseUser(ctx context.Context, p Principal, id string, in subject.EraseInput) (subject.Certificate, error) {
	if p.TokenID != "" {
		return subject.Certificate{}, errs.E(errs.Forbidden, "an account is erased by a person who signed in recently; API tokens cannot do it")
	}
	u, err := s.UserByID(ctx, p.TenantID, id)
	if err != nil {
		return subject.Certificate{}, err
	}
	if u.ID == p.UserID {
		return subject.Certificate{}, errs.E(errs.Conflict, "close your own account instead: POST /api/v1/me/closure")
	}
	if rank(u.Role) > rank(p.Role) {
		return subject.Certificate{}, errs.E(errs.Forbidden, "a %s cannot erase an %s", p.Role, u.Role)
	}
	in.Accounts = true
	return s.subjects.Erase(ctx, p.TenantID, u.SubjectID, in)
}

// AccountWrites lists, newest first, the rectifications and erasures of
// people who had a user account at the time (a user.create event for them
// came before) that did not go through the account's own paths (their
// details lack "via": "account"): what a takeover through the subjects API
// — closed in December 2026 — would have left. Erased accounts are found
// too: the trail keeps their pseudonymous subject id.
func (s *Service) AccountWrites(ctx context.Context, tenantID string) ([]audit.Entry, error) {
	rd := audit.NewReader(s.db, s.keys)
	became := map[string]time.Time{} // subject id → when their first account was made
	err := rd.Each(ctx, tenantID, audit.Filter{Action: "user.create"}, func(e audit.Entry) error {
		became[e.SubjectID] = e.At // newest first: the earliest wins
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []audit.Entry
	err = rd.Each(ctx, tenantID, audit.Filter{Action: "subject.*"}, func(e audit.Entry) error {
		at, ok := became[e.SubjectID]
		if (e.Action == "subject.rectify" || e.Action == "subject.erase") && ok && !e.At.Before(at) && e.Details["via"] != "account" {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// UpdateUser changes role, status, name or sign-in address on behalf of p.
// Nobody changes an account ranking above themselves or grants a role
// above their own; the last active owner can be neither demoted nor
// suspended. Suspending ends the user's sessions (tokens stop working
// while suspended). A new address takes effect only once confirmed by the
// link mailed to it (ConfirmEmail).
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
	profile, err := s.checkProfile(ctx, p.TenantID, u, patch.Name, patch.Email)
	if err != nil {
		return User{}, err
	}
	// A new sign-in address waits for the confirmation mailed to it.
	newEmail := ""
	if profile.Email.Set {
		current, _, err := s.subjects.Email(ctx, p.TenantID, u.SubjectID)
		if err != nil {
			return User{}, err
		}
		if profile.Email.Value != current {
			newEmail = profile.Email.Value
		}
		profile.Email = subject.Optional[string]{}
	}
	apply := func(u User) (User, error) {
		if err := s.rectify(ctx, p.TenantID, u, profile); err != nil {
			return u, err
		}
		if patch.Name != nil {
			if err := s.indexName(ctx, p.TenantID, u); err != nil {
				return u, err
			}
		}
		if newEmail == "" {
			return u, nil
		}
		return u, s.requestEmailChange(ctx, p.TenantID, u, newEmail)
	}
	next := u
	setIf(&next.Role, patch.Role)
	setIf(&next.Status, patch.Status)
	if next == u {
		return apply(u)
	}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
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
	if err != nil {
		return User{}, err
	}
	return apply(next)
}
