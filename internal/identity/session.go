package identity

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// newSecret returns a session, device or one-time-link secret.
func newSecret() string { return keyring.NewSecret() }

// startSession inserts a session and returns its secret and absolute end.
func (s *Service) startSession(ctx context.Context, tx *sqldb.Tx, a *account, state string, sec Security, c Client) (string, time.Time, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", time.Time{}, err
	}
	secret := newSecret()
	now := s.now().UTC().Truncate(time.Microsecond)
	expires := now.Add(sec.absolute())
	if state == statePending {
		expires = now.Add(pendingTTL)
	}
	client, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO sessions (tenant_id, id, user_id, hash, state, client_ct, created_at, seen_at, authed_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.tenantID, id.String(), a.ID, sha(secret), state,
		a.key.Seal("sessions", "client_ct", id.String(), client), now.UnixMicro(), now.UnixMicro(), now.UnixMicro(), expires.UnixMicro())
	return secret, expires, err
}

// session is a live session row with its account.
type session struct {
	id, tenantID, userID, state string
	seen, authed, expires       int64
	user                        User
	sec                         Security
}

var errNoSession = errs.E(errs.Unauthenticated, "not signed in, or the session has ended")

// findSession resolves a session secret, refusing ended ones: revoked,
// past the absolute limit, idle too long, or whose user or tenant is no
// longer active.
func (s *Service) findSession(ctx context.Context, secret string) (*session, error) {
	if !keyring.WellFormedSecret(secret) {
		return nil, errNoSession
	}
	q := s.db.Read()
	var ss session
	var revoked int64
	var userStatus, tenantStatus string
	var created, last int64
	err := q.QueryRow(ctx, `SELECT se.id, se.tenant_id, se.user_id, se.state, se.seen_at, se.authed_at, se.expires_at, se.revoked_at,
			u.subject_id, u.role, u.status, u.created_at, u.last_login_at, t.status
		FROM sessions se
		JOIN users u ON u.tenant_id = se.tenant_id AND u.id = se.user_id
		JOIN tenants t ON t.id = se.tenant_id
		WHERE se.hash = ?`, sha(secret)).Scan(&ss.id, &ss.tenantID, &ss.userID, &ss.state, &ss.seen, &ss.authed, &ss.expires, &revoked,
		&ss.user.SubjectID, &ss.user.Role, &userStatus, &created, &last, &tenantStatus)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("find session: %w", err)
	}
	ss.user.ID, ss.user.Status = ss.userID, userStatus
	ss.user.CreatedAt, ss.user.LastLoginAt = micros(created), optMicros(last)
	if ss.sec, err = loadSecurity(ctx, q, ss.tenantID); err != nil {
		return nil, err
	}
	now := s.now().UnixMicro()
	if revoked != 0 || now >= ss.expires || userStatus != StatusActive || tenantStatus != "active" ||
		ss.state != statePending && now-ss.seen > ss.sec.idle().Microseconds() {
		return nil, errNoSession
	}
	return &ss, nil
}

// AuthenticateSession resolves a session cookie into the principal. A
// session still waiting for its second factor is not one.
func (s *Service) AuthenticateSession(ctx context.Context, secret string) (Principal, error) {
	ss, err := s.findSession(ctx, secret)
	if err != nil {
		return Principal{}, err
	}
	if ss.state == statePending {
		return Principal{}, errs.E(errs.Unauthenticated, "the second factor is still needed: POST /api/v1/auth/mfa")
	}
	now := s.now().UnixMicro()
	if now-ss.seen > int64(time.Minute/time.Microsecond) { // coarse, to keep reads from writing
		_ = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE sessions SET seen_at = ? WHERE tenant_id = ? AND id = ?", now, ss.tenantID, ss.id)
			return err
		})
	}
	return Principal{TenantID: ss.tenantID, UserID: ss.userID, SubjectID: ss.user.SubjectID, Role: ss.user.Role,
		SessionID: ss.id, Enrolment: ss.state == stateEnrol, AuthedAt: micros(ss.authed), Recent: ss.sec.recent(),
		Scopes: RoleScopes(ss.user.Role)}, nil
}

// StepUpInput is a second-factor answer, or a re-authentication.
type StepUpInput struct {
	Session    string // the session cookie's secret
	Device     string // the device cookie's secret, if any
	Method     string // totp | sms | recovery | passkey
	Code       string // totp, sms, recovery
	Credential []byte // passkey: the PublicKeyCredential (JSON) answering the session's challenge
	Password   string // re-authentication only
	Client     Client
}

