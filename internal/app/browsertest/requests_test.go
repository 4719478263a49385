package browsertest

import (
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sqldb"
)

// A person asks for their data on the portal; a privacy officer finds the
// request in the inbox, extends its deadline with a reason (the person is
// told), and sends them their data; the person, in a browser of their
// own, downloads the zip.
func TestOfficerAnswersAPortalRequest(t *testing.T) {
	c := newConsole(t)
	c.api(t, "POST", "/api/v1/subjects", map[string]any{"email": "ann@example.org", "attributes": map[string]any{"city": "Ghent"}}, 201)

	// The organisation names its data protection officer first.
	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	click(t, p, `nav a[href="/settings/security"]`)
	click(t, p, `.tabs a[href="/settings/controller"]`)
	want(t, p, "/settings/controller", "Controller details")
	fill(t, p, "dpo_name", "Dee Po", "dpo_email", "not an address")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "email") {
		t.Errorf("a DPO's address that is not one: %q", got)
	}
	fill(t, p, "legal_name", "ACME Holdings Ltd", "address", "1 High Street\nLondon", "dpo_email", "dpo@acme.example",
		"privacy_policy_url", "https://acme.example/privacy")
	if got := p.Text(t, ".banner"); !strings.Contains(got, "Saved") {
		t.Fatalf("after saving: %q", got)
	}
	p.Inspect(t, screenshots, "settings-controller")
	click(t, p, `.tabs a[href="/settings/organisation"]`)
	fill(t, p, "trash_days", "sixty")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "whole number") {
		t.Errorf("trash days in words: %q", got)
	}
	fill(t, p, "trash_days", "60", "time_zone", "Europe/Brussels")
	if got := c.api(t, "GET", "/api/v1/settings/organisation", nil, 200); got["trash_days"] != float64(60) || got["time_zone"] != "Europe/Brussels" {
		t.Errorf("the organisation after saving: %v", got)
	}
	p.Inspect(t, screenshots, "settings-organisation")

	ann := c.browser.NewPage(t)
	ann.Open(t, c.URL+"/privacy/acme")
	if got := ann.Text(t, "main"); !strings.Contains(got, "Dee Po") || !strings.Contains(got, "dpo@acme.example") || !strings.Contains(got, "ACME Holdings Ltd") {
		t.Errorf("the portal's controller details: %q", got)
	}
	ann.Do(t, chromedp.Click(chromedp.CSS("#type-access")))
	fill(t, ann, "email", "ann@example.org")
	want(t, ann, "/privacy/acme/sent", "Check your mailbox")
	confirm := c.Mail.Wait(t, "ann@example.org", "Confirm your request", 10*time.Second)
	if !strings.Contains(confirm.Text, "Data protection officer: Dee Po, dpo@acme.example") {
		t.Errorf("the portal's mail names no DPO: %s", confirm.Text)
	}
	ann.Open(t, c.link(t, "ann@example.org", "Confirm your request", "/privacy/acme/confirm/"))
	ann.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))

	click(t, p, `nav a[href="/requests"]`)
	want(t, p, "/requests", "Requests")
	if got := strings.Join(strings.Fields(p.Text(t, "tbody")), " "); !strings.Contains(got, "Access ann@example.org") || !strings.Contains(got, "due in") ||
		!strings.Contains(got, "Verified") || !strings.Contains(got, "Privacy portal") && !strings.Contains(got, "portal") {
		t.Errorf("the inbox: %q", got)
	}
	p.Inspect(t, screenshots, "requests")
	click(t, p, "tbody a")
	want(t, p, p.Path(t), "Access request from ann@example.org")
	id := strings.TrimPrefix(p.Path(t), "/requests/")
	p.Inspect(t, screenshots, "request")

	click(t, p, `a[href="/requests/`+id+`/extend"]`)
	p.Inspect(t, screenshots, "request-extend")
	fill(t, p, "reason", "Your records are in three systems.")
	if got := p.Text(t, "main"); !strings.Contains(got, "extended: Your records are in three systems.") {
		t.Errorf("after the extension: %q", got)
	}
	if m := c.Mail.Wait(t, "ann@example.org", "needs more time", 10*time.Second); !strings.Contains(m.Text, "Your records are in three systems.") {
		t.Errorf("the extension's mail: %s", m.Text)
	}
	click(t, p, `form[action="/requests/`+id+`/deliver"] button`)
	if got := p.Text(t, "main"); !strings.Contains(got, "A link to their data is on its way") || !strings.Contains(got, "Completed") {
		t.Errorf("after sending the data: %q", got)
	}

	ann.Open(t, c.link(t, "ann@example.org", "Your personal data from", "/privacy/acme/download/"))
	want(t, ann, "/privacy/acme/download/", "Your personal data")
	zipped := download(t, ann, "POST", ann.Path(t))
	if got := zipFile(t, zipped, "subject.json"); !strings.Contains(got, "Ghent") {
		t.Errorf("the zip's subject.json: %q", got)
	}
	if got := zipFile(t, zipped, "supplementary.json"); !strings.Contains(got, `"dpo_email": "dpo@acme.example"`) || !strings.Contains(got, `"controller": "ACME Holdings Ltd"`) {
		t.Errorf("the zip's supplementary information: %q", got)
	}
}

