package api_test

import (
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/consent"
)

var (
	consentLink  = regexp.MustCompile(`https://[^/\s]+(/privacy/acme/consent/[A-Za-z0-9_-]{43})\b`)
	withdrawLink = regexp.MustCompile(`https://[^/\s"<]+(/privacy/acme/withdraw/news/[A-Za-z0-9_-]{43})\b`)
)

// linkIn returns the path of the first match of re in text.
func linkIn(t *testing.T, re *regexp.Regexp, text string) string {
	t.Helper()
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no link matching %s in:\n%s", re, text)
	}
	return m[1]
}

// answer posts the form of a campaign page.
func answer(t *testing.T, env *apptest.Env, path, ans string) apptest.Response {
	t.Helper()
	return env.Browser(t).DoRaw(t, "POST", path, "application/x-www-form-urlencoded",
		url.Values{"answer": {ans}, "notice_version": {"1"}}.Encode())
}

func ledger(t *testing.T, env *apptest.Env, id string) consent.Ledger {
	t.Helper()
	var l consent.Ledger
	env.Do(t, env.Token, "GET", "/api/v1/subjects/"+id+"/consents", nil).JSON(t, &l)
	return l
}

func campaign(t *testing.T, env *apptest.Env, id string) consent.Campaign {
	t.Helper()
	var c consent.Campaign
	env.Do(t, env.Token, "GET", "/api/v1/campaigns/"+id, nil).JSON(t, &c)
	return c
}

