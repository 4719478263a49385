package api_test

import (
	"strings"
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

// TestUserImportExportOverHTTP: a bad file answers problem+json listing
// every bad row and imports nothing; a good one invites everyone; the
// export needs a recent sign-in and comes as a CSV attachment.
func TestUserImportExportOverHTTP(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		owner := env.SignIn(t, "acme", "owner@acme.example")
		send := func(query, ctype, body string) apptest.Response {
			t.Helper()
			return owner.DoRaw(t, "POST", "/api/v1/users/import"+query, ctype, body)
		}
		r := send("", "text/csv", "email,role\nnope,member\nx@acme.example,god\n")
		var p struct {
			Status int
			Detail string
			Errors []struct {
				Line   int
				Field  string
				Reason string
			}
		}
		r.JSON(t, &p)
		if r.Status != 400 || r.Header.Get("Content-Type") != "application/problem+json" || len(p.Errors) != 2 ||
			p.Errors[0].Line != 2 || p.Errors[0].Field != "email" || p.Errors[1].Line != 3 || p.Errors[1].Field != "role" {
			t.Fatalf("bad file: %d %s", r.Status, r.Body)
		}
		for _, q := range []string{"?dry_run=true", ""} {
			r := send(q, "text/csv", "email,name\n\"unterminated,x\n")
			r.JSON(t, &p)
			if r.Status != 400 || len(p.Errors) != 1 || p.Errors[0].Line != 2 {
				t.Errorf("broken CSV%s: %d %s", q, r.Status, r.Body)
			}
		}
		if r := send("", "application/json", `{}`); r.Status != 400 || r.Map(t)["field"] != "Content-Type" {
			t.Errorf("JSON body: %d %s", r.Status, r.Body)
		}
		if r := send("?dry_run=maybe", "text/csv", "email\na@acme.example\n"); r.Status != 400 || r.Map(t)["field"] != "dry_run" {
			t.Errorf("dry_run=maybe: %d %s", r.Status, r.Body)
		}
		if r := send("?dry_run=true", "text/csv", "email\na@acme.example\n"); r.Status != 200 || r.Map(t)["created"] != 1.0 {
			t.Errorf("dry run: %d %s", r.Status, r.Body)
		}
		if r := send("", "text/csv; charset=utf-8", "email,name\na@acme.example,Ann\n"); r.Status != 201 {
			t.Fatalf("import: %d %s", r.Status, r.Body)
		}
		env.LinkToken(t, "a@acme.example", "invited")

		if r := env.Do(t, env.Token, "GET", "/api/v1/users/export?format=csv", nil); r.Status != 403 {
			t.Errorf("export with a token: %d", r.Status)
		}
		r = owner.Do(t, "GET", "/api/v1/users/export?format=csv", nil)
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") ||
			!strings.Contains(r.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(string(r.Body), "a@acme.example,Ann,member,invited") {
			t.Errorf("export: %d %v %s", r.Status, r.Header, r.Body)
		}
		if r := owner.Do(t, "GET", "/api/v1/users/export?format=pdf", nil); r.Status != 400 {
			t.Errorf("export as pdf: %d", r.Status)
		}
	})
}

// TestUsersListPages: the users list pages with a cursor and says how many
// match; bad parameters are named.
func TestUsersListPages(t *testing.T) {
	env := apptest.New(t, "")
	for _, e := range []string{"a@acme.example", "b@acme.example", "c@acme.example"} {
		env.AddUser(t, e, "member", apptest.Password)
	}
	type page struct {
		Items []struct{ Email string }
		Total int
		Next  string `json:"next_cursor"`
	}
	var p1, p2 page
	env.Do(t, env.Token, "GET", "/api/v1/users?limit=3", nil).JSON(t, &p1)
	if len(p1.Items) != 3 || p1.Total != 4 || p1.Next != "3" || p1.Items[0].Email != "owner@acme.example" {
		t.Fatalf("page 1: %+v", p1)
	}
	env.Do(t, env.Token, "GET", "/api/v1/users?limit=3&cursor="+p1.Next, nil).JSON(t, &p2)
	if len(p2.Items) != 1 || p2.Next != "" || p2.Items[0].Email != "c@acme.example" {
		t.Fatalf("page 2: %+v", p2)
	}
	for q, field := range map[string]string{"cursor=x": "cursor", "role=king": "role", "limit=0": "limit", "sort=name": "sort", "email=nope": "email", "name=%20-%20": "name"} {
		if r := env.Do(t, env.Token, "GET", "/api/v1/users?"+q, nil); r.Status != 400 || r.Map(t)["field"] != field {
			t.Errorf("?%s: %d %s; want 400 naming %s", q, r.Status, r.Body, field)
		}
	}
}
