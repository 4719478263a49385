package browsertest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/chrometest"
)

// api calls the API with the owner's token, failing unless it answers want.
func (c *console) api(t *testing.T, method, path string, body any, want int) map[string]any {
	t.Helper()
	r := c.Do(t, c.Token, method, path, body)
	if r.Status != want {
		t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
	}
	if len(r.Body) == 0 {
		return nil
	}
	return r.Map(t)
}

// link waits for the mail to `to` about subject and answers the link in
// it that starts with prefix (after the server's address).
func (c *console) link(t *testing.T, to, subject, prefix string) string {
	t.Helper()
	m := c.Mail.Wait(t, to, subject, 10*time.Second)
	l := regexp.MustCompile(`https://\S+` + regexp.QuoteMeta(prefix) + `\S*`).FindString(m.Text)
	if l == "" {
		t.Fatalf("no %s link in %q", prefix, m.Text)
	}
	return c.URL + l[strings.Index(l, prefix):]
}

// A person uses the privacy portal as they find it: asks for a copy of
// their data (the form refuses an empty answer first), confirms by the
// mailed link and downloads the copy's page; answers a consent request
// and withdraws the consent by the link it leaves. Every page passes axe
// and is shown at desk and phone widths.
func TestPrivacyPortalJourney(t *testing.T) {
	c := newConsole(t)
	c.api(t, "POST", "/api/v1/purposes", map[string]any{"key": "news", "name": "Monthly news", "legal_basis": "consent",
		"data_categories": []string{"user.contact.email"}, "notice_text": "We send our news once a month."}, 201)
	c.api(t, "POST", "/api/v1/subjects", map[string]any{"email": "ann@example.org"}, 201)

	p := c.page(t, "/privacy/acme")
	want(t, p, "/privacy/acme", "Your personal data at ACME Ltd")
	p.Inspect(t, screenshots, "portal")
	if b, err := os.ReadFile(filepath.Join(screenshots, "portal-390.png")); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("the phone screenshot is not a PNG: %v", err)
	}
	fill(t, p, "email", "ann@example.org")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "Choose what you want to ask for") {
		t.Errorf("no choice made: %q", got)
	}
	if got := chrometest.Eval[string](t, p, `document.getElementById("email").value`); got != "ann@example.org" {
		t.Errorf("the email typed is gone: %q", got)
	}
	p.Inspect(t, screenshots, "portal-error")
	p.Do(t, chromedp.Click(chromedp.CSS("#type-access")))
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	want(t, p, "/privacy/acme/sent", "Check your mailbox")
	p.Inspect(t, screenshots, "portal-sent")

	p.Open(t, c.link(t, "ann@example.org", "Confirm your request", "/privacy/acme/confirm/"))
	want(t, p, "/privacy/acme/confirm/", "Confirm your request")
	p.Inspect(t, screenshots, "portal-confirm")
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	if got := p.Text(t, "h1"); got != "Your request is sent" {
		t.Fatalf("after confirming: %q", got)
	}
	id := p.Text(t, "dl.summary code")
	p.Inspect(t, screenshots, "portal-sent-request")

	c.api(t, "POST", "/api/v1/requests/"+id+"/deliver", nil, 200)
	p.Open(t, c.link(t, "ann@example.org", "Your personal data from", "/privacy/acme/download/"))
	want(t, p, "/privacy/acme/download/", "Your personal data")
	p.Inspect(t, screenshots, "portal-download")

	c.api(t, "POST", "/api/v1/campaigns", map[string]any{"name": "Spring", "purpose": "news", "audience": "missing"}, 201)
	p.Open(t, c.link(t, "ann@example.org", "asks for your consent", "/privacy/acme/consent/"))
	want(t, p, "/privacy/acme/consent/", "May ACME Ltd use your data for this?")
	p.Inspect(t, screenshots, "portal-consent")
	p.Next(t, chromedp.Click(chromedp.CSS(`button[value="grant"]`)))
	if got := p.Text(t, "h1"); got != "Thank you" {
		t.Fatalf("after agreeing: %q", got)
	}
	p.Inspect(t, screenshots, "portal-answered")
	withdraw := chrometest.Eval[string](t, p, `document.querySelector("main a[href*='/withdraw/']").href`)
	p.Open(t, withdraw)
	want(t, p, "/privacy/acme/withdraw/news/", "Withdraw your consent")
	p.Inspect(t, screenshots, "portal-withdraw")
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	if got := p.Text(t, ".banner"); !strings.Contains(got, "is withdrawn") {
		t.Errorf("after withdrawing: %q", got)
	}
	if problems := p.ConsoleProblems(); len(problems) > 0 {
		t.Errorf("the console shows: %v", problems)
	}
}

// The pages of the links a change of sign-in address mails: confirm at the
// new address, "it was not me" at the old one.
func TestSignInAddressPages(t *testing.T) {
	c := newConsole(t)
	b := c.SignIn(t, "acme", "owner@acme.example")
	if r := b.Do(t, "PUT", "/api/v1/me/email", map[string]string{"email": "boss@acme.example"}); r.Status != 202 {
		t.Fatalf("change address: %d %s", r.Status, r.Body)
	}
	p := c.page(t, strings.TrimPrefix(c.link(t, "boss@acme.example", "Confirm your new sign-in address", "/account/email/"), c.URL))
	want(t, p, "/account/email/", "Confirm your new sign-in address")
	p.Inspect(t, screenshots, "email-confirm")
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	if got := p.Text(t, "h1"); got != "Your sign-in address is changed" {
		t.Fatalf("after confirming: %q", got)
	}
	p.Inspect(t, screenshots, "email-changed")
	p.Open(t, c.link(t, "owner@acme.example", "was changed", "/account/email-undo/"))
	want(t, p, "/account/email-undo/", "Your sign-in address was changed")
	p.Inspect(t, screenshots, "email-undo")
}
