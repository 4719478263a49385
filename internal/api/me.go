package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/rights"
)

type meResponse struct {
	ID                string            `json:"id"`
	Email             string            `json:"email"`
	Name              string            `json:"name"`
	TimeZone          string            `json:"time_zone"` // "": the organisation's
	Role              string            `json:"role"`
	Tenant            meTenant          `json:"tenant"`
	SubjectID         string            `json:"subject_id"`
	CreatedAt         time.Time         `json:"created_at"`
	LastLoginAt       *time.Time        `json:"last_login_at"`
	ClosesAt          *time.Time        `json:"closes_at"`
	Factors           []identity.Factor `json:"factors"`
	EnrolmentRequired bool              `json:"enrolment_required"`
}

type meTenant struct {
	ID   string `json:"id"`
	Slug string `json:"slug"`
	Name string `json:"name"`
}

// me describes the signed-in person: who, where, with which factors.
func (a *API) me(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	ctx := r.Context()
	u, err := a.identity.UserByID(ctx, p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	t, err := a.identity.Tenant(ctx, p.TenantID)
	if err != nil {
		return err
	}
	profile, err := a.subjects.Profile(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return err
	}
	factors, err := a.identity.Factors(ctx, p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, meResponse{ID: u.ID, Email: profile.Email, Name: profile.Name, TimeZone: profile.TimeZone, Role: u.Role, SubjectID: u.SubjectID,
		Tenant: meTenant{ID: t.ID, Slug: t.Slug, Name: t.Name}, CreatedAt: u.CreatedAt, LastLoginAt: u.LastLoginAt, ClosesAt: u.ClosesAt,
		Factors: factors, EnrolmentRequired: p.Enrolment})
	return nil
}

func (a *API) updateMe(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name     *string `json:"name"`
		TimeZone *string `json:"time_zone"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	if in.Name != nil {
		if _, err := a.identity.UpdateProfile(r.Context(), principal(r), *in.Name); err != nil {
			return err
		}
	}
	if in.TimeZone != nil {
		if err := a.identity.SetTimeZone(r.Context(), principal(r), *in.TimeZone); err != nil {
			return err
		}
	}
	return a.me(w, r)
}

// changeMyEmail asks for a new sign-in address: a link to confirm it goes
// to that address, and nothing changes until it is used.
func (a *API) changeMyEmail(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Email string `json:"email"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	if in.Email == "" {
		return errs.Field("email", "required")
	}
	sent, err := a.identity.ChangeOwnEmail(r.Context(), principal(r), in.Email)
	if err != nil {
		return err
	}
	detail := "This is your sign-in address already."
	if sent {
		detail = "A link to confirm the new address is on its way to it; until it is used, your address stays as it is."
	}
	httpio.JSON(w, http.StatusAccepted, map[string]string{"detail": detail})
	return nil
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	if in.NewPassword == "" {
		return errs.Field("new_password", "required")
	}
	if err := a.identity.ChangePassword(r.Context(), principal(r), in.CurrentPassword, in.NewPassword); err != nil {
		if e, ok := errs.As(err); ok && e.Field == "password" {
			e2 := *e
			e2.Field = "new_password"
			return &e2
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request) error {
	ss, err := a.identity.Sessions(r.Context(), principal(r))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[identity.SessionInfo]{Items: ss})
	return nil
}

func (a *API) revokeSession(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.RevokeSession(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listFactors(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	fs, err := a.identity.Factors(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[identity.Factor]{Items: fs})
	return nil
}

// totpStatus says whether an authenticator app is set up or waiting for
// its first code.
func (a *API) totpStatus(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	fs, err := a.identity.Factors(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	out := struct {
		Enrolled bool             `json:"enrolled"`
		Pending  bool             `json:"pending"`
		Factor   *identity.Factor `json:"factor"`
	}{}
	for _, f := range fs {
		if f.Kind == identity.MethodTOTP {
			out.Factor = &f
			out.Enrolled, out.Pending = f.Confirmed, !f.Confirmed
		}
	}
	httpio.JSON(w, http.StatusOK, out)
	return nil
}

func (a *API) enrolTOTP(w http.ResponseWriter, r *http.Request) error {
	e, err := a.identity.EnrolTOTP(r.Context(), principal(r))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, e)
	return nil
}

func (a *API) confirmTOTP(w http.ResponseWriter, r *http.Request) error {
	return a.confirmFactor(w, r, a.identity.ConfirmTOTP)
}

func (a *API) confirmSMS(w http.ResponseWriter, r *http.Request) error {
	return a.confirmFactor(w, r, a.identity.ConfirmSMS)
}

// confirmFactor answers a factor's first code: the recovery codes, and a
// new session cookie when an enrolment-only session became full.
func (a *API) confirmFactor(w http.ResponseWriter, r *http.Request,
	confirm func(context.Context, identity.Principal, string) (identity.Confirmation, error)) error {
	var in struct {
		Code string `json:"code"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	c, err := confirm(r.Context(), principal(r), in.Code)
	if err != nil {
		return err
	}
	confirmed(w, c)
	return nil
}

// confirmed answers a confirmed factor.
func confirmed(w http.ResponseWriter, c identity.Confirmation) {
	if c.Session != "" {
		sessionStarted(w, c.Session, "")
	}
	httpio.JSON(w, http.StatusOK, struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}{nonNil(c.RecoveryCodes)})
}

func (a *API) enrolSMS(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Phone string `json:"phone"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	e, err := a.identity.EnrolSMS(r.Context(), principal(r), in.Phone)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, e)
	return nil
}

// enrolPasskey starts registering a passkey: the options for
// navigator.credentials.create.
func (a *API) enrolPasskey(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name string `json:"name"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	opts, err := a.identity.EnrolPasskey(r.Context(), principal(r), in.Name)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, opts)
	return nil
}

func (a *API) confirmPasskey(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Credential json.RawMessage `json:"credential"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	c, err := a.identity.ConfirmPasskey(r.Context(), principal(r), in.Credential)
	if err != nil {
		return err
	}
	confirmed(w, c)
	return nil
}

func (a *API) removeFactor(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.RemoveFactor(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) regenerateRecoveryCodes(w http.ResponseWriter, r *http.Request) error {
	codes, err := a.identity.RegenerateRecoveryCodes(r.Context(), principal(r))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}{codes})
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	ts, err := a.identity.Tokens(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[identity.Token]{Items: ts})
	return nil
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name          string   `json:"name"`
		Scopes        []string `json:"scopes"`
		ExpiresInDays *int     `json:"expires_in_days"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	ttl, err := identity.TokenTTL(in.ExpiresInDays)
	if err != nil {
		return err
	}
	p := principal(r)
	u, err := a.identity.UserByID(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	secret, t, err := a.identity.CreateTokenFor(r.Context(), p.TenantID, u, in.Name, in.Scopes, ttl)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, struct {
		identity.Token
		Secret string `json:"secret"`
	}{t, secret})
	return nil
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	u, err := a.identity.UserByID(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	if err := a.identity.RevokeToken(r.Context(), p.TenantID, u, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// closeMe closes the signed-in person's own account: erased after the
// tenant's grace period unless they cancel.
func (a *API) closeMe(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	c, err := a.rights.CloseAccount(r.Context(), p.TenantID, p.UserID, p.SubjectID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, c)
	return nil
}

func (a *API) cancelCloseMe(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	if err := a.rights.CancelClosure(r.Context(), p.TenantID, p.UserID, p.SubjectID); err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, rights.Closure{})
	return nil
}

// exportMe answers a signed-in person's own zip: members see all their own
// data (self-service access and portability).
func (a *API) exportMe(w http.ResponseWriter, r *http.Request) error {
	return a.accessZip(w, r, principal(r).SubjectID)
}
