package web

import (
	"net/http"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

// The tenant's API tokens, for owners and administrators: every live one
// with its owner, scopes, last use and expiry; any can be revoked, except
// by an administrator one of an owner.

func (c *Console) tenantTokensPage(w http.ResponseWriter, r *http.Request) error {
	ts, err := c.identity.TenantTokens(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return err
	}
	p := signedIn(r)
	type row struct {
		identity.OwnedToken
		CanRevoke bool
	}
	rows := make([]row, 0, len(ts))
	for _, t := range ts {
		rows = append(rows, row{t, p.Can("users:write") && identity.Rank(t.OwnerRole) <= identity.Rank(p.Role)})
	}
	return c.render(w, r, http.StatusOK, "tokens", &view{Title: "API tokens", Data: map[string]any{"Tokens": rows}})
}

// tenantToken answers the live token of the tenant named in the path.
func (c *Console) tenantToken(r *http.Request) (identity.OwnedToken, error) {
	ts, err := c.identity.TenantTokens(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return identity.OwnedToken{}, err
	}
	for _, t := range ts {
		if t.ID == r.PathValue("id") {
			return t, nil
		}
	}
	return identity.OwnedToken{}, errs.E(errs.NotFound, "There is no such token. It may have been revoked already, or have expired.")
}

func (c *Console) revokeTenantTokenPage(w http.ResponseWriter, r *http.Request) error {
	t, err := c.tenantToken(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "token-revoke", &view{Title: "Revoke the token “" + t.Name + "” of " + t.Owner, Back: "/tokens", Data: t})
}

func (c *Console) revokeTenantToken(w http.ResponseWriter, r *http.Request) error {
	if err := c.identity.RevokeTokenOf(r.Context(), signedIn(r), r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/tokens", "token-revoked")
}
