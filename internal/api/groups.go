package api

import (
	"context"
	"net/http"

	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
)

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) error {
	gs, err := a.identity.Groups(r.Context(), principal(r))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[identity.Group]{Items: gs})
	return nil
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request) error {
	var in nameBody
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	g, err := a.identity.CreateGroup(r.Context(), principal(r), in.Name)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/groups/"+g.ID)
	httpio.JSON(w, http.StatusCreated, g)
	return nil
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := a.identity.GroupDetail(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, g)
	return nil
}

func (a *API) renameGroup(w http.ResponseWriter, r *http.Request) error {
	var in nameBody
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	g, err := a.identity.RenameGroup(r.Context(), principal(r), r.PathValue("id"), in.Name)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, g)
	return nil
}

func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	p, id := principal(r), r.PathValue("id")
	if err := a.identity.DeleteGroup(r.Context(), p, id, func(ctx context.Context, tx *sqldb.Tx) error {
		return space.DropGroupGrants(ctx, tx, p.TenantID, id)
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) setMember(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Admin bool `json:"admin"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	if err := a.identity.SetMember(r.Context(), principal(r), r.PathValue("id"), r.PathValue("user"), in.Admin); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.RemoveMember(r.Context(), principal(r), r.PathValue("id"), r.PathValue("user")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
