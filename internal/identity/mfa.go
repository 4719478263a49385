package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
)

// Second-factor methods.
const (
	MethodTOTP     = "totp"
	MethodRecovery = "recovery"
	MethodSMS      = "sms"
	MethodPasskey  = "passkey"
)

// totpPeriod and totpSkew: a code is valid for its 30-second step and one
// step either side (clock drift), and only once.
const (
	totpPeriod = 30
	totpSkew   = 1
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// Factor is a second factor of a user (never its secret).
type Factor struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	Name        string     `json:"name,omitempty"` // passkeys: the name the user gave it
	Confirmed   bool       `json:"confirmed"`
	CreatedAt   time.Time  `json:"created_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
}

// Factors lists the user's second factors.
func (s *Service) Factors(ctx context.Context, tenantID, userID string) ([]Factor, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT f.id, f.kind, f.label_ct, f.created_at, f.confirmed_at, u.subject_id FROM mfa_factors f
		JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
		WHERE f.tenant_id = ? AND f.user_id = ? ORDER BY f.id`, tenantID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Factor{}
	labels := map[int][]byte{}
	var subjectID string
	for rows.Next() {
		var f Factor
		var label []byte
		var created, confirmed int64
		if err := rows.Scan(&f.ID, &f.Kind, &label, &created, &confirmed, &subjectID); err != nil {
			return nil, err
		}
		f.CreatedAt, f.ConfirmedAt, f.Confirmed = micros(created), optMicros(confirmed), confirmed != 0
		if label != nil {
			labels[len(out)] = label
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil || len(labels) == 0 {
		return out, err
	}
	key, err := s.subjects.Key(ctx, tenantID, subjectID)
	if err != nil {
		return nil, err
	}
	for i, ct := range labels {
		name, err := key.Open("mfa_factors", "label_ct", out[i].ID, ct)
		if err != nil {
			return nil, err
		}
		out[i].Name = string(name)
	}
	return out, nil
}

// methods are the second factors the user can answer with now: the kinds
// of confirmed factors, and recovery when unused codes are left.
// Methods answers the second factors the user can answer with (none: the
// password alone signs them in).
func (s *Service) Methods(ctx context.Context, tenantID, userID string) ([]string, error) {
	return s.methods(ctx, tenantID, userID)
}

func (s *Service) methods(ctx context.Context, tenantID, userID string) ([]string, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT DISTINCT kind FROM mfa_factors WHERE tenant_id = ? AND user_id = ? AND confirmed_at <> 0
		UNION SELECT ? FROM recovery_codes WHERE tenant_id = ? AND user_id = ? AND used_at = 0`,
		tenantID, userID, MethodRecovery, tenantID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	slices.Sort(out)
	if len(out) == 1 && out[0] == MethodRecovery {
		return nil, rows.Err() // codes alone are no factor: they back one up
	}
	return out, rows.Err()
}

// TOTPEnrolment is what an authenticator app needs. Shown once.
type TOTPEnrolment struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`      // base32, for typing in
	URL    string `json:"otpauth_url"` // for the QR code
	QRCode string `json:"qr_code"`     // data:image/png;base64,…
}

// EnrolTOTP starts setting up an authenticator app. The factor counts only
// once ConfirmTOTP has seen a first code; an unconfirmed one is replaced.
func (s *Service) EnrolTOTP(ctx context.Context, p Principal) (TOTPEnrolment, error) {
	factors, err := s.Factors(ctx, p.TenantID, p.UserID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	for _, f := range factors {
		if f.Kind == MethodTOTP && f.Confirmed {
			return TOTPEnrolment{}, errs.E(errs.Conflict, "an authenticator app is already set up; remove it first")
		}
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	email, key, err := s.subjects.Email(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	k, err := totp.Generate(totp.GenerateOpts{Issuer: "Custodia " + t.Name, AccountName: email, SecretSize: 20,
		Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return TOTPEnrolment{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return TOTPEnrolment{}, err
	}
	e, err := totpEnrolment(id.String(), k)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM mfa_factors WHERE tenant_id = ? AND user_id = ? AND kind = ? AND confirmed_at = 0",
			p.TenantID, p.UserID, MethodTOTP); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO mfa_factors (tenant_id, id, user_id, kind, secret_ct, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			p.TenantID, e.ID, p.UserID, MethodTOTP, key.Seal("mfa_factors", "secret_ct", e.ID, []byte(k.Secret())), s.now().UnixMicro())
		return err
	}, audit.Event{Action: "mfa.enrol", TargetType: "factor", TargetID: e.ID, SubjectID: p.SubjectID,
		Details: map[string]any{"kind": MethodTOTP}})
	return e, err
}

// totpEnrolment is what an authenticator app needs of the factor id with key k.
func totpEnrolment(id string, k *otp.Key) (TOTPEnrolment, error) {
	img, err := k.Image(256, 256)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return TOTPEnrolment{}, err
	}
	return TOTPEnrolment{ID: id, Secret: k.Secret(), URL: k.URL(),
		QRCode: "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())}, nil
}

// PendingTOTP answers the authenticator app EnrolTOTP started and nobody
// confirmed yet, for showing again until its first code is typed in.
func (s *Service) PendingTOTP(ctx context.Context, p Principal) (TOTPEnrolment, error) {
	id, secret, err := s.pendingTOTP(ctx, p)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	email, _, err := s.subjects.Email(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	issuer := "Custodia " + t.Name
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + email, RawQuery: url.Values{
		"secret": {secret}, "issuer": {issuer}, "period": {strconv.Itoa(totpPeriod)}, "digits": {"6"}, "algorithm": {"SHA1"},
	}.Encode()}
	k, err := otp.NewKeyFromURL(u.String())
	if err != nil {
		return TOTPEnrolment{}, err
	}
	return totpEnrolment(id, k)
}

// pendingTOTP answers the id and secret of p's unconfirmed authenticator app.
func (s *Service) pendingTOTP(ctx context.Context, p Principal) (id, secret string, err error) {
	var ct []byte
	err = s.db.Read().QueryRow(ctx, `SELECT id, secret_ct FROM mfa_factors WHERE tenant_id = ? AND user_id = ? AND kind = ? AND confirmed_at = 0`,
		p.TenantID, p.UserID, MethodTOTP).Scan(&id, &ct)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", errs.E(errs.Conflict, "no authenticator app is waiting for confirmation: POST /api/v1/me/mfa/totp first")
	}
	if err != nil {
		return "", "", err
	}
	key, err := s.subjects.Key(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return "", "", err
	}
	raw, err := key.Open("mfa_factors", "secret_ct", id, ct)
	return id, string(raw), err
}

// Confirmation is the result of confirming a factor.
type Confirmation struct {
	RecoveryCodes []string  // the first factor's codes, shown once
	Session       string    // a new secret when an enrolment-only session became full
	ExpiresAt     time.Time // of that session
}

// ConfirmTOTP checks the first code of the pending authenticator app and
// makes it count (see confirmFactor).
func (s *Service) ConfirmTOTP(ctx context.Context, p Principal, code string) (Confirmation, error) {
	if code == "" {
		return Confirmation{}, errs.Field("code", "required")
	}
	id, secret, err := s.pendingTOTP(ctx, p)
	if err != nil {
		return Confirmation{}, err
	}
	step, ok := s.matchTOTP(secret, code, 0)
	if !ok {
		_ = s.log.Record(ctx, p.TenantID, audit.Event{Action: "mfa.confirm", TargetType: "factor", TargetID: id,
			SubjectID: p.SubjectID, Outcome: audit.Failure})
		return Confirmation{}, errs.Field("code", "is not the current code of the authenticator app")
	}
	return s.confirmFactor(ctx, p, id, MethodTOTP, s.confirmPending(ctx, p.TenantID, id, step))
}

// confirmPending makes a pending factor row count (for TOTP, with the step
// its first code used); of two concurrent confirmations one wins.
func (s *Service) confirmPending(ctx context.Context, tenantID, id string, step int64) func(ctx context.Context, tx *sqldb.Tx) error {
	return func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE mfa_factors SET confirmed_at = ?, last_step = ? WHERE tenant_id = ? AND id = ? AND confirmed_at = 0",
			s.now().UnixMicro(), step, tenantID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errs.E(errs.Conflict, "this factor was confirmed or replaced meanwhile")
		}
		return nil
	}
}

// confirmFactor makes factor id count: activate writes it as confirmed,
// in the transaction that also issues the user's first 10 recovery codes
// (with their first factor) and turns an enrolment-only session into a
// full one (with a new secret).
func (s *Service) confirmFactor(ctx context.Context, p Principal, id, kind string, activate func(ctx context.Context, tx *sqldb.Tx) error) (Confirmation, error) {
	methods, err := s.methods(ctx, p.TenantID, p.UserID)
	if err != nil {
		return Confirmation{}, err
	}
	var c Confirmation
	if !slices.Contains(methods, MethodRecovery) {
		c.RecoveryCodes = newRecoveryCodes()
	}
	sec, err := s.SecuritySettings(ctx, p.TenantID)
	if err != nil {
		return Confirmation{}, err
	}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		err := activate(ctx, tx)
		if err != nil {
			return err
		}
		if err := s.storeRecoveryCodes(ctx, tx, p, c.RecoveryCodes); err != nil {
			return err
		}
		if p.Enrolment {
			c.Session, c.ExpiresAt, err = s.rotate(ctx, tx, &session{id: p.SessionID, tenantID: p.TenantID, state: stateEnrol, sec: sec})
		}
		return err
	}, audit.Event{Action: "mfa.confirm", TargetType: "factor", TargetID: id, SubjectID: p.SubjectID,
		Details: map[string]any{"kind": kind, "recovery_codes_issued": len(c.RecoveryCodes)}})
	return c, err
}

