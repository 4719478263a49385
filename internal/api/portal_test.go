package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

var confirmLink = regexp.MustCompile(`https://[^/\s]+(/privacy/acme/confirm/[A-Za-z0-9_-]{43})\b`)

// portalAsk submits the portal's form.
func portalAsk(t *testing.T, env *apptest.Env, form url.Values) apptest.Response {
	t.Helper()
	return env.Browser(t).DoRaw(t, "POST", "/privacy/acme/requests", "application/x-www-form-urlencoded", form.Encode())
}

// portalRequest asks on the portal as email and confirms by the mailed
// link, answering the request made.
func portalRequest(t *testing.T, env *apptest.Env, email string, form url.Values) rights.Request {
	t.Helper()
	before := len(env.Mail.To(email, "Confirm your request"))
	form.Set("email", email)
	if r := portalAsk(t, env, form); r.Status != 200 || !strings.Contains(string(r.Body), "Check your mailbox") {
		t.Fatalf("portal: %d %s", r.Status, r.Body)
	}
	ms := env.Mail.WaitCount(t, email, "Confirm your request", before+1, 10*time.Second)
	link := linkIn(t, confirmLink, ms[len(ms)-1].Text)
	r := env.Browser(t).DoRaw(t, "POST", link, "application/x-www-form-urlencoded", "")
	if r.Status != 201 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	id := regexp.MustCompile(`<code>([0-9a-f-]{36})</code>`).FindStringSubmatch(string(r.Body))
	if id == nil {
		t.Fatalf("no reference on the page: %s", r.Body)
	}
	return request(t, env, "GET", "/api/v1/requests/"+id[1], nil, 200)
}

func countRows(t *testing.T, env *apptest.Env, query string, args ...any) string {
	t.Helper()
	return sqldbtest.Strings(t, env.App.DB, query, args...)[0]
}

