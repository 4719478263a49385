package browsertest

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
)

// contact adds a contact with this address who granted the "news"
// purpose (made on first use), and answers their id.
func (c *console) contact(t *testing.T, email string) string {
	t.Helper()
	if r := c.Do(t, c.Token, "GET", "/api/v1/purposes/news", nil); r.Status == 404 {
		c.api(t, "POST", "/api/v1/purposes", map[string]any{"key": "news", "name": "Monthly news", "legal_basis": "consent",
			"data_categories": []string{"user.contact.email"}, "notice_text": "We send our news once a month."}, 201)
	}
	id := c.api(t, "POST", "/api/v1/subjects", map[string]any{"email": email, "source": "newsletter form",
		"attributes": map[string]any{"city": "Ghent"}}, 201)["id"].(string)
	c.api(t, "POST", "/api/v1/subjects/"+id+"/consents", map[string]any{"purpose": "news", "action": "grant", "method": "web_form",
		"notice_version": 1}, 201)
	return id
}

// download fetches path as the page's own form or link would, with the
// page's session, and answers the body.
func download(t *testing.T, p *chrometest.Page, method, path string) []byte {
	t.Helper()
	b64 := chrometest.Eval[string](t, p, fmt.Sprintf(`fetch(%q, {method: %q}).then(r => r.ok ? r.arrayBuffer() : Promise.reject(r.status)).then(b => {
		let s = ""; new Uint8Array(b).forEach(c => s += String.fromCharCode(c)); return btoa(s) })`, path, method), chromedp.EvalAwaitPromise)
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// zipFile answers the content of the file name in the zip raw.
func zipFile(t *testing.T, raw []byte, name string) string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	for _, f := range zr.File {
		if f.Name == name {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var b bytes.Buffer
			if _, err := b.ReadFrom(rc); err != nil {
				t.Fatal(err)
			}
			return b.String()
		}
	}
	t.Fatalf("no %s in the zip", name)
	return ""
}

// press moves the focus with the Tab key until it reaches sel, then
// presses Enter there and waits for the next page: the keyboard alone.
func press(t *testing.T, p *chrometest.Page, sel string) {
	t.Helper()
	for range 120 {
		if chrometest.Eval[bool](t, p, fmt.Sprintf(`document.activeElement && document.activeElement.matches(%q)`, sel)) {
			p.Next(t, chromedp.KeyEvent("\r"))
			return
		}
		p.Do(t, chromedp.KeyEvent("\t"))
	}
	t.Fatalf("Tab never reached %s", sel)
}

