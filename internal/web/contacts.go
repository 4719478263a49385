package web

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/subject"
)

// Contacts: the people a tenant keeps data about, paged by cursor (a
// tenant may hold millions), searched by exact identifier through the
// blind indexes, filtered by status, restriction, legal hold and consent.

// contactsData is what the contacts list shows.
type contactsData struct {
	Items     []subject.Subject
	Consent   map[string]consent.State // by contact id, for Purpose
	Purpose   *register.Purpose        // the consent column's purpose, if one is chosen
	Purposes  []register.Purpose       // the consent-based purposes, for the filter
	Query     url.Values
	Filters   []activeFilter
	Searched  bool // an identifier was looked up: no paging
	Total     int
	TotalMore bool
	From, To  int
	Prev      string // links to the neighbouring pages, "" at an end
	Next      string
	First     string
	CanEdit   bool
}

// phoneLike is what a person types as a phone number.
var phoneLike = regexp.MustCompile(`^\+?[0-9][0-9 ().-]{4,}$`)

func (c *Console) contactsPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	ctx := r.Context()
	q := r.URL.Query()
	d := contactsData{Query: q, CanEdit: p.Can("subjects:write")}
	ps, err := c.register.List(ctx, p.TenantID)
	if err != nil {
		return err
	}
	for _, pu := range ps {
		if pu.LegalBasis == register.Consent {
			d.Purposes = append(d.Purposes, pu)
			if pu.Key == q.Get("purpose") {
				d.Purpose = &pu
			}
		}
	}
	bad := func(key string) error { // a filter nobody can mean: the list without it
		q.Del(key)
		q.Del("after")
		q.Del("before")
		return c.redirect(w, r, "/contacts?"+q.Encode(), "")
	}
	if q.Get("purpose") != "" && d.Purpose == nil {
		return bad("purpose")
	}
	if q.Get("consent") == "missing" && d.Purpose == nil {
		return bad("consent")
	}

	if who := strings.TrimSpace(q.Get("q")); who != "" {
		d.Searched = true
		if d.Items, err = c.lookUp(r, who); err != nil {
			return err
		}
		d.Total, d.From, d.To = len(d.Items), min(1, len(d.Items)), len(d.Items)
	} else {
		o := subject.ListOptions{Limit: perPage, Status: q.Get("status"), Newest: q.Get("sort") == "newest"}
		for _, b := range []struct {
			key string
			dst **bool
		}{{"restricted", &o.Restricted}, {"hold", &o.Held}} {
			switch q.Get(b.key) {
			case "":
			case "yes", "no":
				v := q.Get(b.key) == "yes"
				*b.dst = &v
			default:
				return bad(b.key)
			}
		}
		if q.Get("consent") == "missing" {
			if o.Where, err = c.consent.MissingFilter(ctx, p.TenantID, d.Purpose.Key); err != nil {
				return err
			}
		}
		if err := c.contactsPageOf(r, o, &d); err != nil {
			if e, ok := errs.As(err); ok && e.Kind == errs.Invalid {
				return bad(e.Field)
			}
			return err
		}
	}
	if d.Purpose != nil {
		ids := make([]string, 0, len(d.Items))
		for _, s := range d.Items {
			ids = append(ids, s.ID)
		}
		if d.Consent, err = c.consent.States(ctx, p.TenantID, d.Purpose.Key, ids); err != nil {
			return err
		}
	}
	labels := map[string]string{"q": "Identifier", "status": "Status", "restricted": "Restricted", "hold": "Legal hold",
		"consent": "No valid consent", "purpose": "Consent shown for"}
	for _, key := range []string{"q", "status", "restricted", "hold", "consent", "purpose"} {
		v := q.Get(key)
		if v == "" || key == "purpose" && q.Get("consent") != "" {
			continue
		}
		rest := url.Values{}
		for k, vs := range q {
			if k != key && k != "after" && k != "before" && k != "from" && !(key == "purpose" && k == "consent") {
				rest[k] = vs
			}
		}
		label := labels[key] + ": " + v
		switch {
		case key == "consent" || key == "purpose":
			label = labels[key] + ": " + d.Purpose.Name
		case v == "yes" || v == "no":
			label = labels[key] + ": " + map[string]string{"yes": "yes", "no": "no"}[v]
		}
		d.Filters = append(d.Filters, activeFilter{Label: label, Remove: "/contacts?" + rest.Encode()})
	}
	return c.render(w, r, http.StatusOK, "contacts", &view{Title: "Contacts", Data: d})
}