// TestPrivacyPortal: a person asks on the public portal; nothing is a
// request until they open the link mailed to the address they gave, and
// then exactly one request exists, verified; the portal answers alike for
// known and unknown addresses, refuses bad input without keeping
// anything, bounds the mails to one address, and forgets unconfirmed
// intakes — key, mail and all — when they expire.
func TestPrivacyPortal(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		for _, p := range []map[string]any{
			{"key": "news", "name": "Monthly news", "legal_basis": "consent", "data_categories": []string{"user.contact.email"}, "notice_text": "News."},
			{"key": "analytics", "name": "Usage analytics", "legal_basis": "legitimate_interests", "data_categories": []string{"user.contact.email"}},
			{"key": "billing", "name": "Billing", "legal_basis": "contract", "data_categories": []string{"user.contact.email"}},
		} {
			if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", p); r.Status != 201 {
				t.Fatalf("purpose: %d %s", r.Status, r.Body)
			}
		}
		known := createSubject(t, env, env.Token, map[string]any{"email": "known@example.org"})["id"].(string)

		page := env.Browser(t).Do(t, "GET", "/privacy/acme", nil)
		body := string(page.Body)
		if page.Status != 200 || !strings.Contains(body, `action="/privacy/acme/requests"`) || !strings.Contains(body, "Usage analytics") ||
			!strings.Contains(body, "Monthly news") || strings.Contains(body, "Billing") || !strings.Contains(page.Header.Get("Content-Security-Policy"), "form-action 'self'") {
			t.Fatalf("portal page: %d %s %s", page.Status, page.Header, body)
		}
		if r := env.Browser(t).Do(t, "GET", "/privacy/nobody", nil); r.Status != 404 {
			t.Errorf("unknown tenant: %d", r.Status)
		}

		// Bad input: the form again, its summary linking each problem to
		// its field; nothing kept, nothing mailed.
		for _, bad := range []struct {
			form  url.Values
			field string
		}{
			{url.Values{"type": {"gossip"}, "email": {"a@example.org"}}, `href="#type"`},
			{url.Values{"type": {"access"}, "email": {"not an address"}}, `href="#email"`},
			{url.Values{"type": {"access"}, "email": {"a@example.org"}, "purposes": {"news"}}, `href="#purposes"`},
			{url.Values{"type": {"objection"}, "email": {"a@example.org"}, "purposes": {"billing"}}, `href="#purposes"`},
			{url.Values{"type": {"withdraw_consent"}, "email": {"a@example.org"}, "purposes": {"analytics"}}, `href="#purposes"`},
			{url.Values{"type": {"access"}, "email": {"a@example.org"}, "details": {strings.Repeat("x", 4001)}}, `href="#details"`},
		} {
			if r := portalAsk(t, env, bad.form); r.Status != 422 || !strings.Contains(string(r.Body), bad.field) {
				t.Errorf("%v: %d %s; want 422 with %s", bad.form, r.Status, r.Body, bad.field)
			}
		}
		if n := countRows(t, env, "SELECT COUNT(*) FROM portal_intakes"); n != "0" {
			t.Fatalf("bad input kept %s intakes", n)
		}

		// Known and unknown addresses get the same answer.
		a := portalAsk(t, env, url.Values{"type": {"access"}, "email": {"known@example.org"}, "details": {"Since 2019, at 12 Rue Secrète"}})
		b := portalAsk(t, env, url.Values{"type": {"access"}, "email": {"stranger@example.org"}})
		if a.Status != 200 || b.Status != 200 || !bytes.Equal(a.Body, b.Body) {
			t.Fatalf("known %d / unknown %d answers differ:\n%s\n%s", a.Status, b.Status, a.Body, b.Body)
		}
		m := env.Mail.Wait(t, "known@example.org", "Confirm your request", 10*time.Second)
		link := linkIn(t, confirmLink, m.Text)
		env.Mail.Wait(t, "stranger@example.org", "Confirm your request", 10*time.Second)

		// Not a request yet; what it says is sealed.
		if rs := listRequests(t, env); len(rs) != 0 {
			t.Fatalf("requests before confirmation: %+v", rs)
		}
		if raw := sqldbtest.Bytes(t, env.App.DB, "SELECT intake_ct FROM portal_intakes ORDER BY created_at LIMIT 1"); bytes.Contains(raw, []byte("Rue Secrète")) ||
			bytes.Contains(raw, []byte("known@example.org")) {
			t.Fatal("the intake is stored in clear")
		}
		// Opening the link (a mail scanner does) changes nothing.
		if r := env.Browser(t).Do(t, "GET", link, nil); r.Status != 200 || !strings.Contains(string(r.Body), "Send my request") {
			t.Fatalf("confirm page: %d %s", r.Status, r.Body)
		}
		if rs := listRequests(t, env); len(rs) != 0 {
			t.Fatalf("opening the link made a request: %+v", rs)
		}

		// Ten confirmations at once: one request.
		var wg sync.WaitGroup
		codes := make(chan int, 10)
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes <- env.Browser(t).DoRaw(t, "POST", link, "application/x-www-form-urlencoded", "").Status
			}()
		}
		wg.Wait()
		close(codes)
		won := 0
		for c := range codes {
			switch c {
			case 201:
				won++
			case 410:
			default:
				t.Errorf("parallel confirmation: %d", c)
			}
		}
		rs := listRequests(t, env)
		if won != 1 || len(rs) != 1 {
			t.Fatalf("%d confirmations won, %d requests; want 1 and 1", won, len(rs))
		}
		req := request(t, env, "GET", "/api/v1/requests/"+rs[0].ID, nil, 200)
		if req.SubjectID != known || req.Status != rights.Verified || req.Channel != "portal" || req.Type != "access" ||
			len(req.History) != 2 || req.History[0].Note != "Since 2019, at 12 Rue Secrète" || req.History[1].ToStatus != rights.Verified {
			t.Fatalf("confirmed request: %+v", req)
		}
		if r := env.Browser(t).Do(t, "GET", link, nil); r.Status != 410 {
			t.Errorf("used link: %d", r.Status)
		}
		if n := countRows(t, env, "SELECT COUNT(*) FROM portal_intakes"); n != "1" { // the stranger's is still waiting
			t.Errorf("%s intakes left; want 1", n)
		}

		// At most three unconfirmed intakes per address: the fourth is answered alike and mails nothing.
		for range 3 {
			if r := portalAsk(t, env, url.Values{"type": {"erasure"}, "email": {"flood@example.org"}}); r.Status != 200 {
				t.Fatalf("intake: %d %s", r.Status, r.Body)
			}
		}
		env.Mail.WaitCount(t, "flood@example.org", "Confirm your request", 3, 10*time.Second)
		if r := portalAsk(t, env, url.Values{"type": {"erasure"}, "email": {"flood@example.org"}}); r.Status != 200 {
			t.Fatalf("fourth intake: %d %s", r.Status, r.Body)
		}
		// Plus-address variants reach the same inbox and share its cap.
		for _, variant := range []string{"flood+1@example.org", "Flood+again@Example.org", "flood+@example.org"} {
			if r := portalAsk(t, env, url.Values{"type": {"erasure"}, "email": {variant}}); r.Status != 200 {
				t.Fatalf("intake for %s: %d %s", variant, r.Status, r.Body)
			}
		}
		// Checked in the store, not by waiting for mail: an intake and its mail are one transaction.
		if n := countRows(t, env, "SELECT COUNT(*) FROM portal_intakes"); n != "4" { // the stranger's and three floods
			t.Errorf("%s intakes; want 4: the fourth for one address was kept", n)
		}
		if n := countRows(t, env, "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'request-confirm'"); n != "4" { // stranger, three floods (the confirmed one went with its intake)
			t.Errorf("%s confirmation mails queued; want 4", n)
		}
		var denied auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=request.intake", nil).JSON(t, &denied)
		refused := 0
		for _, e := range denied.Items {
			if e.Outcome == audit.Denied {
				refused++
			}
		}
		if refused != 4 {
			t.Errorf("%d refused intakes audited; want 4 (the fourth, then three plus-address variants)", refused)
		}

		// Unconfirmed intakes expire and are purged with their keys and mail.
		env.Now.Advance(25 * time.Hour)
		if r := env.Browser(t).Do(t, "GET", linkIn(t, confirmLink, env.Mail.To("stranger@example.org", "Confirm")[0].Text), nil); r.Status != 410 {
			t.Errorf("expired link: %d", r.Status)
		}
		n, err := env.App.Rights.PurgeIntakes(context.Background())
		if err != nil || n != 4 {
			t.Fatalf("purge: %d, %v; want 4", n, err)
		}
		if c := countRows(t, env, `SELECT COUNT(*) FROM subject_keys k WHERE NOT EXISTS (SELECT 1 FROM subjects s
			WHERE s.tenant_id = k.tenant_id AND s.id = k.subject_id)`); c != "0" {
			t.Errorf("%s intake keys left", c)
		}
		if c := countRows(t, env, "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'request-confirm'"); c != "0" {
			t.Errorf("%s confirmation mails left", c)
		}
		if c := countRows(t, env, "SELECT COUNT(*) FROM subjects WHERE status <> 'x'"); c != "2" { // owner, known: strangers never became subjects
			t.Errorf("%s subjects; want 2", c)
		}

		// Parallel confirmations by someone unknown: one subject, one request.
		if r := portalAsk(t, env, url.Values{"type": {"erasure"}, "email": {"newcomer@example.org"}}); r.Status != 200 {
			t.Fatalf("intake: %d", r.Status)
		}
		newLink := linkIn(t, confirmLink, env.Mail.Wait(t, "newcomer@example.org", "Confirm your request", 10*time.Second).Text)
		statuses := make(chan int, 6)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses <- env.Browser(t).DoRaw(t, "POST", newLink, "application/x-www-form-urlencoded", "").Status
			}()
		}
		wg.Wait()
		close(statuses)
		for c := range statuses {
			if c != 201 && c != 410 {
				t.Errorf("parallel confirmation by a newcomer: %d", c)
			}
		}
		if c := countRows(t, env, "SELECT COUNT(*) FROM data_requests WHERE channel = 'portal' AND type = 'erasure'"); c != "1" {
			t.Errorf("%s requests from one link", c)
		}

		// A restriction asked on the portal takes effect when confirmed.
		if r := portalRequest(t, env, "known@example.org", url.Values{"type": {"restriction"}}); r.Status != rights.Verified || r.History[len(r.History)-1].Kind != "applied" {
			t.Fatalf("portal restriction: %+v", r)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+known, nil); r.Status != 409 {
			t.Errorf("reading a subject restricted through the portal: %d", r.Status)
		}
	})
}

