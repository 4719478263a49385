package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/subject"
)

// A contact's page: who they are, their consents with the full history,
// their requests, linked files and bounces; rectify, hold, restrict,
// the processing check, the access export and erasure.

// contactData is what a contact's page shows.
type contactData struct {
	ID         string
	Subject    subject.Subject // empty fields while restricted
	Restricted bool            // processing restricted: their data is not shown
	Attributes []attribute
	Consents   []purposeConsent
	Requests   []rights.Request
	Files      []files.Linked
	FilesShown bool // the viewer may see spaces
	Bounces    []subject.Bounce
	Purposes   []register.Purpose
	Check      *rights.Processing // the processing check asked for, if any
	CheckName  string
	CanEdit    bool
	CanExport  bool
}

// attribute is one of a contact's attributes, shown as text.
type attribute struct{ Key, Value string }

// purposeConsent is a purpose with where the contact stands and every
// event of theirs for it, newest first.
type purposeConsent struct {
	Purpose string
	Name    string
	State   consent.State
	History []consent.Event
}

func (c *Console) contactPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	if u, err := c.identity.UserBySubject(r.Context(), p.TenantID, r.PathValue("id")); err == nil && p.Can("users:read") {
		return c.redirect(w, r, "/users/"+u.ID, "") // staff are not contacts: their account's page and rules
	}
	d, err := c.contact(r)
	if errs.Is(err, errs.Gone) {
		return c.redirect(w, r, "/contacts/"+r.PathValue("id")+"/erasure", "")
	}
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "contact", &view{Title: contactName(d.Subject), Back: "/contacts", Data: d})
}

// contact reads the contact in the path as the signed-in person may see
// it; a restricted one's data stays closed, as the API keeps it.
func (c *Console) contact(r *http.Request) (contactData, error) {
	p := signedIn(r)
	ctx, id := r.Context(), r.PathValue("id")
	d := contactData{ID: id, CanEdit: p.Can("subjects:write"), CanExport: p.Can("subjects:export")}
	sub, err := c.subjects.Get(ctx, p.TenantID, id)
	switch {
	case errs.Is(err, errs.Conflict):
		st, err := c.subjects.State(ctx, p.TenantID, id)
		if err != nil {
			return d, err
		}
		d.Restricted, d.Subject = true, subject.Subject{ID: id, Status: st.Status}
	case err != nil:
		return d, err
	default:
		d.Subject = sub
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range d.Subject.Attributes {
			if !yield(k) {
				return
			}
		}
	}) {
		d.Attributes = append(d.Attributes, attribute{k, attributeText(d.Subject.Attributes[k])})
	}
	if d.Purposes, err = c.register.List(ctx, p.TenantID); err != nil {
		return d, err
	}
	if !d.Restricted {
		if d.Consents, err = c.consents(r, id, d.Purposes); err != nil {
			return d, err
		}
	}
	if d.Requests, err = c.rights.List(ctx, p.TenantID, rights.Filter{SubjectID: id}); err != nil {
		return d, err
	}
	if p.Can("spaces:read") {
		d.FilesShown = true
		if d.Files, err = c.files.SubjectFiles(ctx, p, id); err != nil {
			return d, err
		}
	}
	if d.Bounces, err = c.subjects.Bounces(ctx, p.TenantID, id); err != nil {
		return d, err
	}
	if key := r.URL.Query().Get("purpose"); key != "" {
		chk, err := c.rights.Processing(ctx, p.TenantID, id, key)
		if err != nil && !errs.Is(err, errs.Invalid) && !errs.Is(err, errs.NotFound) {
			return d, err
		}
		if err == nil {
			d.Check = &chk
			for _, pu := range d.Purposes {
				if pu.Key == key {
					d.CheckName = pu.Name
				}
			}
		}
	}
	return d, nil
}

// consents groups a contact's consent ledger by purpose.
func (c *Console) consents(r *http.Request, id string, ps []register.Purpose) ([]purposeConsent, error) {
	l, err := c.consent.Ledger(r.Context(), signedIn(r).TenantID, id)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, p := range ps {
		names[p.Key] = p.Name
	}
	var out []purposeConsent
	for _, st := range l.State {
		pc := purposeConsent{Purpose: st.Purpose, Name: or(names[st.Purpose], st.Purpose), State: st}
		for _, e := range l.History {
			if e.Purpose == st.Purpose {
				pc.History = append(pc.History, e)
			}
		}
		slices.Reverse(pc.History)
		out = append(out, pc)
	}
	return out, nil
}

