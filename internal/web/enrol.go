package web

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

// Second factors: the list of one's own, and setting one up — an
// authenticator app (QR code), SMS, or a passkey. When the organisation
// requires a second factor, a person without one can reach nothing else.

// factorsData is what the second-factors page shows.
type factorsData struct {
	Factors    []identity.Factor
	SMSEnabled bool
	HasTOTP    bool
}

func (c *Console) factorsPage(w http.ResponseWriter, r *http.Request) error {
	return c.showFactors(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showFactors(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	p := signedIn(r)
	fs, err := c.identity.Factors(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return err
	}
	sec, err := c.identity.SecuritySettings(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	d := factorsData{SMSEnabled: sec.SMSEnabled}
	for _, x := range fs {
		if x.Confirmed {
			d.Factors = append(d.Factors, x)
			d.HasTOTP = d.HasTOTP || x.Kind == identity.MethodTOTP
		}
	}
	title := "Second factors"
	if p.Enrolment {
		title = "Set up a second factor"
	}
	return c.render(w, r, code, "factors", &view{Title: title, Form: f, Data: d})
}

func (c *Console) startTOTP(w http.ResponseWriter, r *http.Request) error {
	if _, err := c.identity.EnrolTOTP(r.Context(), signedIn(r)); err != nil {
		return err
	}
	return c.redirect(w, r, "/account/second-factor/totp", "")
}

func (c *Console) totpPage(w http.ResponseWriter, r *http.Request) error {
	return c.showTOTP(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showTOTP(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	e, err := c.identity.PendingTOTP(r.Context(), signedIn(r))
	if errs.Is(err, errs.Conflict) {
		return c.redirect(w, r, "/account/second-factor", "")
	}
	if err != nil {
		return err
	}
	return c.render(w, r, code, "totp", &view{Title: "Set up your authenticator app", Back: "/account/second-factor", Form: f, Secret: true,
		Data: map[string]any{"QR": template.URL(e.QRCode), "Secret": groups(e.Secret)}})
}

// groups writes a key to type in as groups of four characters.
func groups(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

var factorNouns = map[string]string{"code": "code", "phone": "phone number", "name": "name", "credential": "passkey"}

func (c *Console) confirmTOTP(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("code", "the code your app shows"); len(f.Problems) == 0 {
		conf, err := c.identity.ConfirmTOTP(r.Context(), signedIn(r), f.Value("code"))
		if err == nil {
			return c.confirmed(w, r, conf)
		}
		if !f.refused(err, "code", factorNouns) {
			return err
		}
	}
	return c.showTOTP(w, r, http.StatusUnprocessableEntity, f)
}

// confirmed finishes setting up a factor: a session that could only enrol
// becomes a full one, and the first factor's recovery codes are shown,
// once.
func (c *Console) confirmed(w http.ResponseWriter, r *http.Request, conf identity.Confirmation) error {
	p := signedIn(r)
	if conf.Session != "" {
		api.StartSession(w, conf.Session, "")
		p.Enrolment = false
	}
	if len(conf.RecoveryCodes) == 0 {
		return c.redirect(w, r, "/account/second-factor", "factor-added")
	}
	return c.render(w, r, http.StatusOK, "recovery-codes", &view{Title: "Save your recovery codes", Secret: true,
		Notice: notices["factor-added"], Data: conf.RecoveryCodes, principal: p})
}

func (c *Console) startSMS(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("phone", "your mobile phone number"); len(f.Problems) == 0 {
		_, err := c.identity.EnrolSMS(r.Context(), signedIn(r), f.Value("phone"))
		if err == nil {
			return c.redirect(w, r, "/account/second-factor/sms", "code-sent")
		}
		if !f.refused(err, "phone", factorNouns) {
			return err
		}
	}
	return c.showFactors(w, r, http.StatusUnprocessableEntity, f)
}

func (c *Console) smsPage(w http.ResponseWriter, r *http.Request) error {
	return c.render(w, r, http.StatusOK, "sms", &view{Title: "Enter the code we texted you", Back: "/account/second-factor",
		Form: &form{Values: url.Values{}}})
}

func (c *Console) confirmSMS(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("code", "the code we texted you"); len(f.Problems) == 0 {
		conf, err := c.identity.ConfirmSMS(r.Context(), signedIn(r), f.Value("code"))
		if err == nil {
			return c.confirmed(w, r, conf)
		}
		if !f.refused(err, "code", factorNouns) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "sms", &view{Title: "Enter the code we texted you", Back: "/account/second-factor", Form: f})
}

// startPasskey answers the page whose script asks the browser to create
// the passkey (navigator.credentials.create with the options here) and
// posts the answer.
func (c *Console) startPasskey(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("name", "a name for the passkey"); len(f.Problems) > 0 {
		return c.showFactors(w, r, http.StatusUnprocessableEntity, f)
	}
	opts, err := c.identity.EnrolPasskey(r.Context(), signedIn(r), f.Value("name"))
	if err != nil {
		if f.refused(err, "name", factorNouns) {
			return c.showFactors(w, r, http.StatusUnprocessableEntity, f)
		}
		return err
	}
	b, err := json.Marshal(opts)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "passkey", &view{Title: "Add your passkey", Back: "/account/second-factor", Secret: true,
		Form: &form{Values: url.Values{"name": {f.Value("name")}}}, Data: string(b)})
}

func (c *Console) confirmPasskey(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	conf, err := c.identity.ConfirmPasskey(r.Context(), signedIn(r), []byte(f.Value("credential")))
	if err != nil {
		if f.refused(err, "name", factorNouns) {
			return c.showFactors(w, r, http.StatusUnprocessableEntity, f)
		}
		return err
	}
	return c.confirmed(w, r, conf)
}

// ownFactor answers the signed-in person's confirmed factor named in the path.
func (c *Console) ownFactor(r *http.Request) (identity.Factor, error) {
	p := signedIn(r)
	fs, err := c.identity.Factors(r.Context(), p.TenantID, p.UserID)
	if err != nil {
		return identity.Factor{}, err
	}
	for _, f := range fs {
		if f.ID == r.PathValue("id") && f.Confirmed {
			return f, nil
		}
	}
	return identity.Factor{}, errs.E(errs.NotFound, "You have no such second factor. It may have been removed already.")
}

func (c *Console) removeFactorPage(w http.ResponseWriter, r *http.Request) error {
	f, err := c.ownFactor(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "factor-remove", &view{Title: "Remove " + factorName(f), Back: "/account/second-factor", Data: f})
}

func (c *Console) removeFactor(w http.ResponseWriter, r *http.Request) error {
	if err := c.identity.RemoveFactor(r.Context(), signedIn(r), r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/account/second-factor", "factor-removed")
}

// factorName says which factor f is, as a sentence names it.
func factorName(f identity.Factor) string {
	switch f.Kind {
	case identity.MethodTOTP:
		return "your authenticator app"
	case identity.MethodSMS:
		return "text messages"
	case identity.MethodPasskey:
		return "the passkey “" + f.Name + "”"
	}
	return f.Kind
}

func (c *Console) newRecoveryCodes(w http.ResponseWriter, r *http.Request) error {
	codes, err := c.identity.RegenerateRecoveryCodes(r.Context(), signedIn(r))
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "recovery-codes", &view{Title: "Save your new recovery codes", Secret: true,
		Notice: "Your old recovery codes no longer work.", Data: codes})
}
