package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
)

// ErrLoginFailed is the one answer to every failed sign-in: unknown tenant,
// unknown email, wrong password, suspended or locked account, wrong code.
// Callers must not tell these apart, and neither can timing.
var ErrLoginFailed = errs.E(errs.Unauthenticated, "the sign-in details are not correct")

// ActorAnonymous is an unauthenticated client (a sign-in attempt). Its IP
// and user agent are sealed under the key of the account it tried.
const ActorAnonymous = "anonymous"

// Client is where a request comes from; personal data, stored only sealed.
type Client struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
}

// LoginInput is a sign-in attempt. Device is the secret of the device
// cookie the client presented, if any.
type LoginInput struct {
	Tenant   string
	Email    string
	Password string
	Device   string
	Client   Client
}

// LoginResult is a successful password check.
type LoginResult struct {
	Session           string    // secret for the session cookie
	Device            string    // secret for the device cookie; "" until fully signed in
	MFARequired       bool      // the session is pending until POST /auth/mfa
	EnrolmentRequired bool      // the session may only set up a second factor
	Methods           []string  // second factors the user can answer with
	ExpiresAt         time.Time // when the session ends at the latest
}

// Session states.
const (
	statePending = "mfa"
	stateEnrol   = "enrol"
	stateFull    = "full"
)

// pendingTTL is how long a password-checked session waits for its second factor.
const pendingTTL = 10 * time.Minute

// maxSecretInput bounds what a client may send as a password or code: the
// policy allows 128 characters, up to 4 bytes each.
const maxSecretInput = 4 * 128

// account is what signing in needs to know about a user.
type account struct {
	User
	hash     string
	tenantID string
	email    string
	key      *keyring.DataKey
}

func (a *account) actor(c Client) audit.Actor {
	return audit.Actor{Type: ActorAnonymous, SubjectID: a.SubjectID, Display: a.email, IP: c.IP, UserAgent: c.UserAgent, Key: a.key}
}

// findAccount resolves tenant slug and email to the account, or NotFound.
func (s *Service) findAccount(ctx context.Context, slug, email string) (*account, error) {
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	if t.Status != "active" {
		return nil, errNoUser
	}
	return s.accountByEmail(ctx, t.ID, email)
}

func (s *Service) accountByEmail(ctx context.Context, tenantID, email string) (*account, error) {
	u, err := s.UserByEmail(ctx, tenantID, email)
	if err != nil {
		return nil, err
	}
	return s.account(ctx, tenantID, u)
}

func (s *Service) account(ctx context.Context, tenantID string, u User) (*account, error) {
	a := &account{User: u, tenantID: tenantID}
	if err := s.db.Read().QueryRow(ctx, "SELECT password_hash FROM users WHERE tenant_id = ? AND id = ?",
		tenantID, u.ID).Scan(&a.hash); err != nil {
		return nil, err
	}
	var err error
	a.email, a.key, err = s.subjects.Email(ctx, tenantID, u.SubjectID)
	return a, err
}