// StepUpResult is the rotated session.
type StepUpResult struct {
	Session   string
	Device    string
	ExpiresAt time.Time
	Remaining int // recovery codes left, when one was used
}

// CompleteMFA answers the second factor of a pending session. Wrong codes
// count against the same lockout budget as wrong passwords. On success the
// session secret is replaced (rotation) and the session is full.
func (s *Service) CompleteMFA(ctx context.Context, in StepUpInput) (StepUpResult, error) {
	ss, err := s.findSession(ctx, in.Session)
	if err != nil {
		return StepUpResult{}, err
	}
	if ss.state != statePending {
		return StepUpResult{}, errs.E(errs.Conflict, "this session needs no second factor")
	}
	return s.stepUp(ctx, ss, in, "auth.mfa")
}

// Reauthenticate proves again who the session's user is — the password,
// and the second factor when the user has one — for sensitive actions. The
// session secret is replaced.
func (s *Service) Reauthenticate(ctx context.Context, in StepUpInput) (StepUpResult, error) {
	ss, err := s.findSession(ctx, in.Session)
	if err != nil {
		return StepUpResult{}, err
	}
	if ss.state != stateFull {
		return StepUpResult{}, errs.E(errs.Conflict, "finish signing in first")
	}
	if in.Password == "" {
		return StepUpResult{}, errs.Field("password", "required")
	}
	return s.stepUp(ctx, ss, in, "auth.reauthenticate")
}

func (s *Service) stepUp(ctx context.Context, ss *session, in StepUpInput, action string) (StepUpResult, error) {
	if len(in.Password) > maxSecretInput || len(in.Code) > maxSecretInput {
		return StepUpResult{}, errs.E(errs.Invalid, "password or code too long")
	}
	a, err := s.account(ctx, ss.tenantID, ss.user)
	if err != nil {
		return StepUpResult{}, err
	}
	ctx = audit.WithActor(ctx, a.actor(in.Client))
	methods, err := s.methods(ctx, a.tenantID, a.ID)
	if err != nil {
		return StepUpResult{}, err
	}
	if len(methods) > 0 || action == "auth.mfa" {
		if in.Method == "" {
			return StepUpResult{}, errs.Field("method", "required: one of %v", methods)
		}
		if in.Method == MethodPasskey {
			if in.Code != "" {
				return StepUpResult{}, errs.Field("code", "not for passkeys: send the credential")
			}
		} else if in.Code == "" {
			return StepUpResult{}, errs.Field("code", "required")
		}
	}
	b, err := s.budgetFor(ctx, a, in.Device)
	if err != nil {
		return StepUpResult{}, err
	}
	var res StepUpResult
	ok, err := s.attempt(ctx, a, b, ss.sec, action, func() (bool, error) {
		if in.Password != "" {
			ok, _, err := s.hasher.Verify(ctx, in.Password, a.hash)
			if err != nil || !ok {
				return false, err
			}
		}
		if len(methods) == 0 && action != "auth.mfa" {
			return true, nil
		}
		ok, remaining, err := s.checkFactor(ctx, a, ss.id, in)
		res.Remaining = remaining
		return ok, err
	})
	if err != nil {
		return StepUpResult{}, err
	}
	if !ok {
		return StepUpResult{}, ErrLoginFailed
	}
	details := map[string]any{"method": in.Method}
	if in.Method == MethodRecovery {
		details["recovery_codes_left"] = res.Remaining
	}
	err = s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var err error
		res.Session, res.ExpiresAt, err = s.rotate(ctx, tx, ss)
		if err != nil {
			return err
		}
		res.Device, err = s.signedIn(ctx, tx, a, b, in.Device)
		return err
	}, audit.Event{Action: action, TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID, Details: details})
	return res, err
}

// rotate gives the session a new secret and makes it full and freshly
// authenticated. A pending session's absolute limit starts now.
func (s *Service) rotate(ctx context.Context, tx *sqldb.Tx, ss *session) (string, time.Time, error) {
	secret := newSecret()
	now := s.now().UTC().Truncate(time.Microsecond)
	var expires int64
	err := tx.QueryRow(ctx, `UPDATE sessions SET hash = ?, state = ?, authed_at = ?, seen_at = ?,
			expires_at = CASE WHEN state = ? THEN ? ELSE expires_at END
		WHERE tenant_id = ? AND id = ? AND state = ? AND revoked_at = 0
		RETURNING expires_at`,
		sha(secret), stateFull, now.UnixMicro(), now.UnixMicro(), statePending, now.Add(ss.sec.absolute()).UnixMicro(),
		ss.tenantID, ss.id, ss.state).Scan(&expires)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, errNoSession // revoked or rotated meanwhile
	}
	return secret, micros(expires), err
}

