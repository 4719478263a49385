package browsertest

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/sms/smstest"
)

// console is a running app with the browser that tests it.
type console struct {
	*apptest.Env
	browser *chrometest.Browser
}

func newConsole(t *testing.T) *console {
	t.Helper()
	env := apptest.New(t, "")
	return &console{Env: env, browser: browser(t)}
}

// newConsoleWith is newConsole with the configuration changed by hook.
func newConsoleWith(t *testing.T, hook func(*config.Config, *app.Options)) *console {
	t.Helper()
	return &console{Env: apptest.NewWith(t, "", hook), browser: browser(t)}
}

// page opens a new person's browser context at path.
func (c *console) page(t *testing.T, path string) *chrometest.Page {
	t.Helper()
	p := c.browser.NewPage(t)
	p.Open(t, c.URL+path)
	return p
}

func opCtx() context.Context {
	return audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
}

// mailedLink waits for the mail to `to` about subject and answers the
// console link in it.
func (c *console) mailedLink(t *testing.T, to, subject string) string {
	t.Helper()
	m := c.Mail.Wait(t, to, subject, 10*time.Second)
	link := regexp.MustCompile(`https://\S+#token=[A-Za-z0-9_-]{43}`).FindString(m.Text)
	if !strings.HasPrefix(link, c.URL+"/login/acme/") {
		t.Fatalf("mail %q holds no console link under %s: %q", m.Subject, c.URL, m.Text)
	}
	return link
}

// fill sets the value of the inputs by id, then sends the form with its
// main button and waits for the next page.
func fill(t *testing.T, p *chrometest.Page, fields ...string) {
	t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	for i := 0; i+1 < len(fields); i += 2 {
		steps = append(steps, chromedp.SetValue(chromedp.CSS("#"+fields[i]), fields[i+1]))
	}
	p.Do(t, steps...)
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
}

func signIn(t *testing.T, p *chrometest.Page, email, password string) {
	t.Helper()
	fill(t, p, "tenant", "acme", "email", email, "password", password)
}

// want fails unless the page is at path (with any query; under it, for a
// path ending in /) with the heading h1.
func want(t *testing.T, p *chrometest.Page, path, h1 string) {
	t.Helper()
	got := p.Path(t)
	if under := strings.HasSuffix(path, "/") && strings.HasPrefix(got, path); got != path && !strings.HasPrefix(got, path+"?") && !under {
		t.Fatalf("at %s (%q); want %s", got, p.Text(t, "main"), path)
	}
	if got := p.Text(t, "h1"); got != h1 {
		t.Fatalf("h1 %q at %s; want %q", got, path, h1)
	}
}