// Login checks a password. On success it starts a session: full, pending a
// second factor, or enrolment-only when the tenant demands a factor the
// user does not have yet.
func (s *Service) Login(ctx context.Context, in LoginInput) (LoginResult, error) {
	switch {
	case in.Tenant == "":
		return LoginResult{}, errs.Field("tenant", "required")
	case in.Email == "":
		return LoginResult{}, errs.Field("email", "required")
	case in.Password == "":
		return LoginResult{}, errs.Field("password", "required")
	case len(in.Password) > maxSecretInput:
		return LoginResult{}, errs.Field("password", "at most %d bytes", maxSecretInput)
	}
	a, err := s.findAccount(ctx, in.Tenant, in.Email)
	if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
		// Spend the time a real check takes, so that timing does not tell.
		if derr := s.hasher.VerifyDummy(ctx, in.Password); derr != nil {
			return LoginResult{}, derr
		}
		if t, terr := s.tenants.BySlug(ctx, in.Tenant); terr == nil {
			_ = s.log.Record(audit.WithActor(ctx, audit.Actor{Type: ActorAnonymous}), t.ID, audit.Event{
				Action: "auth.login", TargetType: "user", Outcome: audit.Failure, Details: map[string]any{"reason": "unknown account"}})
		}
		return LoginResult{}, ErrLoginFailed
	}
	if err != nil {
		return LoginResult{}, err
	}
	ctx = audit.WithActor(ctx, a.actor(in.Client))
	sec, err := s.SecuritySettings(ctx, a.tenantID)
	if err != nil {
		return LoginResult{}, err
	}
	b, err := s.budgetFor(ctx, a, in.Device)
	if err != nil {
		return LoginResult{}, err
	}
	ok, err := s.attempt(ctx, a, b, sec, "auth.login", func() (bool, error) {
		if a.hash == "" { // invited, no password yet
			return false, s.hasher.VerifyDummy(ctx, in.Password)
		}
		ok, rehash, err := s.hasher.Verify(ctx, in.Password, a.hash)
		if ok && rehash {
			s.rehash(ctx, a, in.Password)
		}
		return ok && a.Status == StatusActive, err
	})
	if err != nil {
		return LoginResult{}, err
	}
	if !ok {
		return LoginResult{}, ErrLoginFailed
	}
	methods, err := s.methods(ctx, a.tenantID, a.ID)
	if err != nil {
		return LoginResult{}, err
	}
	res := LoginResult{Methods: methods}
	state := stateFull
	switch {
	case len(methods) > 0:
		state, res.MFARequired = statePending, true
	case sec.mfaRequiredFor(a.Role):
		state, res.EnrolmentRequired = stateEnrol, true
	}
	if state == statePending {
		// The password was right: give its attempt back, keep earlier failures
		// until the second factor is right too.
		if err := s.giveBack(ctx, a.tenantID, b, sec); err != nil {
			return LoginResult{}, err
		}
	}
	err = s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var err error
		res.Session, res.ExpiresAt, err = s.startSession(ctx, tx, a, state, sec, in.Client)
		if err != nil || state == statePending {
			return err
		}
		res.Device, err = s.signedIn(ctx, tx, a, b, in.Device)
		return err
	}, audit.Event{Action: "auth.login", TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID,
		Details: map[string]any{"state": state, "known_device": b.table == "devices"}})
	return res, err
}

// rehash stores a fresh hash of a correct password whose hash was made with
// weaker parameters. Failing to is not the user's problem: it is retried at
// the next sign-in.
func (s *Service) rehash(ctx context.Context, a *account, pw string) {
	h, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return
	}
	_ = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE users SET password_hash = ? WHERE tenant_id = ? AND id = ? AND password_hash = ?",
			h, a.tenantID, a.ID, a.hash)
		return err
	})
}

// budget is a lockout counter: the account's own, spent by clients that
// are not a known device of it, or one known device's.
type budget struct {
	table string // users or devices
	id    string
}

// budgetFor picks the counter an attempt spends from: the device's when the
// client presents the cookie of a device that signed in to this account
// before, the account's otherwise.
func (s *Service) budgetFor(ctx context.Context, a *account, device string) (budget, error) {
	if device != "" && len(device) <= 64 {
		var id string
		err := s.db.Read().QueryRow(ctx, "SELECT id FROM devices WHERE tenant_id = ? AND user_id = ? AND hash = ?",
			a.tenantID, a.ID, sha(device)).Scan(&id)
		if err == nil {
			return budget{"devices", id}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return budget{}, err
		}
	}
	return budget{"users", a.ID}, nil
}

