package web

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

//go:embed templates
var templateFS embed.FS

// pages are the parsed templates by page name: the layout, the partials
// and the page's own file.
type pages map[string]*template.Template

func parsePages(a assets) (pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"asset":        a.path,
		"input":        input,
		"date":         func(t time.Time, loc *time.Location) string { return t.In(loc).Format("2 January 2006, 15:04 MST") },
		"browser":      browserName,
		"role":         roleName,
		"list":         func(s ...string) []string { return s },
		"choice":       choice,
		"kinds":        func() any { return actionKinds },
		"sentence":     sentence,
		"contact":      contactName,
		"consentState": consentText,
		"short":        shortID,
		"basis":        basisName,
		"rule":         policyRule,
		"status":       statusName,
		"size":         sizeName,
		"trimBack":     func(s string) string { _, q, _ := strings.Cut(s, "?"); return q },
		"has":          func(vs []string, v string) bool { return slices.Contains(vs, v) },
		"depth":        func(key string) int { return strings.Count(key, ".") },
		"concat":       func(a, b []string) []string { return slices.Concat(a, b) },
		"words":        func(s string) string { return strings.ReplaceAll(s, "_", " ") },
	}
	ps := pages{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("page %s: %w", name, err)
		}
		ps[name] = t
	}
	return ps, nil
}

// view is what the layout and a page show.
type view struct {
	Title  string // the h1, and the start of <title>
	Back   string // a back link, if any
	Notice string // the success banner, once
	Form   *form  // a form's answers and problems
	Org    string // the organisation a public page speaks for
	Secret bool   // the page shows a secret (a key, codes, a link's token): never compressed
	Data   any    // the page's own

	// Filled by render.
	Person    *person
	Nav       []navItem
	Zone      *time.Location // the organisation's time zone, for dates (UTC until known)
	principal identity.Principal
}

// person is the signed-in person as the header shows them.
type person struct {
	Name, Email, Tenant string
	Enrolment           bool
	AccountCurrent      bool // the page is one of the account's
}

type navItem struct {
	Label, Href string
	Current     bool
	Also        string // another path the item is current under
}

// render writes the page name with v into a buffer, then answers it: a
// template error gives a clean failure, never half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, v *view) error {
	t, ok := c.pages[name]
	if !ok {
		return fmt.Errorf("no page %q", name)
	}
	if v.principal.UserID == "" {
		v.principal = signedIn(r)
	}
	if p := v.principal; p.UserID != "" {
		if err := c.describe(r, p, v); err != nil {
			return err
		}
	}
	if v.Notice == "" {
		v.Notice = c.takeNotice(w, r)
	}
	if v.Zone == nil && r.PathValue("tenant") != "" { // a public page of an organisation: its time zone
		if t, err := c.tenants.BySlug(r.Context(), r.PathValue("tenant")); err == nil {
			v.Zone = t.Location()
		}
	}
	if v.Zone == nil {
		v.Zone = time.UTC
	}
	start := time.Now()
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Server-Timing", fmt.Sprintf("render;dur=%.2f", float64(time.Since(start).Microseconds())/1000))
	h.Add("Vary", "Accept-Encoding")
	body := b.Bytes()
	// Compressed only when the page holds no secret: a secret beside
	// text the requester chose, compressed, leaks through the length
	// (BREACH).
	if len(body) > 1024 && !v.Secret && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		if _, err := zw.Write(body); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		h.Set("Content-Encoding", "gzip")
		body = z.Bytes()
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(code)
	_, err := w.Write(body)
	return err
}

