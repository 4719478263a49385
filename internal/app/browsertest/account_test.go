package browsertest

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/identity"
)

// click follows the link or sends the form whose button is sel, and waits
// for the next page.
func click(t *testing.T, p *chrometest.Page, sel string) {
	t.Helper()
	p.Next(t, chromedp.Click(chromedp.CSS(sel)))
}

// A member looks after their own account: changes the password, adds and
// removes a passkey, signs out another browser, creates and revokes an API
// token, downloads their data (the zip is read here) and closes the
// account, then cancels.
func TestMemberLooksAfterTheirAccount(t *testing.T) {
	c := newConsole(t)
	c.AddUser(t, "max@acme.example", identity.RoleMember, apptest.Password)
	other := c.page(t, "/login")
	signIn(t, other, "max@acme.example", apptest.Password)
	p := c.browser.NewPage(t)
	p.VirtualAuthenticator(t)
	p.Open(t, c.URL+"/login")
	signIn(t, p, "max@acme.example", apptest.Password)

	click(t, p, `header a[href="/account"]`)
	want(t, p, "/account", "Your account")
	p.Inspect(t, screenshots, "account")

	// A time zone of one's own: every date shown in it from then on.
	click(t, p, `a[href="/account/time-zone"]`)
	fill(t, p, "time_zone", "Mars/Olympus")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "The time zone must be an IANA time zone name") {
		t.Errorf("a zone that is none: %q", got)
	}
	fill(t, p, "time_zone", "Asia/Tokyo")
	want(t, p, "/account", "Your account")
	if got := p.Text(t, "dl.summary"); !strings.Contains(got, "Asia/Tokyo") || !strings.Contains(got, "JST") {
		t.Errorf("after choosing Tokyo, the dates: %q", got)
	}

	// The password: a refusal names the rule; then the change.
	click(t, p, `a[href="/account/password"]`)
	fill(t, p, "current_password", apptest.Password, "new_password", "short")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "The new password must be at least 15 characters long") {
		t.Errorf("weak new password: %q", got)
	}
	p.Inspect(t, screenshots, "account-password-error")
	const pw = "max chose a much longer passphrase"
	fill(t, p, "current_password", apptest.Password, "new_password", pw)
	want(t, p, "/account", "Your account")
	if !strings.Contains(p.Text(t, ".banner"), "Your password is changed") {
		t.Errorf("banner %q", p.Text(t, ".banner"))
	}
	other.Open(t, c.URL+"/")
	want(t, other, "/login", "Sign in") // the change signed the other browser out
	signIn(t, other, "max@acme.example", pw)
	want(t, other, "/", "ACME Ltd")

	// A passkey, added and removed.
	p.Open(t, c.URL+"/account/second-factor")
	p.Do(t, chromedp.SetValue(chromedp.CSS("#name"), "phone"))
	click(t, p, `form[action="/account/second-factor/passkey"] button`)
	click(t, p, "main form button.primary")
	want(t, p, "/account/second-factor/passkey/confirm", "Save your recovery codes")
	p.Open(t, c.URL+"/account/second-factor")
	p.Inspect(t, screenshots, "account-second-factors")
	click(t, p, `a[href$="/remove"]`)
	want(t, p, "/account/second-factor/", "Remove the passkey “phone”")
	p.Inspect(t, screenshots, "factor-remove")
	click(t, p, "main form button.danger")
	want(t, p, "/account/second-factor", "Second factors")
	if got := p.Text(t, ".banner"); !strings.Contains(got, "removed") {
		t.Errorf("banner %q", got)
	}

	// The other browser, signed out from here.
	p.Open(t, c.URL+"/account/sessions")
	p.Inspect(t, screenshots, "account-sessions")
	click(t, p, `form[action$="/end"] button`)
	if got := p.Text(t, ".banner"); !strings.Contains(got, "That session has ended") {
		t.Errorf("banner %q", got)
	}
	other.Open(t, c.URL+"/")
	want(t, other, "/login", "Sign in")

	// A token, shown once, then revoked.
	p.Open(t, c.URL+"/account/tokens")
	click(t, p, `a[href="/account/tokens/new"]`)
	p.Do(t, chromedp.SetValue(chromedp.CSS("#name"), "backup script"), chromedp.Click(chromedp.CSS("#scope-spaces\\:read")))
	click(t, p, "main form button.primary")
	want(t, p, "/account/tokens", "Your new API token")
	secret := p.Text(t, "#token-secret")
	if r := c.Do(t, secret, "GET", "/api/v1/spaces", nil); r.Status != 200 {
		t.Fatalf("the new token: %d %s", r.Status, r.Body)
	}
	p.Inspect(t, screenshots, "account-token-created")
	click(t, p, "a.primary")
	click(t, p, `a[href$="/revoke"]`)
	p.Inspect(t, screenshots, "account-token-revoke")
	click(t, p, "main form button.danger")
	if r := c.Do(t, secret, "GET", "/api/v1/spaces", nil); r.Status != 401 {
		t.Errorf("a revoked token: %d", r.Status)
	}

	// A copy of one's data, as the page's button sends for it.
	p.Open(t, c.URL+"/account/data")
	p.Inspect(t, screenshots, "account-data")
	if got := zipFile(t, download(t, p, "POST", "/account/data"), "subject.json"); !strings.Contains(got, "max@acme.example") {
		t.Error("the zip holds no subject.json with the member's address")
	}

	// Closing, then keeping the account.
	p.Open(t, c.URL+"/account/close")
	p.Inspect(t, screenshots, "account-close")
	click(t, p, "main form button.danger")
	want(t, p, "/account/close", "Your account is closing")
	p.Inspect(t, screenshots, "account-closing")
	p.Open(t, c.URL+"/account")
	if !strings.Contains(p.Text(t, ".warning"), "Your account is closing") {
		t.Errorf("the account page does not say it is closing: %q", p.Text(t, "main"))
	}
	p.Open(t, c.URL+"/account/close")
	click(t, p, "main form button.primary")
	want(t, p, "/account", "Your account")
	if got := p.Text(t, ".banner"); !strings.Contains(got, "closure is cancelled") {
		t.Errorf("banner %q", got)
	}
	if problems := p.ConsoleProblems(); len(problems) > 0 {
		t.Errorf("the console shows: %v", problems)
	}
}
