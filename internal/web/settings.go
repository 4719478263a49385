package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/tenant"
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

// The organisation: its time zone (deadlines end at midnight there), how
// long the trash keeps things, how many versions of a file are kept, and
// how long a closed account waits before it is erased.

var organisationFields = []struct{ Name, Label, Hint, Noun string }{
	{"trash_days", "Days the trash keeps deleted files, folders and spaces", "From 1 to 3650. Then they are purged for good.", "number of days"},
	{"versions_kept", "Versions kept of each file", "The newest ones; 0 keeps every version.", "number of versions"},
	{"account_closure_grace_days", "Days before a closed account is erased", "From 0 to 365: until then, its owner can change their mind.", "number of days"},
}

func (c *Console) organisationPage(w http.ResponseWriter, r *http.Request) error {
	t, err := c.tenants.ByID(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return err
	}
	f := &form{Values: url.Values{"time_zone": {t.TimeZone}, "trash_days": {strconv.Itoa(t.TrashDays)},
		"versions_kept": {strconv.Itoa(t.VersionsKept)}, "account_closure_grace_days": {strconv.Itoa(t.ClosureGraceDays)}}}
	return c.showOrganisation(w, r, http.StatusOK, f)
}

func (c *Console) showOrganisation(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	var fields []field
	for _, of := range organisationFields {
		fields = append(fields, input(f, of.Name, of.Label, "inputmode=numeric", "hint="+of.Hint, "autocomplete=off"))
	}
	return c.render(w, r, code, "settings-organisation", &view{Title: "Organisation settings", Form: f,
		Data: map[string]any{"Fields": fields, "CanEdit": signedIn(r).Can("settings:write")}})
}

func (c *Console) saveOrganisation(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	in := tenant.Organisation{TimeZone: strings.TrimSpace(f.Value("time_zone"))}
	nouns := map[string]string{"time_zone": "time zone"}
	for _, of := range organisationFields {
		nouns[of.Name] = of.Noun
		n, err := strconv.Atoi(strings.TrimSpace(f.Value(of.Name)))
		if err != nil {
			f.add(of.Name, "Enter the "+of.Noun+" as a whole number.")
			continue
		}
		switch of.Name {
		case "trash_days":
			in.TrashDays = &n
		case "versions_kept":
			in.VersionsKept = &n
		case "account_closure_grace_days":
			in.ClosureGraceDays = &n
		}
	}
	if len(f.Problems) == 0 {
		_, err := c.tenants.SetOrganisation(r.Context(), signedIn(r).TenantID, in)
		if err == nil {
			return c.redirect(w, r, "/settings/organisation", "saved")
		}
		if !f.refused(err, "time_zone", nouns) {
			return err
		}
	}
	return c.showOrganisation(w, r, http.StatusUnprocessableEntity, f)
}

// The controller's details: who the organisation is for the people it
// holds data about, and its data protection officer — on the privacy
// portal, in its mails and in every access export.

// controllerFields are the one-line fields: name, label, options.
var controllerFields = []struct{ Name, Label, Type, Hint string }{
	{"legal_name", "Legal name", "text", "As registered. Empty: the organisation's name in Custodia."},
	{"email", "Email for privacy matters", "email", "Where people write about their data."},
	{"phone", "Phone", "tel", ""},
	{"dpo_name", "Data protection officer", "text", "Their name or their office's; empty when you have not designated one."},
	{"dpo_email", "Data protection officer's email", "email", ""},
	{"dpo_phone", "Data protection officer's phone", "tel", ""},
	{"representative_name", "Representative in the EU", "text", "Only for an organisation established outside the EU (Art. 27)."},
	{"privacy_policy_url", "Privacy policy", "url", "Its web address, starting with https://."},
}

// controllerNouns name the fields in sentences.
var controllerNouns = map[string]string{"legal_name": "legal name", "address": "address", "email": "email address", "phone": "phone number",
	"dpo_name": "data protection officer", "dpo_email": "data protection officer's email address", "dpo_phone": "data protection officer's phone number",
	"dpo_address": "data protection officer's address", "representative_name": "representative", "representative_contact": "representative's contact details",
	"privacy_policy_url": "privacy policy's address"}

func (c *Console) controllerPage(w http.ResponseWriter, r *http.Request) error {
	ct, err := c.tenants.Controller(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return err
	}
	f := &form{Values: url.Values{"legal_name": {ct.LegalName}, "address": {ct.Address}, "email": {ct.Email}, "phone": {ct.Phone},
		"dpo_name": {ct.DPOName}, "dpo_email": {ct.DPOEmail}, "dpo_phone": {ct.DPOPhone}, "dpo_address": {ct.DPOAddress},
		"representative_name": {ct.RepresentativeName}, "representative_contact": {ct.RepresentativeContact}, "privacy_policy_url": {ct.PrivacyPolicyURL}}}
	return c.showController(w, r, http.StatusOK, f)
}

func (c *Console) showController(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	fields := map[string]field{}
	for _, cf := range controllerFields {
		opts := []string{"type=" + cf.Type, "optional=yes", "autocomplete=off"}
		if cf.Hint != "" {
			opts = append(opts, "hint="+cf.Hint)
		}
		fields[cf.Name] = input(f, cf.Name, cf.Label, opts...)
	}
	t, err := c.tenants.ByID(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return err
	}
	return c.render(w, r, code, "settings-controller", &view{Title: "Controller details", Form: f,
		Data: map[string]any{"Fields": fields, "CanEdit": signedIn(r).Can("settings:write"), "Slug": t.Slug}})
}

func (c *Console) saveController(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	in := tenant.Controller{LegalName: f.Value("legal_name"), Address: f.Value("address"), Email: f.Value("email"), Phone: f.Value("phone"),
		DPOName: f.Value("dpo_name"), DPOEmail: f.Value("dpo_email"), DPOPhone: f.Value("dpo_phone"), DPOAddress: f.Value("dpo_address"),
		RepresentativeName: f.Value("representative_name"), RepresentativeContact: f.Value("representative_contact"),
		PrivacyPolicyURL: f.Value("privacy_policy_url")}
	if _, err := c.tenants.SetController(r.Context(), signedIn(r).TenantID, in); err != nil {
		if !f.refused(err, "legal_name", controllerNouns) {
			return err
		}
		return c.showController(w, r, http.StatusUnprocessableEntity, f)
	}
	return c.redirect(w, r, "/settings/controller", "controller-saved")
}