// RemoveFactor deletes one of the principal's second factors. The last one
// cannot go while the tenant requires a factor of this user; with the last
// one go the recovery codes.
func (s *Service) RemoveFactor(ctx context.Context, p Principal, id string) error {
	sec, err := s.SecuritySettings(ctx, p.TenantID)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var confirmed int64
		err := tx.QueryRow(ctx, "SELECT confirmed_at FROM mfa_factors WHERE tenant_id = ? AND user_id = ? AND id = ?",
			p.TenantID, p.UserID, id).Scan(&confirmed)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "no such factor")
		}
		if err != nil {
			return err
		}
		var others int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM mfa_factors WHERE tenant_id = ? AND user_id = ? AND id <> ? AND confirmed_at <> 0",
			p.TenantID, p.UserID, id).Scan(&others); err != nil {
			return err
		}
		if confirmed != 0 && others == 0 && sec.mfaRequiredFor(p.Role) {
			return errs.E(errs.Conflict, "your organisation requires a second factor: add another before removing this one")
		}
		if _, err := tx.Exec(ctx, "DELETE FROM mfa_factors WHERE tenant_id = ? AND id = ?", p.TenantID, id); err != nil {
			return err
		}
		if others == 0 {
			_, err = tx.Exec(ctx, "DELETE FROM recovery_codes WHERE tenant_id = ? AND user_id = ?", p.TenantID, p.UserID)
		}
		return err
	}, audit.Event{Action: "mfa.remove", TargetType: "factor", TargetID: id, SubjectID: p.SubjectID})
}

