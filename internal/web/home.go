package web

import "net/http"

// home is the first page after signing in: the organisation, the person,
// and links to what their role may do. Parts 3 and 4 of the console add
// the work waiting for them.
func (c *Console) home(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	t, err := c.tenants.ByID(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "home", &view{Title: t.Name, Data: map[string]any{"Role": p.Role,
		"Users": p.Can("users:read"), "Audit": p.Can("audit:read"), "Settings": p.Can("settings:read")}})
}