// attempt spends one attempt from b and runs check unless b is locked. The
// attempt that reaches the threshold locks b; a correct one then unlocks
// it again. A locked attempt runs no check: it waits as long as a check
// takes and fails like a wrong one. Every attempt is audited.
func (s *Service) attempt(ctx context.Context, a *account, b budget, sec Security, action string, check func() (bool, error)) (bool, error) {
	count, err := s.reserve(ctx, a.tenantID, b, sec)
	if err != nil {
		return false, err
	}
	if count == 0 {
		s.hasher.Pause(ctx)
		err := s.log.Record(ctx, a.tenantID, audit.Event{Action: action, TargetType: "user", TargetID: a.ID,
			SubjectID: a.SubjectID, Outcome: audit.Denied, Details: map[string]any{"reason": "locked", "budget": b.table}})
		return false, err
	}
	ok, err := check()
	if err != nil {
		_ = s.giveBack(context.WithoutCancel(ctx), a.tenantID, b, sec)
		return false, err
	}
	if ok {
		return true, nil
	}
	events := []audit.Event{{Action: action, TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID,
		Outcome: audit.Failure, Details: map[string]any{"reason": "wrong secret", "failures": count, "budget": b.table}}}
	var notify func(ctx context.Context, tx *sqldb.Tx) error
	if count == sec.LockoutThreshold {
		events = append(events, audit.Event{Action: "user.lock", TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID,
			Details: map[string]any{"budget": b.table, "minutes": sec.LockoutMinutes}})
		m, err := s.lockedMail(ctx, a, b, sec)
		if err != nil {
			return false, err
		}
		notify = func(ctx context.Context, tx *sqldb.Tx) error { return s.mail.Queue(ctx, tx, a.key, m) }
	}
	return false, s.log.Commit(ctx, a.tenantID, notify, events...)
}

func (s *Service) lockedMail(ctx context.Context, a *account, b budget, sec Security) (mail.Message, error) {
	t, err := s.tenants.ByID(ctx, a.tenantID)
	if err != nil {
		return mail.Message{}, err
	}
	where := "from browsers and devices this account has not signed in from before"
	if b.table == "devices" {
		where = "on one browser this account had signed in from before"
	}
	return mail.Message{TenantID: a.tenantID, SubjectID: a.SubjectID, Kind: "account-locked", To: a.email,
		Subject: "Your " + t.Name + " account was locked",
		Text: fmt.Sprintf(`Hello,

After %d failed sign-in attempts, signing in to your %s account with this
email address is blocked for %d minutes %s.

Browsers you have signed in from successfully before are not affected: you
can keep using them.

If these attempts were not yours, someone may know or be guessing your
password. Change it once you are signed in, and set up a second factor if
you have none. An administrator of %s can lift the lock.

— Custodia
`, sec.LockoutThreshold, t.Name, sec.LockoutMinutes, where, t.Name)}, nil
}

// reserve spends one attempt from b in a single conditional UPDATE and
// returns the failures counted so far including this one, or 0 when b is
// locked (and nothing was spent). A lock that has expired starts the count
// afresh.
func (s *Service) reserve(ctx context.Context, tenantID string, b budget, sec Security) (int, error) {
	now := s.now().UnixMicro()
	var count int
	err := s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		return tx.QueryRow(ctx, `UPDATE `+b.table+` SET
				failed_logins = CASE WHEN locked_until <> 0 THEN 1 ELSE failed_logins + 1 END,
				locked_until = CASE WHEN (CASE WHEN locked_until <> 0 THEN 1 ELSE failed_logins + 1 END) >= ? THEN CAST(? AS BIGINT) ELSE 0 END
			WHERE tenant_id = ? AND id = ? AND locked_until <= ?
			RETURNING failed_logins`,
			sec.LockoutThreshold, now+sec.lockout().Microseconds(), tenantID, b.id, now).Scan(&count)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("count sign-in attempt: %w", err)
	}
	return count, nil
}

