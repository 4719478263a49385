package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/rights"
)

// The requests inbox: open requests by deadline with the days left,
// filters in the URL, the CSV of what is shown, bulk assignment and
// verification checked first; logging a request that came by phone or
// letter; a request's page with its history and every step.

// requestRow is a request as the inbox shows it.
type requestRow struct {
	rights.Request
	Person   string // who it is about, as far as may be shown
	Assignee string
	Due      dueLabel
}

// dueLabel says how a deadline stands, in the organisation's days.
type dueLabel struct {
	Text  string // "due in 5 days", "due today", "3 days overdue"
	Class string // "overdue" (red), "soon" (amber, within 7 days) or ""
	Date  time.Time
}

// dueOf says where r's deadline stands at now, counting calendar days
// in loc; within 7 days is "soon", as in the daily digest.
func dueOf(r rights.Request, now time.Time, loc *time.Location) dueLabel {
	d := dueLabel{Date: r.Deadline()}
	if r.Status == rights.Completed || r.Status == rights.Rejected {
		return d
	}
	day := func(t time.Time) time.Time {
		y, m, dd := t.In(loc).Date()
		return time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
	}
	days := int(day(d.Date).Sub(day(now)).Hours() / 24)
	switch {
	case r.Overdue && days >= 0:
		d.Text, d.Class = "overdue since today", "overdue"
	case r.Overdue || days < 0:
		d.Text, d.Class = plural(-days, "day")+" overdue", "overdue"
	case days == 0:
		d.Text, d.Class = "due today", "soon"
	case days <= 7:
		d.Text, d.Class = "due in "+plural(days, "day"), "soon"
	default:
		d.Text = "due in " + plural(days, "day")
	}
	return d
}

// plural says n things: "1 day", "3 days".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// inboxData is what the inbox shows.
type inboxData struct {
	Rows      []requestRow
	Query     url.Values
	Staff     []identity.UserRow // who requests can be assigned to
	Types     []string
	Channels  []string
	Total     int
	TotalMore bool
	Next      string
	First     string
	CSV       string
	Filtered  bool
	CanEdit   bool
}

func (c *Console) requestsPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	q := r.URL.Query()
	f, err := c.inboxFilter(r, q)
	if err != nil {
		return err
	}
	f.Limit = perPage
	f.Cursor = q.Get("cursor")
	page, err := c.rights.Query(r.Context(), p.TenantID, f)
	if e, ok := errs.As(err); ok && e.Kind == errs.Invalid { // a filter nobody can mean: the list without it
		q.Del(e.Field)
		q.Del("cursor")
		return c.redirect(w, r, "/requests?"+q.Encode(), "")
	}
	if err != nil {
		return err
	}
	d := inboxData{Query: q, Types: rights.Types, Channels: rights.Channels, Total: page.Total, TotalMore: page.TotalMore,
		CanEdit: p.Can("subjects:write")}
	if d.Staff, err = c.assignable(r); err != nil {
		return err
	}
	if d.Rows, err = c.requestRows(r, page.Items, d.Staff); err != nil {
		return err
	}
	d.First, d.Next = cursorLinks("/requests", q, page.NextCursor, "")
	rest := url.Values{}
	for k, vs := range q {
		if k != "cursor" {
			rest[k] = vs
		}
	}
	d.Filtered = len(rest) > 0
	d.CSV = "/requests/export.csv?" + rest.Encode()
	return c.render(w, r, http.StatusOK, "requests", &view{Title: "Requests", Data: d})
}

// inboxFilter reads the inbox's filters: open requests unless a status is
// chosen ("any" for all), verified ones unless the unverified are asked
// for, "me" for the signed-in person.
func (c *Console) inboxFilter(r *http.Request, q url.Values) (rights.Filter, error) {
	p := signedIn(r)
	f := rights.Filter{Type: q.Get("type"), Channel: q.Get("channel"), Due: q.Get("due"), Status: q.Get("status"),
		Assignee: q.Get("assignee"), NoStaff: !p.Can("users:read")}
	switch f.Status {
	case "":
		f.Status = "open"
	case "any":
		f.Status = ""
	}
	if f.Assignee == "me" {
		f.Assignee = p.UserID
	}
	if q.Get("unverified") != "show" && f.Status != rights.Received {
		yes := true
		f.Verified = &yes
	}
	return f, nil
}

// assignable answers the active owners and administrators: who a request
// can be assigned to.
func (c *Console) assignable(r *http.Request) ([]identity.UserRow, error) {
	page, err := c.identity.Users(r.Context(), signedIn(r).TenantID, identity.UserQuery{Status: identity.StatusActive, Limit: 500})
	if err != nil {
		return nil, err
	}
	var out []identity.UserRow
	for _, u := range page.Items {
		if u.Role == identity.RoleOwner || u.Role == identity.RoleAdmin {
			out = append(out, u)
		}
	}
	return out, nil
}

