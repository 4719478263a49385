package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/space"
)

type nameBody struct {
	Name string `json:"name"`
}

func (a *API) createSpace(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	sp, err := a.spaces.Create(r.Context(), principal(r), in.Name, in.Region)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/spaces/"+sp.ID)
	httpio.JSON(w, http.StatusCreated, sp)
	return nil
}

func (a *API) listSpaces(w http.ResponseWriter, r *http.Request) error {
	sps, err := a.spaces.List(r.Context(), principal(r))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[space.Space]{Items: sps})
	return nil
}

func (a *API) getSpace(w http.ResponseWriter, r *http.Request) error {
	sp, err := a.spaces.Get(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, sp)
	return nil
}

func (a *API) renameSpace(w http.ResponseWriter, r *http.Request) error {
	var in nameBody
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	sp, err := a.spaces.Rename(r.Context(), principal(r), r.PathValue("id"), in.Name)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, sp)
	return nil
}

func (a *API) listGrants(w http.ResponseWriter, r *http.Request) error {
	gs, err := a.spaces.Grants(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[space.Grant]{Items: gs})
	return nil
}

func (a *API) grant(w http.ResponseWriter, r *http.Request) error {
	var in space.GrantInput
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	g, err := a.spaces.Grant(r.Context(), principal(r), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, g)
	return nil
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request) error {
	if err := a.spaces.Revoke(r.Context(), principal(r), r.PathValue("id"), r.PathValue("grant")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