// A privacy officer finds the contacts without consent for a purpose,
// opens one, rectifies a field (the change shows, and only its name is in
// the trail), downloads a consent receipt and the access zip, restricts
// and lifts, and erases the contact with the keyboard alone, ending at
// the certificate.
func TestOfficerWorksOnAContact(t *testing.T) {
	c := newConsole(t)
	ann := c.contact(t, "ann@example.org")
	c.api(t, "POST", "/api/v1/subjects", map[string]any{"email": "bob@example.org"}, 201)

	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	click(t, p, `nav a[href="/contacts"]`)
	want(t, p, "/contacts", "Contacts")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "ann@example.org") || !strings.Contains(got, "bob@example.org") {
		t.Fatalf("every contact: %q", got)
	}
	if got := p.Text(t, ".count"); got != "1–2 of 2" {
		t.Errorf("count: %q", got)
	}

	// Without a valid consent for the news: Bob only, and the column says so.
	p.Do(t, chromedp.SetValue(chromedp.CSS("#purpose"), "news"), chromedp.Click(chromedp.CSS("#consent")))
	click(t, p, "form.filters button")
	if got := p.Text(t, "tbody"); strings.Contains(got, "ann@example.org") || !strings.Contains(got, "bob@example.org") || !strings.Contains(got, "Never asked") {
		t.Errorf("without consent: %q", got)
	}
	if got := p.Text(t, ".active-filters"); !strings.Contains(got, "No valid consent: Monthly news") {
		t.Errorf("active filters: %q", got)
	}
	p.Inspect(t, screenshots, "contacts-without-consent")

	// Looked up by its whole address.
	p.Open(t, c.URL+"/contacts")
	p.Do(t, chromedp.SetValue(chromedp.CSS("#q"), "ANN@example.org"))
	click(t, p, "form.filters button")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "ann@example.org") || strings.Contains(got, "bob@") {
		t.Errorf("looked up: %q", got)
	}
	click(t, p, `tbody a[href="/contacts/`+ann+`"]`)
	want(t, p, "/contacts/"+ann, "ann@example.org")
	if got := p.Text(t, "main"); !strings.Contains(got, "Monthly news: Valid") || !strings.Contains(got, "Ghent") || !strings.Contains(got, "newsletter form") {
		t.Errorf("the contact's page: %q", got)
	}
	p.Inspect(t, screenshots, "contact")

	// Staff are not contacts: their subject leads to their account's page.
	owner := principalOf(t, c, "owner@acme.example")
	p.Open(t, c.URL+"/contacts/"+owner.SubjectID)
	want(t, p, "/users/"+owner.UserID, "owner@acme.example")
	p.Open(t, c.URL+"/contacts/"+ann)

	// The processing check.
	click(t, p, "#check + form button")
	if got := p.Text(t, "[role=status]"); !strings.Contains(got, "Yes.") {
		t.Errorf("may we use it: %q", got)
	}

	// Rectify the city.
	click(t, p, `a[href="/contacts/`+ann+`/edit"]`)
	p.Inspect(t, screenshots, "contact-edit")
	p.Do(t, chromedp.SetValue(chromedp.CSS(`[id="attributes.city"]`), "Antwerp"))
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	want(t, p, "/contacts/"+ann, "ann@example.org")
	if got := p.Text(t, "main"); !strings.Contains(got, "Antwerp") || strings.Contains(got, "Ghent") || !strings.Contains(got, "The change is saved") {
		t.Errorf("after the change: %q", got)
	}
	trail := c.api(t, "GET", "/api/v1/audit?subject="+ann+"&action=subject.rectify", nil, 200)
	if items := trail["items"].([]any); len(items) != 1 || strings.Contains(fmt.Sprint(items), "Antwerp") {
		t.Errorf("the rectification in the trail: %v", items)
	}

	// The receipt, and the access zip, as the page's link and button fetch them.
	href := chrometest.Eval[string](t, p, `document.querySelector("a[href$='/receipt']").getAttribute("href")`)
	if jws := string(download(t, p, "GET", href)); strings.Count(jws, ".") != 2 {
		t.Errorf("the receipt is not a compact JWS: %q", jws)
	}
	if got := zipFile(t, download(t, p, "POST", "/contacts/"+ann+"/export"), "subject.json"); !strings.Contains(got, "Antwerp") {
		t.Errorf("the zip's subject.json: %q", got)
	}

	// Restrict, then lift: while restricted, nothing of theirs shows.
	click(t, p, `a[href="/contacts/`+ann+`/restrict"]`)
	fill(t, p, "reason", "accuracy contested")
	if got := p.Text(t, "main"); strings.Contains(got, "ann@example.org") || strings.Contains(got, "Antwerp") || !strings.Contains(got, "Processing is restricted") {
		t.Errorf("restricted: %q", got)
	}
	click(t, p, `form[action$="/restrict/lift"] button`)
	if got := p.Text(t, "main"); !strings.Contains(got, "Antwerp") {
		t.Errorf("after lifting: %q", got)
	}

	// The consent page: where everyone stands, and the history as CSV.
	click(t, p, `nav a[href="/consent"]`)
	want(t, p, "/consent", "Consent")
	if got := strings.Join(strings.Fields(p.Text(t, "table tbody")), " "); !strings.HasPrefix(got, "Monthly news 1 0 0 1") {
		t.Errorf("the report: %q", got)
	}
	if got := p.Text(t, "#history ~ table tbody"); !strings.Contains(got, "Granted") || !strings.Contains(got, "web form") {
		t.Errorf("the history: %q", got)
	}
	p.Inspect(t, screenshots, "consent")
	csvHref := chrometest.Eval[string](t, p, `document.querySelector("a[href^='/consent/history.csv']").getAttribute("href")`)
	if got := string(download(t, p, "GET", csvHref)); !strings.Contains(got, ann+",news,grant,web_form,1,") {
		t.Errorf("the history's CSV: %q", got)
	}
	// Ann asks to be erased; the request is verified.
	req := c.api(t, "POST", "/api/v1/requests", map[string]any{"type": "erasure", "subject_id": ann, "channel": "email"}, 201)["id"].(string)
	c.api(t, "PATCH", "/api/v1/requests/"+req, map[string]any{"status": "verified"}, 200)
	p.Open(t, c.URL+"/contacts/"+ann)

	// Erase, with the keyboard alone: the page says what goes and stays,
	// and offers to answer her request.
	press(t, p, `a[href="/contacts/`+ann+`/erase"]`)
	want(t, p, "/contacts/"+ann+"/erase", "Erase ann@example.org?")
	if got := p.Text(t, "main"); !strings.Contains(got, "What stays") || !strings.Contains(got, "cannot be undone") {
		t.Errorf("the erasure page: %q", got)
	}
	p.Inspect(t, screenshots, "contact-erase")
	press(t, p, "main form button.danger")
	want(t, p, "/contacts/"+ann+"/erasure", "Erasure certificate")
	if got := p.Text(t, "main"); !strings.Contains(got, ann) || !strings.Contains(got, "consent_events") || strings.Contains(got, "ann@example.org") ||
		!strings.Contains(got, "Their erasure request ("+req+")") || !strings.Contains(got, "owner@acme.example") || !strings.Contains(got, "No kept backup holds their key since") {
		t.Errorf("the certificate: %q", got)
	}
	if st := c.api(t, "GET", "/api/v1/requests/"+req, nil, 200)["status"]; st != "completed" {
		t.Errorf("the erasure request after the erasure: %v", st)
	}
	p.Inspect(t, screenshots, "contact-erasure")
	if r := c.Do(t, c.Token, "GET", "/api/v1/subjects/"+ann, nil); r.Status != 410 {
		t.Errorf("the erased contact through the API: %d", r.Status)
	}
	p.Open(t, c.URL+"/contacts")
	if got := p.Text(t, "tbody"); strings.Contains(got, "ann@") || !strings.Contains(got, "bob@example.org") {
		t.Errorf("the list after the erasure: %q", got)
	}
}