func listRequests(t *testing.T, env *apptest.Env) []rights.Request {
	t.Helper()
	var out struct {
		Requests []rights.Request `json:"requests"`
	}
	env.Do(t, env.Token, "GET", "/api/v1/requests", nil).JSON(t, &out)
	return out.Requests
}

var downloadLink = regexp.MustCompile(`https://[^/\s]+(/privacy/acme/download/[A-Za-z0-9_-]{43})\b`)

// TestAccessDelivery: an access request asked on the portal is answered
// by a mailed link that downloads the zip once — made then, audited with
// its SHA-256 — and expires; delivering again ends the earlier link.
func TestAccessDelivery(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ann := createSubject(t, env, env.Token, map[string]any{"email": "ann@example.org", "attributes": map[string]any{"city": "Lyon"}})["id"].(string)
		req := portalRequest(t, env, "ann@example.org", url.Values{"type": {"access"}})
		if req.SubjectID != ann {
			t.Fatalf("request of %s; want %s", req.SubjectID, ann)
		}
		received := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "access", "subject_id": ann}, 201)
		erasure := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "erasure", "subject_id": ann}, 201)
		verify(t, env, erasure.ID)
		for _, id := range []string{received.ID, erasure.ID} {
			if r := env.Do(t, env.Token, "POST", "/api/v1/requests/"+id+"/deliver", nil); r.Status != 409 {
				t.Errorf("delivering %s: %d %s", id, r.Status, r.Body)
			}
		}
		var d rights.Delivery
		if r := env.Do(t, env.Token, "POST", "/api/v1/requests/"+req.ID+"/deliver", nil); r.Status != 200 {
			t.Fatalf("deliver: %d %s", r.Status, r.Body)
		} else if r.JSON(t, &d); d.Request.Status != rights.Completed || d.Request.History[len(d.Request.History)-2].Kind != "delivered" {
			t.Fatalf("delivered request: %+v", d.Request)
		}
		link := linkIn(t, downloadLink, env.Mail.Wait(t, "ann@example.org", "Your personal data", 10*time.Second).Text)
		if r := env.Browser(t).Do(t, "GET", link, nil); r.Status != 200 || !strings.Contains(string(r.Body), "Download my data") {
			t.Fatalf("download page: %d %s", r.Status, r.Body)
		}

		var wg sync.WaitGroup
		got := make(chan apptest.Response, 5)
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got <- env.Browser(t).DoRaw(t, "POST", link, "application/x-www-form-urlencoded", "")
			}()
		}
		wg.Wait()
		close(got)
		var zip []byte
		for r := range got {
			switch {
			case r.Status == 200 && r.Header.Get("Content-Type") == "application/zip":
				if zip != nil {
					t.Fatal("the link downloaded twice")
				}
				zip = r.Body
			case r.Status != 410:
				t.Errorf("parallel download: %d %s", r.Status, r.Body)
			}
		}
		if zip == nil {
			t.Fatal("no download")
		}
		if s := string(unzipFile(t, zip, "subject.json")); !strings.Contains(s, "ann@example.org") || !strings.Contains(s, "Lyon") {
			t.Errorf("subject.json: %s", s)
		}
		var page auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=request.downloaded", nil).JSON(t, &page)
		sum := sha256.Sum256(zip)
		if len(page.Items) != 1 || page.Items[0].Details["sha256"] != hex.EncodeToString(sum[:]) || page.Items[0].Actor.Type != audit.ActorSubject {
			t.Fatalf("download audit: %+v", page.Items)
		}
		if r := env.Browser(t).Do(t, "GET", link, nil); r.Status != 410 {
			t.Errorf("used link: %d", r.Status)
		}

		// Delivering again ends the unused earlier link; links expire.
		env.Do(t, env.Token, "POST", "/api/v1/requests/"+req.ID+"/deliver", nil)
		first := linkIn(t, downloadLink, env.Mail.WaitCount(t, "ann@example.org", "Your personal data", 2, 10*time.Second)[1].Text)
		env.Do(t, env.Token, "POST", "/api/v1/requests/"+req.ID+"/deliver", nil)
		second := linkIn(t, downloadLink, env.Mail.WaitCount(t, "ann@example.org", "Your personal data", 3, 10*time.Second)[2].Text)
		if r := env.Browser(t).Do(t, "GET", first, nil); r.Status != 410 {
			t.Errorf("superseded link: %d", r.Status)
		}
		if r := env.Browser(t).Do(t, "GET", second, nil); r.Status != 200 {
			t.Errorf("new link: %d", r.Status)
		}
		env.Now.Advance(7*24*time.Hour + time.Minute)
		if r := env.Browser(t).DoRaw(t, "POST", second, "application/x-www-form-urlencoded", ""); r.Status != 410 {
			t.Errorf("expired link: %d", r.Status)
		}
	})
}