// tabTo moves the focus with the Tab key until it reaches sel.
func tabTo(t *testing.T, p *chrometest.Page, sel string) {
	t.Helper()
	for range 150 {
		if chrometest.Eval[bool](t, p, `document.activeElement && document.activeElement.matches(`+"`"+sel+"`"+`)`) {
			return
		}
		p.Do(t, chromedp.KeyEvent(kb.Tab))
	}
	t.Fatalf("Tab never reached %s", sel)
}

// A privacy officer logs a request that came by phone and verifies it;
// filters the inbox and downloads it as CSV; sees deadlines in red and
// amber; and assigns two requests at once with the keyboard alone, told
// what was left as it was and why.
func TestOfficerSortsTheInbox(t *testing.T) {
	c := newConsole(t)
	ada := c.AddUser(t, "ada@acme.example", identity.RoleAdmin, apptest.Password)
	mk := func(typ, email string) rights.Request {
		t.Helper()
		r, err := c.App.Rights.Create(opCtx(), c.Tenant.ID, rights.Input{Type: typ, Channel: "email", Email: email})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	late := mk("access", "late@example.org")
	c.Now.Advance(25 * 24 * time.Hour)
	soon := mk("erasure", "soon@example.org")
	c.Now.Advance(25 * 24 * time.Hour) // the first is past its month, the other within 7 days of it
	fresh := mk("erasure", "fresh@example.org")
	for _, r := range []rights.Request{late, soon} {
		if _, err := c.App.Rights.Update(opCtx(), c.Tenant.ID, r.ID, rights.Change{Status: rights.Verified}); err != nil {
			t.Fatal(err)
		}
	}

	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	p.Open(t, c.URL+"/requests/new")
	want(t, p, "/requests/new", "Log a request")
	p.Inspect(t, screenshots, "request-new")
	p.Do(t, chromedp.Click(chromedp.CSS("#type-rectification")))
	fill(t, p, "email", "bob@example.org", "note", "Called on 3 December; spelled his name.")
	want(t, p, p.Path(t), "Rectification request from bob@example.org")
	if got := strings.Join(strings.Fields(p.Text(t, "main")), " "); !strings.Contains(got, "phone") || !strings.Contains(got, "Received") ||
		!strings.Contains(got, "Called on 3 December") {
		t.Errorf("the logged request: %q", got)
	}
	click(t, p, `form[action$="/verify"] button`)
	if got := p.Text(t, "dl.summary"); !strings.Contains(got, "Verified") {
		t.Errorf("after verifying: %q", got)
	}

	p.Open(t, c.URL+"/requests")
	rows := strings.Join(strings.Fields(p.Text(t, "tbody")), " ")
	if !strings.Contains(rows, "late@example.org") || !strings.Contains(rows, "soon@example.org") || strings.Contains(rows, "fresh@example.org") {
		t.Errorf("the verified open requests: %q", rows)
	}
	if got := p.Text(t, "strong.due.overdue"); !strings.Contains(got, "overdue") {
		t.Errorf("the overdue deadline: %q", got)
	}
	if got := p.Text(t, "strong.due.soon"); !strings.Contains(got, "due in") {
		t.Errorf("the deadline within 7 days: %q", got)
	}
	p.Do(t, chromedp.Click(chromedp.CSS("#unverified")))
	click(t, p, "form.filters button")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "fresh@example.org") {
		t.Errorf("with the unverified: %q", got)
	}
	p.Do(t, chromedp.SetValue(chromedp.CSS("#type"), "erasure"))
	click(t, p, "form.filters button")
	if got := p.Text(t, "tbody"); strings.Contains(got, "late@") || !strings.Contains(got, "soon@") || !strings.Contains(got, "fresh@") {
		t.Errorf("erasure requests: %q", got)
	}
	href := chrometest.Eval[string](t, p, `document.querySelector("a[href^='/requests/export.csv']").getAttribute("href")`)
	records, err := csv.NewReader(strings.NewReader(string(download(t, p, "GET", href)))).ReadAll()
	if err != nil || len(records) != 3 || records[1][1] != "erasure" || records[2][1] != "erasure" {
		t.Errorf("the CSV of the erasure requests: %v %v", records, err)
	}

	// Two requests assigned to Ada at once, with the keyboard alone.
	p.Open(t, c.URL+"/requests?unverified=show")
	p.Inspect(t, screenshots, "requests-unverified")
	for _, r := range []rights.Request{late, soon} {
		tabTo(t, p, "#pick-"+r.ID)
		p.Do(t, chromedp.KeyEvent(" "))
	}
	tabTo(t, p, "#action")
	for range 3 { // the first choice is "Mark as verified"; Ada is among the next
		if chrometest.Eval[string](t, p, `document.getElementById("action").value`) == "assign:"+ada.ID {
			break
		}
		p.Do(t, chromedp.KeyEvent(kb.ArrowDown))
	}
	press(t, p, "fieldset.bulk button")
	want(t, p, "/requests/bulk", "Check before it is done")
	if got := p.Text(t, "main"); !strings.Contains(got, "2 requests will be assigned to ada@acme.example") {
		t.Fatalf("the check: %q", got)
	}
	p.Inspect(t, screenshots, "requests-bulk")
	press(t, p, "main form button.primary")
	want(t, p, "/requests", "Requests")
	if got := p.Text(t, ".banner"); !strings.Contains(got, "assigned") {
		t.Errorf("after assigning: %q", got)
	}
	for _, r := range []rights.Request{late, soon} {
		if got, err := c.App.Rights.Peek(opCtx(), c.Tenant.ID, r.ID); err != nil || got.AssigneeID != ada.ID {
			t.Errorf("%s: assigned to %q %v", r.ID, got.AssigneeID, err)
		}
	}

	// Again, with one of them: it is skipped, and the page says why.
	p.Do(t, chromedp.Click(chromedp.CSS("#pick-"+late.ID)), chromedp.SetValue(chromedp.CSS("#action"), "assign:"+ada.ID))
	click(t, p, "fieldset.bulk button")
	if got := p.Text(t, "main"); !strings.Contains(got, "Nothing would change") || !strings.Contains(got, "it is assigned to them already") {
		t.Errorf("assigning again: %q", got)
	}

	// A request rejected: the page warns that the person sees the reason,
	// and they get it by mail.
	p.Open(t, c.URL+"/requests/"+fresh.ID+"/reject")
	want(t, p, "/requests/"+fresh.ID+"/reject", "Reject the request")
	p.Inspect(t, screenshots, "request-reject")
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.danger")))
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "Choose the reason") {
		t.Errorf("rejecting without a reason: %q", got)
	}
	p.Do(t, chromedp.Click(chromedp.CSS("#reason-no_data")))
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.danger")))
	if got := p.Text(t, "dl.summary"); !strings.Contains(got, "Rejected (no data)") {
		t.Errorf("after rejecting: %q", got)
	}
	if m := c.Mail.Wait(t, "fresh@example.org", "cannot act on your request", 10*time.Second); !strings.Contains(m.Text, "We hold no personal data about you.") {
		t.Errorf("the rejection's mail: %s", m.Text)
	}

	// An objection to profiling, once verified, waits in the objections
	// queue; upheld, it is settled.
	c.api(t, "POST", "/api/v1/purposes", map[string]any{"key": "profiling", "name": "Customer profiling", "legal_basis": "legitimate_interests",
		"data_categories": []string{"user.behavior.purchase_history"}}, 201)
	obj, err := c.App.Rights.Create(opCtx(), c.Tenant.ID, rights.Input{Type: "objection", Channel: "email", Email: "late@example.org", Purposes: []string{"profiling"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.App.Rights.Update(opCtx(), c.Tenant.ID, obj.ID, rights.Change{Status: rights.Verified}); err != nil {
		t.Fatal(err)
	}
	p.Open(t, c.URL+"/requests")
	click(t, p, `a[href="/objections"]`)
	want(t, p, "/objections", "Objections")
	if got := strings.Join(strings.Fields(p.Text(t, "tbody")), " "); !strings.Contains(got, "late@example.org Customer profiling") || !strings.Contains(got, "Open") {
		t.Fatalf("the objections: %q", got)
	}
	p.Inspect(t, screenshots, "objections")
	click(t, p, `form[action$="/profiling/uphold"] button`)
	if got := p.Text(t, "main"); !strings.Contains(got, "The objection is upheld") || !strings.Contains(got, "Upheld") {
		t.Errorf("after upholding: %q", got)
	}
}

// The home page says what needs attention, each a link to the list that
// shows it: requests overdue and due soon, people locked out, owners and
// administrators without the second factor the organisation requires.
func TestHomeSaysWhatNeedsAttention(t *testing.T) {
	c := newConsole(t)
	c.AddUser(t, "ada@acme.example", identity.RoleAdmin, apptest.Password)
	if _, err := c.App.Rights.Create(opCtx(), c.Tenant.ID, rights.Input{Type: "access", Channel: "email", Email: "late@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.App.Backups.Run(opCtx()); err != nil {
		t.Fatal(err)
	}
	c.Now.Advance(40 * 24 * time.Hour)
	for range 6 { // someone guesses Ada's password
		c.Browser(t).Login(t, "acme", "ada@acme.example", "a wrong guess, clearly")
	}
	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	want(t, p, "/", "ACME Ltd")
	if got := strings.Join(strings.Fields(p.Text(t, "ul.attention")), " "); !strings.Contains(got, "1 request is overdue") ||
		!strings.Contains(got, "1 person is locked out") || strings.Contains(got, "second factor") || !strings.Contains(got, "The newest backup is 960 hours old") {
		t.Errorf("what needs attention: %q", got)
	}
	p.Inspect(t, screenshots, "home-attention")
	click(t, p, `ul.attention a[href^="/users?locked"]`)
	if got := p.Text(t, "tbody"); !strings.Contains(got, "ada@acme.example") || strings.Contains(got, "owner@acme.example") {
		t.Errorf("the people locked out: %q", got)
	}
	p.Open(t, c.URL+"/")
	click(t, p, `ul.attention a[href^="/requests?due=overdue"]`)
	if got := p.Text(t, "tbody"); !strings.Contains(got, "late@example.org") {
		t.Errorf("the overdue requests: %q", got)
	}

	// Once second factors are required of administrators, those without
	// one are named too.
	admins := "admins"
	if _, err := c.App.Identity.UpdateSecurity(opCtx(), c.Tenant.ID, identity.SecurityPatch{MFARequired: &admins}); err != nil {
		t.Fatal(err)
	}
	p.Open(t, c.URL+"/")
	if got := strings.Join(strings.Fields(p.Text(t, "ul.attention")), " "); !strings.Contains(got, "2 owners and administrators have no second factor") {
		t.Errorf("with second factors required: %q", got)
	}

	// A background job that failed its last run is named.
	if err := c.App.DB.WithTx(opCtx(), func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO jobs (name, failures) VALUES ('retention', 2) ON CONFLICT (name) DO UPDATE SET failures = 2")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p.Open(t, c.URL+"/")
	if got := p.Text(t, "ul.attention"); !strings.Contains(got, "Background work is failing: retention") {
		t.Errorf("a failing job: %q", got)
	}
}