// matchTOTP finds the time step whose code is code, later than after.
func (s *Service) matchTOTP(secret, code string, after int64) (int64, bool) {
	code = strings.TrimSpace(code)
	now := s.now().Unix() / totpPeriod
	for step := now - totpSkew; step <= now+totpSkew; step++ {
		if step <= after {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totpOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return step, true
		}
	}
	return 0, false
}

// checkFactor verifies a second-factor answer of session sessionID and
// uses it up: a TOTP step is accepted once (a conditional UPDATE, so also
// under concurrency), an SMS or recovery code once, a passkey challenge
// once. remaining is the recovery codes left after one is used.
func (s *Service) checkFactor(ctx context.Context, a *account, sessionID string, in StepUpInput) (ok bool, remaining int, err error) {
	switch in.Method {
	case MethodTOTP:
		return s.useTOTP(ctx, a, in.Code)
	case MethodRecovery:
		return s.useRecoveryCode(ctx, a, in.Code)
	case MethodSMS:
		ok, err := s.useSMSCode(ctx, a.tenantID, a.ID, in.Code, true)
		return ok, 0, err
	case MethodPasskey:
		ok, err := s.usePasskey(ctx, a, sessionID, in.Credential)
		return ok, 0, err
	default:
		return false, 0, nil
	}
}