// totpNow answers the authenticator app's code for secret at the server's
// clock.
func (c *console) totpNow(t *testing.T, secret string) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, c.Now.Now())
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// The first owner of a new tenant opens the setup link `tenant create`
// prints, chooses a password, sets up an authenticator app from the QR
// code page's key and keeps the recovery codes; signs out and in again
// with a code; then signs in with a recovery code.
func TestOwnerSetsUpTheirAccount(t *testing.T) {
	c := newConsole(t)
	ctx := opCtx()
	tn, err := c.App.Tenants.Create(ctx, "newco", "Newco GmbH", "")
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.App.Identity.CreateUser(ctx, tn.ID, identity.NewUser{Email: "founder@newco.example", Role: identity.RoleOwner})
	if err != nil {
		t.Fatal(err)
	}
	link, _, err := c.App.Identity.SetupLink(ctx, tn.ID, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, c.URL+"/login/newco/invitation#token=") {
		t.Fatalf("setup link %s; want the console's invitation page under %s", link, c.URL)
	}
	p := c.browser.NewPage(t)
	p.Open(t, link)
	want(t, p, "/login/newco/invitation", "Choose your password for Newco GmbH")
	if hidden := chrometest.Eval[bool](t, p, `document.querySelector("[data-token-field]").hidden`); !hidden {
		t.Error("the code field shows although the link's fragment filled it")
	}
	if loc := chrometest.Eval[string](t, p, "location.href"); strings.Contains(loc, "token") {
		t.Errorf("the secret stays in the address bar: %s", loc)
	}
	if !strings.Contains(p.Text(t, "main"), "at least 15 characters") {
		t.Errorf("the page does not show the password rule: %q", p.Text(t, "main"))
	}
	p.Inspect(t, screenshots, "invitation")

	// A password the policy refuses is named, by the field and atop.
	fill(t, p, "password", "short")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "The password must be at least 15 characters long") {
		t.Errorf("error summary %q; want the rule named", got)
	}
	if title := chrometest.Eval[string](t, p, "document.title"); !strings.HasPrefix(title, "Error: ") {
		t.Errorf("title %q; want it to start with Error:", title)
	}
	p.Inspect(t, screenshots, "invitation-error")
	const pw = "a long passphrase nobody else knows"
	fill(t, p, "password", pw)
	want(t, p, "/", "Newco GmbH")

	// Set up an authenticator app.
	p.Open(t, c.URL+"/account/second-factor")
	want(t, p, "/account/second-factor", "Second factors")
	p.Next(t, chromedp.Click(chromedp.CSS(`form[action="/account/second-factor/totp"] button`)))
	want(t, p, "/account/second-factor/totp", "Set up your authenticator app")
	if src := chrometest.Eval[string](t, p, `document.querySelector("img.qr").src`); !strings.HasPrefix(src, "data:image/png;base64,") {
		t.Errorf("QR code %.40q; want a PNG", src)
	}
	p.Inspect(t, screenshots, "totp")
	secret := strings.ReplaceAll(p.Text(t, "#totp-secret"), " ", "") // shown in groups of four
	fill(t, p, "code", "000000")
	if !strings.Contains(p.Text(t, ".error-summary"), "code") {
		t.Errorf("a wrong code gives %q", p.Text(t, ".error-summary"))
	}
	fill(t, p, "code", c.totpNow(t, secret))
	want(t, p, "/account/second-factor/totp/confirm", "Save your recovery codes")
	codes := strings.Fields(p.Text(t, "#recovery-codes"))
	if len(codes) != 10 {
		t.Fatalf("recovery codes %q; want 10", codes)
	}
	p.Inspect(t, screenshots, "recovery-codes")

	// Sign out, and in with the authenticator app.
	p.Open(t, c.URL+"/")
	p.Next(t, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	want(t, p, "/login", "Sign in")
	if !strings.Contains(p.Text(t, ".banner"), "signed out") {
		t.Errorf("banner %q after signing out", p.Text(t, ".banner"))
	}
	fill(t, p, "tenant", "newco", "email", "founder@newco.example", "password", pw)
	want(t, p, "/login/second-factor", "Enter the code from your authenticator app")
	p.Inspect(t, screenshots, "second-factor")
	c.Now.Advance(31 * time.Second) // a code works once: the next one
	fill(t, p, "code", c.totpNow(t, secret))
	want(t, p, "/", "Newco GmbH")

	// And with a recovery code, from another browser.
	q := c.page(t, "/login")
	fill(t, q, "tenant", "newco", "email", "founder@newco.example", "password", pw)
	q.Next(t, chromedp.Click(chromedp.CSS(`a[href^="/login/second-factor?method=recovery"]`)))
	want(t, q, "/login/second-factor", "Enter a recovery code")
	fill(t, q, "code", codes[3])
	want(t, q, "/", "Newco GmbH")
	if !strings.Contains(q.Text(t, ".banner"), "recovery code") {
		t.Errorf("banner %q; want a word on the recovery code used", q.Text(t, ".banner"))
	}
	for _, pg := range []*chrometest.Page{p, q} {
		if problems := pg.ConsoleProblems(); len(problems) > 0 {
			t.Errorf("the console shows: %v", problems)
		}
	}
}

