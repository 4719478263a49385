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
)

// Token describes an API token (never its secret).
type Token struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// DefaultTokenTTL is how long a token lives unless asked otherwise.
const DefaultTokenTTL = 90 * 24 * time.Hour

// TokenTTL is the lifetime of a token asked to live days days (nil: the
// default), between 1 and 366.
func TokenTTL(days *int) (time.Duration, error) {
	if days == nil {
		return DefaultTokenTTL, nil
	}
	if *days < 1 || *days > 366 {
		return 0, errs.Field("expires_in_days", "between 1 and 366")
	}
	return time.Duration(*days) * 24 * time.Hour, nil
}

// tokenPrefix starts every Custodia API token, so that secret scanners and
// people recognise one.
const tokenPrefix = "cust_"

// tokenLen is prefix + 43 base64url characters (32 bytes) + 8 hex checksum.
const tokenLen = len(tokenPrefix) + 43 + 8

func checksum(body string) string { return fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(body))) }

// sha is how every client-held secret (token, session, device) is stored.
func sha(secret string) []byte {
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

// CreateToken makes an API token for the user with email (the operator's
// way, from the CLI) and returns its secret, which is shown once and never
// stored.
func (s *Service) CreateToken(ctx context.Context, tenantID, email, name string, scopes []string, ttl time.Duration) (string, Token, error) {
	u, err := s.UserByEmail(ctx, tenantID, email)
	if err != nil {
		return "", Token{}, err
	}
	return s.CreateTokenFor(ctx, tenantID, u, name, scopes, ttl)
}

// CreateTokenFor makes an API token acting as u. Its scopes must be among
// those u's role holds; no scopes means all of them.
func (s *Service) CreateTokenFor(ctx context.Context, tenantID string, u User, name string, scopes []string, ttl time.Duration) (string, Token, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", Token{}, errs.Field("name", "required, at most 100 characters")
	}
	if ttl <= 0 || ttl > 366*24*time.Hour {
		return "", Token{}, errs.Field("expires", "between 1 second and 366 days")
	}
	held := RoleScopes(u.Role)
	if len(scopes) == 0 {
		scopes = held
	}
	scopes, err := ParseScopes(scopes)
	if err != nil {
		return "", Token{}, err
	}
	for _, sc := range scopes {
		if !slices.Contains(held, sc) {
			return "", Token{}, errs.Field("scopes", "the role %s does not hold %s", u.Role, sc)
		}
	}
	if len(scopes) == 0 {
		return "", Token{}, errs.Field("scopes", "the role %s holds no API scope", u.Role)
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
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_tokens (tenant_id, id, user_id, name, hash, scopes, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, tenantID, t.ID, t.UserID, t.Name, sha(secret),
			strings.Join(t.Scopes, " "), t.CreatedAt.UnixMicro(), t.ExpiresAt.UnixMicro())
		return err
	}, audit.Event{Action: "token.create", TargetType: "token", TargetID: t.ID, SubjectID: u.SubjectID,
		Details: map[string]any{"scopes": t.Scopes, "expires_at": t.ExpiresAt}})
	if err != nil {
		return "", Token{}, err
	}
	return secret, t, nil
}

// Tokens lists the user's tokens, newest first, revoked ones included.
func (s *Service) Tokens(ctx context.Context, tenantID, userID string) ([]Token, error) {
	return s.tokens(ctx, "tenant_id = ? AND user_id = ?", tenantID, userID)
}

