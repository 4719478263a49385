package web

import "net/http"

// home is the first page after signing in: the organisation, the person,
// and what they may do. Parts 2–4 of the console add the work waiting.
func (c *Console) home(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	t, err := c.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "home", &view{Title: t.Name, Data: map[string]any{"Role": p.Role}})
}
