package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/subject"
)

func (a *API) getRetentionSettings(w http.ResponseWriter, r *http.Request) error {
	st, err := a.retain.Settings(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, st)
	return nil
}

func (a *API) putRetentionSettings(w http.ResponseWriter, r *http.Request) error {
	var in retention.Settings
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	st, err := a.retain.UpdateSettings(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, st)
	return nil
}

func (a *API) listPolicies(w http.ResponseWriter, r *http.Request) error {
	ps, err := a.retain.Policies(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, map[string]any{"policies": ps})
	return nil
}

func (a *API) createPolicy(w http.ResponseWriter, r *http.Request) error {
	var in retention.PolicyInput
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	p, err := a.retain.CreatePolicy(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, p)
	return nil
}

func (a *API) updatePolicy(w http.ResponseWriter, r *http.Request) error {
	var in retention.PolicyInput
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	p, err := a.retain.UpdatePolicy(r.Context(), principal(r).TenantID, r.PathValue("id"), in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, p)
	return nil
}

func (a *API) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	if err := a.retain.DeletePolicy(r.Context(), principal(r).TenantID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) runRetention(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		DryRun bool `json:"dry_run"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	rep, err := a.retain.Run(r.Context(), principal(r).TenantID, in.DryRun)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, rep)
	return nil
}

func (a *API) recordBounce(w http.ResponseWriter, r *http.Request) error {
	var in subject.BounceInput
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	b, err := a.retain.RecordBounce(r.Context(), principal(r).TenantID, r.PathValue("id"), in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, b)
	return nil
}

func (a *API) holdSubject(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	s, err := a.subjects.Hold(r.Context(), principal(r).TenantID, r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}

func (a *API) releaseSubject(w http.ResponseWriter, r *http.Request) error {
	s, err := a.subjects.Release(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}
