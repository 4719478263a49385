package browsertest

import (
	"encoding/csv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/identity"
)

// An administrator reads the audit trail: filters it by person, by group
// and by date, downloads the filtered CSV (read here), and verifies the
// chain.
func TestAdminReadsTheAuditTrail(t *testing.T) {
	c := newConsole(t)
	c.AddUser(t, "ada@acme.example", identity.RoleAdmin, apptest.Password)
	c.AddUser(t, "max@acme.example", identity.RoleMember, apptest.Password)
	ada := c.page(t, "/login")
	signIn(t, ada, "ada@acme.example", apptest.Password)
	admin := principalOf(t, c, "ada@acme.example")
	g, err := c.App.Identity.CreateGroup(opCtx(), admin, "Legal")
	if err != nil {
		t.Fatal(err)
	}
	max, err := c.App.Identity.UserByEmail(opCtx(), c.Tenant.ID, "max@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.App.Identity.SetMember(opCtx(), admin, g.ID, max.ID, false); err != nil {
		t.Fatal(err)
	}
	m := c.page(t, "/login")
	signIn(t, m, "max@acme.example", apptest.Password)

	rows := func() string { return ada.Text(t, "tbody") }
	click(t, ada, `nav a[href="/audit"]`)
	want(t, ada, "/audit", "Audit trail")
	ada.Do(t, chromedp.SetValue(chromedp.CSS("#person"), "max@acme.example"))
	click(t, ada, "form.filters button")
	if got := rows(); !strings.Contains(got, "max@acme.example") || strings.Contains(got, "ada@acme.example") || !strings.Contains(got, "signed in") {
		t.Errorf("by person: %q", got)
	}
	ada.Inspect(t, screenshots, "audit-person")

	ada.Open(t, c.URL+"/audit")
	today := c.Now.Now().UTC().Format("2006-01-02")
	ada.Do(t, chromedp.SetValue(chromedp.CSS("#group"), g.ID), chromedp.SetValue(chromedp.CSS("#from"), today), chromedp.SetValue(chromedp.CSS("#to"), today))
	click(t, ada, "form.filters button")
	if got := rows(); !strings.Contains(got, "max@acme.example") || strings.Contains(got, "ada@acme.example") {
		t.Errorf("by group and day: %q", got)
	}
	// The CSV of this view, as the page's link downloads it.
	href := chrometest.Eval[string](t, ada, `document.querySelector(".downloads a").href`)
	body := chrometest.Eval[string](t, ada, `fetch("`+href+`").then(r => r.ok ? r.text() : Promise.reject(r.status))`, chromedp.EvalAwaitPromise)
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) < 2 || recs[0][0] != "seq" {
		t.Fatalf("CSV: %v, %q", err, body)
	}
	for _, r := range recs[1:] {
		if r[4] != "max@acme.example" {
			t.Errorf("a CSV row of someone else: %q", r)
		}
	}
	ada.Open(t, c.URL+"/audit?to="+c.Now.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02"))
	if got := ada.Text(t, "main"); !strings.Contains(got, "No events match") {
		t.Errorf("yesterday: %q", got)
	}
	ada.Open(t, c.URL+"/audit?from=yesterday")
	if got := ada.Text(t, ".error-summary"); !strings.Contains(got, "Enter the first day as a year, month and day") {
		t.Errorf("a bad date: %q", got)
	}
	// Rows name what they were about: a file by its name and space.
	sp := c.api(t, "POST", "/api/v1/spaces", map[string]any{"name": "Legal"}, 201)
	if r := c.DoRaw(t, c.Token, "PUT", "/api/v1/spaces/"+sp["id"].(string)+"/files/contract.pdf", "application/pdf", "%PDF-1.4"); r.Status != 201 {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	owner := c.page(t, "/login")
	signIn(t, owner, "owner@acme.example", apptest.Password)
	owner.Open(t, c.URL+"/audit?action=file.*")
	if got := owner.Text(t, "tbody"); !strings.Contains(got, "uploaded a file: contract.pdf in Legal") {
		t.Errorf("the upload's row: %q", got)
	}

	ada.Open(t, c.URL+"/audit")
	click(t, ada, `form[action="/audit/verify"] button`)
	want(t, ada, "/audit/verify", "The audit trail is intact")
	ada.Inspect(t, screenshots, "audit-verify")
	ada.Open(t, c.URL+"/audit")
	if got := ada.Text(t, "main dl.summary"); !strings.Contains(got, "by ada@acme.example: intact") {
		t.Errorf("the chain's state after verifying: %q", got)
	}
}
