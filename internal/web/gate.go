package web

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
)

// csp lets a page load only its own scripts, styles, images and fonts, and
// submit forms only to its own origin; the QR code of an authenticator app
// is a data: image.
const csp = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

var crossOrigin = http.NewCrossOriginProtection()

// rule answers the API rule of rt: nil for a public page.
func (c *Console) rule(rt Route) (*api.Route, error) {
	switch rt.Rule {
	case Public:
		return nil, nil
	case Limited:
		return &api.Route{Access: api.Public, Guard: api.Limit}, nil
	case SignedIn:
		return &api.SignedIn, nil
	case Enrolling:
		return &api.Enrolling, nil
	}
	r, ok := c.api.Route(rt.Rule)
	if !ok {
		return nil, fmt.Errorf("web route %s %s follows %q, which is no API route", rt.Method, rt.Path, rt.Rule)
	}
	return &r, nil
}

// endpoint applies rt's rule and answers the handler's error as a page.
func (c *Console) endpoint(rt Route) http.Handler {
	apiRule, _ := c.rule(rt)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("Cache-Control", "no-store")
		if r, err := c.admit(rt, apiRule, w, r); err != nil {
			c.fail(w, r, err) // with the principal, when admitted: the page keeps its header
		}
	})
}

// admit checks the request against the rule and calls the handler; it
// answers the request as admitted (with the principal) and the error.
func (c *Console) admit(rt Route, rule *api.Route, w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	if err := crossOrigin.Check(r); err != nil {
		return r, errs.E(errs.Forbidden, "This form was sent from another site. Go back to the page, reload it and send it again.")
	}
	if rule == nil {
		return r, rt.Handler(w, r)
	}
	if rule.Limited() && !c.api.Allow(r) {
		return r, errs.E(errs.TooManyRequests, "Too many attempts from your network. Wait a minute, then try again.")
	}
	if rule.Access == api.Public {
		return r, rt.Handler(w, r)
	}
	admitted, p, err := c.api.Admit(r, *rule)
	switch {
	case err == nil:
		return admitted, rt.Handler(w, admitted)
	case errs.Is(err, errs.Unauthenticated):
		return r, c.redirect(w, r, "/login?next="+url.QueryEscape(c.back(r)), "")
	case p.Enrolment && rule.Access != api.Enrol:
		return r, c.redirect(w, r, "/account/second-factor", "")
	case rule.Sensitive() && !p.Fresh(c.now()) && p.Enrolment:
		// An enrolment session cannot re-authenticate: it signs in again.
		api.EndSession(w)
		return r, c.redirect(w, r, "/login", "sign-in-again")
	case rule.Sensitive() && !p.Fresh(c.now()):
		return r, c.redirect(w, r, "/login/confirm?next="+url.QueryEscape(c.back(r)), "")
	}
	return admitted, err // refused: the page says so, in the person's frame
}

// back is the page to come back to after signing in or confirming: the
// page asked for, or for a form's POST the nearest page above it.
func (c *Console) back(r *http.Request) string {
	if r.Method == http.MethodGet {
		return r.URL.RequestURI()
	}
	for p := r.URL.Path; p != "/"; p = path.Dir(p) {
		probe, _ := http.NewRequest(http.MethodGet, p, nil)
		if _, pattern := c.mux.Handler(probe); pattern != "" && pattern != "/" {
			return p
		}
	}
	return "/"
}

// localPath answers next when it is a path of this site, else "/": a
// sign-in never sends anyone elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

// fail answers err as a page: a refusal as a page that says what to do, a
// fault as a page that says it was ours (and is logged).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := httpio.StatusOf(err)
	detail := "Something went wrong on our side. Try again in a moment; if it keeps happening, tell your administrator the reference below."
	if code >= 500 {
		c.logger.ErrorContext(r.Context(), "page failed", "request_id", httpio.RequestID(r.Context()), "route", r.Pattern, "error", err.Error())
	} else if e, ok := errs.As(err); ok {
		detail = sentence(e.Detail)
	}
	if errs.KindOf(err) == errs.TooManyRequests {
		w.Header().Set("Retry-After", "60")
	}
	title := map[int]string{400: "This cannot be done", 403: "You cannot do this", 404: "Page not found", 409: "This cannot be done now",
		410: "This link no longer works", 429: "Too many attempts"}[code]
	if title == "" {
		title = "Sorry, there is a problem"
	}
	v := &view{Title: title, Data: map[string]any{"Detail": detail, "Reference": httpio.RequestID(r.Context())}}
	if p := api.Principal(r); p.UserID != "" {
		v.principal = p
	}
	if err := c.render(w, r, code, "error", v); err != nil {
		c.logger.ErrorContext(r.Context(), "error page failed", "error", err.Error())
		http.Error(w, detail, code)
	}
}

func (c *Console) notFound(http.ResponseWriter, *http.Request) error {
	return errs.E(errs.NotFound, "If you typed the address, check it is correct. If you followed a link, it may be out of date.")
}

// signedIn answers the principal of a request a rule admitted.
func signedIn(r *http.Request) identity.Principal { return api.Principal(r) }
