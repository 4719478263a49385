package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/rights"
)

// A request's page, its steps, logging one on someone's behalf, and the
// objections waiting for a decision.

// requestData is what a request's page shows.
type requestData struct {
	Row      requestRow
	Staff    []identity.UserRow
	Names    map[string]string // staff names by user id, for the history
	Next     []string          // the statuses it can move to
	Reasons  []string          // rejection reason codes
	Told     map[string]string // what a rejection tells the person, by code
	CanEdit  bool
	Delivers bool // an access or portability request: answered with a download
}

func (c *Console) requestPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.request(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "request", &view{Title: requestTitle(d.Row), Back: "/requests", Form: &form{Values: url.Values{}}, Data: d})
}

// requestTitle names a request as a page heading does: "Erasure request
// from ann@example.org".
func requestTitle(row requestRow) string {
	return strings.TrimSuffix(sentence(strings.ReplaceAll(row.Type, "_", " ")+" request from "+row.Person), ".")
}

// request reads the request in the path with its history (audited).
func (c *Console) request(r *http.Request) (requestData, error) {
	p := signedIn(r)
	q, err := c.rights.Get(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		return requestData{}, err
	}
	if !p.Can("users:read") { // requests about staff need users:read too, as in the API's list
		if _, err := c.identity.UserBySubject(r.Context(), p.TenantID, q.SubjectID); err == nil {
			return requestData{}, errs.E(errs.NotFound, "no such request")
		}
	}
	d := requestData{Names: map[string]string{}, Reasons: rights.ReasonCodes, Told: rights.RejectionReasons, CanEdit: p.Can("subjects:write"),
		Delivers: q.Type == "access" || q.Type == "portability"}
	if d.Staff, err = c.assignable(r); err != nil {
		return d, err
	}
	for _, u := range d.Staff {
		d.Names[u.ID] = or(u.Name, u.Email)
	}
	rows, err := c.requestRows(r, []rights.Request{q}, d.Staff)
	if err != nil {
		return d, err
	}
	d.Row = rows[0]
	d.Next = rights.Next(q.Status)
	slices.Reverse(d.Row.History) // newest first
	return d, nil
}

// moveRequest moves the request in the path to status.
func (c *Console) moveRequest(status, notice string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := c.rights.Update(r.Context(), signedIn(r).TenantID, r.PathValue("id"), rights.Change{Status: status}); err != nil {
			return err
		}
		return c.redirect(w, r, "/requests/"+r.PathValue("id"), notice)
	}
}

func (c *Console) assignRequest(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	who := f.Value("assignee")
	if _, err := c.rights.Update(r.Context(), signedIn(r).TenantID, r.PathValue("id"), rights.Change{AssigneeID: &who}); err != nil {
		return err
	}
	return c.redirect(w, r, "/requests/"+r.PathValue("id"), "request-assigned")
}

func (c *Console) noteRequest(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("note", "the note"); len(f.Problems) == 0 {
		_, err = c.rights.Update(r.Context(), signedIn(r).TenantID, r.PathValue("id"), rights.Change{Note: f.Value("note")})
		if err == nil {
			return c.redirect(w, r, "/requests/"+r.PathValue("id")+"#history", "note-added")
		}
		if !f.refused(err, "note", map[string]string{"note": "note"}) {
			return err
		}
	}
	d, err := c.request(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "request", &view{Title: requestTitle(d.Row), Back: "/requests", Form: f, Data: d})
}

// requestStepPage shows the form of a step that asks for more: extend
// (the reason the person is told), reject (the reason code).
func (c *Console) requestStepPage(page, title string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		d, err := c.request(r)
		if err != nil {
			return err
		}
		return c.render(w, r, http.StatusOK, page, &view{Title: title, Back: "/requests/" + d.Row.ID, Form: &form{Values: url.Values{}}, Data: d})
	}
}

func (c *Console) extendRequest(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("reason", "the reason"); len(f.Problems) == 0 {
		_, err = c.rights.Extend(r.Context(), signedIn(r).TenantID, r.PathValue("id"), f.Value("reason"))
		if err == nil {
			return c.redirect(w, r, "/requests/"+r.PathValue("id"), "request-extended")
		}
		if !f.refused(err, "reason", map[string]string{"reason": "reason"}) {
			return err
		}
	}
	d, err := c.request(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "request-extend", &view{Title: "Extend the deadline", Back: "/requests/" + d.Row.ID, Form: f, Data: d})
}

