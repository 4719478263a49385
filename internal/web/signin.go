package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

// Signing in: /login (organisation, email, password), then the second
// factor when the person has one, or setting one up when the organisation
// requires it (enrol.go). A lockout answers exactly as a wrong password.

// parseForm reads a posted form of at most 16 KiB.
func parseForm(w http.ResponseWriter, r *http.Request) (*form, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return nil, errs.E(errs.Invalid, "The form could not be read. Go back to the page and send it again.")
	}
	return newForm(r), nil
}

// required records a problem for each empty field: pairs of the field and
// what to enter ("password", "your password").
func (f *form) required(pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if f.Value(pairs[i]) == "" {
			f.add(pairs[i], "Enter "+pairs[i+1]+".")
		}
	}
}

var signInNouns = map[string]string{"tenant": "organisation's short name", "email": "email address", "password": "password"}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) error {
	if _, err := c.identity.AuthenticateSession(r.Context(), api.Cookie(r, api.SessionCookie)); err == nil {
		return c.redirect(w, r, localPath(r.URL.Query().Get("next")), "")
	}
	f := &form{Values: url.Values{"tenant": {r.URL.Query().Get("tenant")}, "next": {r.URL.Query().Get("next")}}}
	return c.render(w, r, http.StatusOK, "signin", &view{Title: "Sign in", Form: f})
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	f.required("tenant", "your organisation's short name", "email", "your email address", "password", "your password")
	if len(f.Problems) == 0 {
		res, err := c.identity.Login(r.Context(), identity.LoginInput{Tenant: f.Value("tenant"), Email: f.Value("email"),
			Password: f.Value("password"), Device: api.Cookie(r, api.DeviceCookie), Client: c.api.Client(r)})
		if err == nil {
			api.StartSession(w, res.Session, res.Device)
			next := localPath(f.Value("next"))
			switch {
			case res.MFARequired && chooseMethod("", res.Methods) == identity.MethodSMS:
				// Text messages only: the code goes now, as the page asks for it.
				notice := "code-sent"
				if err := c.identity.SendSignInCode(r.Context(), res.Session); err != nil {
					notice = ""
				}
				return c.redirect(w, r, "/login/second-factor?method=sms&next="+url.QueryEscape(next), notice)
			case res.MFARequired:
				return c.redirect(w, r, "/login/second-factor?next="+url.QueryEscape(next), "")
			case res.EnrolmentRequired:
				return c.redirect(w, r, "/account/second-factor", "")
			}
			return c.redirect(w, r, next, "")
		}
		if !f.refused(err, "password", signInNouns) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "signin", &view{Title: "Sign in", Form: f})
}

// secondFactor is what the second-factor page shows.
type secondFactor struct {
	Method  string   // the one asked for now
	Methods []string // every one the person has
	Next    string
	Base    string // the page, for links to the other methods
}

// Has tells whether the person can answer with method.
func (s secondFactor) Has(method string) bool { return slices.Contains(s.Methods, method) }

// chooseMethod answers the method asked for, or the first the person has
// in the order authenticator, passkey, SMS, recovery code.
func chooseMethod(asked string, methods []string) string {
	if slices.Contains(methods, asked) {
		return asked
	}
	for _, m := range []string{identity.MethodTOTP, identity.MethodPasskey, identity.MethodSMS, identity.MethodRecovery} {
		if slices.Contains(methods, m) {
			return m
		}
	}
	return identity.MethodRecovery
}

