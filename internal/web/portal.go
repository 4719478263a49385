package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/rights"
)

// The privacy portal, /privacy/{tenant}: where the people whose data an
// organisation holds ask for their rights, confirm by the link mailed to
// them, download their data, answer a consent request and withdraw a
// consent. Opening a page never changes anything (mail scanners open
// links); only its form's POST does.

// portalType is a request type as the portal's form offers it.
type portalType struct{ Key, Title string }

// portalData is what the portal's form shows.
type portalData struct {
	Portal rights.Portal
	Types  []portalType
	Slug   string
}

// Chosen tells whether the form's answer for field holds value.
func (d portalData) Chosen(f *form, field, value string) bool {
	if f == nil {
		return false
	}
	for _, v := range f.Values[field] {
		if v == value {
			return true
		}
	}
	return false
}

func (c *Console) portalPage(w http.ResponseWriter, r *http.Request) error {
	return c.showPortal(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showPortal(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	slug := r.PathValue("tenant")
	p, err := c.rights.Portal(r.Context(), slug)
	if err != nil {
		return err
	}
	types := make([]portalType, 0, len(p.Types))
	for _, t := range p.Types {
		title := rights.TypeTitle(t) // "a copy of my personal data (access)": a label starts with a capital
		types = append(types, portalType{t, strings.ToUpper(title[:1]) + title[1:]})
	}
	return c.render(w, r, code, "portal", &view{Title: "Your personal data at " + p.Organisation, Org: p.Organisation, Form: f,
		Data: portalData{Portal: p, Types: types, Slug: slug}})
}

var portalNouns = map[string]string{"type": "request", "email": "email address", "details": "details", "purposes": "uses"}

func (c *Console) portalIntake(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	slug := r.PathValue("tenant")
	if f.Value("type") == "" {
		f.add("type", "Choose what you want to ask for.")
	}
	if f.required("email", "your email address"); len(f.Problems) == 0 {
		err := c.rights.Intake(r.Context(), slug, rights.PortalInput{Type: f.Value("type"), Email: f.Value("email"),
			Details: f.Value("details"), Purposes: f.Values["purposes"]})
		if err == nil {
			return c.redirect(w, r, "/privacy/"+url.PathEscape(slug)+"/sent", "")
		}
		if errs.KindOf(err) == errs.NotFound || !f.refused(err, "type", portalNouns) {
			return err
		}
	}
	return c.showPortal(w, r, http.StatusUnprocessableEntity, f)
}

func (c *Console) portalSent(w http.ResponseWriter, r *http.Request) error {
	p, err := c.rights.Portal(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "portal-sent", &view{Title: "Check your mailbox", Org: p.Organisation, Back: "/privacy/" + r.PathValue("tenant")})
}

func (c *Console) confirmPortalPage(w http.ResponseWriter, r *http.Request) error {
	p, err := c.rights.ViewIntake(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "portal-confirm", &view{Title: "Confirm your request", Org: p.Organisation,
		Data: map[string]any{"Page": p}})
}

func (c *Console) confirmPortal(w http.ResponseWriter, r *http.Request) error {
	slug, token := r.PathValue("tenant"), r.PathValue("token")
	page, err := c.rights.ViewIntake(r.Context(), slug, token)
	if err != nil {
		return err
	}
	cl := c.api.Client(r)
	req, err := c.rights.ConfirmIntake(r.Context(), slug, token, cl.IP, cl.UserAgent)
	if err != nil {
		return err
	}
	t, err := c.tenants.BySlug(r.Context(), slug)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusCreated, "portal-confirm", &view{Title: "Your request is sent", Org: page.Organisation, Zone: t.Location(),
		Data: map[string]any{"Request": req, "Page": page}})
}

func (c *Console) downloadPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.rights.FindDownload(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "portal-download", &view{Title: "Your personal data", Org: d.Organisation, Data: d})
}

// download answers the zip (made by the API's export, as for every
// other access request).
func (c *Console) download(w http.ResponseWriter, r *http.Request) error {
	d, err := c.rights.FindDownload(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return c.api.SendDownload(w, r, d)
}

func (c *Console) consentPage(w http.ResponseWriter, r *http.Request) error {
	p, err := c.consent.ViewLink(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "portal-consent", &view{Title: "May " + p.Organisation + " use your data for this?",
		Org: p.Organisation, Data: p})
}

func (c *Console) answerConsent(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	version, _ := strconv.Atoi(f.Value("notice_version"))
	if version <= 0 {
		return errs.Field("notice_version", "the version of the notice shown is missing: open the link from the email again")
	}
	cl := c.api.Client(r)
	slug, token := r.PathValue("tenant"), r.PathValue("token")
	page, err := c.consent.ViewLink(r.Context(), slug, token)
	if err != nil {
		return err
	}
	rec, err := c.consent.AnswerLink(r.Context(), slug, token, f.Value("answer"), version, cl.IP, cl.UserAgent)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "portal-answered", &view{Title: "Thank you", Org: page.Organisation, Secret: true,
		Data: map[string]any{"Granted": rec.Action == consent.Grant, "Receipt": rec.Receipt != "", "WithdrawURL": rec.WithdrawURL}})
}

func (c *Console) withdrawPage(w http.ResponseWriter, r *http.Request) error {
	p, err := c.consent.ViewWithdraw(r.Context(), r.PathValue("tenant"), r.PathValue("purpose"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "portal-withdraw", &view{Title: "Withdraw your consent", Org: p.Organisation,
		Data: map[string]any{"Page": p}})
}

func (c *Console) withdraw(w http.ResponseWriter, r *http.Request) error {
	slug, purpose, token := r.PathValue("tenant"), r.PathValue("purpose"), r.PathValue("token")
	cl := c.api.Client(r)
	done, err := c.consent.WithdrawByLink(r.Context(), slug, purpose, token, cl.IP, cl.UserAgent)
	if err != nil {
		return err
	}
	p, err := c.consent.ViewWithdraw(r.Context(), slug, purpose, token)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "portal-withdraw", &view{Title: "Withdraw your consent", Org: p.Organisation,
		Data: map[string]any{"Page": p, "Done": done}})
}
