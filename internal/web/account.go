package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

// My account: the summary of one's own account, and a page for each
// change — name, sign-in address, password, sessions, API tokens, the
// copy of one's data and closing the account. Second factors are on
// their own pages (enrol.go).

// accountData is what the account page shows.
type accountData struct {
	User     identity.User
	Name     string
	Email    string
	TimeZone string // "": the organisation's
	OrgZone  string
	Factors  int
	Closing  *time.Time
	Recent   int // minutes a confirmation lasts
	Sessions int
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	ctx := r.Context()
	u, err := c.identity.UserByID(ctx, p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	prof, err := c.subjects.Profile(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return err
	}
	methods, err := c.identity.Methods(ctx, p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	ss, err := c.identity.Sessions(ctx, p)
	if err != nil {
		return err
	}
	t, err := c.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return err
	}
	d := accountData{User: u, Name: prof.Name, Email: prof.Email, TimeZone: prof.TimeZone, OrgZone: t.TimeZone, Closing: u.ClosesAt,
		Recent: int(p.Recent / time.Minute), Sessions: len(ss)}
	for _, m := range methods {
		if m != identity.MethodRecovery {
			d.Factors++
		}
	}
	return c.render(w, r, http.StatusOK, "account", &view{Title: "Your account", Data: d})
}

// The name: one question.

func (c *Console) namePage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	prof, err := c.subjects.Profile(r.Context(), p.TenantID, p.SubjectID)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "account-name", &view{Title: "Your name", Back: "/account",
		Form: &form{Values: url.Values{"name": {prof.Name}}}})
}

func (c *Console) setName(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	_, err = c.identity.UpdateProfile(r.Context(), signedIn(r), f.Value("name"))
	if err == nil {
		return c.redirect(w, r, "/account", "saved")
	}
	if !f.refused(err, "name", map[string]string{"name": "name"}) {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "account-name", &view{Title: "Your name", Back: "/account", Form: f})
}

// The time zone of the dates one sees.

func (c *Console) zonePage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	prof, err := c.subjects.Profile(r.Context(), p.TenantID, p.SubjectID)
	if err != nil {
		return err
	}
	return c.showZone(w, r, http.StatusOK, &form{Values: url.Values{"time_zone": {prof.TimeZone}}})
}

func (c *Console) showZone(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	t, err := c.tenants.ByID(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return err
	}
	return c.render(w, r, code, "account-zone", &view{Title: "Your time zone", Back: "/account", Form: f, Data: t.TimeZone})
}

func (c *Console) setZone(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	err = c.identity.SetTimeZone(r.Context(), signedIn(r), f.Value("time_zone"))
	if err == nil {
		return c.redirect(w, r, "/account", "saved")
	}
	if !f.refused(err, "time_zone", map[string]string{"time_zone": "time zone"}) {
		return err
	}
	return c.showZone(w, r, http.StatusUnprocessableEntity, f)
}

// The sign-in address: a link goes to the new one; nothing changes until
// it is used.

func (c *Console) emailPage(w http.ResponseWriter, r *http.Request) error {
	return c.render(w, r, http.StatusOK, "account-email", &view{Title: "Change your sign-in address", Back: "/account",
		Form: &form{Values: url.Values{}}})
}