// attributeText shows an attribute's value as a person reads it.
func attributeText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	case float64, bool:
		return fmt.Sprint(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// contactName is how a contact is named on a page: an identifier, or
// their number when nothing of theirs may be shown.
func contactName(s subject.Subject) string {
	switch {
	case s.Email != "":
		return s.Email
	case s.Phone != "":
		return s.Phone
	case s.ExternalID != "":
		return s.ExternalID
	}
	return "Contact " + shortID(s.ID)
}

// shortID is the end of an id, enough to tell people apart on a page.
func shortID(id string) string { return id[max(0, len(id)-8):] }

// consentText says where someone stands for a purpose.
func consentText(st consent.State) string {
	switch st.Status {
	case consent.Granted:
		return "Valid"
	case consent.Expired:
		return "Expired"
	}
	return "Withdrawn or refused"
}

// The contact's receipt: the signed proof of one consent event.
func (c *Console) receipt(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	id, event := r.PathValue("id"), r.PathValue("event")
	if err := c.subjects.Usable(r.Context(), p.TenantID, id, "consent.read"); err != nil {
		return err
	}
	rc, err := c.consent.Receipt(r.Context(), p.TenantID, id, event)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/jose")
	h.Set("Content-Disposition", `attachment; filename="consent-receipt-`+event+`.jws"`)
	h.Set("Content-Length", strconv.Itoa(len(rc)))
	_, err = w.Write([]byte(rc))
	return err
}

// Rectifying: the identifiers, the source and the attributes.

func (c *Console) editContactPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.contact(r)
	if err != nil {
		return err
	}
	if d.Restricted {
		return errs.E(errs.Conflict, "processing of this contact's data is restricted: lift the restriction to change it")
	}
	f := &form{Values: url.Values{"email": {d.Subject.Email}, "phone": {d.Subject.Phone}, "external_id": {d.Subject.ExternalID},
		"source": {d.Subject.Source}}}
	for _, a := range d.Attributes {
		f.Values.Set("attributes."+a.Key, a.Value)
	}
	return c.render(w, r, http.StatusOK, "contact-edit", &view{Title: "Change " + contactName(d.Subject), Back: "/contacts/" + d.ID, Form: f, Data: d})
}

func (c *Console) editContact(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	d, err := c.contact(r)
	if err != nil {
		return err
	}
	patch := subject.Patch{}
	for _, s := range []struct {
		name string
		dst  *subject.Optional[string]
		old  string
	}{{"email", &patch.Email, d.Subject.Email}, {"phone", &patch.Phone, d.Subject.Phone},
		{"external_id", &patch.ExternalID, d.Subject.ExternalID}, {"source", &patch.Source, d.Subject.Source}} {
		if v := strings.TrimSpace(f.Value(s.name)); v != s.old {
			*s.dst = subject.Optional[string]{Set: true, Value: v}
		}
	}
	attrs, changed := map[string]any{}, false
	for _, a := range d.Attributes {
		v := strings.TrimSpace(f.Value("attributes." + a.Key))
		switch {
		case v == "": // emptied: removed
			changed = true
		case v == a.Value:
			attrs[a.Key] = d.Subject.Attributes[a.Key]
		default:
			attrs[a.Key], changed = v, true
		}
	}
	if k := strings.TrimSpace(f.Value("new_key")); k != "" {
		attrs[k], changed = strings.TrimSpace(f.Value("new_value")), true
	} else if f.Value("new_value") != "" {
		f.add("new_key", "Enter the name of the new attribute.")
	}
	if changed {
		patch.Attributes = subject.Optional[map[string]any]{Set: true, Value: attrs}
	}
	if len(f.Problems) == 0 {
		_, err = c.subjects.Rectify(r.Context(), signedIn(r).TenantID, d.ID, patch)
		if err == nil {
			return c.redirect(w, r, "/contacts/"+d.ID, "contact-changed")
		}
		if !f.refused(err, "email", map[string]string{"email": "email address", "phone": "phone number",
			"external_id": "external id", "source": "source", "attributes": "attributes"}) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "contact-edit", &view{Title: "Change " + contactName(d.Subject),
		Back: "/contacts/" + d.ID, Form: f, Data: d})
}

// Legal hold and restriction: set with a reason, lifted.

func (c *Console) holdContact(w http.ResponseWriter, r *http.Request) error {
	return c.withReason(w, r, "contact-hold", "Put on legal hold", "held", func(reason string) error {
		_, err := c.subjects.Hold(r.Context(), signedIn(r).TenantID, r.PathValue("id"), reason)
		return err
	})
}