func (c *Console) rejectRequest(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.Value("reason_code") == "" {
		f.add("reason_code", "Choose the reason.")
	} else {
		_, err = c.rights.Update(r.Context(), signedIn(r).TenantID, r.PathValue("id"), rights.Change{Status: rights.Rejected,
			ReasonCode: f.Value("reason_code"), Note: strings.TrimSpace(f.Value("note"))})
		if err == nil {
			return c.redirect(w, r, "/requests/"+r.PathValue("id"), "request-rejected")
		}
		if !f.refused(err, "reason_code", map[string]string{"reason_code": "reason", "note": "note"}) {
			return err
		}
	}
	d, err := c.request(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "request-reject", &view{Title: "Reject the request", Back: "/requests/" + d.Row.ID, Form: f, Data: d})
}

func (c *Console) deliverRequest(w http.ResponseWriter, r *http.Request) error {
	if _, err := c.rights.Deliver(r.Context(), signedIn(r).TenantID, r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/requests/"+r.PathValue("id"), "request-delivered")
}

// Logging a request that came by phone, letter or in person.

var requestNouns = map[string]string{"type": "kind of request", "channel": "way it came", "email": "email address",
	"phone": "phone number", "note": "note", "purposes": "purposes"}

func (c *Console) newRequestPage(w http.ResponseWriter, r *http.Request) error {
	_, ps, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	f := &form{Values: url.Values{"channel": {"phone"}}}
	return c.render(w, r, http.StatusOK, "request-new", &view{Title: "Log a request", Back: "/requests", Form: f,
		Data: map[string]any{"Types": rights.Types, "Purposes": ps}})
}

func (c *Console) createRequest(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	in := rights.Input{Type: f.Value("type"), Channel: f.Value("channel"), Email: strings.TrimSpace(f.Value("email")),
		Phone: strings.TrimSpace(f.Value("phone")), Note: strings.TrimSpace(f.Value("note")), Purposes: f.Values["purposes"]}
	if in.Type == "" {
		f.add("type", "Choose what they ask for.")
	}
	if in.Email == "" && in.Phone == "" {
		f.add("email", "Enter their email address or phone number, to find or add them.")
	}
	if len(f.Problems) == 0 {
		q, err := c.rights.Create(r.Context(), signedIn(r).TenantID, in)
		if err == nil {
			return c.redirect(w, r, "/requests/"+q.ID, "request-logged")
		}
		if !f.refused(err, "type", requestNouns) {
			return err
		}
	}
	_, ps, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "request-new", &view{Title: "Log a request", Back: "/requests", Form: f,
		Data: map[string]any{"Types": rights.Types, "Purposes": ps}})
}

// The objections waiting for a decision (Art. 21): uphold (processing
// for the purpose stops) or override (compelling legitimate grounds).

func (c *Console) objectionsPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	os, err := c.rights.Objections(r.Context(), p.TenantID, r.URL.Query().Get("status"), !p.Can("users:read"))
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(os))
	for _, o := range os {
		ids = append(ids, o.SubjectID)
	}
	people, err := c.subjects.Some(r.Context(), p.TenantID, ids)
	if err != nil {
		return err
	}
	names, _, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	who := map[string]string{}
	for _, id := range ids {
		if s, ok := people[id]; ok {
			who[id] = contactName(s)
		} else {
			who[id] = "Erased person " + shortID(id)
		}
	}
	return c.render(w, r, http.StatusOK, "objections", &view{Title: "Objections", Back: "/requests",
		Data: map[string]any{"Objections": os, "People": who, "Purposes": names, "CanEdit": p.Can("subjects:write")}})
}

// decideObjection upholds or overrides the objection in the path.
func (c *Console) decideObjection(decision string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := c.rights.Decide(r.Context(), signedIn(r).TenantID, r.PathValue("id"), r.PathValue("purpose"), decision); err != nil {
			return err
		}
		return c.redirect(w, r, "/objections", "objection-"+decision)
	}
}