// A privacy officer imports 1 000 contacts from a CSV file with two bad
// rows: the check names them by line and column and adds nobody; the
// corrected file is checked, then imported while the progress bar
// reaches 100 %.
func TestOfficerImportsContacts(t *testing.T) {
	c := newConsole(t)
	file := func(bad bool) string {
		var b strings.Builder
		b.WriteString("email,source,attributes.city\n")
		for i := range 1000 {
			email := fmt.Sprintf("person%04d@example.org", i)
			if bad && (i == 10 || i == 500) {
				email = fmt.Sprintf("person%04d-at-example.org", i)
			}
			fmt.Fprintf(&b, "%s,fair 2026,Ghent\n", email)
		}
		path := filepath.Join(t.TempDir(), "contacts.csv")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	p.Open(t, c.URL+"/contacts")
	click(t, p, `a[href="/contacts/import"]`)
	want(t, p, "/contacts/import", "Import contacts")
	p.Inspect(t, screenshots, "contacts-import")

	p.Do(t, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{file(true)}))
	click(t, p, "main form button.primary")
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "2 rows of the file need correcting") {
		t.Fatalf("the check of a file with two bad rows: %q", got)
	}
	if got := strings.Join(strings.Fields(p.Text(t, "tbody")), " "); !strings.Contains(got, "12 email Not a valid") || !strings.Contains(got, "502 email Not a valid") {
		t.Errorf("the bad rows by line (the header is line 1): %q", got)
	}
	p.Inspect(t, screenshots, "contacts-import-problems")
	if r := c.api(t, "GET", "/api/v1/subjects?limit=1", nil, 200); r["total"] != float64(0) {
		t.Fatalf("a refused file added contacts: %v", r["total"])
	}

	p.Do(t, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{file(false)}))
	click(t, p, "main form button.primary")
	want(t, p, "/contacts/import", "Check the import")
	if got := p.Text(t, "main"); !strings.Contains(got, "1000 contacts will be added") {
		t.Fatalf("the check of the corrected file: %q", got)
	}
	p.Inspect(t, screenshots, "contacts-import-check")
	p.Do(t, chromedp.Click(chromedp.CSS("form[data-import] button.primary")),
		chromedp.WaitVisible(chromedp.CSS("[data-import-done]")))
	if v := chrometest.Eval[float64](t, p, `document.getElementById("import-progress").value / document.getElementById("import-progress").max`); v != 1 {
		t.Errorf("the progress bar ended at %v", v)
	}
	if got := p.Text(t, "[data-import-status]"); !strings.Contains(got, "Done: 1000 contacts imported") {
		t.Errorf("the import's status: %q", got)
	}
	p.Screenshots(t, screenshots, "contacts-import-done")
	if r := c.api(t, "GET", "/api/v1/subjects?limit=1", nil, 200); r["total"] != float64(1000) {
		t.Errorf("contacts after the import: %v", r["total"])
	}
	click(t, p, "[data-import-done] a")
	if got := p.Text(t, ".count"); got != "1–50 of 1000" {
		t.Errorf("the list's count: %q", got)
	}
	// Paging forward and back keeps the count of rows right.
	click(t, p, `a[rel="next"]`)
	if got := p.Text(t, ".count"); got != "51–100 of 1000" {
		t.Errorf("the second page: %q", got)
	}
	click(t, p, `a[rel="prev"]`)
	if got := p.Text(t, ".count"); got != "1–50 of 1000" {
		t.Errorf("back to the first page: %q", got)
	}
}

