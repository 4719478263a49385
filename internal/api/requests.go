package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

func (a *API) createRequest(w http.ResponseWriter, r *http.Request) error {
	var in rights.Input
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	req, err := a.rights.Create(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, req)
	return nil
}

func (a *API) listRequests(w http.ResponseWriter, r *http.Request) error {
	f, format, err := a.RequestFilter(r)
	if err != nil {
		return err
	}
	if format == "csv" {
		return a.SendRequests(w, r, f)
	}
	page, err := a.rights.Query(r.Context(), principal(r).TenantID, f)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, page)
	return nil
}

// RequestFilter reads the requests list's filters from r's query: status,
// due, subject_id, type, channel, assignee, verified, cursor, limit; and
// format (json or csv). Requests about staff need users:read too.
func (a *API) RequestFilter(r *http.Request) (rights.Filter, string, error) {
	q, err := query(r, "status", "due", "subject_id", "type", "channel", "assignee", "verified", "cursor", "limit", "format")
	if err != nil {
		return rights.Filter{}, "", err
	}
	f := rights.Filter{Status: q.Get("status"), Due: q.Get("due"), SubjectID: q.Get("subject_id"), Type: q.Get("type"),
		Channel: q.Get("channel"), Assignee: q.Get("assignee"), Cursor: q.Get("cursor"), NoStaff: !principal(r).Can("users:read")}
	switch q.Get("verified") {
	case "":
	case "true", "false":
		v := q.Get("verified") == "true"
		f.Verified = &v
	default:
		return f, "", errs.Field("verified", "true or false")
	}
	if f.Limit, err = intParam(q, "limit"); err != nil {
		return f, "", err
	}
	format := q.Get("format")
	switch {
	case format != "" && format != "json" && format != "csv":
		return f, "", errs.Field("format", "json or csv")
	case format == "csv" && (f.Cursor != "" || f.Limit != 0):
		return f, "", errs.Field("format", "csv exports every matching request; drop cursor and limit")
	}
	return f, format, nil
}

// SendRequests streams the requests f selects as CSV.
func (a *API) SendRequests(w http.ResponseWriter, r *http.Request, f rights.Filter) error {
	d := newDownload(w, func(h http.Header) {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="requests-`+a.now().UTC().Format("20060102T150405Z")+`.csv"`)
	})
	if err := a.rights.WriteCSV(r.Context(), d, principal(r).TenantID, f); err != nil {
		if d.started() {
			a.cut(r, "requests csv", err)
		}
		return err
	}
	return nil
}

func (a *API) getRequest(w http.ResponseWriter, r *http.Request) error {
	req, err := a.rights.Get(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, req)
	return nil
}

func (a *API) updateRequest(w http.ResponseWriter, r *http.Request) error {
	var in rights.Change
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	req, err := a.rights.Update(r.Context(), principal(r).TenantID, r.PathValue("id"), in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, req)
	return nil
}

func (a *API) extendRequest(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	req, err := a.rights.Extend(r.Context(), principal(r).TenantID, r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, req)
	return nil
}

// organisation is the tenant's own settings.
func organisationOf(t tenant.Tenant) tenant.Organisation {
	return tenant.Organisation{TimeZone: t.TimeZone, ClosureGraceDays: &t.ClosureGraceDays, Region: &t.Region,
		AllowedRegions: &t.AllowedRegions, TrashDays: &t.TrashDays, VersionsKept: &t.VersionsKept, LinkedFilesOnErasure: &t.LinkedFilesOnErasure}
}

// erase runs an erasure of subjectID with the body's optional request_id:
// the request must be a verified erasure request about them, and is
// completed once the erasure is done.
func (a *API) erase(w http.ResponseWriter, r *http.Request, subjectID string,
	erase func(subject.EraseInput) (subject.Certificate, error)) (subject.Certificate, error) {
	var in struct {
		RequestID string `json:"request_id"`
	}
	if r.ContentLength != 0 {
		if err := httpio.Decode(w, r, &in); err != nil {
			return subject.Certificate{}, err
		}
	}
	tid := principal(r).TenantID
	reason := "api"
	if in.RequestID != "" {
		if err := a.rights.ErasureRequest(r.Context(), tid, in.RequestID, subjectID); err != nil {
			return subject.Certificate{}, err
		}
		reason = "request"
	}
	c, err := erase(subject.EraseInput{Reason: reason, RequestID: in.RequestID})
	if err != nil {
		return subject.Certificate{}, err
	}
	if in.RequestID != "" {
		if err := a.rights.Complete(r.Context(), tid, in.RequestID); err != nil {
			return subject.Certificate{}, err
		}
	}
	return c, nil
}

func (a *API) accessZip(w http.ResponseWriter, r *http.Request, id string) error {
	d := newDownload(w, zipHeader("subject-"+id+"-"+a.now().UTC().Format("20060102T150405Z")+".zip"))
	if _, err := a.export.Export(r.Context(), principal(r).TenantID, id, d, nil); err != nil {
		if d.started() {
			a.cut(r, "access export", err)
		}
		return err
	}
	return nil
}

func (a *API) deliverRequest(w http.ResponseWriter, r *http.Request) error {
	d, err := a.rights.Deliver(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, d)
	return nil
}

func (a *API) listObjections(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	os, err := a.rights.Objections(r.Context(), p.TenantID, r.URL.Query().Get("status"), !p.Can("users:read")) // staff need users:read too
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, map[string]any{"objections": os})
	return nil
}