// Logout ends the session. Ending an ended session is not an error.
func (s *Service) Logout(ctx context.Context, secret string) error {
	ss, err := s.findSession(ctx, secret)
	if err != nil {
		return nil
	}
	return s.log.Commit(ctx, ss.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE sessions SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at = 0",
			s.now().UnixMicro(), ss.tenantID, ss.id)
		return err
	}, audit.Event{Action: "auth.logout", TargetType: "session", TargetID: ss.id, SubjectID: ss.user.SubjectID})
}

// SessionInfo is one of a user's live sessions.
type SessionInfo struct {
	ID        string    `json:"id"`
	Current   bool      `json:"current"`
	State     string    `json:"state"`
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent"`
	CreatedAt time.Time `json:"created_at"`
	SeenAt    time.Time `json:"seen_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Sessions lists the principal's live sessions, newest first.
func (s *Service) Sessions(ctx context.Context, p Principal) ([]SessionInfo, error) {
	key, err := s.subjects.Key(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return nil, err
	}
	sec, err := s.SecuritySettings(ctx, p.TenantID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	rows, err := s.db.Read().Query(ctx, `SELECT id, state, client_ct, created_at, seen_at, expires_at FROM sessions
		WHERE tenant_id = ? AND user_id = ? AND revoked_at = 0 AND expires_at > ? AND (state = ? OR seen_at > ?)
		ORDER BY id DESC`, p.TenantID, p.UserID, now.UnixMicro(), statePending, now.Add(-sec.idle()).UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []SessionInfo{}
	for rows.Next() {
		var si SessionInfo
		var ct []byte
		var created, seen, expires int64
		if err := rows.Scan(&si.ID, &si.State, &ct, &created, &seen, &expires); err != nil {
			return nil, err
		}
		var c Client
		if pt, err := key.Open("sessions", "client_ct", si.ID, ct); err != nil {
			return nil, fmt.Errorf("session %s: %w", si.ID, err)
		} else if err := json.Unmarshal(pt, &c); err != nil {
			return nil, err
		}
		si.IP, si.UserAgent = c.IP, c.UserAgent
		si.Current = si.ID == p.SessionID
		si.CreatedAt, si.SeenAt, si.ExpiresAt = micros(created), micros(seen), micros(expires)
		out = append(out, si)
	}
	return out, rows.Err()
}

// RevokeSession ends one of the principal's own sessions.
func (s *Service) RevokeSession(ctx context.Context, p Principal, id string) error {
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE sessions SET revoked_at = ? WHERE tenant_id = ? AND user_id = ? AND id = ? AND revoked_at = 0",
			s.now().UnixMicro(), p.TenantID, p.UserID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errs.E(errs.NotFound, "no such session")
		}
		return nil
	}, audit.Event{Action: "session.revoke", TargetType: "session", TargetID: id, SubjectID: p.SubjectID})
}

// PendingMethods answers the second factors the person of a session that
// waits for one can answer with; any other session is no pending one.
func (s *Service) PendingMethods(ctx context.Context, secret string) ([]string, error) {
	ss, err := s.findSession(ctx, secret)
	if err != nil {
		return nil, err
	}
	if ss.state != statePending {
		return nil, errs.E(errs.Unauthenticated, "no sign-in is waiting for a second factor")
	}
	return s.methods(ctx, ss.tenantID, ss.userID)
}

// EndAllSessions ends every live session of the tenant — after a restore,
// no session of before it works — and answers how many it ended.
func (s *Service) EndAllSessions(ctx context.Context, tenantID string) (int, error) {
	n := 0
	details := map[string]any{}
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE sessions SET revoked_at = ? WHERE tenant_id = ? AND revoked_at = 0", s.now().UnixMicro(), tenantID)
		if err != nil {
			return err
		}
		m, _ := res.RowsAffected()
		n = int(m)
		details["sessions"] = n
		return nil
	}, audit.Event{Action: "session.revoke_all", TargetType: "tenant", TargetID: tenantID, Details: details})
	return n, err
}
