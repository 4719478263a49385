package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/subject"
)

// The audit trail: who did what, when, newest first, with filters in the
// URL — dates (in the organisation's time zone, both ends included), a
// person by email, a group, the kind of action, the outcome — pages by
// a cursor, the CSV of the filtered view or of everything (the API's own
// export, with the same filters), and the chain's verification.

// auditData is what the audit page shows.
type auditData struct {
	Entries []auditRow
	Query   url.Values
	Groups  []identity.Group
	Newer   string // the first page, when not on it
	Older   string // the next page
	CSV     string // the filtered view as CSV (the API's export)
	Filters bool
	Head    audit.HeadState
	Checked *audit.Entry // the last verification, if any
}

// days reads the days "from" and "to" (both included) of f, in loc: the
// instants where they begin and where the day after "to" begins.
// Problems are added to f.
func (f *form) days(loc *time.Location) (from, to time.Time) {
	day := func(field, label string) time.Time {
		v := strings.TrimSpace(f.Value(field))
		if v == "" {
			return time.Time{}
		}
		d, err := time.ParseInLocation("2006-01-02", v, loc)
		if err != nil {
			f.add(field, "Enter the "+label+" as a year, month and day, for example 2026-03-04.")
		}
		return d
	}
	from = day("from", "first day")
	if to = day("to", "last day"); !to.IsZero() {
		to = to.AddDate(0, 0, 1) // the last day included
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		f.add("to", "Enter a last day on or after the first day.")
	}
	return from, to
}

// cursorLinks are the links of a list paged by cursor, with the filters
// of q kept: its first page (when q is not on it) and its next page (when
// there is one); fragment, if any, ends both.
func cursorLinks(base string, q url.Values, next, fragment string) (first, following string) {
	rest := url.Values{}
	for k, vs := range q {
		if k != "cursor" {
			rest[k] = vs
		}
	}
	if q.Get("cursor") != "" {
		first = base + "?" + rest.Encode() + fragment
	}
	if next != "" {
		rest.Set("cursor", next)
		following = base + "?" + rest.Encode() + fragment
	}
	return first, following
}

// auditRow is an event as a person reads it.
type auditRow struct {
	audit.Entry
	Who, What string
}

// actionKinds are the choices of the action filter: prefixes of actions.
var actionKinds = []struct{ Value, Label string }{
	{"", "Any"}, {"auth.*", "Signing in and out"}, {"user.*", "Users and accounts"}, {"mfa.*", "Second factors"},
	{"token.*", "API tokens"}, {"subject.*", "Contacts and personal data"}, {"consent.*", "Consent"},
	{"request.*", "Data-subject requests"}, {"file.*", "Files"}, {"space.*", "Spaces"}, {"group.*", "Groups"},
	{"settings.*", "Settings"}, {"audit.*", "The audit trail itself"}, {"access.denied", "Refusals"},
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	ctx := r.Context()
	t, err := c.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := &form{Values: q}
	af := audit.Filter{Action: q.Get("action"), Outcome: q.Get("outcome"), Cursor: q.Get("cursor"), Limit: perPage}
	api := url.Values{}
	if af.From, af.To = f.days(t.Location()); !af.From.IsZero() {
		api.Set("from", af.From.UTC().Format(time.RFC3339))
	}
	if !af.To.IsZero() {
		api.Set("to", af.To.UTC().Format(time.RFC3339))
	}
	if email := strings.TrimSpace(q.Get("person")); email != "" {
		u, err := c.identity.UserByEmail(ctx, p.TenantID, email)
		switch {
		case errs.Is(err, errs.NotFound):
			f.add("person", "Nobody in "+t.Name+" signs in with this address. Enter the whole address of a user.")
		case err != nil:
			f.add("person", "Enter the person's whole email address, like name@example.com.")
		default:
			af.ActorSubjects = []string{u.SubjectID} // by the index on the actor's person
			api.Set("actor", u.SubjectID)
		}
	}
	if g := q.Get("group"); g != "" {
		if af.ActorSubjects, err = c.identity.GroupSubjects(ctx, p.TenantID, g); err != nil {
			f.add("group", "Choose a group from the list.")
		}
		api.Set("group", g)
	}
	for _, k := range []string{"action", "outcome"} {
		if v := q.Get(k); v != "" {
			api.Set(k, v)
		}
	}
	groups, err := c.identity.Groups(ctx, p)
	if err != nil {
		return err
	}
	d := auditData{Query: q, Groups: groups, Filters: len(api) > 0}
	if d.Head, d.Checked, err = c.api.AuditState(r); err != nil {
		return err
	}
	code := http.StatusOK
	if len(f.Problems) > 0 {
		code = http.StatusUnprocessableEntity
	} else {
		entries, next, err := c.api.ReadAudit(r, af)
		if e, ok := errs.As(err); ok && e.Kind == errs.Invalid {
			f.add(or(map[string]string{"action": "action", "outcome": "outcome"}[e.Field], "action"), sentence(e.Detail))
			code = http.StatusUnprocessableEntity
		} else if err != nil {
			return err
		}
		people, err := c.named(r, entries)
		if err != nil {
			return err
		}
		for _, e := range entries {
			d.Entries = append(d.Entries, auditRow{Entry: e, Who: who(e.Actor), What: what(e, people)})
		}
		d.Newer, d.Older = cursorLinks("/audit", q, next, "")
	}
	api.Set("format", "csv")
	d.CSV = "/api/v1/audit?" + api.Encode()
	return c.render(w, r, code, "audit", &view{Title: "Audit trail", Form: f, Data: d})
}

