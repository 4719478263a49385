package browsertest

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
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
