package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
)

// deviceCookieAge is how long a browser stays a known device of the
// accounts that signed in on it (browsers cap cookies at 400 days).
const deviceCookieAge = 365 * 24 * time.Hour

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	switch {
	case maxAge < 0:
		c.MaxAge = -1
	case maxAge > 0:
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}

func cookieValue(r *http.Request, name string) string {
	if c, err := r.Cookie(name); err == nil {
		return c.Value
	}
	return ""
}

func (a *API) client(r *http.Request) identity.Client {
	return identity.Client{IP: clientIP(r, a.proxies), UserAgent: r.UserAgent()}
}

// sessionStarted sets the cookies of a (rotated) session.
func sessionStarted(w http.ResponseWriter, session, device string) {
	setCookie(w, SessionCookie, session, 0) // ends with the browser, or at the absolute limit
	if device != "" {
		setCookie(w, DeviceCookie, device, deviceCookieAge)
	}
}

type loginResponse struct {
	MFARequired       bool      `json:"mfa_required"`
	Methods           []string  `json:"methods"`
	EnrolmentRequired bool      `json:"enrolment_required"`
	ExpiresAt         time.Time `json:"expires_at"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Tenant   string `json:"tenant"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	res, err := a.identity.Login(r.Context(), identity.LoginInput{Tenant: in.Tenant, Email: in.Email, Password: in.Password,
		Device: cookieValue(r, DeviceCookie), Client: a.client(r)})
	if err != nil {
		return err
	}
	sessionStarted(w, res.Session, res.Device)
	httpio.JSON(w, http.StatusOK, loginResponse{MFARequired: res.MFARequired, Methods: nonNil(res.Methods),
		EnrolmentRequired: res.EnrolmentRequired, ExpiresAt: res.ExpiresAt})
	return nil
}

type stepUpResponse struct {
	ExpiresAt         time.Time `json:"expires_at"`
	RecoveryCodesLeft *int      `json:"recovery_codes_left,omitempty"`
}

func (a *API) stepUp(w http.ResponseWriter, r *http.Request, reauth bool) error {
	var in struct {
		Method     string          `json:"method"`
		Code       string          `json:"code"`
		Credential json.RawMessage `json:"credential"`
		Password   string          `json:"password"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	su := identity.StepUpInput{Session: cookieValue(r, SessionCookie), Device: cookieValue(r, DeviceCookie),
		Method: in.Method, Code: in.Code, Credential: in.Credential, Password: in.Password, Client: a.client(r)}
	var res identity.StepUpResult
	var err error
	if reauth {
		res, err = a.identity.Reauthenticate(r.Context(), su)
	} else {
		if in.Password != "" {
			return errs.Field("password", "unknown field; this is for the second factor only")
		}
		res, err = a.identity.CompleteMFA(r.Context(), su)
	}
	if err != nil {
		return err
	}
	sessionStarted(w, res.Session, res.Device)
	out := stepUpResponse{ExpiresAt: res.ExpiresAt}
	if in.Method == identity.MethodRecovery {
		out.RecoveryCodesLeft = &res.Remaining
	}
	httpio.JSON(w, http.StatusOK, out)
	return nil
}

func (a *API) mfa(w http.ResponseWriter, r *http.Request) error    { return a.stepUp(w, r, false) }
func (a *API) reauth(w http.ResponseWriter, r *http.Request) error { return a.stepUp(w, r, true) }

// sendSMSCode sends a code to the SMS factor of the signed-in (or
// half-signed-in) user.
func (a *API) sendSMSCode(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.SendSignInCode(r.Context(), cookieValue(r, SessionCookie)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// passkeyChallenge starts a passkey answer for the signed-in (or
// half-signed-in) user: the options for navigator.credentials.get.
func (a *API) passkeyChallenge(w http.ResponseWriter, r *http.Request) error {
	opts, err := a.identity.BeginPasskeySignIn(r.Context(), cookieValue(r, SessionCookie))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, opts)
	return nil
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.Logout(r.Context(), cookieValue(r, SessionCookie)); err != nil {
		return err
	}
	setCookie(w, SessionCookie, "", -1)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// linkToken is the secret of a one-time link, which the console page takes
// from the URL fragment and posts.
type linkToken struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

func (a *API) linkInput(w http.ResponseWriter, r *http.Request) (identity.LinkInput, error) {
	var in linkToken
	if err := httpio.Decode(w, r, &in); err != nil {
		return identity.LinkInput{}, err
	}
	return identity.LinkInput{Secret: in.Token, Password: in.Password, Device: cookieValue(r, DeviceCookie), Client: a.client(r)}, nil
}

func (a *API) invitation(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Token string `json:"token"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	info, err := a.identity.Invitation(r.Context(), in.Token)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, info)
	return nil
}

func (a *API) acceptInvitation(w http.ResponseWriter, r *http.Request) error {
	in, err := a.linkInput(w, r)
	if err != nil {
		return err
	}
	res, err := a.identity.AcceptInvitation(r.Context(), in)
	if err != nil {
		return err
	}
	sessionStarted(w, res.Session, res.Device)
	httpio.JSON(w, http.StatusOK, loginResponse{Methods: []string{}, EnrolmentRequired: res.EnrolmentRequired, ExpiresAt: res.ExpiresAt})
	return nil
}

// resetAccepted is the one answer to a reset request, whatever the email.
const resetAccepted = "If this organisation has an active account with this email, a link to choose a new password is on its way. It works once, for 30 minutes."

func (a *API) requestReset(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Tenant string `json:"tenant"`
		Email  string `json:"email"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	if err := a.identity.RequestReset(r.Context(), identity.ResetRequest{Tenant: in.Tenant, Email: in.Email, Client: a.client(r)}); err != nil {
		return err
	}
	httpio.JSON(w, http.StatusAccepted, map[string]string{"detail": resetAccepted})
	return nil
}

func (a *API) resetPassword(w http.ResponseWriter, r *http.Request) error {
	in, err := a.linkInput(w, r)
	if err != nil {
		return err
	}
	if err := a.identity.ResetPassword(r.Context(), in); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
