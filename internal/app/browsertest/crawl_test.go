package browsertest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/identity"
)

// The roles the crawler visits the console as.
var roles = []string{"owner", "admin", "member", "signed out"}

// expected says what each role gets at each page of the console, by the
// page's route pattern: "200" (the page), "→ /path" (a redirect there,
// answered 200), or an error status. A GET route missing here fails the
// crawl: every page is visited by every role.
var expected = map[string][4]string{
	"/{$}":                               {"200", "200", "200", "→ /login"},
	"/login":                             {"→ /", "→ /", "→ /", "200"},
	"/login/second-factor":               {"→ /", "→ /", "→ /", "→ /login"}, // only while a second factor is awaited
	"/login/confirm":                     {"200", "200", "200", "→ /login"},
	"/login/reset":                       {"200", "200", "200", "200"},
	"/login/{tenant}/reset":              {"200", "200", "200", "200"},
	"/login/{tenant}/invitation":         {"200", "200", "200", "200"},
	"/account/second-factor":             {"200", "200", "200", "→ /login"},
	"/account/second-factor/totp":        {"→ /account/second-factor", "→ /account/second-factor", "→ /account/second-factor", "→ /login"},
	"/account/second-factor/sms":         {"200", "200", "200", "→ /login"},
	"/account/second-factor/{id}/remove": {"404", "404", "404", "→ /login"},
	"/account":                           {"200", "200", "200", "→ /login"},
	"/users":                             {"200", "200", "403", "→ /login"},
	"/audit":                             {"200", "200", "403", "→ /login"},
	"/groups":                            {"200", "200", "200", "→ /login"},
	"/groups/{id}":                       {"200", "200", "200", "→ /login"}, // a group the member is in
	"/tokens":                            {"200", "200", "403", "→ /login"},
	"/tokens/{id}/revoke":                {"404", "404", "403", "→ /login"},
	"/settings/security":                 {"200", "200", "403", "→ /login"},
	"/settings/organisation":             {"200", "200", "403", "→ /login"},
	"/settings/controller":               {"200", "200", "403", "→ /login"},
	"/contacts":                          {"200", "200", "403", "→ /login"},
	"/spaces":                            {"200", "200", "200", "→ /login"},
	"/spaces/{id}":                       {"404", "404", "404", "→ /login"}, // the journey opens live ones
	"/spaces/{id}/file":                  {"404", "404", "404", "→ /login"},
	"/spaces/{id}/grants":                {"404", "404", "404", "→ /login"},
	"/trash":                             {"200", "200", "200", "→ /login"},
	"/residency":                         {"200", "200", "403", "→ /login"},
	"/requests":                          {"200", "200", "403", "→ /login"},
	"/requests/new":                      {"200", "200", "403", "→ /login"},
	"/requests/{id}":                     {"404", "404", "403", "→ /login"}, // the journeys open live ones
	"/requests/{id}/extend":              {"404", "404", "403", "→ /login"},
	"/requests/{id}/reject":              {"404", "404", "403", "→ /login"},
	"/objections":                        {"200", "200", "403", "→ /login"},
	"/contacts/import":                   {"200", "200", "403", "→ /login"},
	"/consent":                           {"200", "200", "403", "→ /login"},
	"/campaigns":                         {"200", "200", "403", "→ /login"},
	"/register":                          {"200", "200", "403", "→ /login"},
	"/retention":                         {"200", "200", "403", "→ /login"},
	"/retention/new":                     {"200", "200", "403", "→ /login"},
	"/register/new":                      {"200", "200", "403", "→ /login"},
	"/register/{key}":                    {"200", "200", "403", "→ /login"},
	"/register/{key}/edit":               {"200", "200", "403", "→ /login"},
	"/campaigns/new":                     {"200", "200", "403", "→ /login"},
	"/campaigns/{id}":                    {"404", "404", "403", "→ /login"}, // the journey opens a live one
	"/contacts/{id}":                     {"200", "200", "403", "→ /login"},
	"/contacts/{id}/edit":                {"200", "200", "403", "→ /login"},
	"/contacts/{id}/hold":                {"200", "200", "403", "→ /login"},
	"/contacts/{id}/restrict":            {"200", "200", "403", "→ /login"},
	"/contacts/{id}/erase":               {"200", "200", "403", "→ /login"},
	"/contacts/{id}/erasure":             {"404", "404", "403", "→ /login"}, // not erased

	"/users/invite":                    {"200", "200", "403", "→ /login"},
	"/users/import":                    {"200", "200", "403", "→ /login"},
	"/users/{id}":                      {"200", "200", "403", "→ /login"}, // the member's page
	"/users/{id}/role":                 {"200", "200", "403", "→ /login"},
	"/users/{id}/suspend":              {"200", "200", "403", "→ /login"},
	"/users/{id}/second-factors/reset": {"200", "200", "403", "→ /login"},
	"/account/name":                    {"200", "200", "200", "→ /login"},
	"/account/time-zone":               {"200", "200", "200", "→ /login"},
	"/account/email":                   {"200", "200", "200", "→ /login"},
	"/account/password":                {"200", "200", "200", "→ /login"},
	"/account/sessions":                {"200", "200", "200", "→ /login"},
	"/account/tokens":                  {"200", "200", "200", "→ /login"},
	"/account/tokens/new":              {"200", "200", "200", "→ /login"},
	"/account/tokens/{id}/revoke":      {"404", "404", "404", "→ /login"},
	"/account/data":                    {"200", "200", "200", "→ /login"},
	"/account/close":                   {"200", "200", "200", "→ /login"},
	// The portal, and the pages of mailed links — here with a dead link:
	// the journeys open live ones.
	"/privacy/{tenant}":                            {"200", "200", "200", "200"},
	"/privacy/{tenant}/sent":                       {"200", "200", "200", "200"},
	"/privacy/{tenant}/confirm/{token}":            {"410", "410", "410", "410"},
	"/privacy/{tenant}/download/{token}":           {"410", "410", "410", "410"},
	"/privacy/{tenant}/consent/{token}":            {"410", "410", "410", "410"},
	"/privacy/{tenant}/withdraw/{purpose}/{token}": {"404", "404", "404", "404"},
	"/account/email/{token}":                       {"410", "410", "410", "410"},
	"/account/email-undo/{token}":                  {"410", "410", "410", "410"},
	"/privacy/nope":                                {"404", "404", "404", "404"},
	"/no/such/page":                                {"404", "404", "404", "404"},
	"/login/nope/reset":                            {"404", "404", "404", "404"},
}

