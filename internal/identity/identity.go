// Package identity manages accounts, their passwords, sessions, second
// factors and API tokens, and turns a presented session or token into the
// Principal that every request acts as.
//
// A user is a data subject: the email lives, sealed, in the subject row, and
// every per-user secret (TOTP seed, session client details) is sealed under
// the subject's key, so erasing the person reaches the account. Secrets a
// client holds (session, device, API token) are 256-bit random values of
// which only a SHA-256 is stored; recovery codes are kept keyed-hashed.
package identity

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Roles of a user.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Scopes a token may carry: read or write per resource family, and
// subjects:export for a person's whole access export (Art. 15), files
// included — never an export that silently leaves some out.
var Scopes = []string{"audit:read", "groups:read", "groups:write", "purposes:read", "purposes:write", "settings:read", "settings:write",
	"spaces:read", "spaces:write", "subjects:export", "subjects:read", "subjects:write", "users:read", "users:write"}

// memberScopes are what every active user holds: the resource families in
// which access is decided per object (a group one belongs to, a space one
// was granted).
var memberScopes = []string{"groups:read", "groups:write", "spaces:read", "spaces:write"}

// RoleScopes are the scopes a role holds. A token's scopes are intersected
// with its owner's on every request, so a demoted user's tokens shrink too.
func RoleScopes(role string) []string {
	switch role {
	case RoleOwner, RoleAdmin:
		return Scopes
	default:
		return memberScopes
	}
}