func (c *Console) changeEmail(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("email", "your new email address"); len(f.Problems) == 0 {
		sent, err := c.identity.ChangeOwnEmail(r.Context(), signedIn(r), f.Value("email"))
		switch {
		case err == nil && sent:
			return c.redirect(w, r, "/account", "email-sent")
		case err == nil:
			f.add("email", "This is your sign-in address already. Enter a new one.")
		case !f.refused(err, "email", map[string]string{"email": "email address"}):
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "account-email", &view{Title: "Change your sign-in address", Back: "/account", Form: f})
}

// The password.

func (c *Console) passwordPage(w http.ResponseWriter, r *http.Request) error {
	return c.showPassword(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showPassword(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	p := signedIn(r)
	t, err := c.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	pol, err := c.identity.PolicyOf(r.Context(), t.Slug)
	if err != nil {
		return err
	}
	return c.render(w, r, code, "account-password", &view{Title: "Change your password", Back: "/account", Form: f, Data: pol})
}

func (c *Console) changePassword(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("current_password", "your current password", "new_password", "a new password"); len(f.Problems) == 0 {
		err := c.identity.ChangePassword(r.Context(), signedIn(r), f.Value("current_password"), f.Value("new_password"))
		if err == nil {
			return c.redirect(w, r, "/account", "password-changed")
		}
		if e, ok := errs.As(err); ok && e.Field == "password" { // the policy's refusal names the new one
			f.add("new_password", message("new password", e.Detail))
		} else if !f.refused(err, "current_password", map[string]string{"current_password": "current password"}) {
			return err
		}
	}
	return c.showPassword(w, r, http.StatusUnprocessableEntity, f)
}

// Sessions: one's own, this one marked; others can be ended.

func (c *Console) sessionsPage(w http.ResponseWriter, r *http.Request) error {
	ss, err := c.identity.Sessions(r.Context(), signedIn(r))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "account-sessions", &view{Title: "Where you are signed in", Back: "/account", Data: ss})
}

func (c *Console) revokeSession(w http.ResponseWriter, r *http.Request) error {
	if err := c.identity.RevokeSession(r.Context(), signedIn(r), r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/account/sessions", "session-revoked")
}

// API tokens: one's own. A new token's secret is shown once.

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	ts, err := c.identity.Tokens(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	live := ts[:0:0]
	for _, t := range ts {
		if t.RevokedAt == nil && t.ExpiresAt.After(c.now()) {
			live = append(live, t)
		}
	}
	return c.render(w, r, http.StatusOK, "account-tokens", &view{Title: "Your API tokens", Back: "/account", Data: live})
}

// tokenForm is what the new-token page offers.
type tokenForm struct {
	Scopes []string // those the person's role holds
}

func (c *Console) newTokenPage(w http.ResponseWriter, r *http.Request) error {
	return c.showNewToken(w, r, http.StatusOK, &form{Values: url.Values{"expires_in_days": {"90"}}})
}

func (c *Console) showNewToken(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	return c.render(w, r, code, "account-token-new", &view{Title: "Create an API token", Back: "/account/tokens", Form: f,
		Data: tokenForm{Scopes: identity.RoleScopes(signedIn(r).Role)}})
}

var tokenNouns = map[string]string{"name": "name", "scopes": "scopes", "expires_in_days": "number of days"}

func (c *Console) createToken(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	p := signedIn(r)
	f.required("name", "a name for the token")
	days, err := strconv.Atoi(f.Value("expires_in_days"))
	if err != nil {
		f.add("expires_in_days", "Enter the number of days the token lives, from 1 to 366.")
	}
	if len(f.Problems) == 0 {
		ttl, err := identity.TokenTTL(&days)
		if err == nil {
			var u identity.User
			if u, err = c.identity.UserByID(r.Context(), p.TenantID, p.UserID); err != nil {
				return err
			}
			var secret string
			var t identity.Token
			if secret, t, err = c.identity.CreateTokenFor(r.Context(), p.TenantID, u, f.Value("name"), f.Values["scopes"], ttl); err == nil {
				return c.render(w, r, http.StatusOK, "account-token-created", &view{Title: "Your new API token", Secret: true,
					Data: map[string]any{"Token": t, "Secret": secret}})
			}
		}
		if !f.refused(err, "name", tokenNouns) {
			return err
		}
	}
	return c.showNewToken(w, r, http.StatusUnprocessableEntity, f)
}

// Chosen tells whether the form's scopes hold scope.
func (t tokenForm) Chosen(f *form, scope string) bool {
	return f != nil && slices.Contains(f.Values["scopes"], scope)
}

func (c *Console) revokeTokenPage(w http.ResponseWriter, r *http.Request) error {
	t, err := c.ownToken(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "account-token-revoke", &view{Title: "Revoke the token “" + t.Name + "”", Back: "/account/tokens", Data: t})
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	u, err := c.identity.UserByID(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	if err := c.identity.RevokeToken(r.Context(), p.TenantID, u, r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/account/tokens", "token-revoked")
}

// ownToken answers the signed-in person's token named in the path.
func (c *Console) ownToken(r *http.Request) (identity.Token, error) {
	p := signedIn(r)
	ts, err := c.identity.Tokens(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return identity.Token{}, err
	}
	for _, t := range ts {
		if t.ID == r.PathValue("id") && t.RevokedAt == nil {
			return t, nil
		}
	}
	return identity.Token{}, errs.E(errs.NotFound, "You have no such token. It may have been revoked already.")
}

// A copy of one's data: the access zip, as the API's GET /api/v1/me/export.

func (c *Console) dataPage(w http.ResponseWriter, r *http.Request) error {
	return c.render(w, r, http.StatusOK, "account-data", &view{Title: "Download your data", Back: "/account"})
}

func (c *Console) downloadMine(w http.ResponseWriter, r *http.Request) error {
	return c.api.SendExport(w, r, signedIn(r).SubjectID)
}

// Closing one's account: erased after the organisation's grace period,
// unless cancelled before.

func (c *Console) closePage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	u, err := c.identity.UserByID(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	t, err := c.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	title := "Close your account"
	if u.ClosesAt != nil {
		title = "Your account is closing"
	}
	return c.render(w, r, http.StatusOK, "account-close", &view{Title: title, Back: "/account",
		Data: map[string]any{"ClosesAt": u.ClosesAt, "GraceDays": t.ClosureGraceDays}})
}

func (c *Console) closeAccount(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	cl, err := c.rights.CloseAccount(r.Context(), p.TenantID, p.UserID, p.SubjectID)
	if err != nil {
		return err
	}
	if cl.ClosesAt == nil { // no grace period: erased now, and signed out with it
		api.EndSession(w)
		return c.redirect(w, r, "/login", "account-erased")
	}
	return c.redirect(w, r, "/account/close", "account-closing")
}

func (c *Console) cancelClose(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	if err := c.rights.CancelClosure(r.Context(), p.TenantID, p.UserID, p.SubjectID); err != nil {
		return err
	}
	return c.redirect(w, r, "/account", "closure-cancelled")
}