// TestCrawl visits every page of the console's routes list as each role:
// the status or redirect that role must get, no console error, and — on
// each page a role sees, once — axe's WCAG 2.1 A and AA rules and
// screenshots at desk and phone widths.
func TestCrawl(t *testing.T) {
	c := newConsole(t)
	c.AddUser(t, "ada@acme.example", identity.RoleAdmin, apptest.Password)
	member := c.AddUser(t, "max@acme.example", identity.RoleMember, apptest.Password)
	owner := ownerPrincipal(t, c)
	group, err := c.App.Identity.CreateGroup(opCtx(), owner, "Legal")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.App.Identity.SetMember(opCtx(), owner, group.ID, member.ID, false); err != nil {
		t.Fatal(err)
	}
	contact := c.contact(t, "ann@example.org")
	pages := map[string]*chrometest.Page{}
	for i, email := range []string{"owner@acme.example", "ada@acme.example", "max@acme.example"} {
		p := c.page(t, "/login")
		signIn(t, p, email, apptest.Password)
		want(t, p, "/", "ACME Ltd")
		pages[roles[i]] = p
	}
	pages["signed out"] = c.browser.NewPage(t)

	paths := map[string]string{"/no/such/page": "/no/such/page", "/login/nope/reset": "/login/nope/reset", "/privacy/nope": "/privacy/nope"}
	for _, rt := range c.App.Console.Routes() {
		// Static files are loaded by every page and checked by the console
		// watch; downloads are read by the journeys.
		if rt.Method != "GET" || rt.Path == "/static/{name}" || strings.HasSuffix(rt.Path, "/export") || strings.HasSuffix(rt.Path, ".csv") || strings.HasSuffix(rt.Path, "/download") || strings.HasSuffix(rt.Path, "/receipt") {
			continue
		}
		if _, ok := expected[rt.Path]; !ok {
			t.Errorf("GET %s is in the routes list and not in the crawl's expectations: add it", rt.Path)
			continue
		}
		id := "01a00000-0000-7000-8000-000000000000" // no such object
		switch {
		case strings.HasPrefix(rt.Path, "/users/"):
			id = member.ID
		case strings.HasPrefix(rt.Path, "/groups/"):
			id = group.ID
		case strings.HasPrefix(rt.Path, "/contacts/"):
			id = contact
		}
		paths[rt.Path] = strings.NewReplacer("{$}", "", "{tenant}", "acme", "{purpose}", "news", "{key}", "news", "{token}", strings.Repeat("x", 43),
			"{id}", id).Replace(rt.Path)
	}
	inspected := map[string]string{} // pattern → the role that saw it
	for pattern, path := range paths {
		for i, role := range roles {
			p, want := pages[role], expected[pattern][i]
			status := p.Visit(t, c.URL+path)
			at, _, _ := strings.Cut(p.Path(t), "?")
			got := "200"
			switch {
			case status != 200:
				got = fmt.Sprint(status)
			case at != path:
				got = "→ " + at
			}
			if got != want {
				t.Errorf("%s as %s: %s; want %s", path, role, got, want)
			}
			if got == "403" && !strings.Contains(p.Text(t, "header"), "Your account") {
				t.Errorf("%s as %s: the refusal page drops the person's header", path, role)
			}
			name := strings.Trim(strings.NewReplacer("/", "-", "{", "", "}", "", "$", "", "-token", "").Replace(pattern), "-")
			if name == "" {
				name = "home"
			}
			if got == want && !strings.HasPrefix(got, "→") && inspected[pattern] == "" {
				inspected[pattern] = role
				p.Inspect(t, screenshots, "crawl-"+name)
			}
		}
	}
	// Dark, as the system setting may ask: the contrast holds there too.
	for _, p := range pages {
		p.ColorScheme(t, "dark")
	}
	for pattern, role := range inspected {
		p := pages[role]
		p.Visit(t, c.URL+paths[pattern])
		p.CheckAxe(t, paths[pattern]+", dark")
	}
	pages["owner"].Visit(t, c.URL+"/account/second-factor")
	pages["owner"].Screenshots(t, screenshots, "crawl-dark-account-second-factor")
	for role, p := range pages {
		if problems := p.ConsoleProblems(); len(problems) > 0 {
			t.Errorf("as %s, the console shows: %v", role, problems)
		}
	}
}