// TestConsentCampaign: a refresh campaign mails one link to each contact
// of its audience; a link grants (or refuses) once, from a page that
// changes nothing when merely opened, and then expires; the answer leaves
// a withdrawal link that withdraws as easily.
func TestConsentCampaign(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", map[string]any{"key": "news", "name": "Monthly news",
			"legal_basis": "consent", "data_categories": []string{"user.contact.email"}, "notice_text": "We send our news once a month."}); r.Status != 201 {
			t.Fatalf("purpose: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", map[string]any{"key": "billing", "name": "Billing",
			"legal_basis": "contract", "data_categories": []string{"user.contact.email"}}); r.Status != 201 {
			t.Fatalf("purpose: %d %s", r.Status, r.Body)
		}
		ann := createSubject(t, env, env.Token, map[string]any{"email": "ann@example.org"})["id"].(string)
		bo := createSubject(t, env, env.Token, map[string]any{"email": "bo@example.org"})["id"].(string)
		createSubject(t, env, env.Token, map[string]any{"email": "eve@example.org"}) // will not answer
		createSubject(t, env, env.Token, map[string]any{"phone": "+33123456789"})    // no address to mail
		dee := createSubject(t, env, env.Token, map[string]any{"email": "dee@example.org"})["id"].(string)
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+dee+"/consents", map[string]any{"purpose": "news",
			"action": "grant", "method": "web_form"}); r.Status != 201 {
			t.Fatalf("grant: %d %s", r.Status, r.Body)
		}

		for _, bad := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"name": "x", "purpose": "nope", "audience": "missing"}, "purpose"},
			{map[string]any{"name": "x", "purpose": "billing", "audience": "missing"}, "purpose"},
			{map[string]any{"name": "x", "purpose": "news", "audience": "everyone"}, "audience"},
			{map[string]any{"name": "x", "purpose": "news", "audience": "stale"}, "older_than_months"},
			{map[string]any{"name": "", "purpose": "news", "audience": "missing"}, "name"},
			{map[string]any{"name": "x", "purpose": "news", "audience": "missing", "link_days": 365}, "link_days"},
			{map[string]any{"name": "x", "purpose": "news", "audience": "subjects", "subject_ids": []string{"0190aaaa-0000-7000-8000-000000000000"}}, "subject_ids[0]"},
		} {
			if r := env.Do(t, env.Token, "POST", "/api/v1/campaigns", bad.body); r.Status != 400 || r.Map(t)["field"] != bad.field {
				t.Errorf("%v: %d %s, want 400 naming %s", bad.body, r.Status, r.Body, bad.field)
			}
		}

		var c consent.Campaign
		r := env.Do(t, env.Token, "POST", "/api/v1/campaigns", map[string]any{"name": "Spring refresh", "purpose": "news", "audience": "missing"})
		if r.JSON(t, &c); r.Status != 201 || c.Counts.Recipients != 3 || c.Counts.NoEmail != 1 || c.Counts.Pending != 0 {
			t.Fatalf("start: %d %s", r.Status, r.Body) // ann, bo and eve; not dee, who consented, nor the owner: staff are not contacts
		}
		// Started again while the links are open: nobody is mailed twice.
		var again consent.Campaign
		r = env.Do(t, env.Token, "POST", "/api/v1/campaigns", map[string]any{"name": "Oops", "purpose": "news", "audience": "missing"})
		if r.JSON(t, &again); r.Status != 201 || again.Counts.Recipients != 0 || again.Counts.Pending != 3 {
			t.Fatalf("second start: %d %s", r.Status, r.Body)
		}
		links := map[string]string{}
		for _, to := range []string{"ann@example.org", "bo@example.org", "eve@example.org"} {
			m := env.Mail.Wait(t, to, "asks for your consent", 10*time.Second)
			links[to] = linkIn(t, consentLink, m.Text)
		}
		for _, to := range []string{"dee@example.org", "owner@acme.example"} {
			if got := len(env.Mail.To(to, "consent")); got != 0 {
				t.Errorf("%s (who consented, or is staff) got %d mails", to, got)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for campaign(t, env, c.ID).Counts.Sent != 3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(env.Mail.All()); n != 3 { // one per contact, whatever was started twice
			t.Fatalf("%d mails sent, want 3", n)
		}

		// Opening the page shows the notice and changes nothing.
		page := env.Browser(t).Do(t, "GET", links["ann@example.org"], nil)
		if page.Status != 200 || !strings.Contains(string(page.Body), "We send our news once a month.") ||
			!strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") || !strings.Contains(page.Header.Get("Content-Security-Policy"), "form-action 'self'") {
			t.Fatalf("page: %d %v %s", page.Status, page.Header, page.Body)
		}
		if l := ledger(t, env, ann); len(l.History) != 0 {
			t.Fatalf("opening the page recorded %v", l.History)
		}
		if r := answer(t, env, links["ann@example.org"], "maybe"); r.Status != 400 || !strings.Contains(string(r.Body), "Grant or refuse") {
			t.Errorf("bad answer: %d %s", r.Status, r.Body)
		}
		done := answer(t, env, links["ann@example.org"], "grant")
		if done.Status != 200 {
			t.Fatalf("grant: %d %s", done.Status, done.Body)
		}
		l := ledger(t, env, ann)
		if len(l.History) != 1 || l.State[0].Status != consent.Granted || l.History[0].Method != "email_link" ||
			l.History[0].Source != "campaign: Spring refresh" || l.History[0].IP != "127.0.0.0/24" {
			t.Fatalf("ledger after the answer: %+v", l)
		}
		// The link is spent.
		for _, method := range []string{"GET", "POST"} {
			var r apptest.Response
			if method == "GET" {
				r = env.Browser(t).Do(t, "GET", links["ann@example.org"], nil)
			} else {
				r = answer(t, env, links["ann@example.org"], "refuse")
			}
			if r.Status != 410 {
				t.Errorf("%s on a used link: %d", method, r.Status)
			}
		}
		if l := ledger(t, env, ann); len(l.History) != 1 {
			t.Fatalf("a used link recorded again: %+v", l.History)
		}

		// Ten answers at once to one link: one counts.
		var wg sync.WaitGroup
		codes := make(chan int, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes <- answer(t, env, links["bo@example.org"], []string{"grant", "refuse"}[i%2]).Status
			}()
		}
		wg.Wait()
		close(codes)
		won := 0
		for code := range codes {
			if code == 200 {
				won++
			} else if code != 410 {
				t.Errorf("parallel answer: %d", code)
			}
		}
		if l := ledger(t, env, bo); won != 1 || len(l.History) != 1 {
			t.Fatalf("parallel answers: %d won, %d events", won, len(l.History))
		}

		// Eve's link expires unanswered.
		env.Now.Advance(15 * 24 * time.Hour)
		if r := answer(t, env, links["eve@example.org"], "grant"); r.Status != 410 {
			t.Errorf("expired link: %d %s", r.Status, r.Body)
		}
		got := campaign(t, env, c.ID).Counts
		if got.Recipients != 3 || got.Sent != 3 || got.Answered != 2 || got.Granted+got.Refused != 2 || got.Bounced != 0 || got.Queued != 0 {
			t.Errorf("counts: %+v", got)
		}

		// A bounce reported later (by the provider, through the API) counts too.
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+bo+"/bounces", map[string]any{"kind": "hard", "reason": "5.1.1"}); r.Status != 201 {
			t.Fatalf("bounce: %d %s", r.Status, r.Body)
		}
		if got := campaign(t, env, c.ID).Counts; got.Bounced != 1 {
			t.Errorf("bounced after a reported bounce: %+v", got)
		}

		// Withdrawing is as easy as granting: the page after the grant gives the link.
		wl := linkIn(t, withdrawLink, string(done.Body))
		if r := env.Browser(t).Do(t, "GET", wl, nil); r.Status != 200 || !strings.Contains(string(r.Body), "Withdraw my consent") {
			t.Fatalf("withdraw page: %d %s", r.Status, r.Body)
		}
		if r := env.Browser(t).Do(t, "POST", wl, nil); r.Status != 200 || !strings.Contains(string(r.Body), "is withdrawn") {
			t.Fatalf("withdraw: %d %s", r.Status, r.Body)
		}
		if r := env.Browser(t).Do(t, "POST", wl, nil); r.Status != 200 || !strings.Contains(string(r.Body), "no consent") {
			t.Errorf("withdraw twice: %d %s", r.Status, r.Body)
		}
		l = ledger(t, env, ann)
		if len(l.History) != 2 || l.State[0].Status != consent.Withdrawn {
			t.Errorf("ledger after withdrawal: %+v", l)
		}
		forged := wl[:len(wl)-2] + "AA"
		if r := env.Browser(t).Do(t, "POST", forged, nil); r.Status != 404 {
			t.Errorf("forged withdrawal link: %d", r.Status)
		}
		if r := env.Browser(t).Do(t, "POST", strings.Replace(wl, "/news/", "/billing/", 1), nil); r.Status != 404 {
			t.Errorf("withdrawal link moved to another purpose: %d", r.Status)
		}
		var v consent.Verdict
		if env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/consents/verify", nil).JSON(t, &v); !v.OK || v.Events != 2 {
			t.Errorf("ledger verify: %+v", v)
		}
	})
}
