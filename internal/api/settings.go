package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/tenant"
)

func (a *API) getOrganisation(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenants.ByID(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, organisationOf(t))
	return nil
}

func (a *API) putOrganisation(w http.ResponseWriter, r *http.Request) error {
	var in tenant.Organisation
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	t, err := a.tenants.SetOrganisation(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, organisationOf(t))
	return nil
}

func (a *API) getController(w http.ResponseWriter, r *http.Request) error {
	c, err := a.tenants.Controller(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, c)
	return nil
}

func (a *API) putController(w http.ResponseWriter, r *http.Request) error {
	var in tenant.Controller
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	c, err := a.tenants.SetController(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, c)
	return nil
}

func (a *API) getSecurity(w http.ResponseWriter, r *http.Request) error {
	s, err := a.identity.SecuritySettings(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}

func (a *API) patchSecurity(w http.ResponseWriter, r *http.Request) error {
	var p identity.SecurityPatch
	if err := httpio.Decode(w, r, &p); err != nil {
		return err
	}
	s, err := a.identity.UpdateSecurity(r.Context(), principal(r).TenantID, p)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}
