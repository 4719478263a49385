package api_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/rights"
)

// TestNoTakeoverThroughTheSubjectsAPI: an account's person is not changed
// or erased through /api/v1/subjects — not by an admin's session on the
// owner, not by a token scoped to subjects on a member; the refusal names
// the account's route, nothing changes, the owner still signs in with
// their own address and the attacker's does not work. No other write
// reaches them there, and reading them needs users:read as well. The
// account routes still do what their rules allow.
func TestNoTakeoverThroughTheSubjectsAPI(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		ids := env.App.Identity
		account := func(email string) identity.User {
			t.Helper()
			u, err := ids.UserByEmail(ctx, env.Tenant.ID, email)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		env.AddUser(t, "ada@acme.example", "admin", apptest.Password)
		env.AddUser(t, "mo@acme.example", "member", apptest.Password)
		owner, member := account("owner@acme.example"), account("mo@acme.example")
		scoped, _, err := ids.CreateToken(ctx, env.Tenant.ID, "owner@acme.example", "subjects only",
			[]string{"subjects:read", "subjects:write"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		admin := env.SignIn(t, "acme", "ada@acme.example")
		attack := map[string]any{"email": "attacker@evil.example"}
		for _, c := range []struct {
			who, method, path string
			do                func(method, path string, body any) apptest.Response
			names             string
		}{
			{"an admin's session", "PATCH", "/api/v1/subjects/" + owner.SubjectID, func(m, p string, b any) apptest.Response { return admin.Do(t, m, p, b) },
				"/api/v1/users/" + owner.ID},
			{"a token scoped to subjects", "PATCH", "/api/v1/subjects/" + member.SubjectID, func(m, p string, b any) apptest.Response { return env.Do(t, scoped, m, p, b) },
				"/api/v1/users/" + member.ID},
			{"a token scoped to subjects", "POST", "/api/v1/subjects/" + member.SubjectID + "/erase", func(m, p string, b any) apptest.Response { return env.Do(t, scoped, m, p, nil) },
				"/api/v1/users/" + member.ID + "/erase"},
			{"an admin's session", "POST", "/api/v1/subjects/" + owner.SubjectID + "/erase", func(m, p string, b any) apptest.Response { return admin.Do(t, m, p, nil) },
				"/api/v1/users/" + owner.ID + "/erase"},
		} {
			if r := c.do(c.method, c.path, attack); r.Status != 409 || !strings.Contains(string(r.Body), c.names) {
				t.Errorf("%s: %s %s: %d %s; want 409 naming %s", c.who, c.method, c.path, r.Status, r.Body, c.names)
			}
		}
		// Every other write through /api/v1/subjects is refused too, and
		// reading a person with an account needs users:read as well.
		staff := "/api/v1/subjects/" + member.SubjectID
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"PUT", staff + "/legal-hold", map[string]any{"reason": "Case 1"}},
			{"PUT", staff + "/restriction", map[string]any{"reason": "Disputed"}},
			{"POST", staff + "/bounces", map[string]any{"kind": "hard", "reason": "5.1.1"}},
			{"POST", staff + "/consents", map[string]any{"purpose": "news", "action": "grant", "method": "api"}},
		} {
			if r := env.Do(t, env.Token, c.method, c.path, c.body); r.Status != 409 || !strings.Contains(string(r.Body), "/api/v1/users/"+member.ID) {
				t.Errorf("%s %s on staff: %d %s; want 409 naming the account", c.method, c.path, r.Status, r.Body)
			}
		}
		for _, path := range []string{staff, staff + "/export", staff + "/consents", staff + "/files"} {
			if r := env.Do(t, scoped, "GET", path, nil); r.Status != 403 {
				t.Errorf("GET %s with a token scoped to subjects: %d %s; want 403", path, r.Status, r.Body)
			}
		}
		if r := env.Do(t, env.Token, "GET", staff, nil); r.Status != 200 || r.Map(t)["email"] != "mo@acme.example" {
			t.Errorf("GET %s with users:read too: %d %s", staff, r.Status, r.Body)
		}
		// A request about staff needs the users scopes too.
		staffRequest, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "access", SubjectID: member.SubjectID})
		if err != nil {
			t.Fatal(err)
		}
		contactRequest, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "access", Email: "ann@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			token, method, id string
			want              int
		}{
			{scoped, "GET", staffRequest.ID, 403}, {scoped, "PATCH", staffRequest.ID, 403},
			{scoped, "GET", contactRequest.ID, 200}, {env.Token, "GET", staffRequest.ID, 200},
		} {
			var body any
			if c.method == "PATCH" {
				body = map[string]any{"status": "verified"}
			}
			if r := env.Do(t, c.token, c.method, "/api/v1/requests/"+c.id, body); r.Status != c.want {
				t.Errorf("%s a request (%s): %d %.200s; want %d", c.method, c.id, r.Status, r.Body, c.want)
			}
		}
		if _, err := env.App.Register.Create(ctx, env.Tenant.ID, register.New{Purpose: register.Purpose{Key: "analytics", Name: "Analytics",
			LegalBasis: register.LegitimateInterests, DataCategories: []string{"user.contact.email"}}}); err != nil {
			t.Fatal(err)
		}
		objection, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "objection", SubjectID: member.SubjectID, Purposes: []string{"analytics"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Rights.Update(ctx, env.Tenant.ID, objection.ID, rights.Change{Status: rights.Verified}); err != nil {
			t.Fatal(err)
		}
		for token, want := range map[string]int{scoped: 1, env.Token: 3} {
			var list struct{ Requests []rights.Request }
			if env.Do(t, token, "GET", "/api/v1/requests", nil).JSON(t, &list); len(list.Requests) != want {
				t.Errorf("the request list with users:read %v: %d requests; want %d", token == env.Token, len(list.Requests), want)
			}
		}
		for token, want := range map[string]int{scoped: 0, env.Token: 1} {
			var list struct{ Objections []rights.Objection }
			if env.Do(t, token, "GET", "/api/v1/objections", nil).JSON(t, &list); len(list.Objections) != want {
				t.Errorf("the objections with users:read %v: %d; want %d", token == env.Token, len(list.Objections), want)
			}
		}
		// An import or a new contact with a person's sign-in address reaches
		// no account: the address is taken, the row is refused or skipped.
		row := `[{"email":"owner@acme.example","phone":"+33123456789","source":"import"}]`
		for query, want := range map[string]int{"": 400, "?existing=skip": 201} {
			if r := importFile(t, env, scoped, query, "application/json", row, ""); r.Status != want {
				t.Errorf("importing the owner's address%s: %d %s; want %d", query, r.Status, r.Body, want)
			}
		}
		if r := env.Do(t, scoped, "POST", "/api/v1/subjects", map[string]any{"email": "owner@acme.example"}); r.Status != 409 {
			t.Errorf("a contact with the owner's address: %d %s; want 409", r.Status, r.Body)
		}
		if s, err := env.App.Subjects.Get(ctx, env.Tenant.ID, owner.SubjectID); err != nil || s.Phone != "" || s.Email != "owner@acme.example" {
			t.Errorf("the owner's person after the imports: %+v %v", s, err)
		}
		for _, email := range []string{"owner@acme.example", "mo@acme.example"} {
			env.SignIn(t, "acme", email) // fails the test unless their own address still signs in
		}
		if r := env.Browser(t).Login(t, "acme", "attacker@evil.example", apptest.Password); r.Status == 200 {
			t.Errorf("the attacker's address signs in: %s", r.Body)
		}
		es, _, err := audit.NewReader(env.App.DB, env.App.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "subject.rectify", Limit: 10})
		if err != nil || len(es) != 0 {
			t.Errorf("rectifications recorded: %+v %v", es, err)
		}

		// The account routes, with their rules: the admin erases the member
		// (a recent sign-in), never the owner; a token never.
		if r := env.Do(t, env.Token, "POST", "/api/v1/users/"+member.ID+"/erase", nil); r.Status != 403 {
			t.Errorf("a token erasing an account: %d %s", r.Status, r.Body)
		}
		if r := admin.Do(t, "POST", "/api/v1/users/"+owner.ID+"/erase", nil); r.Status != 403 {
			t.Errorf("an admin erasing the owner: %d %s", r.Status, r.Body)
		}
		if r := admin.Do(t, "POST", "/api/v1/users/"+member.ID+"/erase", nil); r.Status != 200 || r.Map(t)["erased"].(map[string]any)["users"] != 1.0 {
			t.Fatalf("an admin erasing a member: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+member.SubjectID, nil); r.Status != 410 {
			t.Errorf("the erased member's person: %d", r.Status)
		}
	})
}