func (c *Console) releaseContact(w http.ResponseWriter, r *http.Request) error {
	if _, err := c.subjects.Release(r.Context(), signedIn(r).TenantID, r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/contacts/"+r.PathValue("id"), "released")
}

func (c *Console) restrictContact(w http.ResponseWriter, r *http.Request) error {
	return c.withReason(w, r, "contact-restrict", "Restrict processing", "restricted", func(reason string) error {
		_, err := c.subjects.Restrict(r.Context(), signedIn(r).TenantID, r.PathValue("id"), reason)
		return err
	})
}

func (c *Console) unrestrictContact(w http.ResponseWriter, r *http.Request) error {
	if _, err := c.rights.LiftRestriction(r.Context(), signedIn(r).TenantID, r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/contacts/"+r.PathValue("id"), "unrestricted")
}

// reasonPage asks why, before a hold or a restriction.
func (c *Console) reasonPage(page, title string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := signedIn(r)
		if _, err := c.subjects.State(r.Context(), p.TenantID, r.PathValue("id")); err != nil {
			return err
		}
		return c.render(w, r, http.StatusOK, page, &view{Title: title, Back: "/contacts/" + r.PathValue("id"), Form: &form{},
			Data: map[string]string{"ID": r.PathValue("id")}})
	}
}

// withReason applies do with the form's reason, or shows the form again.
func (c *Console) withReason(w http.ResponseWriter, r *http.Request, page, title, notice string, do func(reason string) error) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("reason", "the reason"); len(f.Problems) == 0 {
		err = do(strings.TrimSpace(f.Value("reason")))
		if err == nil {
			return c.redirect(w, r, "/contacts/"+r.PathValue("id"), notice)
		}
		if !f.refused(err, "reason", map[string]string{"reason": "reason"}) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, page, &view{Title: title, Back: "/contacts/" + r.PathValue("id"), Form: f,
		Data: map[string]string{"ID": r.PathValue("id")}})
}

// The access export: the zip a person would receive.
func (c *Console) exportContact(w http.ResponseWriter, r *http.Request) error {
	return c.api.SendExport(w, r, r.PathValue("id"))
}

// Erasure: a page that says what goes and what stays, then the
// certificate.

// eraseData is what the erasure page shows: the contact, and their
// erasure requests ready to be answered.
type eraseData struct {
	contactData
	Open []rights.Request
}

func (c *Console) erasePage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.eraseData(r)
	if errs.Is(err, errs.Gone) {
		return c.redirect(w, r, "/contacts/"+r.PathValue("id")+"/erasure", "")
	}
	if err != nil {
		return err
	}
	f := &form{Values: url.Values{}}
	if len(d.Open) > 0 {
		f.Values.Set("request_id", d.Open[0].ID)
	}
	return c.render(w, r, http.StatusOK, "contact-erase", &view{Title: "Erase " + contactName(d.Subject) + "?", Back: "/contacts/" + d.ID, Form: f, Data: d})
}

func (c *Console) eraseData(r *http.Request) (eraseData, error) {
	cd, err := c.contact(r)
	d := eraseData{contactData: cd}
	for _, q := range cd.Requests {
		if q.Type == "erasure" && (q.Status == rights.Verified || q.Status == rights.InProgress) {
			d.Open = append(d.Open, q)
		}
	}
	return d, err
}

// eraseContact erases the contact, answering the erasure request chosen
// (which is then completed), as the API's erasure does.
func (c *Console) eraseContact(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	p := signedIn(r)
	ctx, id := r.Context(), r.PathValue("id")
	if _, err := c.subjects.Key(ctx, p.TenantID, id); err != nil {
		return err
	}
	in := subject.EraseInput{Reason: "console", RequestID: f.Value("request_id")}
	if in.RequestID != "" {
		if err := c.rights.ErasureRequest(ctx, p.TenantID, in.RequestID, id); err != nil {
			return err
		}
		in.Reason = "request"
	}
	if _, err := c.subjects.Erase(ctx, p.TenantID, id, in); err != nil {
		return err
	}
	if in.RequestID != "" {
		if err := c.rights.Complete(ctx, p.TenantID, in.RequestID); err != nil {
			return err
		}
	}
	return c.redirect(w, r, "/contacts/"+id+"/erasure", "erased")
}

func (c *Console) erasurePage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	cert, err := c.subjects.ErasureCertificate(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	by := cert.By // "user:<id>": their name, while they have an account
	if kind, id, _ := strings.Cut(cert.By, ":"); kind == "user" {
		if u, err := c.identity.UserByID(r.Context(), p.TenantID, id); err == nil {
			if prof, err := c.subjects.Profile(r.Context(), p.TenantID, u.SubjectID); err == nil {
				by = or(prof.Name, prof.Email)
			}
		}
	}
	return c.render(w, r, http.StatusOK, "contact-erasure", &view{Title: "Erasure certificate", Back: "/contacts",
		Data: map[string]any{"Certificate": cert, "By": by}})
}