// When the tenant requires a second factor, an invited member follows the
// mailed link, chooses a password and can do nothing but set one up —
// here a passkey, with Chromium's virtual authenticator — then signs in
// with the passkey.
func TestInvitedMemberIsMadeToEnrol(t *testing.T) {
	c := newConsole(t)
	everyone := identity.MFAEveryone
	if _, err := c.App.Identity.UpdateSecurity(opCtx(), c.Tenant.ID, identity.SecurityPatch{MFARequired: &everyone}); err != nil {
		t.Fatal(err)
	}
	if r := c.Do(t, c.Token, "POST", "/api/v1/invitations", map[string]string{"email": "kim@acme.example", "role": "member"}); r.Status != 202 {
		t.Fatalf("invite: %d %s", r.Status, r.Body)
	}
	p := c.browser.NewPage(t)
	p.VirtualAuthenticator(t)
	p.Open(t, c.mailedLink(t, "kim@acme.example", "invited"))
	if !strings.Contains(p.Text(t, "main"), "at least 12 characters") { // 2FA for everyone: 12 suffice
		t.Errorf("the page does not show the password rule: %q", p.Text(t, "main"))
	}
	const pw = "kim's own long passphrase"
	fill(t, p, "password", pw)
	want(t, p, "/account/second-factor", "Set up a second factor")
	p.Inspect(t, screenshots, "enrol")
	for _, path := range []string{"/", "/login/confirm"} { // nothing else opens
		p.Open(t, c.URL+path)
		want(t, p, "/account/second-factor", "Set up a second factor")
	}
	p.Do(t, chromedp.SetValue(chromedp.CSS("#name"), "laptop"))
	p.Next(t, chromedp.Click(chromedp.CSS(`form[action="/account/second-factor/passkey"] button`)))
	want(t, p, "/account/second-factor/passkey", "Add your passkey")
	p.Inspect(t, screenshots, "passkey-add")
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	want(t, p, "/account/second-factor/passkey/confirm", "Save your recovery codes")
	p.Next(t, chromedp.Click(chromedp.CSS("a.primary")))
	want(t, p, "/", "ACME Ltd")

	// Sign in again in the same browser: the passkey answers.
	p.Next(t, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	signIn(t, p, "kim@acme.example", pw)
	want(t, p, "/login/second-factor", "Use your passkey")
	p.Inspect(t, screenshots, "passkey")
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	want(t, p, "/", "ACME Ltd")
	if problems := p.ConsoleProblems(); len(problems) > 0 {
		t.Errorf("the console shows: %v", problems)
	}
}

// Six wrong passwords from a browser that never signed in lock the
// account, and the page never says more than that the details are wrong;
// a browser that signed in before (a known device) still gets in. Then
// the person resets the password from the mailed link.
func TestLockoutAndReset(t *testing.T) {
	c := newConsole(t)
	known := c.page(t, "/login")
	signIn(t, known, "owner@acme.example", apptest.Password)
	want(t, known, "/", "ACME Ltd")
	known.Next(t, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))

	stranger := c.page(t, "/login")
	var said []string
	for range 7 {
		signIn(t, stranger, "owner@acme.example", "not the password at all")
		said = append(said, stranger.Text(t, ".error-summary"))
	}
	if !strings.Contains(said[0], "The sign-in details are not correct.") {
		t.Fatalf("a wrong password says %q", said[0])
	}
	for i, s := range said {
		if s != said[0] {
			t.Errorf("attempt %d says %q, attempt 1 %q: a lockout must look like a wrong password", i+1, s, said[0])
		}
	}
	stranger.Inspect(t, screenshots, "signin-error")
	signIn(t, stranger, "owner@acme.example", apptest.Password)
	want(t, stranger, "/login", "Sign in") // locked, and the page does not say so
	if got := stranger.Text(t, ".error-summary"); got != said[0] {
		t.Errorf("the right password on a locked account says %q", got)
	}
	signIn(t, known, "owner@acme.example", apptest.Password)
	want(t, known, "/", "ACME Ltd")

	// The reset link comes by mail.
	r := c.page(t, "/login")
	r.Next(t, chromedp.Click(chromedp.CSS(`a[href^="/login/reset"]`)))
	want(t, r, "/login/reset", "Reset your password")
	fill(t, r, "tenant", "acme", "email", "owner@acme.example")
	want(t, r, "/login", "Sign in")
	if !strings.Contains(r.Text(t, ".banner"), "a link to choose a new password is on its way") {
		t.Errorf("banner %q", r.Text(t, ".banner"))
	}
	r.Open(t, c.mailedLink(t, "owner@acme.example", "Reset"))
	want(t, r, "/login/acme/reset", "Choose a new password for ACME Ltd")
	const pw = "the new and rather long passphrase"
	fill(t, r, "password", pw)
	want(t, r, "/login", "Sign in")
	if !strings.Contains(r.Text(t, ".banner"), "Your password is changed") {
		t.Errorf("banner %q after the reset", r.Text(t, ".banner"))
	}
	// The reset ended every session; the lock stays for unknown browsers
	// (SECURITY.md), and the known one signs in with the new password.
	known.Open(t, c.URL+"/")
	want(t, known, "/login", "Sign in")
	signIn(t, known, "owner@acme.example", pw)
	want(t, known, "/", "ACME Ltd")
}