func (s *Service) useTOTP(ctx context.Context, a *account, code string) (bool, int, error) {
	var id string
	var ct []byte
	var last int64
	err := s.db.Read().QueryRow(ctx, `SELECT id, secret_ct, last_step FROM mfa_factors
		WHERE tenant_id = ? AND user_id = ? AND kind = ? AND confirmed_at <> 0`, a.tenantID, a.ID, MethodTOTP).Scan(&id, &ct, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	secret, err := a.key.Open("mfa_factors", "secret_ct", id, ct)
	if err != nil {
		return false, 0, err
	}
	step, ok := s.matchTOTP(string(secret), code, last)
	if !ok {
		return false, 0, nil
	}
	var used bool
	err = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE mfa_factors SET last_step = ? WHERE tenant_id = ? AND id = ? AND last_step < ?",
			step, a.tenantID, id, step)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		used = n == 1
		return err
	})
	return used, 0, err
}

// Recovery codes: 10 of 120 bits each, written as six groups of four
// base32 characters.
const recoveryCodes = 10

var recoveryEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newRecoveryCodes() []string {
	out := make([]string, recoveryCodes)
	for i := range out {
		b := make([]byte, 15)
		if _, err := rand.Read(b); err != nil {
			panic(err)
		}
		c := strings.ToLower(recoveryEncoding.EncodeToString(b))
		out[i] = strings.Join([]string{c[0:4], c[4:8], c[8:12], c[12:16], c[16:20], c[20:24]}, "-")
	}
	return out
}

// normalizeRecoveryCode accepts a code in any case, with or without dashes
// and spaces.
func normalizeRecoveryCode(c string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToLower(c))
}

func (s *Service) recoveryHash(ctx context.Context, q sqldb.Q, tenantID, userID, code string) ([]byte, error) {
	return s.keys.MAC(ctx, q, tenantID, "recovery-code", userID, normalizeRecoveryCode(code))
}

// storeRecoveryCodes replaces the user's codes with codes (when any).
func (s *Service) storeRecoveryCodes(ctx context.Context, tx *sqldb.Tx, p Principal, codes []string) error {
	if len(codes) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, "DELETE FROM recovery_codes WHERE tenant_id = ? AND user_id = ?", p.TenantID, p.UserID); err != nil {
		return err
	}
	now := s.now().UnixMicro()
	for _, c := range codes {
		h, err := s.recoveryHash(ctx, tx.Q, p.TenantID, p.UserID, c)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO recovery_codes (tenant_id, user_id, hash, created_at) VALUES (?, ?, ?, ?)",
			p.TenantID, p.UserID, h, now); err != nil {
			return err
		}
	}
	return nil
}

// RegenerateRecoveryCodes replaces the principal's recovery codes with 10
// new ones, shown once. It needs a confirmed factor.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, p Principal) ([]string, error) {
	methods, err := s.methods(ctx, p.TenantID, p.UserID)
	if err != nil {
		return nil, err
	}
	if len(methods) == 0 {
		return nil, errs.E(errs.Conflict, "set up a second factor first")
	}
	codes := newRecoveryCodes()
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		return s.storeRecoveryCodes(ctx, tx, p, codes)
	}, audit.Event{Action: "mfa.recovery_codes.regenerate", TargetType: "user", TargetID: p.UserID, SubjectID: p.SubjectID})
	return codes, err
}