func (c *Console) secondFactorPage(w http.ResponseWriter, r *http.Request) error {
	return c.showSecondFactor(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showSecondFactor(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	methods, err := c.identity.PendingMethods(r.Context(), api.Cookie(r, api.SessionCookie))
	if err != nil {
		return c.redirect(w, r, "/login", "session-ended")
	}
	q := r.URL.Query()
	sf := secondFactor{Methods: methods, Method: chooseMethod(or(f.Value("method"), q.Get("method")), methods),
		Next: localPath(or(f.Value("next"), q.Get("next"))), Base: "/login/second-factor"}
	return c.render(w, r, code, "second-factor", &view{Title: methodTitle[sf.Method], Form: f, Data: sf})
}

var methodTitle = map[string]string{
	identity.MethodTOTP:     "Enter the code from your authenticator app",
	identity.MethodSMS:      "Enter the code we texted you",
	identity.MethodRecovery: "Enter a recovery code",
	identity.MethodPasskey:  "Use your passkey",
}

var codeNouns = map[string]string{"code": "code", "credential": "passkey"}

func (c *Console) secondFactor(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	method := f.Value("method")
	in := identity.StepUpInput{Session: api.Cookie(r, api.SessionCookie), Device: api.Cookie(r, api.DeviceCookie),
		Method: method, Code: f.Value("code"), Client: c.api.Client(r)}
	if method == identity.MethodPasskey {
		in.Credential = []byte(f.Value("credential"))
	}
	if method != identity.MethodPasskey && f.Value("code") == "" {
		f.add("code", "Enter the code")
		return c.showSecondFactor(w, r, http.StatusUnprocessableEntity, f)
	}
	res, err := c.identity.CompleteMFA(r.Context(), in)
	switch {
	case err == nil:
		api.StartSession(w, res.Session, res.Device)
		notice := ""
		if method == identity.MethodRecovery {
			notice = "recovery-used"
		}
		return c.redirect(w, r, localPath(f.Value("next")), notice)
	case errors.Is(err, identity.ErrLoginFailed):
		field := "code"
		if method == identity.MethodPasskey {
			field = "credential"
		}
		f.add(field, "The "+map[string]string{"code": "code", "credential": "passkey"}[field]+" is not correct.")
	case !f.refused(err, "code", codeNouns):
		return c.redirect(w, r, "/login", "session-ended")
	}
	return c.showSecondFactor(w, r, http.StatusUnprocessableEntity, f)
}

func (c *Console) sendSignInCode(w http.ResponseWriter, r *http.Request) error {
	if err := c.identity.SendSignInCode(r.Context(), api.Cookie(r, api.SessionCookie)); err != nil {
		if errs.Is(err, errs.Unauthenticated) {
			return c.redirect(w, r, "/login", "session-ended")
		}
		return err
	}
	return c.redirect(w, r, "/login/second-factor?method=sms&next="+url.QueryEscape(localPath(r.URL.Query().Get("next"))), "code-sent")
}

// The confirmation a sensitive action asks for: the password, and the
// second factor when the person has one.

func (c *Console) confirmPage(w http.ResponseWriter, r *http.Request) error {
	return c.showConfirm(w, r, http.StatusOK, &form{Values: url.Values{"next": {r.URL.Query().Get("next")}}})
}

func (c *Console) showConfirm(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	p := signedIn(r)
	methods, err := c.identity.Methods(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	sf := secondFactor{Methods: methods, Next: localPath(f.Value("next")), Base: "/login/confirm"}
	if len(methods) > 0 {
		sf.Method = chooseMethod(or(f.Value("method"), r.URL.Query().Get("method")), methods)
	}
	return c.render(w, r, code, "confirm", &view{Title: "Confirm it is you", Form: f, Data: sf})
}

var confirmNouns = map[string]string{"password": "password", "code": "code", "credential": "passkey"}

func (c *Console) confirm(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	in := identity.StepUpInput{Session: api.Cookie(r, api.SessionCookie), Device: api.Cookie(r, api.DeviceCookie),
		Method: f.Value("method"), Code: f.Value("code"), Password: f.Value("password"), Client: c.api.Client(r)}
	if in.Method == identity.MethodPasskey {
		in.Credential = []byte(f.Value("credential"))
	}
	f.required("password", "your password")
	if len(f.Problems) == 0 {
		res, err := c.identity.Reauthenticate(r.Context(), in)
		if err == nil {
			api.StartSession(w, res.Session, res.Device)
			return c.redirect(w, r, localPath(f.Value("next")), "")
		}
		if errors.Is(err, identity.ErrLoginFailed) {
			f.add("password", "The password or code is not correct.")
		} else if !f.refused(err, "password", confirmNouns) {
			return err
		}
	}
	return c.showConfirm(w, r, http.StatusUnprocessableEntity, f)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) error {
	if err := c.identity.Logout(r.Context(), api.Cookie(r, api.SessionCookie)); err != nil && !errs.Is(err, errs.Unauthenticated) {
		return err
	}
	api.EndSession(w)
	return c.redirect(w, r, "/login", "signed-out")
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
