package api_test

import (
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
)

// TestUserAdministration: admins grant only what they hold, the last owner
// stays, suspension ends sessions, and every change is audited.
func TestUserAdministration(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		owner := env.SignIn(t, "acme", "owner@acme.example")
		env.AddUser(t, "ada@acme.example", "admin", apptest.Password)
		admin := env.SignIn(t, "acme", "ada@acme.example")
		var me struct{ ID string }
		owner.Do(t, "GET", "/api/v1/me", nil).JSON(t, &me)

		r := admin.Do(t, "POST", "/api/v1/users", map[string]string{"email": "Neu@Acme.example", "role": "member"})
		if r.Status != 201 || r.Map(t)["email"] != "neu@acme.example" || r.Map(t)["role"] != "member" {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		neu := r.Map(t)["id"].(string)
		for _, c := range []struct {
			who    *apptest.Browser
			method string
			path   string
			body   map[string]string
			want   int
		}{
			{admin, "POST", "/api/v1/users", map[string]string{"email": "boss@acme.example", "role": "owner"}, 403},
			{admin, "PATCH", "/api/v1/users/" + neu, map[string]string{"role": "owner"}, 403},
			{admin, "PATCH", "/api/v1/users/" + me.ID, map[string]string{"status": "suspended"}, 403},
			{owner, "PATCH", "/api/v1/users/" + me.ID, map[string]string{"role": "admin"}, 409},
			{owner, "PATCH", "/api/v1/users/" + me.ID, map[string]string{"status": "suspended"}, 409},
			{owner, "PATCH", "/api/v1/users/" + neu, map[string]string{"role": "god"}, 400},
			{owner, "PATCH", "/api/v1/users/" + neu, map[string]string{"status": "gone"}, 400},
			{admin, "POST", "/api/v1/users", map[string]string{"email": "neu@acme.example"}, 400},
		} {
			if r := c.who.Do(t, c.method, c.path, c.body); r.Status != c.want {
				t.Errorf("%s %s %v: %d %s; want %d", c.method, c.path, c.body, r.Status, r.Body, c.want)
			}
		}
		// Suspending the admin ends their session at once.
		if r := owner.Do(t, "PATCH", "/api/v1/users/"+firstAdmin(t, owner), map[string]string{"status": "suspended"}); r.Status != 200 {
			t.Fatalf("suspend: %d %s", r.Status, r.Body)
		}
		if r := admin.Do(t, "GET", "/api/v1/me", nil); r.Status != 401 {
			t.Errorf("suspended admin's session: %d", r.Status)
		}
		if r := env.Browser(t).Login(t, "acme", "ada@acme.example", apptest.Password); r.Status != 401 {
			t.Errorf("suspended admin signed in: %d", r.Status)
		}
		// A second owner makes the first one demotable.
		if r := owner.Do(t, "PATCH", "/api/v1/users/"+neu, map[string]string{"role": "owner"}); r.Status != 200 {
			t.Fatalf("promote: %d %s", r.Status, r.Body)
		}
		if r := owner.Do(t, "PATCH", "/api/v1/users/"+me.ID, map[string]string{"role": "admin"}); r.Status != 200 {
			t.Errorf("demote with another owner: %d %s", r.Status, r.Body)
		}
		a := env.Do(t, env.Token, "GET", "/api/v1/audit?action=user.update", nil)
		var page struct{ Items []any }
		a.JSON(t, &page)
		if len(page.Items) != 3 {
			t.Errorf("%d user.update events; want 3: %s", len(page.Items), a.Body)
		}
	})
}

func firstAdmin(t *testing.T, b *apptest.Browser) string {
	t.Helper()
	var page struct {
		Items []struct{ ID, Role, Email string }
	}
	b.Do(t, "GET", "/api/v1/users", nil).JSON(t, &page)
	for _, u := range page.Items {
		if u.Role == "admin" {
			return u.ID
		}
	}
	t.Fatal("no admin")
	return ""
}
