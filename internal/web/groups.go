package web

import (
	"net/http"
	"net/url"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

// Groups: the groups a person may see (every one for administrators,
// their own for members), a group's members and its administrators.

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request) error {
	return c.showGroups(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showGroups(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	gs, err := c.identity.Groups(r.Context(), signedIn(r))
	if err != nil {
		return err
	}
	return c.render(w, r, code, "groups", &view{Title: "Groups", Form: f, Data: gs})
}

func (c *Console) createGroup(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("name", "a name for the group"); len(f.Problems) == 0 {
		g, err := c.identity.CreateGroup(r.Context(), signedIn(r), f.Value("name"))
		if err == nil {
			return c.redirect(w, r, "/groups/"+g.ID, "group-created")
		}
		if !f.refused(err, "name", map[string]string{"name": "name"}) {
			return err
		}
	}
	return c.showGroups(w, r, http.StatusUnprocessableEntity, f)
}

// groupData is what a group's page shows.
type groupData struct {
	Group   identity.GroupDetail
	CanEdit bool // the viewer administers the group (or the tenant)
}

func (c *Console) groupPage(w http.ResponseWriter, r *http.Request) error {
	return c.showGroup(w, r, http.StatusOK, &form{Values: url.Values{}})
}

func (c *Console) showGroup(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	p := signedIn(r)
	g, err := c.identity.GroupDetail(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	d := groupData{Group: g, CanEdit: g.Admin || identity.Rank(p.Role) >= identity.Rank(identity.RoleAdmin)}
	return c.render(w, r, code, "group", &view{Title: g.Name, Back: "/groups", Form: f, Data: d})
}

func (c *Console) addMember(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	p := signedIn(r)
	if f.required("email", "the email address of the person to add"); len(f.Problems) == 0 {
		u, err := c.identity.UserByEmail(r.Context(), p.TenantID, f.Value("email"))
		if errs.Is(err, errs.NotFound) {
			f.add("email", "Nobody signs in with this address here. Invite them first, on the users page.")
		} else if err == nil {
			err = c.identity.SetMember(r.Context(), p, r.PathValue("id"), u.ID, f.Value("admin") == "yes")
		}
		if err == nil && len(f.Problems) == 0 {
			return c.redirect(w, r, "/groups/"+r.PathValue("id"), "member-added")
		}
		if err != nil && !f.refused(err, "email", map[string]string{"email": "email address"}) {
			return err
		}
	}
	return c.showGroup(w, r, http.StatusUnprocessableEntity, f)
}

// setGroupAdmin makes the member in the path an administrator of the
// group, or no longer one.
func (c *Console) setGroupAdmin(admin bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := c.identity.SetMember(r.Context(), signedIn(r), r.PathValue("id"), r.PathValue("user"), admin); err != nil {
			return err
		}
		return c.redirect(w, r, "/groups/"+r.PathValue("id"), "saved")
	}
}

func (c *Console) removeMember(w http.ResponseWriter, r *http.Request) error {
	if err := c.identity.RemoveMember(r.Context(), signedIn(r), r.PathValue("id"), r.PathValue("user")); err != nil {
		return err
	}
	return c.redirect(w, r, "/groups/"+r.PathValue("id"), "member-removed")
}
