package browsertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/identity"
)

// An administrator finds people, invites someone (the mail goes out),
// suspends and reactivates a member, unlocks a locked one, and is offered
// nothing — and refused — on the owner.
func TestAdminManagesUsers(t *testing.T) {
	c := newConsole(t)
	c.AddUser(t, "ada@acme.example", identity.RoleAdmin, apptest.Password)
	max := c.AddUser(t, "max@acme.example", identity.RoleMember, apptest.Password)
	for range 6 { // someone guesses max's password
		c.Browser(t).Login(t, "acme", "max@acme.example", "a wrong guess, clearly")
	}
	p := c.page(t, "/login")
	signIn(t, p, "ada@acme.example", apptest.Password)
	click(t, p, `nav a[href="/users"]`)
	want(t, p, "/users", "Users")

	// Filter by role: the filter shows, and goes.
	p.Do(t, chromedp.SetValue(chromedp.CSS("#role"), "member"))
	click(t, p, "form.filters button")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "max@acme.example") || strings.Contains(got, "owner@acme.example") {
		t.Errorf("members only: %q", got)
	}
	if !strings.Contains(p.Text(t, ".active-filters"), "Role: member") {
		t.Errorf("active filters: %q", p.Text(t, ".active-filters"))
	}
	p.Inspect(t, screenshots, "users-filtered")

	// Invite.
	p.Open(t, c.URL+"/users")
	click(t, p, `a[href="/users/invite"]`)
	fill(t, p, "email", "new@acme.example")
	want(t, p, "/users", "Users")
	c.mailedLink(t, "new@acme.example", "invited")

	// Import from a file: a bad row is shown by line and column and nothing
	// happens; a good file is checked, then imported.
	dir := t.TempDir()
	bad, good := filepath.Join(dir, "bad.csv"), filepath.Join(dir, "good.csv")
	os.WriteFile(bad, []byte("email,name,role\nann@acme.example,Ann,member\nnot-an-address,Bo,member\n"), 0o600)
	os.WriteFile(good, []byte("email,name,role\nann@acme.example,Ann,member\nbo@acme.example,Bo,admin\n"), 0o600)
	p.Open(t, c.URL+"/users")
	click(t, p, `a[href="/users/import"]`)
	p.Do(t, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{bad}))
	click(t, p, "main form button.primary")
	if got := p.Text(t, "table"); !strings.Contains(got, "3") || !strings.Contains(got, "email") {
		t.Errorf("rows to correct: %q", got)
	}
	p.Inspect(t, screenshots, "users-import-error")
	p.Do(t, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{good}))
	click(t, p, "main form button.primary")
	want(t, p, "/users/import", "Check the import")
	if got := p.Text(t, "main"); !strings.Contains(got, "2 people will be invited") {
		t.Errorf("checked: %q", got)
	}
	if len(c.Mail.To("bo@acme.example", "invited")) != 0 {
		t.Error("the check invited someone")
	}
	p.Inspect(t, screenshots, "users-import-check")
	click(t, p, "main form button.primary")
	want(t, p, "/users", "Users")
	c.mailedLink(t, "bo@acme.example", "invited")
	// Found by a word of her name (names are stored encrypted: whole words).
	p.Open(t, c.URL+"/users?q=ANN")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "ann@acme.example") || strings.Contains(got, "bo@acme.example") {
		t.Errorf("search for ann: %q", got)
	}
	csvText := chrometest.Eval[string](t, p, `fetch("/users/export").then(r => r.ok ? r.text() : Promise.reject(r.status))`, chromedp.EvalAwaitPromise)
	if !strings.HasPrefix(csvText, "id,email,name,role,status") || !strings.Contains(csvText, "bo@acme.example") {
		t.Errorf("the users CSV: %q", csvText)
	}

	// Max: locked, then unlocked; suspended, then reactivated.
	p.Open(t, c.URL+"/users/"+max.ID)
	if !strings.Contains(p.Text(t, ".warning"), "Locked") {
		t.Fatalf("max's page does not say locked: %q", p.Text(t, "main"))
	}
	p.Inspect(t, screenshots, "user")
	click(t, p, `form[action$="/unlock"] button`)
	if got := p.Text(t, ".banner"); !strings.Contains(got, "unlocked") {
		t.Errorf("banner %q", got)
	}
	if r := c.Browser(t).Login(t, "acme", "max@acme.example", apptest.Password); r.Status != 200 {
		t.Errorf("max after the unlock: %d", r.Status)
	}
	click(t, p, `a[href$="/suspend"]`)
	click(t, p, "main form button.danger")
	if got := p.Text(t, ".banner"); !strings.Contains(got, "suspended") {
		t.Errorf("banner %q", got)
	}
	if r := c.Browser(t).Login(t, "acme", "max@acme.example", apptest.Password); r.Status != 401 {
		t.Errorf("max while suspended: %d", r.Status)
	}
	click(t, p, `form[action$="/reactivate"] button`)
	if r := c.Browser(t).Login(t, "acme", "max@acme.example", apptest.Password); r.Status != 200 {
		t.Errorf("max reactivated: %d", r.Status)
	}

	// Max lost his authenticator app: the admin resets his second factors,
	// and max, told by mail, must set one up again when he signs in.
	maxp := c.page(t, "/login")
	signIn(t, maxp, "max@acme.example", apptest.Password)
	maxp.Open(t, c.URL+"/account/second-factor")
	click(t, maxp, `form[action="/account/second-factor/totp"] button`)
	secret := strings.ReplaceAll(maxp.Text(t, "#totp-secret"), " ", "")
	fill(t, maxp, "code", c.totpNow(t, secret))
	everyone := identity.MFAEveryone
	if _, err := c.App.Identity.UpdateSecurity(opCtx(), c.Tenant.ID, identity.SecurityPatch{MFARequired: &everyone}); err != nil {
		t.Fatal(err)
	}
	p.Open(t, c.URL+"/users/"+max.ID)
	click(t, p, `a[href$="/second-factors/reset"]`)
	p.Inspect(t, screenshots, "user-reset-factors")
	click(t, p, "main form button.danger")
	if got := p.Text(t, ".banner"); !strings.Contains(got, "second factors are removed") {
		t.Errorf("banner %q", got)
	}
	c.Mail.Wait(t, "max@acme.example", "second factors", 10*time.Second)
	maxp.Open(t, c.URL+"/")
	want(t, maxp, "/login", "Sign in")
	signIn(t, maxp, "max@acme.example", apptest.Password)
	want(t, maxp, "/account/second-factor", "Set up a second factor")

	// The tenant's tokens: max's is revoked; the owner's cannot be.
	maxUser, _ := c.App.Identity.UserByID(opCtx(), c.Tenant.ID, max.ID)
	tokSecret, _, err := c.App.Identity.CreateTokenFor(opCtx(), c.Tenant.ID, maxUser, "max's sync", []string{"spaces:read"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.Open(t, c.URL+"/tokens")
	p.Inspect(t, screenshots, "tokens")
	if n := chrometest.Eval[int](t, p, `document.querySelectorAll("a[href$='/revoke']").length`); n != 1 {
		t.Errorf("%d revoke links for an admin; want 1 (max's, not the owner's)", n)
	}
	click(t, p, `a[href$="/revoke"]`)
	click(t, p, "main form button.danger")
	if r := c.Do(t, tokSecret, "GET", "/api/v1/spaces", nil); r.Status != 401 {
		t.Errorf("max's revoked token: %d", r.Status)
	}

	// The owner: nothing to change from an admin, and a forged form is refused.
	owner, err := c.App.Identity.UserByEmail(opCtx(), c.Tenant.ID, "owner@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	p.Open(t, c.URL+"/users/"+owner.ID)
	if n := chrometest.Eval[int](t, p, `document.querySelectorAll("main form, a[href$='/role'], a[href$='/suspend']").length`); n != 0 {
		t.Errorf("%d controls on the owner's page for an admin", n)
	}
	if problems := p.ConsoleProblems(); len(problems) > 0 {
		t.Errorf("the console shows: %v", problems)
	}
	if status := chrometest.Eval[int](t, p, `fetch("/users/`+owner.ID+`/suspend", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise); status != 403 {
		t.Errorf("an admin suspending the owner: %d; want 403", status)
	}
}

// An owner changes the security settings: a number out of bounds is named
// by its field and nothing changes; then the change is saved.
func TestOwnerChangesSecuritySettings(t *testing.T) {
	c := newConsole(t)
	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	click(t, p, `nav a[href="/settings/security"]`)
	want(t, p, "/settings/security", "Security settings")
	p.Inspect(t, screenshots, "settings-security")
	fill(t, p, "lockout_threshold", "2")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "must be between 3 and 20") {
		t.Errorf("a threshold of 2: %q", got)
	}
	if sec, _ := c.App.Identity.SecuritySettings(opCtx(), c.Tenant.ID); sec.LockoutThreshold != 6 {
		t.Errorf("a refused form changed the threshold to %d", sec.LockoutThreshold)
	}
	p.Inspect(t, screenshots, "settings-security-error")
	p.Do(t, chromedp.Click(chromedp.CSS("#mfa-all")))
	fill(t, p, "lockout_threshold", "8")
	want(t, p, "/settings/security", "Security settings")
	sec, err := c.App.Identity.SecuritySettings(opCtx(), c.Tenant.ID)
	if err != nil || sec.LockoutThreshold != 8 || sec.MFARequired != identity.MFAEveryone {
		t.Errorf("saved: %+v %v", sec, err)
	}
}

// An administrator makes a group, adds a member by email (an address
// with no account is refused by its field), makes them its administrator,
// then removes them.
func TestGroupAdministration(t *testing.T) {
	c := newConsole(t)
	c.AddUser(t, "max@acme.example", identity.RoleMember, apptest.Password)
	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	click(t, p, `nav a[href="/users"]`)
	click(t, p, `main a[href="/groups"]`)
	fill(t, p, "name", "Legal")
	want(t, p, "/groups/", "Legal")
	fill(t, p, "email", "nobody@acme.example")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "Nobody signs in with this address here") {
		t.Errorf("an unknown address: %q", got)
	}
	fill(t, p, "email", "max@acme.example")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "max@acme.example") || !strings.Contains(got, "Member") {
		t.Fatalf("members: %q", got)
	}
	click(t, p, `form[action$="/admin"] button`)
	if got := p.Text(t, "tbody"); !strings.Contains(got, "Administrator") {
		t.Errorf("after making max an administrator: %q", got)
	}
	p.Inspect(t, screenshots, "group")
	click(t, p, `form[action$="/remove"] button`)
	if got := p.Text(t, "main"); !strings.Contains(got, "Nobody is in this group yet") {
		t.Errorf("after removing max: %q", got)
	}
	p.Open(t, c.URL+"/groups")
	p.Inspect(t, screenshots, "groups")
}