// describe fills the header and navigation of a signed-in person's page.
func (c *Console) describe(r *http.Request, p identity.Principal, v *view) error {
	prof, err := c.subjects.Profile(r.Context(), p.TenantID, p.SubjectID)
	if err != nil {
		return err
	}
	t, err := c.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	v.Zone = t.Location()
	if prof.TimeZone != "" { // the person's own
		if loc, err := time.LoadLocation(prof.TimeZone); err == nil {
			v.Zone = loc
		}
	}
	v.Person = &person{Name: prof.Name, Email: prof.Email, Tenant: t.Name, Enrolment: p.Enrolment}
	if p.Enrolment {
		return nil
	}
	v.Nav = []navItem{{Label: "Home", Href: "/"}}
	if p.Can("subjects:read") {
		v.Nav = append(v.Nav, navItem{Label: "Requests", Href: "/requests", Also: "/objections"}, navItem{Label: "Contacts", Href: "/contacts"},
			navItem{Label: "Consent", Href: "/consent", Also: "/campaigns"})
	}
	if p.Can("spaces:read") {
		v.Nav = append(v.Nav, navItem{Label: "Files", Href: "/spaces", Also: "/trash"})
	}
	if p.Can("purposes:read") {
		v.Nav = append(v.Nav, navItem{Label: "Register", Href: "/register"})
	}
	if p.Can("settings:read") {
		v.Nav = append(v.Nav, navItem{Label: "Retention", Href: "/retention"})
	}
	switch { // groups are under users for those who see both
	case p.Can("users:read"):
		v.Nav = append(v.Nav, navItem{Label: "Users", Href: "/users", Also: "/groups"})
	case p.Can("groups:read"):
		v.Nav = append(v.Nav, navItem{Label: "Groups", Href: "/groups"})
	}
	if p.Can("audit:read") {
		v.Nav = append(v.Nav, navItem{Label: "Audit", Href: "/audit"})
	}
	if p.Can("settings:read") {
		v.Nav = append(v.Nav, navItem{Label: "Settings", Href: "/settings/security", Also: "/settings"})
	}
	for i := range v.Nav {
		n := &v.Nav[i]
		n.Current = n.Href == r.URL.Path || n.Href != "/" && strings.HasPrefix(r.URL.Path, n.Href+"/") ||
			n.Also != "" && (r.URL.Path == n.Also || strings.HasPrefix(r.URL.Path, n.Also+"/"))
	}
	v.Person.AccountCurrent = strings.HasPrefix(r.URL.Path, "/account")
	return nil
}

// form is a form's answers and what is wrong with them.
type form struct {
	Values   url.Values
	Problems []problem // in the order of the fields
}

// problem is one thing wrong with a form: the field and what to do.
type problem struct{ Field, Message string }

func newForm(r *http.Request) *form { return &form{Values: r.PostForm} }

// Value answers the answer to field.
func (f *form) Value(field string) string {
	if f == nil {
		return ""
	}
	return f.Values.Get(field)
}

// Problem answers what is wrong with field, if anything.
func (f *form) Problem(field string) string {
	if f == nil {
		return ""
	}
	for _, p := range f.Problems {
		if p.Field == field {
			return p.Message
		}
	}
	return ""
}

// add records what is wrong with field.
func (f *form) add(field, message string) { f.Problems = append(f.Problems, problem{field, message}) }

// refused records err against the form when it is a refusal of the
// person's answers — a field named, or a wrong sign-in — and answers
// whether it was. nouns name the fields as a sentence does ("password",
// "code"); a refusal naming no field of the form goes to fallback.
func (f *form) refused(err error, fallback string, nouns map[string]string) bool {
	e, ok := errs.As(err)
	if !ok {
		return false
	}
	switch e.Kind {
	case errs.Invalid, errs.Unauthenticated, errs.Gone, errs.Conflict, errs.NotFound:
	default:
		return false
	}
	if noun, known := nouns[e.Field]; known && e.Field != "" {
		f.add(e.Field, message(noun, e.Detail))
	} else {
		f.add(fallback, sentence(e.Detail))
	}
	return true
}

// message makes a service's refusal of a field into a sentence:
// "required" becomes "Enter the …", "must be …" becomes "The … must be …".
func message(noun, detail string) string {
	switch {
	case detail == "required":
		return "Enter the " + noun + "."
	case startsLower(detail):
		return sentence("The " + noun + " " + detail)
	}
	return sentence(detail)
}

// sentence capitalises s and ends it with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "?") && !strings.HasSuffix(s, "!") {
		s += "."
	}
	return s
}