// requestRows names the people and assignees of rs, and their deadlines.
func (c *Console) requestRows(r *http.Request, rs []rights.Request, staff []identity.UserRow) ([]requestRow, error) {
	p := signedIn(r)
	t, err := c.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(rs))
	for _, q := range rs {
		ids = append(ids, q.SubjectID)
	}
	people, err := c.subjects.Some(r.Context(), p.TenantID, ids)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, u := range staff {
		names[u.ID] = or(u.Name, u.Email)
	}
	now := c.now()
	rows := make([]requestRow, 0, len(rs))
	for _, q := range rs {
		row := requestRow{Request: q, Due: dueOf(q, now, t.Location()), Assignee: names[q.AssigneeID]}
		if s, ok := people[q.SubjectID]; ok {
			row.Person = contactName(s)
		} else {
			row.Person = "Erased person " + shortID(q.SubjectID)
		}
		if q.AssigneeID != "" && row.Assignee == "" {
			row.Assignee = "Someone no longer here"
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// exportRequests downloads the list the filters select, as CSV.
func (c *Console) exportRequests(w http.ResponseWriter, r *http.Request) error {
	f, err := c.inboxFilter(r, r.URL.Query())
	if err != nil {
		return err
	}
	return c.api.SendRequests(w, r, f)
}

// Bulk actions: the ticked requests, what will be done to each and what
// is skipped and why, then done.

// bulkData is what the bulk confirmation page shows.
type bulkData struct {
	Action   string // assign | verify
	Assignee identity.UserRow
	Do       []requestRow
	Skip     []skipped
	Back     string
}

type skipped struct {
	requestRow
	Why string
}

func (c *Console) bulkPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.bulk(w, r)
	if err != nil || d == nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "requests-bulk", &view{Title: "Check before it is done", Back: d.Back, Data: d})
}

// bulk reads the ticked requests and the action, and sorts them into what
// will be done and what is skipped.
func (c *Console) bulk(w http.ResponseWriter, r *http.Request) (*bulkData, error) {
	f, err := parseForm(w, r)
	if err != nil {
		return nil, err
	}
	p := signedIn(r)
	d := &bulkData{Action: f.Value("action"), Back: localPath("/requests?" + f.Value("back"))}
	ids := slices.Compact(slices.Sorted(slices.Values(f.Values["id"])))
	staff, err := c.assignable(r)
	if err != nil {
		return nil, err
	}
	if who, ok := strings.CutPrefix(d.Action, "assign:"); ok {
		d.Action = "assign"
		i := slices.IndexFunc(staff, func(u identity.UserRow) bool { return u.ID == who })
		if i < 0 {
			return nil, errs.Field("action", "choose someone to assign the requests to")
		}
		d.Assignee = staff[i]
	} else if d.Action != "verify" {
		return nil, errs.Field("action", "choose what to do with the requests")
	}
	if len(ids) == 0 {
		return nil, errs.Field("id", "tick the requests to change")
	}
	var rs []rights.Request
	for _, id := range ids {
		q, err := c.rights.Peek(r.Context(), p.TenantID, id)
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		rs = append(rs, q)
	}
	rows, err := c.requestRows(r, rs, staff)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		why := ""
		switch {
		case row.Status == rights.Completed || row.Status == rights.Rejected:
			why = "it is " + row.Status + " already"
		case d.Action == "verify" && row.Status != rights.Received:
			why = "its identity check is done already (" + strings.ReplaceAll(row.Status, "_", " ") + ")"
		case d.Action == "assign" && row.AssigneeID == d.Assignee.ID:
			why = "it is assigned to them already"
		}
		if why != "" {
			d.Skip = append(d.Skip, skipped{row, why})
		} else {
			d.Do = append(d.Do, row)
		}
	}
	return d, nil
}

func (c *Console) bulkApply(w http.ResponseWriter, r *http.Request) error {
	d, err := c.bulk(w, r)
	if err != nil {
		return err
	}
	p := signedIn(r)
	for _, row := range d.Do {
		ch := rights.Change{Status: rights.Verified}
		if d.Action == "assign" {
			ch = rights.Change{AssigneeID: &d.Assignee.ID}
		}
		if _, err := c.rights.Update(r.Context(), p.TenantID, row.ID, ch); err != nil {
			return err
		}
	}
	return c.redirect(w, r, d.Back, map[string]string{"assign": "requests-assigned", "verify": "requests-verified"}[d.Action])
}