var addressLink = regexp.MustCompile(`https://[^/\s]+(/account/email(?:-undo)?/[A-Za-z0-9_-]{43})\b`)

// TestEmailChangePages: an admin's change of a member's sign-in address
// waits for the link mailed to the new address; its page confirms with a
// plain form; the old address gets a link whose page undoes it.
func TestEmailChangePages(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		member := env.AddUser(t, "mo@acme.example", "member", apptest.Password)
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := owner.Do(t, "PATCH", "/api/v1/users/"+member.ID, map[string]any{"email": "mo@new.example"}); r.Status != 200 || r.Map(t)["email"] != "mo@acme.example" {
			t.Fatalf("change of address: %d %s; want 200 with the old address until confirmed", r.Status, r.Body)
		}
		link := func(to, subject string) string {
			t.Helper()
			m := env.Mail.Wait(t, to, subject, 10*time.Second)
			sub := addressLink.FindStringSubmatch(m.Text)
			if sub == nil {
				t.Fatalf("no address link in %q", m.Text)
			}
			return sub[1]
		}
		browser := env.Browser(t)
		for _, c := range []struct{ to, subject, shows, done string }{
			{"mo@new.example", "Confirm your new sign-in address", "mo@new.example", "you now sign in"},
			{"mo@acme.example", "was changed", "mo@acme.example", "The change is undone"},
		} {
			path := link(c.to, c.subject)
			page := browser.Do(t, "GET", path, nil)
			if page.Status != 200 || !strings.Contains(string(page.Body), c.shows) || !strings.Contains(string(page.Body), `<form method="post">`) {
				t.Fatalf("GET %s: %d %s", path, page.Status, page.Body)
			}
			done := browser.DoRaw(t, "POST", path, "application/x-www-form-urlencoded", "")
			if done.Status != 200 || !strings.Contains(string(done.Body), c.done) {
				t.Fatalf("POST %s: %d %s", path, done.Status, done.Body)
			}
			if again := browser.DoRaw(t, "POST", path, "application/x-www-form-urlencoded", ""); again.Status != 410 ||
				!strings.HasPrefix(again.Header.Get("Content-Type"), "text/html") {
				t.Errorf("POST %s again: %d %s", path, again.Status, again.Header.Get("Content-Type"))
			}
		}
		if r := env.Browser(t).Login(t, "acme", "mo@acme.example", apptest.Password); r.Status != 401 {
			t.Errorf("the password after the undo: %d; want 401 until a new one is chosen", r.Status)
		}
		// A person asks for a new address of their own: the same confirmation.
		if r := owner.Do(t, "PUT", "/api/v1/me/email", map[string]any{"email": "boss@new.example"}); r.Status != 202 {
			t.Fatalf("own address: %d %s", r.Status, r.Body)
		}
		link("boss@new.example", "Confirm your new sign-in address")
		if r := owner.Do(t, "GET", "/api/v1/me", nil); r.Map(t)["email"] != "owner@acme.example" {
			t.Errorf("own address before the confirmation: %s", r.Body)
		}
	})
}
