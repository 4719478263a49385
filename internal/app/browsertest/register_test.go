package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/subject"
)

// A privacy officer adds a purpose to the register with the form — the
// categories picked from the taxonomy, a transfer, a notice — after a
// refusal that names the field; publishes a second version of the notice
// and reads what changed; and downloads the register as CSV.
func TestOfficerKeepsTheRegister(t *testing.T) {
	c := newConsole(t)
	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	click(t, p, `nav a[href="/register"]`)
	want(t, p, "/register", "Processing register")
	click(t, p, `a[href="/register/new"]`)
	want(t, p, "/register/new", "Add a purpose")
	p.Inspect(t, screenshots, "purpose-new")

	p.Do(t, chromedp.SetValue(chromedp.CSS("#key"), "marketing.newsletter"), chromedp.SetValue(chromedp.CSS("#name"), "Monthly newsletter"),
		chromedp.Click(chromedp.CSS("#basis-consent")), chromedp.SetValue(chromedp.CSS("#notice_text"), "We send our news once a month.\nUnsubscribe at any time."))
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "data") {
		t.Fatalf("a purpose without data: %q", got)
	}
	p.Inspect(t, screenshots, "purpose-new-problem")
	if got := chrometest.Eval[string](t, p, `document.getElementById("key").value`); got != "marketing.newsletter" {
		t.Errorf("the form lost the key: %q", got)
	}
	p.Do(t, chromedp.Click(chromedp.CSS(`[id="dc-user.contact.email"]`)), chromedp.Click(chromedp.CSS(`[id="sc-customer"]`)),
		chromedp.SetValue(chromedp.CSS("#recipients"), "Mailer Ltd"), chromedp.SetValue(chromedp.CSS("#transfer_country_0"), "us"),
		chromedp.SetValue(chromedp.CSS("#transfer_mechanism_0"), "standard_contractual_clauses"))
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	want(t, p, "/register/marketing.newsletter", "Monthly newsletter")
	if got := p.Text(t, "dl.summary"); !strings.Contains(got, "Consent (Art. 6(1)(a))") || !strings.Contains(got, "Email address") ||
		!strings.Contains(got, "US (standard contractual clauses)") || !strings.Contains(got, "Mailer Ltd") {
		t.Errorf("the purpose: %q", got)
	}

	// A second version of the notice, and what changed.
	p.Do(t, chromedp.SetValue(chromedp.CSS("#text"), "We send our news twice a month.\nUnsubscribe at any time."))
	p.Next(t, chromedp.Click(chromedp.CSS(`form[action$="/notices"] button.primary`)))
	if got := strings.Join(strings.Fields(p.Text(t, ".diff")), " "); !strings.Contains(got, "Removed: We send our news once a month.") || !strings.Contains(got, "Added: We send our news twice a month.") {
		t.Errorf("the diff: %q", got)
	}
	if got := p.Text(t, ".diff p.added mark"); got != "twice " {
		t.Errorf("the words marked as added: %q", got)
	}
	p.Inspect(t, screenshots, "purpose")

	p.Open(t, c.URL+"/register")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "Monthly newsletter") || !strings.Contains(got, "Email address") {
		t.Errorf("the register: %q", got)
	}
	p.Inspect(t, screenshots, "register")
	csv := string(download(t, p, "GET", "/register/export?format=csv"))
	if !strings.Contains(csv, "marketing.newsletter,Monthly newsletter,,consent,,user.contact.email,customer,Mailer Ltd,US (standard_contractual_clauses),0,0,2,") {
		t.Errorf("the register's CSV: %q", csv)
	}
}

// A privacy officer adds a retention policy, previews whom it reaches and
// why — the contacts kept too long, not a recent one, not one on legal
// hold — runs it, and sees the run and its effect.
func TestOfficerRunsRetention(t *testing.T) {
	c := newConsole(t)
	old := c.api(t, "POST", "/api/v1/subjects", map[string]any{"email": "old@example.org"}, 201)["id"].(string)
	held := c.api(t, "POST", "/api/v1/subjects", map[string]any{"email": "held@example.org"}, 201)["id"].(string)
	c.api(t, "PUT", "/api/v1/subjects/"+held+"/legal-hold", map[string]any{"reason": "litigation"}, 200)
	c.Now.Advance(400 * 24 * time.Hour)
	if _, err := c.App.Subjects.Create(opCtx(), c.Tenant.ID, subject.New{Email: "new@example.org"}); err != nil { // the API token has expired
		t.Fatal(err)
	}
	state := func(id string) error { _, err := c.App.Subjects.State(opCtx(), c.Tenant.ID, id); return err }

	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	click(t, p, `nav a[href="/retention"]`)
	want(t, p, "/retention", "Retention")
	click(t, p, `a[href="/retention/new"]`)
	p.Inspect(t, screenshots, "policy-new")
	fill(t, p, "name", "Two years is enough", "period_days", "a year")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "whole number of days") {
		t.Fatalf("a period in words: %q", got)
	}
	p.Do(t, chromedp.Click(chromedp.CSS("#trigger-created")))
	fill(t, p, "period_days", "365")
	want(t, p, "/retention", "Retention")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "Erase contacts 365 days after they were added") {
		t.Errorf("the policies: %q", got)
	}
	p.Inspect(t, screenshots, "retention")

	click(t, p, `form[action="/retention/preview"] button`)
	want(t, p, "/retention/preview", "Who a run would reach now")
	if got := p.Text(t, "main"); !strings.Contains(got, "Two years is enough: 1 contact") || !strings.Contains(got, "old@example.org") ||
		strings.Contains(got, "new@example.org") || strings.Contains(got, "held@example.org") {
		t.Errorf("the preview: %q", got)
	}
	p.Inspect(t, screenshots, "retention-preview")
	if err := state(old); err != nil {
		t.Fatalf("the preview erased someone: %v", err)
	}
	click(t, p, `form[action="/retention/run"] button`)
	want(t, p, "/retention", "Retention")
	if got := strings.Join(strings.Fields(p.Text(t, "main")), " "); !strings.Contains(got, "The run is done") || !strings.Contains(got, "1 erased") {
		t.Errorf("after the run: %q", got)
	}
	if err := state(old); !errs.Is(err, errs.Gone) {
		t.Errorf("the contact kept too long: %v", err)
	}
	if err := state(held); err != nil {
		t.Errorf("the contact on hold: %v", err)
	}
}
