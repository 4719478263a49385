// Package identity manages accounts and API tokens, and turns a presented
// token into the Principal that every request acts as.
//
// A user is a data subject: the email lives, sealed, in the subject row, so
// erasing the person reaches the account. Tokens are 256-bit random secrets
// with a recognisable prefix and a checksum; only their SHA-256 is stored.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// Roles of a user.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Scopes a token may carry: read or write per resource family.
var Scopes = []string{"subjects:read", "subjects:write", "audit:read"}

// User is an account.
type User struct {
	ID        string    `json:"id"`
	SubjectID string    `json:"subject_id"`
	Role      string    `json:"role"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// Token describes an API token (never its secret).
type Token struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Principal is who a request acts as.
type Principal struct {
	TenantID  string
	UserID    string
	SubjectID string
	Role      string
	TokenID   string
	Scopes    []string
}

// Can reports whether the principal holds scope.
func (p Principal) Can(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Service manages users and tokens.
type Service struct {
	db       *sqldb.DB
	log      *audit.Log
	subjects *subject.Service
	now      func() time.Time
}

// NewService returns a Service.
func NewService(db *sqldb.DB, log *audit.Log, subjects *subject.Service, now func() time.Time) *Service {
	return &Service{db: db, log: log, subjects: subjects, now: now}
}

// CreateUser makes an account for email, reusing the tenant's data subject
// with that email when there is one.
func (s *Service) CreateUser(ctx context.Context, tenantID, email, role string) (User, error) {
	if role == "" {
		role = RoleMember
	}
	if role != RoleOwner && role != RoleAdmin && role != RoleMember {
		return User{}, errs.Field("role", "one of owner, admin, member")
	}
	subjectID, err := s.subjects.IDByEmail(ctx, s.db.Read(), tenantID, email)
	if errs.Is(err, errs.NotFound) {
		sub, cerr := s.subjects.Create(ctx, tenantID, subject.New{Email: email, Source: "account"})
		if cerr != nil {
			return User{}, cerr
		}
		subjectID, err = sub.ID, nil
	}
	if err != nil {
		return User{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return User{}, err
	}
	u := User{ID: id.String(), SubjectID: subjectID, Role: role, Status: "active", CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	err = s.log.Commit(ctx, tenantID, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (tenant_id, id, subject_id, role, status, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			tenantID, u.ID, u.SubjectID, u.Role, u.Status, u.CreatedAt.UnixMicro())
		if sqldb.IsUniqueViolation(err) {
			return errs.Field("email", "a user with this email already exists")
		}
		return err
	}, audit.Event{Action: "user.create", TargetType: "user", TargetID: u.ID, SubjectID: u.SubjectID,
		Details: map[string]any{"role": role}})
	return u, err
}

// UserByEmail finds the account with this email.
func (s *Service) UserByEmail(ctx context.Context, tenantID, email string) (User, error) {
	q := s.db.Read()
	subjectID, err := s.subjects.IDByEmail(ctx, q, tenantID, email)
	if errs.Is(err, errs.NotFound) {
		return User{}, errs.E(errs.NotFound, "no user with this email")
	}
	if err != nil {
		return User{}, err
	}
	var u User
	var created int64
	err = q.QueryRow(ctx, "SELECT id, subject_id, role, status, created_at FROM users WHERE tenant_id = ? AND subject_id = ?",
		tenantID, subjectID).Scan(&u.ID, &u.SubjectID, &u.Role, &u.Status, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, errs.E(errs.NotFound, "no user with this email")
	}
	u.CreatedAt = time.UnixMicro(created).UTC()
	return u, err
}

// tokenPrefix starts every Custodia API token, so that secret scanners and
// people recognise one.
const tokenPrefix = "cust_"

// tokenLen is prefix + 43 base64url characters (32 bytes) + 8 hex checksum.
const tokenLen = len(tokenPrefix) + 43 + 8

func checksum(body string) string { return fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(body))) }

func tokenHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ParseScopes validates a scope list; empty means every scope.
func ParseScopes(list []string) ([]string, error) {
	if len(list) == 0 {
		return slices.Clone(Scopes), nil
	}
	var out []string
	for _, s := range list {
		for _, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !slices.Contains(Scopes, part) {
				return nil, errs.Field("scopes", "unknown scope %q (known: %s)", part, strings.Join(Scopes, ", "))
			}
			if !slices.Contains(out, part) {
				out = append(out, part)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// CreateToken makes an API token for the user with email and returns its
// secret, which is shown once and never stored.
func (s *Service) CreateToken(ctx context.Context, tenantID, email, name string, scopes []string, ttl time.Duration) (string, Token, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", Token{}, errs.Field("name", "required, at most 100 characters")
	}
	if ttl <= 0 || ttl > 366*24*time.Hour {
		return "", Token{}, errs.Field("expires", "between 1 second and 366 days")
	}
	scopes, err := ParseScopes(scopes)
	if err != nil {
		return "", Token{}, err
	}
	u, err := s.UserByEmail(ctx, tenantID, email)
	if err != nil {
		return "", Token{}, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", Token{}, err
	}
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	secret := body + checksum(body)
	id, err := uuid.NewV7()
	if err != nil {
		return "", Token{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	t := Token{ID: id.String(), UserID: u.ID, Name: name, Scopes: scopes, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	err = s.log.Commit(ctx, tenantID, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_tokens (tenant_id, id, user_id, name, hash, scopes, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, tenantID, t.ID, t.UserID, t.Name, tokenHash(secret),
			strings.Join(t.Scopes, " "), t.CreatedAt.UnixMicro(), t.ExpiresAt.UnixMicro())
		return err
	}, audit.Event{Action: "token.create", TargetType: "token", TargetID: t.ID, SubjectID: u.SubjectID,
		Details: map[string]any{"scopes": t.Scopes, "expires_at": t.ExpiresAt}})
	if err != nil {
		return "", Token{}, err
	}
	return secret, t, nil
}

var errBadToken = errs.E(errs.Unauthenticated, "missing, invalid, expired or revoked token")

// Authenticate resolves a bearer token. Every failure looks the same.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) != tokenLen || !strings.HasPrefix(secret, tokenPrefix) ||
		checksum(secret[:tokenLen-8]) != secret[tokenLen-8:] {
		return Principal{}, errBadToken
	}
	var p Principal
	var scopes, userStatus, tenantStatus string
	var expires, revoked, lastUsed int64
	err := s.db.Read().QueryRow(ctx, `SELECT t.tenant_id, t.id, t.scopes, t.expires_at, t.revoked_at, t.last_used_at,
			u.id, u.subject_id, u.role, u.status, n.status
		FROM api_tokens t
		JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id
		JOIN tenants n ON n.id = t.tenant_id
		WHERE t.hash = ?`, tokenHash(secret)).
		Scan(&p.TenantID, &p.TokenID, &scopes, &expires, &revoked, &lastUsed, &p.UserID, &p.SubjectID, &p.Role, &userStatus, &tenantStatus)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, errBadToken
	}
	if err != nil {
		return Principal{}, fmt.Errorf("find token: %w", err)
	}
	now := s.now().UnixMicro()
	if revoked != 0 || now >= expires || userStatus != "active" || tenantStatus != "active" {
		return Principal{}, errBadToken
	}
	p.Scopes = strings.Fields(scopes)
	if now-lastUsed > int64(5*time.Minute/time.Microsecond) { // coarse, to keep reads from writing
		_ = s.db.WithTx(ctx, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE api_tokens SET last_used_at = ? WHERE tenant_id = ? AND id = ?", now, p.TenantID, p.TokenID)
			return err
		})
	}
	return p, nil
}