// A privacy officer filters the contacts without consent for a purpose,
// starts a campaign for them from there — checked first: whom it reaches
// — and watches its page while a contact, in a browser of their own,
// answers through the mailed link: the counts follow without a reload.
func TestOfficerRunsAConsentCampaign(t *testing.T) {
	c := newConsole(t)
	c.contact(t, "ann@example.org") // granted already
	c.api(t, "POST", "/api/v1/subjects", map[string]any{"email": "bob@example.org"}, 201)
	c.api(t, "POST", "/api/v1/subjects", map[string]any{"phone": "+32470123456"}, 201) // no address to mail

	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	p.Open(t, c.URL+"/contacts?purpose=news&consent=missing")
	if got := p.Text(t, ".count"); got != "1–2 of 2" {
		t.Errorf("without consent: %q", got)
	}
	click(t, p, `a[href^="/campaigns/new"]`)
	want(t, p, "/campaigns/new", "New consent campaign")
	p.Inspect(t, screenshots, "campaign-new")
	fill(t, p) // nothing typed: the name is asked for
	if got := p.Text(t, ".error-summary"); !strings.Contains(got, "Enter a name for the campaign") {
		t.Errorf("an unnamed campaign: %q", got)
	}
	fill(t, p, "name", "Spring refresh")
	want(t, p, "/campaigns/preview", "Check the campaign")
	if got := strings.Join(strings.Fields(p.Text(t, "main")), " "); !strings.Contains(got, "1 person will be mailed a link") ||
		!strings.Contains(got, "In the audience 2 active contacts") || !strings.Contains(got, "no email address 1") {
		t.Errorf("the check: %q", got)
	}
	p.Inspect(t, screenshots, "campaign-check")
	if n := c.api(t, "GET", "/api/v1/campaigns", nil, 200)["campaigns"].([]any); len(n) != 0 {
		t.Fatalf("the check started a campaign: %v", n)
	}
	fill(t, p)
	want(t, p, "/campaigns/", "Spring refresh")
	counts := func() string { return strings.Join(strings.Fields(p.Text(t, "#counts tbody")), " ") }
	if got := counts(); !strings.Contains(got, "Mailed a link 1") || !strings.Contains(got, "Answered 0") {
		t.Errorf("the new campaign: %q", got)
	}

	// Bob answers in a browser of his own; the officer's page follows.
	bob := c.browser.NewPage(t)
	bob.Open(t, c.link(t, "bob@example.org", "asks for your consent", "/privacy/acme/consent/"))
	bob.Next(t, chromedp.Click(chromedp.CSS(`button[value="grant"]`)))
	if got := bob.Text(t, "h1"); got != "Thank you" {
		t.Fatalf("after agreeing: %q", got)
	}
	p.Do(t, chromedp.Poll[chromedp.Void](`document.querySelector("#counts").innerText.replace(/\s+/g, " ").includes("Granted 1")`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if got := counts(); !strings.Contains(got, "Answered 1") || !strings.Contains(got, "Granted 1") || !strings.Contains(got, "Sent 1") {
		t.Errorf("after Bob's answer: %q", got)
	}
	p.Inspect(t, screenshots, "campaign")
	p.Open(t, c.URL+"/campaigns")
	p.Inspect(t, screenshots, "campaigns")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "Spring refresh") {
		t.Errorf("the campaigns: %q", got)
	}
	p.Open(t, c.URL+"/contacts?purpose=news&consent=missing")
	if got := p.Text(t, ".count"); got != "1–1 of 1" {
		t.Errorf("without consent, after the campaign: %q", got)
	}
}