// who names the actor of an event as a person reads it.
func who(a audit.EntryActor) string {
	switch {
	case a.Display != "":
		if a.Type == audit.ActorToken {
			return a.Display + " (API token)"
		}
		return a.Display
	case a.Type == audit.ActorSystem:
		return "Custodia (automatic)"
	case a.Type == audit.ActorOperator:
		return "The operator (command line)"
	case a.Type == identity.ActorAnonymous:
		return "Someone not signed in"
	case a.SubjectID != "":
		return "An erased person"
	}
	return a.Type
}

// actionWords say what an action did, for the common ones.
var actionWords = map[string]string{
	"auth.login": "signed in", "auth.logout": "signed out", "auth.mfa": "confirmed a second factor", "auth.reauthenticate": "confirmed it was them",
	"user.create": "added a user", "user.update": "changed a user", "user.list": "listed users", "user.read": "looked at a user",
	"user.invite": "invited someone", "user.invitation.accept": "accepted an invitation", "user.lock": "locked an account after wrong passwords",
	"user.unlock": "unlocked an account", "user.mfa.reset": "reset someone's second factors", "user.password.change": "changed their password",
	"user.password.reset": "reset their password", "user.close": "closed their account", "user.close.cancel": "kept their account",
	"user.email.change": "changed their sign-in address", "user.export": "exported the users",
	"mfa.enrol": "began setting up a second factor", "mfa.confirm": "set up a second factor", "mfa.remove": "removed a second factor",
	"mfa.recovery_codes.regenerate": "made new recovery codes", "token.create": "created an API token", "token.revoke": "revoked an API token",
	"session.revoke": "ended a session", "subject.create": "added a contact", "subject.read": "looked at a contact",
	"subject.rectify": "corrected a contact", "subject.erase": "erased a person", "subject.access_export": "exported a person's data",
	"consent.grant": "recorded a consent", "consent.withdraw": "recorded a withdrawal of consent", "request.create": "logged a request",
	"request.update": "changed a request", "file.upload": "uploaded a file", "file.read": "downloaded a file", "file.move": "moved a file",
	"space.create": "created a space", "group.create": "created a group", "settings.security.update": "changed the security settings",
	"audit.read": "read the audit trail", "audit.export": "downloaded the audit trail", "audit.verify": "verified the audit trail",
	"access.denied": "was refused", "tenant.create": "created the organisation",
}

// named answers how the page names what its events were about, each
// looked up once: an account by its name or email, a file or folder by its
// name and space, a space by its name — or that it is gone since (or, for
// files and spaces, out of the viewer's sight).
func (c *Console) named(r *http.Request, entries []audit.Entry) (map[string]string, error) {
	p := signedIn(r)
	ctx := r.Context()
	out := map[string]string{}
	for _, e := range entries {
		id := e.Target.ID
		if id == "" || out[id] != "" {
			continue
		}
		var name string
		var err error
		switch e.Target.Type {
		case "user":
			var u identity.User
			if u, err = c.identity.UserByID(ctx, p.TenantID, id); err == nil {
				var prof subject.Profile
				prof, err = c.subjects.Profile(ctx, p.TenantID, u.SubjectID)
				name = or(prof.Name, prof.Email)
			}
			if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Gone) {
				name, err = "a person erased since", nil
			}
		case "file", "folder":
			if name, err = c.files.Describe(ctx, p, id); errs.Is(err, errs.NotFound) || errs.Is(err, errs.Forbidden) {
				name, err = "a "+e.Target.Type+" deleted since, or one you cannot see", nil
			}
		case "space":
			var sp space.Space
			if sp, err = c.spaces.Get(ctx, p, id); err == nil {
				name = sp.Name
			} else if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Forbidden) {
				name, err = "a space deleted since, or one you cannot see", nil
			}
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = name
	}
	return out, nil
}

// what says what an event did, naming what it was about (names).
func what(e audit.Entry, people map[string]string) string {
	w, ok := actionWords[e.Action]
	if !ok {
		w = e.Action
	}
	if e.Target.Type == "route" {
		return w + ": " + e.Target.ID
	}
	if name := people[e.Target.ID]; name != "" {
		return w + ": " + name
	}
	if e.Target.Type != "" && e.Target.ID != "" && e.Target.Type != "audit" {
		id := e.Target.ID
		if len(id) > 13 {
			id = id[len(id)-12:]
		}
		w += " (" + e.Target.Type + " …" + id + ")"
	}
	return w
}

// auditVerify checks the chain now and shows what it found.
func (c *Console) auditVerify(w http.ResponseWriter, r *http.Request) error {
	v, err := c.api.VerifyAudit(r)
	if err != nil {
		return err
	}
	title := "The audit trail is intact"
	if !v.OK {
		title = "The audit trail is damaged"
	}
	return c.render(w, r, http.StatusOK, "audit-verify", &view{Title: title, Back: "/audit", Data: v})
}