// User is an account.
type User struct {
	ID          string     `json:"id"`
	SubjectID   string     `json:"subject_id"`
	Role        string     `json:"role"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	LastLoginAt *time.Time `json:"last_login_at"`
	ClosesAt    *time.Time `json:"closes_at"` // the holder closed the account: it is erased then
}

// Principal is who a request acts as.
type Principal struct {
	TenantID  string
	UserID    string
	SubjectID string
	Role      string
	TokenID   string    // set when authenticated by an API token
	SessionID string    // set when authenticated by a session cookie
	Enrolment bool      // the session may only set up a second factor
	AuthedAt  time.Time // the session's last password or second-factor proof
	Recent    time.Duration
	Scopes    []string
}

// Can reports whether the principal holds scope.
func (p Principal) Can(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Fresh reports whether the principal proved who they are recently enough
// for a sensitive action. Only sessions can: a token never re-authenticates.
func (p Principal) Fresh(now time.Time) bool {
	return p.SessionID != "" && now.Sub(p.AuthedAt) <= p.Recent
}

// Service manages users, sessions, factors and tokens.
type Service struct {
	db       *sqldb.DB
	keys     *keyring.Keyring
	log      *audit.Log
	subjects *subject.Service
	tenants  *tenant.Service
	hasher   *password.Hasher
	blocked  password.Blocklist
	mail     *mail.Outbox
	sms      sms.Sender // nil: no SMS codes
	links    string     // public base URL for links in mail
	rp       *webauthn.WebAuthn
	rpErr    error // why there are no passkeys (the public URL names an IP)
	now      func() time.Time
	authed   *sqldb.Cache[string, cachedToken]     // tokens authenticated, by hash
	holders  *sqldb.Cache[string, map[string]bool] // per tenant: the subjects with an account (nil: too many)
}

// maxCachedTokens bounds the tokens a node keeps authenticated in memory.
const maxCachedTokens = 10_000

// Deps are what a Service is built from.
type Deps struct {
	DB       *sqldb.DB
	Keys     *keyring.Keyring
	Log      *audit.Log
	Subjects *subject.Service
	Tenants  *tenant.Service
	Hasher   *password.Hasher
	Mail     *mail.Outbox
	SMS      sms.Sender // nil when the operator configured none
	Links    string     // public base URL, e.g. https://custodia.example.org
	Now      func() time.Time
}

// NewService returns a Service.
func NewService(d Deps) *Service {
	s := &Service{db: d.DB, keys: d.Keys, log: d.Log, subjects: d.Subjects, tenants: d.Tenants,
		hasher: d.Hasher, blocked: password.CommonPasswords(), mail: d.Mail, sms: d.SMS, links: d.Links, now: d.Now,
		authed:  sqldb.NewCache[string, cachedToken](d.DB, maxCachedTokens, sqldb.FollowAccess),
		holders: sqldb.NewCache[string, map[string]bool](d.DB, 1_000, sqldb.FollowAccess)}
	s.rp, s.rpErr = newRelyingParty(d.Links)
	return s
}

// Hasher is the password hasher the service uses.
func (s *Service) Hasher() *password.Hasher { return s.hasher }

// NewUser is an account to create.
type NewUser struct {
	Email    string
	Role     string // default member
	Name     string // optional
	Password string // optional; checked against the tenant's policy
}

func validRole(role string) error {
	if role != RoleOwner && role != RoleAdmin && role != RoleMember {
		return errs.Field("role", "one of owner, admin, member")
	}
	return nil
}

// User statuses. An invited user has no password yet and becomes active by
// accepting the invitation.
const (
	StatusActive    = "active"
	StatusInvited   = "invited"
	StatusSuspended = "suspended"
)

// CreateUser makes an account, reusing the tenant's data subject with that
// email when there is one.
func (s *Service) CreateUser(ctx context.Context, tenantID string, in NewUser) (User, error) {
	return s.createUser(ctx, tenantID, in, StatusActive, nil)
}

// createUser makes an account with status; then, when not nil, runs in the
// same transaction, and events about the new user (target filled in) are
// recorded with its creation.
func (s *Service) createUser(ctx context.Context, tenantID string, in NewUser, status string,
	then func(tx *sqldb.Tx, u User) error, events ...audit.Event) (User, error) {
	if in.Role == "" {
		in.Role = RoleMember
	}
	if err := validRole(in.Role); err != nil {
		return User{}, err
	}
	email, err := subject.NormalizeEmail(in.Email)
	if err != nil {
		return User{}, err
	}
	var hash string
	if in.Password != "" {
		if hash, err = s.checkAndHash(ctx, tenantID, email, in.Password); err != nil {
			return User{}, err
		}
	}
	name := in.Name
	subjectID, err := s.subjects.IDByEmail(ctx, s.db.Read(), tenantID, email)
	if errs.Is(err, errs.NotFound) {
		var attrs map[string]any
		if in.Name != "" {
			attrs = map[string]any{"name": in.Name}
		}
		sub, cerr := s.subjects.Create(ctx, tenantID, subject.New{Email: email, Source: "account", Attributes: attrs})
		if cerr != nil {
			return User{}, cerr
		}
		subjectID, err = sub.ID, nil
	} else if err == nil { // a contact becomes a user: the name they have
		prof, perr := s.subjects.Profile(ctx, tenantID, subjectID)
		if perr != nil {
			return User{}, perr
		}
		name = prof.Name
	}
	if err != nil {
		return User{}, err
	}
	words, err := s.nameIndexes(ctx, tenantID, name)
	if err != nil {
		return User{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return User{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	u := User{ID: id.String(), SubjectID: subjectID, Role: in.Role, Status: status, CreatedAt: now}
	var changed int64
	if hash != "" {
		changed = now.UnixMicro()
	}
	events = append([]audit.Event{{Action: "user.create", Details: map[string]any{"role": in.Role, "status": status, "password_set": hash != ""}}}, events...)
	for i := range events {
		events[i].TargetType, events[i].TargetID, events[i].SubjectID = "user", u.ID, u.SubjectID
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (tenant_id, id, subject_id, role, status, created_at, password_hash, password_changed_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			tenantID, u.ID, u.SubjectID, u.Role, u.Status, u.CreatedAt.UnixMicro(), hash, changed)
		if sqldb.IsUniqueViolation(err) {
			return errs.Field("email", "a user with this email already exists")
		}
		if err != nil {
			return err
		}
		if err := setNameWords(ctx, tx, tenantID, u.ID, words); err != nil || then == nil {
			return err
		}
		return then(tx, u)
	}, events...)
	return u, err
}

// checkAndHash refuses a password the tenant's policy does not accept
// (saying why), and hashes it.
func (s *Service) checkAndHash(ctx context.Context, tenantID, email, pw string) (string, error) {
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return "", err
	}
	sec, err := s.SecuritySettings(ctx, tenantID)
	if err != nil {
		return "", err
	}
	if err := sec.PasswordPolicy().Check(pw, s.blocked, t.Name, t.Slug, email); err != nil {
		return "", err
	}
	return s.hasher.Hash(ctx, pw)
}

var errNoUser = errs.E(errs.NotFound, "no user with this email or id")

// UserByEmail finds the account with this email.
func (s *Service) UserByEmail(ctx context.Context, tenantID, email string) (User, error) {
	q := s.db.Read()
	subjectID, err := s.subjects.IDByEmail(ctx, q, tenantID, email)
	if errs.Is(err, errs.NotFound) {
		return User{}, errNoUser
	}
	if err != nil {
		return User{}, err
	}
	return userBySubject(ctx, q, tenantID, subjectID)
}

// UserBySubject finds the account of a data subject (NotFound when they
// have none).
//
// Most people are contacts without one: within a request that carries the
// epochs, the tenant's account holders are cached (while the access epoch
// stands: a new, changed or deleted account moves it) and a contact costs
// no query.
func (s *Service) UserBySubject(ctx context.Context, tenantID, subjectID string) (User, error) {
	if s.holders.Usable(ctx) {
		holders, ok := s.holders.Get(ctx, tenantID)
		if !ok {
			var err error
			if holders, err = s.accountHolders(ctx, tenantID); err != nil {
				return User{}, err
			}
			s.holders.Put(ctx, tenantID, holders)
		}
		if holders != nil && !holders[subjectID] {
			return User{}, errNoUser
		}
	}
	return userBySubject(ctx, s.db.Read(), tenantID, subjectID)
}

// maxHolders: a tenant with more accounts than this is not cached (nil).
const maxHolders = 10_000

// accountHolders are the subjects of tenantID that have an account, or nil
// when there are more than maxHolders.
func (s *Service) accountHolders(ctx context.Context, tenantID string) (map[string]bool, error) {
	ids, err := s.db.Read().Strings(ctx, "SELECT subject_id FROM users WHERE tenant_id = ? LIMIT ?", tenantID, maxHolders+1)
	if err != nil || len(ids) > maxHolders {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

func userBySubject(ctx context.Context, q sqldb.Q, tenantID, subjectID string) (User, error) {
	return scanUser(q.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE tenant_id = ? AND subject_id = ?", tenantID, subjectID))
}

// UserByID finds an account.
func (s *Service) UserByID(ctx context.Context, tenantID, id string) (User, error) {
	return scanUser(s.db.Read().QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE tenant_id = ? AND id = ?", tenantID, id))
}

const userColumns = "id, subject_id, role, status, created_at, last_login_at, closes_at"

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created, last, closes int64
	err := row.Scan(&u.ID, &u.SubjectID, &u.Role, &u.Status, &created, &last, &closes)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, errNoUser
	}
	u.CreatedAt = time.UnixMicro(created).UTC()
	if last != 0 {
		t := time.UnixMicro(last).UTC()
		u.LastLoginAt = &t
	}
	if closes != 0 {
		t := time.UnixMicro(closes).UTC()
		u.ClosesAt = &t
	}
	return u, err
}

// Tenant returns the tenant with id.
func (s *Service) Tenant(ctx context.Context, id string) (tenant.Tenant, error) {
	return s.tenants.ByID(ctx, id)
}