// contactsPageOf fills d with the page the query's cursor names: after an
// id (the next page), before one (the previous), or the first.
func (c *Console) contactsPageOf(r *http.Request, o subject.ListOptions, d *contactsData) error {
	ctx, tid, q := r.Context(), signedIn(r).TenantID, d.Query
	from, _ := strconv.Atoi(q.Get("from"))
	from = max(from, 1)
	before := q.Get("before")
	if before != "" { // the page before: read backwards from it, then turn it round
		back := o
		back.Newest, back.After = !o.Newest, before
		items, next, err := c.subjects.List(ctx, tid, back)
		if err != nil {
			return err
		}
		slices.Reverse(items)
		d.Items = items
		if next != "" && len(items) > 0 {
			d.Prev = c.contactsLink(q, "before", items[0].ID, max(1, from-perPage))
		}
	} else {
		o.After = q.Get("after")
		items, next, err := c.subjects.List(ctx, tid, o)
		if err != nil {
			return err
		}
		d.Items = items
		if next != "" {
			d.Next = c.contactsLink(q, "after", next, from+len(items))
		}
		if o.After != "" && len(items) > 0 {
			d.Prev = c.contactsLink(q, "before", items[0].ID, max(1, from-perPage))
		}
	}
	if before != "" && len(d.Items) > 0 {
		d.Next = c.contactsLink(q, "after", d.Items[len(d.Items)-1].ID, from+len(d.Items))
	}
	if q.Get("after") != "" || before != "" {
		first := url.Values{}
		for k, vs := range q {
			if k != "after" && k != "before" && k != "from" {
				first[k] = vs
			}
		}
		d.First = "/contacts?" + first.Encode()
	}
	var err error
	if d.Total, d.TotalMore, err = c.subjects.ListCount(ctx, tid, o); err != nil {
		return err
	}
	if d.Prev == "" { // the first page, whichever way it was reached
		from = 1
	}
	d.From, d.To = min(from, d.Total+1), from+len(d.Items)-1
	if len(d.Items) == 0 {
		d.From = 0
	}
	return nil
}

// contactsLink is the list with the same filters at another page.
func (c *Console) contactsLink(q url.Values, dir, id string, from int) string {
	v := url.Values{}
	for k, vs := range q {
		if k != "after" && k != "before" && k != "from" {
			v[k] = vs
		}
	}
	v.Set(dir, id)
	v.Set("from", strconv.Itoa(from))
	return "/contacts?" + v.Encode()
}

// lookUp finds the contacts with exactly this email address, phone
// number or external id (the blind indexes match whole values only).
func (c *Console) lookUp(r *http.Request, who string) ([]subject.Subject, error) {
	ctx, tid := r.Context(), signedIn(r).TenantID
	tries := []subject.Lookup{{ExternalID: who}}
	switch {
	case strings.Contains(who, "@"):
		tries = []subject.Lookup{{Email: who}}
	case phoneLike.MatchString(who):
		tries = []subject.Lookup{{Phone: who}, {ExternalID: who}}
	}
	for _, l := range tries {
		subs, err := c.subjects.Find(ctx, tid, l)
		if e, ok := errs.As(err); ok && e.Kind == errs.Invalid {
			continue // not a well-formed address or number: nobody has it
		}
		if err != nil || len(subs) > 0 {
			return subs, err
		}
	}
	return nil, nil
}