// Signing in works with the keyboard alone: Tab to each field, type,
// Enter to send.
func TestSignInWithKeyboardOnly(t *testing.T) {
	c := newConsole(t)
	p := c.page(t, "/login")
	p.Do(t, chromedp.KeyEvent("\t")) // the skip link comes first
	if got := chrometest.Eval[string](t, p, "document.activeElement.textContent"); got != "Skip to main content" {
		t.Errorf("first Tab lands on %q; want the skip link", got)
	}
	var steps []chromedp.Action[chromedp.Void]
	for _, v := range []string{"acme", "owner@acme.example", apptest.Password} {
		steps = append(steps, chromedp.KeyEvent("\t"), chromedp.KeyEvent(v))
	}
	p.Do(t, steps...)
	p.Next(t, chromedp.KeyEvent("\r"))
	want(t, p, "/", "ACME Ltd")
}

// A member of a tenant that allows text messages sets that factor up with
// the code texted to the phone (an in-process gateway receives it), then
// signs in with a code texted at sign-in.
func TestTextMessageFactor(t *testing.T) {
	g := smstest.Start(t)
	env := apptest.NewWith(t, "", func(c *config.Config, _ *app.Options) {
		c.SMSProvider, c.SMSWebhookURL, c.SMSWebhookSecret = "webhook", g.URL, smstest.Secret
	})
	c := &console{Env: env, browser: browser(t)}
	on := true
	if _, err := c.App.Identity.UpdateSecurity(opCtx(), c.Tenant.ID, identity.SecurityPatch{SMSEnabled: &on}); err != nil {
		t.Fatal(err)
	}
	c.AddUser(t, "sam@acme.example", identity.RoleMember, apptest.Password)
	p := c.page(t, "/login")
	signIn(t, p, "sam@acme.example", apptest.Password)
	p.Open(t, c.URL+"/account/second-factor")
	p.Do(t, chromedp.SetValue(chromedp.CSS("#phone"), "+44 7700 900123"))
	p.Next(t, chromedp.Click(chromedp.CSS(`form[action="/account/second-factor/sms"] button`)))
	want(t, p, "/account/second-factor/sms", "Enter the code we texted you")
	p.Inspect(t, screenshots, "sms-enrol")
	fill(t, p, "code", g.Code(t, "+447700900123"))
	want(t, p, "/account/second-factor/sms/confirm", "Save your recovery codes")

	c.Now.Advance(61 * time.Second) // one text a minute
	q := c.page(t, "/login")
	signIn(t, q, "sam@acme.example", apptest.Password)
	want(t, q, "/login/second-factor", "Enter the code we texted you")
	if !strings.Contains(q.Text(t, ".banner"), "on its way to your phone") {
		t.Errorf("banner %q", q.Text(t, ".banner"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(g.Messages("+447700900123")) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	fill(t, q, "code", g.Code(t, "+447700900123"))
	want(t, q, "/", "ACME Ltd")
}

// principalOf answers a principal of email, signed in through the
// service (for setting up what a test needs).
func principalOf(t *testing.T, c *console, email string) identity.Principal {
	t.Helper()
	res, err := c.App.Identity.Login(opCtx(), identity.LoginInput{Tenant: "acme", Email: email, Password: apptest.Password})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.App.Identity.AuthenticateSession(opCtx(), res.Session)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ownerPrincipal(t *testing.T, c *console) identity.Principal {
	return principalOf(t, c, "owner@acme.example")
}