func startsLower(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsLower(r)
}

// field is one input as the "input" partial draws it.
type field struct {
	Name, Label, Type, Autocomplete, Hint, Inputmode, Value, Problem string
	Optional                                                         bool
}

// input describes an input of f: name, label, then options as
// "key=value" (type, autocomplete, hint, inputmode, optional=yes).
func input(f *form, name, label string, opts ...string) field {
	in := field{Name: name, Label: label, Type: "text", Value: f.Value(name), Problem: f.Problem(name)}
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "type":
			in.Type = v
		case "autocomplete":
			in.Autocomplete = v
		case "hint":
			in.Hint = v
		case "inputmode":
			in.Inputmode = v
		case "optional":
			in.Optional = true
		}
	}
	if in.Type == "password" {
		in.Value = "" // never sent back
	}
	return in
}

// The notices a redirect leaves for the next page, by key: the cookie
// carries the key only.
var notices = map[string]string{
	"signed-out":           "You are signed out.",
	"sign-in-again":        "Sign in again to finish setting up your second factor.",
	"password-reset":       "Your password is changed. Sign in with it.",
	"factor-added":         "Your second factor is set up. You will need it each time you sign in.",
	"code-sent":            "A code is on its way to your phone.",
	"session-ended":        "Your sign-in took too long, or has ended. Sign in again.",
	"recovery-used":        "You used a recovery code. Each works once: when few are left, make new ones.",
	"reset-sent":           "If your organisation has an active account with this email address, a link to choose a new password is on its way. It works once, for 30 minutes.",
	"invite-accepted":      "Welcome. Your password is set.",
	"saved":                "Your change is saved.",
	"email-sent":           "A link to confirm the new address is on its way to it. Until it is used, you sign in as before.",
	"password-changed":     "Your password is changed. Every other place you were signed in has been signed out.",
	"session-revoked":      "That session has ended.",
	"token-revoked":        "The token is revoked: it no longer works.",
	"account-closing":      "Your account is closing. You can cancel until the date below.",
	"closure-cancelled":    "Your account stays: the closure is cancelled.",
	"account-erased":       "Your account is closed and your data erased.",
	"factor-removed":       "The second factor is removed.",
	"role-changed":         "The role is changed.",
	"suspended":            "The account is suspended: it cannot sign in, its sessions have ended and its API tokens do not work.",
	"reactivated":          "The account is active again.",
	"unlocked":             "The account is unlocked.",
	"factors-reset":        "Their second factors are removed and they are signed out everywhere. They have been told by email.",
	"invited":              "The invitation is on its way. It works for 7 days.",
	"group-created":        "The group is created. Add people to it below.",
	"member-added":         "They are in the group.",
	"member-removed":       "They are no longer in the group.",
	"imported":             "The file is imported: everyone in it is invited, and listed here until they accept.",
	"contact-changed":      "The change is saved, and recorded in the audit trail.",
	"held":                 "The contact is on legal hold: no erasure, retention policy or request removes their data until the hold is released.",
	"released":             "The legal hold is released.",
	"restricted":           "Processing is restricted: their data is kept, and not shown or used until the restriction is lifted.",
	"unrestricted":         "The restriction is lifted.",
	"erased":               "The contact is erased.",
	"contacts-imported":    "The file is imported. The newest contacts are first.",
	"campaign-started":     "The campaign is started: its emails are on their way.",
	"purpose-added":        "The purpose is in the register.",
	"notice-added":         "The new version of the notice is published. People asked from now on see it.",
	"policy-added":         "The policy is added, and on: it runs every hour. Preview a run to see whom it reaches.",
	"policy-enabled":       "The policy is on: it runs every hour.",
	"policy-disabled":      "The policy is off: it does not run until it is turned on again.",
	"policy-deleted":       "The policy is deleted.",
	"retention-ran":        "The run is done. What it did is below, and in the audit trail.",
	"requests-assigned":    "The requests are assigned.",
	"requests-verified":    "The requests are marked as verified: their deadlines run on.",
	"request-verified":     "The person's identity is verified.",
	"request-started":      "The request is in progress.",
	"request-completed":    "The request is completed.",
	"request-assigned":     "The assignee is changed.",
	"note-added":           "The note is added. Only people of your organisation see it.",
	"request-extended":     "The deadline is extended, and the person told why.",
	"request-rejected":     "The request is rejected. The person is told why by email, if they have an address.",
	"request-delivered":    "A link to their data is on its way to the person. It works once, for 7 days. The request is completed.",
	"request-logged":       "The request is logged. Its deadline runs from today.",
	"controller-saved":     "Saved. The privacy portal, its mails and every access export now say this.",
	"space-created":        "The space is created. Its files are kept in the region shown.",
	"folder-created":       "The folder is created.",
	"file-uploaded":        "The file is uploaded, encrypted.",
	"moved":                "It is moved.",
	"trashed":              "It is in the trash: it can be restored until the trash is emptied.",
	"version-restored":     "That version is the current one again (as a new version).",
	"granted":              "Access is given.",
	"revoked":              "Access is taken away.",
	"migration-started":    "The space is moving to the new region. It stays usable meanwhile; the progress is below.",
	"restored":             "It is back where it was.",
	"purged":               "It is deleted for good, with every version.",
	"objection-upheld":     "The objection is upheld: processing for the purpose stays stopped.",
	"objection-overridden": "The objection is overridden: processing may go on. Put the compelling grounds in the request's notes.",
}

