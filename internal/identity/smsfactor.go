package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// SMS codes: 6 digits, valid 5 minutes, 5 tries each, at most one a minute
// and five an hour per user. A wrong code at sign-in also spends the
// lockout budget, like a wrong TOTP code.
const (
	smsTTL       = 5 * time.Minute
	smsTries     = 5
	smsGap       = time.Minute
	smsPerHour   = 5
	smsCodeRange = 1000000
)

// SMSEnrolment is a pending SMS factor.
type SMSEnrolment struct {
	ID    string `json:"id"`
	Phone string `json:"phone"` // masked: the last two digits
}

// smsAvailable refuses when the operator has no SMS provider or the tenant
// has not opted in.
func (s *Service) smsAvailable(ctx context.Context, tenantID string) error {
	if s.sms == nil {
		return errs.E(errs.Conflict, "SMS codes are not available: the operator has configured no SMS provider")
	}
	sec, err := s.SecuritySettings(ctx, tenantID)
	if err != nil {
		return err
	}
	if !sec.SMSEnabled {
		return errs.E(errs.Conflict, "your organisation has not enabled SMS codes (settings: sms_enabled)")
	}
	return nil
}

// EnrolSMS starts setting up SMS codes to phone: the number is stored
// sealed and a first code is sent, which ConfirmSMS checks. An unconfirmed
// SMS factor is replaced.
func (s *Service) EnrolSMS(ctx context.Context, p Principal, phone string) (SMSEnrolment, error) {
	if err := s.smsAvailable(ctx, p.TenantID); err != nil {
		return SMSEnrolment{}, err
	}
	phone, err := subject.NormalizePhone(phone)
	if err != nil {
		return SMSEnrolment{}, err
	}
	if phone == "" {
		return SMSEnrolment{}, errs.Field("phone", "required")
	}
	factors, err := s.Factors(ctx, p.TenantID, p.UserID)
	if err != nil {
		return SMSEnrolment{}, err
	}
	for _, f := range factors {
		if f.Kind == MethodSMS && f.Confirmed {
			return SMSEnrolment{}, errs.E(errs.Conflict, "SMS codes are already set up; remove them first")
		}
	}
	key, err := s.subjects.Key(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return SMSEnrolment{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return SMSEnrolment{}, err
	}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM mfa_factors WHERE tenant_id = ? AND user_id = ? AND kind = ? AND confirmed_at = 0",
			p.TenantID, p.UserID, MethodSMS); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO mfa_factors (tenant_id, id, user_id, kind, secret_ct, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			p.TenantID, id.String(), p.UserID, MethodSMS, key.Seal("mfa_factors", "secret_ct", id.String(), []byte(phone)), s.now().UnixMicro())
		return err
	}, audit.Event{Action: "mfa.enrol", TargetType: "factor", TargetID: id.String(), SubjectID: p.SubjectID,
		Details: map[string]any{"kind": MethodSMS}})
	if err != nil {
		return SMSEnrolment{}, err
	}
	if err := s.sendSMSCode(ctx, p.TenantID, p.UserID, p.SubjectID, false); err != nil {
		return SMSEnrolment{}, err
	}
	return SMSEnrolment{ID: id.String(), Phone: "…" + phone[len(phone)-2:]}, nil
}

// ConfirmSMS checks the code sent to the pending SMS factor and makes the
// factor count (see confirmFactor).
func (s *Service) ConfirmSMS(ctx context.Context, p Principal, code string) (Confirmation, error) {
	if code == "" {
		return Confirmation{}, errs.Field("code", "required")
	}
	f, err := s.smsFactor(ctx, p.TenantID, p.UserID, false)
	if err != nil {
		return Confirmation{}, err
	}
	ok, err := s.useSMSCode(ctx, p.TenantID, p.UserID, code, false)
	if err != nil {
		return Confirmation{}, err
	}
	if !ok {
		_ = s.log.Record(ctx, p.TenantID, audit.Event{Action: "mfa.confirm", TargetType: "factor", TargetID: f.id,
			SubjectID: p.SubjectID, Outcome: audit.Failure})
		return Confirmation{}, errs.Field("code", "is not the code we sent, or it has expired")
	}
	return s.confirmFactor(ctx, p, f.id, MethodSMS, s.confirmPending(ctx, p.TenantID, f.id, 0))
}

// SendSignInCode sends an SMS code to the user of a session that is
// waiting for its second factor, or that wants to re-authenticate.
func (s *Service) SendSignInCode(ctx context.Context, sessionSecret string) error {
	ss, err := s.findSession(ctx, sessionSecret)
	if err != nil {
		return err
	}
	if err := s.smsAvailable(ctx, ss.tenantID); err != nil {
		return err
	}
	return s.sendSMSCode(ctx, ss.tenantID, ss.userID, ss.user.SubjectID, true)
}

type smsFactorRow struct{ id, phone string }