// useRecoveryCode spends a recovery code: one conditional UPDATE, so two
// concurrent uses of the same code cannot both succeed.
func (s *Service) useRecoveryCode(ctx context.Context, a *account, code string) (bool, int, error) {
	if len(normalizeRecoveryCode(code)) != 24 {
		return false, 0, nil
	}
	var used bool
	var left int
	err := s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		h, err := s.recoveryHash(ctx, tx.Q, a.tenantID, a.ID, code)
		if err != nil {
			return err
		}
		res, err := tx.Exec(ctx, "UPDATE recovery_codes SET used_at = ? WHERE tenant_id = ? AND user_id = ? AND hash = ? AND used_at = 0",
			s.now().UnixMicro(), a.tenantID, a.ID, h)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		used = n == 1
		return tx.QueryRow(ctx, "SELECT count(*) FROM recovery_codes WHERE tenant_id = ? AND user_id = ? AND used_at = 0",
			a.tenantID, a.ID).Scan(&left)
	})
	if err != nil {
		return false, 0, fmt.Errorf("use recovery code: %w", err)
	}
	return used, left, nil
}

// ResetFactors removes every second factor and recovery code of the
// account id, on behalf of p — for a person who lost them all. Only a
// person who signed in recently does it (never an API token), never on an
// account that ranks above them (an admin never on an owner), never on
// their own (they remove their factors themselves). Every session of the
// account ends, so that its next sign-in asks for a new factor when the
// organisation requires one; the person is told by mail.
func (s *Service) ResetFactors(ctx context.Context, p Principal, id string) error {
	if p.TokenID != "" {
		return errs.E(errs.Forbidden, "second factors are reset by a person who signed in recently; API tokens cannot do it")
	}
	u, err := s.UserByID(ctx, p.TenantID, id)
	if err != nil {
		return err
	}
	if u.ID == p.UserID {
		return errs.E(errs.Conflict, "remove your own second factors yourself, on your account's page")
	}
	if rank(u.Role) > rank(p.Role) {
		return errs.E(errs.Forbidden, "a %s cannot reset the second factors of an %s", p.Role, u.Role)
	}
	a, err := s.account(ctx, p.TenantID, u)
	if err != nil {
		return err
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return err
	}
	methods, err := s.methods(ctx, p.TenantID, id)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		for _, q := range []string{"DELETE FROM mfa_factors WHERE tenant_id = ? AND user_id = ?",
			"DELETE FROM recovery_codes WHERE tenant_id = ? AND user_id = ?",
			"DELETE FROM sms_codes WHERE tenant_id = ? AND user_id = ?"} {
			if _, err := tx.Exec(ctx, q, p.TenantID, id); err != nil {
				return err
			}
		}
		if err := revokeSessions(ctx, tx, p.TenantID, id, "", s.now().UnixMicro()); err != nil {
			return err
		}
		return s.mail.Queue(ctx, tx, a.key, mail.Message{TenantID: p.TenantID, SubjectID: u.SubjectID, Kind: "mfa-reset", To: a.email,
			Subject: "Your second factors for " + t.Name + " were reset",
			Text: fmt.Sprintf(`Hello,

An administrator of %s removed every second factor of your account —
authenticator apps, passkeys, text messages and recovery codes — and
signed you out everywhere. Sign in with your password as usual; you may
be asked to set up a new second factor.

If you did not ask for this, tell the administrators of %s now.

— Custodia
`, t.Name, t.Name)})
	}, audit.Event{Action: "user.mfa.reset", TargetType: "user", TargetID: id, SubjectID: u.SubjectID,
		Details: map[string]any{"methods": methods}})
}