// giveBack returns a reserved attempt that was not a failure.
func (s *Service) giveBack(ctx context.Context, tenantID string, b budget, sec Security) error {
	return s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE `+b.table+` SET failed_logins = failed_logins - 1,
				locked_until = CASE WHEN failed_logins - 1 < ? THEN 0 ELSE locked_until END
			WHERE tenant_id = ? AND id = ? AND failed_logins > 0`, sec.LockoutThreshold, tenantID, b.id)
		return err
	})
}

// signedIn records a complete sign-in: the budget that was spent is reset,
// last_login_at set, and the client becomes (or stays) a known device of
// the account. It returns the device secret for the cookie. Signing in on
// a known device leaves the account's own counter alone, so that a victim
// signing in does not hand an attacker a fresh budget.
func (s *Service) signedIn(ctx context.Context, tx *sqldb.Tx, a *account, b budget, device string) (string, error) {
	now := s.now().UnixMicro()
	if _, err := tx.Exec(ctx, `UPDATE `+b.table+` SET failed_logins = 0, locked_until = 0 WHERE tenant_id = ? AND id = ?`,
		a.tenantID, b.id); err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, "UPDATE users SET last_login_at = ? WHERE tenant_id = ? AND id = ?", now, a.tenantID, a.ID); err != nil {
		return "", err
	}
	if b.table == "devices" {
		_, err := tx.Exec(ctx, "UPDATE devices SET last_used_at = ? WHERE tenant_id = ? AND id = ?", now, a.tenantID, b.id)
		return device, err
	}
	if !keyring.WellFormedSecret(device) {
		device = newSecret()
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	_, err = tx.Exec(ctx, `INSERT INTO devices (tenant_id, id, user_id, hash, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, user_id, hash) DO UPDATE SET last_used_at = excluded.last_used_at`,
		a.tenantID, id.String(), a.ID, sha(device), now, now)
	return device, err
}

// Unlock clears the account's lock and failure count (an admin's action).
// Known devices keep their own counters.
func (s *Service) Unlock(ctx context.Context, tenantID, userID string) error {
	u, err := s.UserByID(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE users SET failed_logins = 0, locked_until = 0 WHERE tenant_id = ? AND id = ?", tenantID, userID)
		return err
	}, audit.Event{Action: "user.unlock", TargetType: "user", TargetID: userID, SubjectID: u.SubjectID})
}

// Lockout is an account's failure counter.
type Lockout struct {
	Failures    int        `json:"failures"`
	LockedUntil *time.Time `json:"locked_until"`
}

// LockoutOf returns the account's own counter (not its devices').
func (s *Service) LockoutOf(ctx context.Context, tenantID, userID string) (Lockout, error) {
	var l Lockout
	var until int64
	err := s.db.Read().QueryRow(ctx, "SELECT failed_logins, locked_until FROM users WHERE tenant_id = ? AND id = ?",
		tenantID, userID).Scan(&l.Failures, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return l, errNoUser
	}
	if until > s.now().UnixMicro() {
		l.LockedUntil = optMicros(until)
	}
	return l, err
}

// ChangePassword sets a new password for the principal's own account. The
// current password must be given, and the session must have proved itself
// recently (which includes the second factor when the user has one).
// Other sessions of the user end; the lock, if any, stays.
func (s *Service) ChangePassword(ctx context.Context, p Principal, current, next string) error {
	if current == "" {
		return errs.Field("current_password", "required")
	}
	if len(current) > maxSecretInput {
		return errs.Field("current_password", "at most %d bytes", maxSecretInput)
	}
	u, err := s.UserByID(ctx, p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	a, err := s.account(ctx, p.TenantID, u)
	if err != nil {
		return err
	}
	hash, err := s.checkAndHash(ctx, p.TenantID, a.email, next)
	if err != nil {
		return err
	}
	sec, err := s.SecuritySettings(ctx, p.TenantID)
	if err != nil {
		return err
	}
	// A wrong current password spends from the account's lockout budget, so
	// that a stolen session cannot guess the password without limit.
	ok, err := s.attempt(ctx, a, budget{"users", a.ID}, sec, "user.password.change", func() (bool, error) {
		ok, _, err := s.hasher.Verify(ctx, current, a.hash)
		return ok, err
	})
	if err != nil {
		return err
	}
	if !ok {
		return errs.Field("current_password", "is not correct")
	}
	// Right: the attempt was no failure (earlier failures stay counted).
	if err := s.giveBack(ctx, p.TenantID, budget{"users", a.ID}, sec); err != nil {
		return err
	}
	m, err := s.passwordChangedMail(ctx, a)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		now := s.now().UnixMicro()
		if err := setPassword(ctx, tx, a, hash, now); err != nil {
			return err
		}
		if err := revokeSessions(ctx, tx, p.TenantID, u.ID, p.SessionID, now); err != nil {
			return err
		}
		return s.mail.Queue(ctx, tx, a.key, m)
	}, audit.Event{Action: "user.password.change", TargetType: "user", TargetID: u.ID, SubjectID: u.SubjectID})
}
