package web

import (
	"net/http"
	"net/url"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/identity"
)

// The pages the mailed links open: an invitation (or the first owner's
// setup link) and a password reset. The link names the organisation in
// its path, so that the page shows the password rules before anything is
// typed, and keeps its secret in the fragment, which never reaches a
// server log or a Referer header: the page's script moves it into the
// form, and without JavaScript the form asks for it.

// choosing is what a page that chooses a password shows.
type choosing struct {
	Policy identity.TenantPolicy
	Action string // where the form posts
	Button string
}

var linkNouns = map[string]string{"token": "code from the email", "password": "password"}

func (c *Console) invitationPage(w http.ResponseWriter, r *http.Request) error {
	return c.showChoosing(w, r, http.StatusOK, "invitation", &form{Values: url.Values{}})
}

func (c *Console) resetPage(w http.ResponseWriter, r *http.Request) error {
	return c.showChoosing(w, r, http.StatusOK, "reset", &form{Values: url.Values{}})
}

func (c *Console) showChoosing(w http.ResponseWriter, r *http.Request, code int, kind string, f *form) error {
	pol, err := c.identity.PolicyOf(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	ch := choosing{Policy: pol, Action: "/login/" + pol.Tenant + "/" + kind, Button: "Set my password"}
	title := "Choose your password for " + pol.TenantName
	if kind == "reset" {
		title, ch.Button = "Choose a new password for "+pol.TenantName, "Change my password"
	}
	return c.render(w, r, code, "choose-password", &view{Title: title, Form: f, Data: ch, Secret: f.Value("token") != ""})
}

func (c *Console) acceptInvitation(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("token", "the code from the email", "password", "a password"); len(f.Problems) == 0 {
		res, err := c.identity.AcceptInvitation(r.Context(), c.linkInput(r, f))
		if err == nil {
			api.StartSession(w, res.Session, res.Device)
			if res.EnrolmentRequired {
				return c.redirect(w, r, "/account/second-factor", "invite-accepted")
			}
			return c.redirect(w, r, "/", "invite-accepted")
		}
		if !f.refused(err, "token", linkNouns) {
			return err
		}
	}
	return c.showChoosing(w, r, http.StatusUnprocessableEntity, "invitation", f)
}

func (c *Console) reset(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("token", "the code from the email", "password", "a password"); len(f.Problems) == 0 {
		err := c.identity.ResetPassword(r.Context(), c.linkInput(r, f))
		if err == nil {
			return c.redirect(w, r, "/login?tenant="+url.QueryEscape(r.PathValue("tenant")), "password-reset")
		}
		if !f.refused(err, "token", linkNouns) {
			return err
		}
	}
	return c.showChoosing(w, r, http.StatusUnprocessableEntity, "reset", f)
}

func (c *Console) linkInput(r *http.Request, f *form) identity.LinkInput {
	return identity.LinkInput{Secret: f.Value("token"), Password: f.Value("password"), Device: api.Cookie(r, api.DeviceCookie), Client: c.api.Client(r)}
}

// Asking for a reset link: the answer is the same whatever the email.

func (c *Console) resetRequestPage(w http.ResponseWriter, r *http.Request) error {
	f := &form{Values: url.Values{"tenant": {r.URL.Query().Get("tenant")}}}
	return c.render(w, r, http.StatusOK, "reset-request", &view{Title: "Reset your password", Back: "/login", Form: f})
}

func (c *Console) requestReset(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("tenant", "your organisation's short name", "email", "your email address"); len(f.Problems) == 0 {
		err := c.identity.RequestReset(r.Context(), identity.ResetRequest{Tenant: f.Value("tenant"), Email: f.Value("email"), Client: c.api.Client(r)})
		if err == nil {
			return c.redirect(w, r, "/login?tenant="+url.QueryEscape(f.Value("tenant")), "reset-sent")
		}
		if !f.refused(err, "email", signInNouns) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "reset-request", &view{Title: "Reset your password", Back: "/login", Form: f})
}
