package identity

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/sqldb"
)

// Second-factor enforcement levels.
const (
	MFAOptional = "off"    // users choose
	MFAAdmins   = "admins" // owners and admins must have a second factor
	MFAEveryone = "all"    // everyone must
)

// Security is a tenant's security settings.
type Security struct {
	PasswordPreset        string     `json:"password_preset"`        // standard | complex
	LockoutThreshold      int        `json:"lockout_threshold"`      // failed attempts before the lock
	LockoutMinutes        int        `json:"lockout_minutes"`        // how long the lock lasts
	MFARequired           string     `json:"mfa_required"`           // off | admins | all
	SessionIdleMinutes    int        `json:"session_idle_minutes"`   // a session unused this long ends
	SessionAbsoluteHours  int        `json:"session_absolute_hours"` // a session ends this long after sign-in
	ReauthenticateMinutes int        `json:"reauthenticate_minutes"` // sensitive actions need a proof this recent
	SMSEnabled            bool       `json:"sms_enabled"`            // SMS codes may be used as a second factor
	UpdatedAt             *time.Time `json:"updated_at,omitempty"`   // nil while the defaults apply
}

// DefaultSecurity is what a tenant starts with (SPEC §3.2).
var DefaultSecurity = Security{
	PasswordPreset: password.Standard, LockoutThreshold: 6, LockoutMinutes: 60, MFARequired: MFAOptional,
	SessionIdleMinutes: 30, SessionAbsoluteHours: 12, ReauthenticateMinutes: 10,
}

// SecurityPatch changes some settings; nil fields stay as they are.
type SecurityPatch struct {
	PasswordPreset        *string `json:"password_preset"`
	LockoutThreshold      *int    `json:"lockout_threshold"`
	LockoutMinutes        *int    `json:"lockout_minutes"`
	MFARequired           *string `json:"mfa_required"`
	SessionIdleMinutes    *int    `json:"session_idle_minutes"`
	SessionAbsoluteHours  *int    `json:"session_absolute_hours"`
	ReauthenticateMinutes *int    `json:"reauthenticate_minutes"`
	SMSEnabled            *bool   `json:"sms_enabled"`
}

func between(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return errs.Field(field, "must be between %d and %d", lo, hi)
	}
	return nil
}

// Validate checks every setting against its bounds.
func (s Security) Validate() error {
	if s.PasswordPreset != password.Standard && s.PasswordPreset != password.Complex {
		return errs.Field("password_preset", "one of %s, %s", password.Standard, password.Complex)
	}
	if s.MFARequired != MFAOptional && s.MFARequired != MFAAdmins && s.MFARequired != MFAEveryone {
		return errs.Field("mfa_required", "one of %s, %s, %s", MFAOptional, MFAAdmins, MFAEveryone)
	}
	return errors.Join(
		between("lockout_threshold", s.LockoutThreshold, 3, 20),
		between("lockout_minutes", s.LockoutMinutes, 1, 24*60),
		between("session_idle_minutes", s.SessionIdleMinutes, 5, 8*60),
		between("session_absolute_hours", s.SessionAbsoluteHours, 1, 72),
		between("reauthenticate_minutes", s.ReauthenticateMinutes, 1, 60),
	)
}

// PasswordPolicy is the policy the settings imply.
func (s Security) PasswordPolicy() password.Policy {
	return password.Policy{Preset: s.PasswordPreset, TwoFactorEnforced: s.MFARequired == MFAEveryone}
}

func (s Security) lockout() time.Duration { return time.Duration(s.LockoutMinutes) * time.Minute }
func (s Security) idle() time.Duration    { return time.Duration(s.SessionIdleMinutes) * time.Minute }
func (s Security) absolute() time.Duration {
	return time.Duration(s.SessionAbsoluteHours) * time.Hour
}
func (s Security) recent() time.Duration { return time.Duration(s.ReauthenticateMinutes) * time.Minute }

// mfaRequiredFor reports whether the settings demand a second factor of role.
func (s Security) mfaRequiredFor(role string) bool {
	return s.MFARequired == MFAEveryone || s.MFARequired == MFAAdmins && role != RoleMember
}

const sectionSecurity = "security"

// SecuritySettings returns the tenant's settings.
func (s *Service) SecuritySettings(ctx context.Context, tenantID string) (Security, error) {
	return loadSecurity(ctx, s.db.Read(), tenantID)
}

func loadSecurity(ctx context.Context, q sqldb.Q, tenantID string) (Security, error) {
	var value string
	var updated int64
	err := q.QueryRow(ctx, "SELECT value, updated_at FROM tenant_settings WHERE tenant_id = ? AND section = ?",
		tenantID, sectionSecurity).Scan(&value, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return DefaultSecurity, nil
	}
	if err != nil {
		return Security{}, fmt.Errorf("load security settings: %w", err)
	}
	sec := DefaultSecurity // settings added later keep their defaults
	if err := json.Unmarshal([]byte(value), &sec); err != nil {
		return Security{}, fmt.Errorf("security settings of tenant %s: %w", tenantID, err)
	}
	at := time.UnixMicro(updated).UTC()
	sec.UpdatedAt = &at
	return sec, nil
}

// UpdateSecurity applies p and returns the new settings. The change is
// audited with each setting's old and new value; a concurrent change is
// detected and p applied again on top of it.
func (s *Service) UpdateSecurity(ctx context.Context, tenantID string, p SecurityPatch) (Security, error) {
	for range 3 {
		old, err := loadSecurity(ctx, s.db.Read(), tenantID)
		if err != nil {
			return Security{}, err
		}
		next := old
		setIf(&next.PasswordPreset, p.PasswordPreset)
		setIf(&next.LockoutThreshold, p.LockoutThreshold)
		setIf(&next.LockoutMinutes, p.LockoutMinutes)
		setIf(&next.MFARequired, p.MFARequired)
		setIf(&next.SessionIdleMinutes, p.SessionIdleMinutes)
		setIf(&next.SessionAbsoluteHours, p.SessionAbsoluteHours)
		setIf(&next.ReauthenticateMinutes, p.ReauthenticateMinutes)
		setIf(&next.SMSEnabled, p.SMSEnabled)
		if err := next.Validate(); err != nil {
			return Security{}, err
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		next.UpdatedAt = nil
		value, err := json.Marshal(next)
		if err != nil {
			return Security{}, err
		}
		err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
			current, err := loadSecurity(ctx, tx.Q, tenantID)
			if err != nil {
				return err
			}
			if len(diff(current, old)) != 0 {
				return errConcurrent
			}
			_, err = tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, section, value, updated_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (tenant_id, section) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
				tenantID, sectionSecurity, string(value), now.UnixMicro())
			return err
		}, audit.Event{Action: "settings.security.update", TargetType: "tenant", TargetID: tenantID,
			Details: map[string]any{"changes": diff(old, next)}})
		if errors.Is(err, errConcurrent) {
			continue
		}
		next.UpdatedAt = &now
		return next, err
	}
	return Security{}, errs.E(errs.Conflict, "the settings are being changed by someone else; try again")
}

var errConcurrent = errors.New("changed concurrently")

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// diff names each setting that changed with its old and new value.
func diff(old, next Security) map[string]any {
	var a, b map[string]any
	ja, _ := json.Marshal(old)
	jb, _ := json.Marshal(next)
	_ = json.Unmarshal(ja, &a)
	_ = json.Unmarshal(jb, &b)
	out := map[string]any{}
	for k, v := range b {
		if k != "updated_at" && fmt.Sprint(a[k]) != fmt.Sprint(v) {
			out[k] = []any{a[k], v}
		}
	}
	return out
}