// smsFactor returns the user's confirmed (or pending) SMS factor.
func (s *Service) smsFactor(ctx context.Context, tenantID, userID string, confirmed bool) (smsFactorRow, error) {
	cond := "confirmed_at = 0"
	if confirmed {
		cond = "confirmed_at <> 0"
	}
	var f smsFactorRow
	var subjectID string
	var ct []byte
	err := s.db.Read().QueryRow(ctx, `SELECT f.id, f.secret_ct, u.subject_id FROM mfa_factors f
		JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
		WHERE f.tenant_id = ? AND f.user_id = ? AND f.kind = ? AND f.`+cond, tenantID, userID, MethodSMS).Scan(&f.id, &ct, &subjectID)
	if errors.Is(err, sql.ErrNoRows) {
		if confirmed {
			return f, errs.E(errs.Conflict, "this account has no SMS factor")
		}
		return f, errs.E(errs.Conflict, "no SMS factor is waiting for confirmation: POST /api/v1/me/mfa/sms first")
	}
	if err != nil {
		return f, err
	}
	key, err := s.subjects.Key(ctx, tenantID, subjectID)
	if err != nil {
		return f, err
	}
	pt, err := key.Open("mfa_factors", "secret_ct", f.id, ct)
	f.phone = string(pt)
	return f, err
}

// sendSMSCode makes a new code for the user's SMS factor (ending earlier
// ones) and sends it, within the sending limits.
func (s *Service) sendSMSCode(ctx context.Context, tenantID, userID, subjectID string, confirmed bool) error {
	f, err := s.smsFactor(ctx, tenantID, userID, confirmed)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	var last int64
	var recent int
	if err := s.db.Read().QueryRow(ctx, `SELECT COALESCE(max(created_at), 0), count(*) FROM sms_codes
		WHERE tenant_id = ? AND user_id = ? AND created_at > ?`, tenantID, userID, now.Add(-time.Hour).UnixMicro()).Scan(&last, &recent); err != nil {
		return err
	}
	if recent >= smsPerHour || last > now.Add(-smsGap).UnixMicro() {
		return errs.E(errs.TooManyRequests, "an SMS code was sent moments ago, or five this hour: use it, or wait")
	}
	n, err := rand.Int(rand.Reader, big.NewInt(smsCodeRange))
	if err != nil {
		return err
	}
	code := fmt.Sprintf("%06d", n.Int64())
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	mac, err := s.keys.MAC(ctx, s.db.Read(), tenantID, "sms-code", id.String(), code)
	if err != nil {
		return err
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE sms_codes SET expires_at = ? WHERE tenant_id = ? AND factor_id = ? AND used_at = 0 AND expires_at > ?",
			now.UnixMicro(), tenantID, f.id, now.UnixMicro()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sms_codes (tenant_id, id, user_id, factor_id, code_mac, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			tenantID, id.String(), userID, f.id, mac, now.UnixMicro(), now.Add(smsTTL).UnixMicro())
		return err
	}, audit.Event{Action: "mfa.sms.send", TargetType: "factor", TargetID: f.id, SubjectID: subjectID})
	if err != nil {
		return err
	}
	if err := s.sms.Send(ctx, sms.Message{To: f.phone, Text: fmt.Sprintf("%s is your %s sign-in code. It works for 5 minutes. Never share it.", code, t.Name)}); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the SMS could not be sent; try again later or use another factor")
	}
	return nil
}

// useSMSCode checks code against the newest live code of the user's SMS
// factor (confirmed or pending). Each check spends one of the code's tries
// first, in a conditional UPDATE; a right code is used up by another, so
// of two concurrent uses one wins.
func (s *Service) useSMSCode(ctx context.Context, tenantID, userID, code string, confirmed bool) (bool, error) {
	code = strings.TrimSpace(code)
	f, err := s.smsFactor(ctx, tenantID, userID, confirmed)
	if errs.Is(err, errs.Conflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	now := s.now().UnixMicro()
	var id string
	var mac []byte
	err = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		return tx.QueryRow(ctx, `UPDATE sms_codes SET attempts = attempts + 1
			WHERE tenant_id = ? AND id = (SELECT id FROM sms_codes WHERE tenant_id = ? AND factor_id = ? AND used_at = 0 AND expires_at > ?
				ORDER BY created_at DESC LIMIT 1) AND attempts < ?
			RETURNING id, code_mac`, tenantID, tenantID, f.id, now, smsTries).Scan(&id, &mac)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	want, err := s.keys.MAC(ctx, s.db.Read(), tenantID, "sms-code", id, code)
	if err != nil || !hmac.Equal(want, mac) {
		return false, err
	}
	var used bool
	err = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE sms_codes SET used_at = ? WHERE tenant_id = ? AND id = ? AND used_at = 0", now, tenantID, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		used = n == 1
		return err
	})
	return used, err
}
