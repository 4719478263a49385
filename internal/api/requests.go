package api

import (
	"net/http"

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
	q, p := r.URL.Query(), principal(r)
	rs, err := a.rights.List(r.Context(), p.TenantID, rights.Filter{Status: q.Get("status"), Due: q.Get("due"),
		SubjectID: q.Get("subject_id"), NoStaff: !p.Can("users:read")}) // requests about staff need users:read too
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, map[string]any{"requests": rs})
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
