package web

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/custodia/custodia/internal/identity"
)

// Security settings: the password rule, the lockout, second factors,
// text messages and how long sessions last. Owners and admins read them;
// changing them asks for a recent sign-in, as the API does.

// securityFields are the number fields of the form: field, label, hint.
var securityFields = []struct{ Name, Label, Hint, Noun string }{
	{"lockout_threshold", "Wrong passwords before a lock", "From 3 to 20. A browser the person signed in with before keeps its own count.",
		"number of wrong passwords before a lock"},
	{"lockout_minutes", "Minutes an account stays locked", "From 1 to 1440.", "number of minutes a lock lasts"},
	{"session_idle_minutes", "Minutes of inactivity that end a session", "From 5 to 480.", "number of idle minutes"},
	{"session_absolute_hours", "Hours after which every session ends", "From 1 to 72.", "number of hours a session lasts"},
	{"reauthenticate_minutes", "Minutes a confirmation lasts for sensitive actions",
		"From 1 to 60. Changing a password, second factors, roles or these settings asks again after this.", "number of minutes a confirmation lasts"},
}

// securityData is what the settings page shows.
type securityData struct {
	Fields  []field
	CanEdit bool
	Updated identity.Security
}

func (c *Console) securityPage(w http.ResponseWriter, r *http.Request) error {
	sec, err := c.identity.SecuritySettings(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return err
	}
	v := url.Values{"password_preset": {sec.PasswordPreset}, "mfa_required": {sec.MFARequired},
		"sms_enabled":       {strconv.FormatBool(sec.SMSEnabled)},
		"lockout_threshold": {strconv.Itoa(sec.LockoutThreshold)}, "lockout_minutes": {strconv.Itoa(sec.LockoutMinutes)},
		"session_idle_minutes": {strconv.Itoa(sec.SessionIdleMinutes)}, "session_absolute_hours": {strconv.Itoa(sec.SessionAbsoluteHours)},
		"reauthenticate_minutes": {strconv.Itoa(sec.ReauthenticateMinutes)}}
	return c.showSecurity(w, r, http.StatusOK, &form{Values: v}, sec)
}

func (c *Console) showSecurity(w http.ResponseWriter, r *http.Request, code int, f *form, sec identity.Security) error {
	d := securityData{CanEdit: signedIn(r).Can("settings:write"), Updated: sec}
	for _, sf := range securityFields {
		d.Fields = append(d.Fields, input(f, sf.Name, sf.Label, "inputmode=numeric", "hint="+sf.Hint, "autocomplete=off"))
	}
	return c.render(w, r, code, "settings-security", &view{Title: "Security settings", Form: f, Data: d})
}

func (c *Console) saveSecurity(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	var patch identity.SecurityPatch
	preset, mfa, sms := f.Value("password_preset"), f.Value("mfa_required"), f.Value("sms_enabled") == "true"
	patch.PasswordPreset, patch.MFARequired, patch.SMSEnabled = &preset, &mfa, &sms
	nums := map[string]**int{"lockout_threshold": &patch.LockoutThreshold, "lockout_minutes": &patch.LockoutMinutes,
		"session_idle_minutes": &patch.SessionIdleMinutes, "session_absolute_hours": &patch.SessionAbsoluteHours,
		"reauthenticate_minutes": &patch.ReauthenticateMinutes}
	for _, sf := range securityFields {
		n, err := strconv.Atoi(f.Value(sf.Name))
		if err != nil {
			f.add(sf.Name, "Enter the "+sf.Noun+" as a whole number.")
			continue
		}
		*nums[sf.Name] = &n
	}
	p := signedIn(r)
	if len(f.Problems) == 0 {
		_, err := c.identity.UpdateSecurity(r.Context(), p.TenantID, patch)
		if err == nil {
			return c.redirect(w, r, "/settings/security", "saved")
		}
		nouns := map[string]string{"password_preset": "password rule", "mfa_required": "second factor rule"}
		for _, sf := range securityFields {
			nouns[sf.Name] = sf.Noun
		}
		if !f.refused(err, "password_preset", nouns) {
			return err
		}
	}
	sec, err := c.identity.SecuritySettings(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	return c.showSecurity(w, r, http.StatusUnprocessableEntity, f, sec)
}