// tokens lists the tokens matching where, newest first.
func (s *Service) tokens(ctx context.Context, where string, args ...any) ([]Token, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT id, user_id, name, scopes, created_at, expires_at, last_used_at, revoked_at
		FROM api_tokens WHERE `+where+` ORDER BY id DESC`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		var t Token
		var scopes string
		var created, expires, used, revoked int64
		if err := rows.Scan(&t.ID, &t.UserID, &t.Name, &scopes, &created, &expires, &used, &revoked); err != nil {
			return nil, err
		}
		t.Scopes = strings.Fields(scopes)
		slices.Sort(t.Scopes) // a migration may have appended one
		t.CreatedAt, t.ExpiresAt = micros(created), micros(expires)
		t.LastUsedAt, t.RevokedAt = optMicros(used), optMicros(revoked)
		out = append(out, t)
	}
	return out, rows.Err()
}

// OwnedToken is a token of the tenant with the address of its owner.
type OwnedToken struct {
	Token
	Owner     string `json:"owner"`      // the owner's email
	OwnerRole string `json:"owner_role"` // the owner's role
}

// TenantTokens lists the tenant's live tokens (neither revoked nor
// expired), newest first, with their owners; the read is audited.
func (s *Service) TenantTokens(ctx context.Context, tenantID string) ([]OwnedToken, error) {
	ts, err := s.tokens(ctx, "tenant_id = ? AND revoked_at = 0 AND expires_at > ?", tenantID, s.now().UnixMicro())
	if err != nil {
		return nil, err
	}
	owners := map[string]Account{}
	out := make([]OwnedToken, 0, len(ts))
	for _, t := range ts {
		if _, ok := owners[t.UserID]; !ok {
			u, err := s.UserByID(ctx, tenantID, t.UserID)
			if err != nil {
				return nil, err
			}
			if owners[t.UserID], err = s.withEmail(ctx, tenantID, u); err != nil {
				return nil, err
			}
		}
		out = append(out, OwnedToken{Token: t, Owner: owners[t.UserID].Email, OwnerRole: owners[t.UserID].Role})
	}
	return out, s.log.Record(ctx, tenantID, audit.Event{Action: "token.list", TargetType: "token", Details: map[string]any{"count": len(out)}})
}

// RevokeTokenOf revokes any token of p's tenant, on behalf of p: never one
// whose owner ranks above p (an admin never revokes an owner's).
func (s *Service) RevokeTokenOf(ctx context.Context, p Principal, tokenID string) error {
	ts, err := s.tokens(ctx, "tenant_id = ? AND id = ?", p.TenantID, tokenID)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return errs.E(errs.NotFound, "no such token")
	}
	u, err := s.UserByID(ctx, p.TenantID, ts[0].UserID)
	if err != nil {
		return err
	}
	if rank(u.Role) > rank(p.Role) {
		return errs.E(errs.Forbidden, "a %s cannot revoke a token of an %s", p.Role, u.Role)
	}
	return s.RevokeToken(ctx, p.TenantID, u, tokenID)
}

// RevokeToken ends one of the user's tokens. Revoking twice is not an error.
func (s *Service) RevokeToken(ctx context.Context, tenantID string, u User, tokenID string) error {
	return s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var revoked int64
		err := tx.QueryRow(ctx, "SELECT revoked_at FROM api_tokens WHERE tenant_id = ? AND id = ? AND user_id = ?",
			tenantID, tokenID, u.ID).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "no such token")
		}
		if err != nil || revoked != 0 {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE tenant_id = ? AND id = ?",
			s.now().UnixMicro(), tenantID, tokenID)
		return err
	}, audit.Event{Action: "token.revoke", TargetType: "token", TargetID: tokenID, SubjectID: u.SubjectID})
}

func micros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func optMicros(v int64) *time.Time {
	if v == 0 {
		return nil
	}
	t := micros(v)
	return &t
}

var errBadToken = errs.E(errs.Unauthenticated, "missing, invalid, expired or revoked token")

// Authenticate resolves a bearer token. Every failure looks the same.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) != tokenLen || !strings.HasPrefix(secret, tokenPrefix) ||
		checksum(secret[:tokenLen-8]) != secret[tokenLen-8:] {
		return Principal{}, errBadToken
	}
	hash := sha(secret)
	now := s.now().UnixMicro()
	if c, ok := s.authed.Get(ctx, string(hash)); ok && now < c.expires {
		if now-c.lastUsed > lastUsedGrain {
			c.lastUsed = s.noteUse(ctx, c.p, now)
			s.authed.Put(ctx, string(hash), c)
		}
		p := c.p
		p.Scopes = slices.Clone(p.Scopes)
		return p, nil
	}
	var p Principal
	var scopes, userStatus, tenantStatus string
	var expires, revoked, lastUsed int64
	err := s.db.Read().QueryRow(ctx, `SELECT t.tenant_id, t.id, t.scopes, t.expires_at, t.revoked_at, t.last_used_at,
			u.id, u.subject_id, u.role, u.status, n.status
		FROM api_tokens t
		JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id
		JOIN tenants n ON n.id = t.tenant_id
		WHERE t.hash = ?`, hash).
		Scan(&p.TenantID, &p.TokenID, &scopes, &expires, &revoked, &lastUsed, &p.UserID, &p.SubjectID, &p.Role, &userStatus, &tenantStatus)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, errBadToken
	}
	if err != nil {
		return Principal{}, fmt.Errorf("find token: %w", err)
	}
	if revoked != 0 || now >= expires || userStatus != StatusActive || tenantStatus != "active" {
		return Principal{}, errBadToken
	}
	held := RoleScopes(p.Role)
	for _, sc := range strings.Fields(scopes) {
		if slices.Contains(held, sc) {
			p.Scopes = append(p.Scopes, sc)
		}
	}
	if now-lastUsed > lastUsedGrain {
		lastUsed = s.noteUse(ctx, p, now)
	}
	s.authed.Put(ctx, string(hash), cachedToken{p: p, expires: expires, lastUsed: lastUsed})
	p.Scopes = slices.Clone(p.Scopes)
	return p, nil
}

// cachedToken is what a node keeps of a token it authenticated, while the
// access epoch stands (a revocation, a role or status change of its owner
// or tenant moves it): the principal, when the token ends and when its use
// was last written down.
type cachedToken struct {
	p        Principal
	expires  int64
	lastUsed int64
}

// lastUsedGrain: a token's last use is written down at most this often
// (µs), to keep reads from writing.
const lastUsedGrain = int64(5 * time.Minute / time.Microsecond)

// noteUse writes down that p's token was used at now, and answers the
// last use now on record (now, unless the write failed).
func (s *Service) noteUse(ctx context.Context, p Principal, now int64) int64 {
	err := s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE api_tokens SET last_used_at = ? WHERE tenant_id = ? AND id = ?", now, p.TenantID, p.TokenID)
		return err
	})
	if err != nil {
		return 0
	}
	return now
}

// RevokeTokenID ends a token by its id alone (a restore replaying a
// revocation made after its backup); revoking a revoked or unknown token
// does nothing. It answers whether it revoked one.
func (s *Service) RevokeTokenID(ctx context.Context, tenantID, tokenID string) (bool, error) {
	return replayed(s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at = 0",
			s.now().UnixMicro(), tenantID, tokenID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNothing
		}
		return nil
	}, audit.Event{Action: "token.revoke", TargetType: "token", TargetID: tokenID, Details: map[string]any{"replayed": true}}))
}