const noticeCookie = "__Host-custodia_notice"

// redirect answers 303 to location, leaving the notice for the page there.
func (c *Console) redirect(w http.ResponseWriter, r *http.Request, location, notice string) error {
	if _, ok := notices[notice]; ok {
		http.SetCookie(w, &http.Cookie{Name: noticeCookie, Value: notice, Path: "/", Secure: true, HttpOnly: true,
			SameSite: http.SameSiteLaxMode, MaxAge: 60})
	}
	http.Redirect(w, r, location, http.StatusSeeOther)
	return nil
}

// takeNotice answers the notice a redirect left, once.
func (c *Console) takeNotice(w http.ResponseWriter, r *http.Request) string {
	ck, err := r.Cookie(noticeCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: noticeCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, MaxAge: -1})
	return notices[ck.Value]
}

// browserName says which browser on which system a user agent is, as a
// person would ("Firefox on Windows"), or "Unknown browser".
func browserName(ua string) string {
	name := "Unknown browser"
	for _, b := range []struct{ token, name string }{{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"},
		{"HeadlessChrome/", "Chromium (headless)"}, {"Chrome/", "Chrome"}, {"Safari/", "Safari"}, {"curl/", "curl"}} {
		if strings.Contains(ua, b.token) {
			name = b.name
			break
		}
	}
	for _, o := range []struct{ token, name string }{{"Windows", "Windows"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"},
		{"Android", "Android"}, {"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"}} {
		if strings.Contains(ua, o.token) {
			return name + " on " + o.name
		}
	}
	return name
}

// sizeName says a number of bytes as a person reads it: "12.3 MB".
func sizeName(n int64) string {
	switch {
	case n < 1000:
		return strconv.FormatInt(n, 10) + " bytes"
	case n < 1_000_000:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 1, 64) + " kB"
	case n < 1_000_000_000:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB"
	}
	return strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64) + " GB"
}

// statusName says a status or a kind as words: "in_progress" is "In progress".
func statusName(s string) string {
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + strings.ReplaceAll(s[1:], "_", " ")
}

// selectField is a select as the "select" partial draws it.
type selectField struct {
	Name, Label, Value string
	Options            []option
}

type option struct{ Value, Label string }

// choice describes a select: name, label, the value chosen, then pairs of
// value and label.
func choice(name, label, value string, pairs ...string) selectField {
	sf := selectField{Name: name, Label: label, Value: value}
	for i := 0; i+1 < len(pairs); i += 2 {
		sf.Options = append(sf.Options, option{pairs[i], pairs[i+1]})
	}
	return sf
}
