package api_test

import (
	"archive/zip"
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/rights"
)

// auditPage is a page of GET /api/v1/audit.
type auditPage struct{ Items []audit.Entry }

// unzipFile returns the file name of the zip archive b.
func unzipFile(t *testing.T, b []byte, name string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	f, err := zr.Open(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	out, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// processing asks whether subject id's data may be used for purpose.
func processing(t *testing.T, env *apptest.Env, id, purpose string) rights.Processing {
	t.Helper()
	var p rights.Processing
	r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+id+"/processing?purpose="+purpose, nil)
	if r.Status != 200 {
		t.Fatalf("processing: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &p)
	return p
}

// verify moves request id to verified and answers it.
func verify(t *testing.T, env *apptest.Env, id string) rights.Request {
	t.Helper()
	return request(t, env, "PATCH", "/api/v1/requests/"+id, map[string]any{"status": "verified"}, 200)
}

func hasApplied(r rights.Request) bool {
	n := 0
	for _, e := range r.History {
		if e.Kind == "applied" {
			n++
		}
	}
	return n == 1
}

// TestRestriction: a verified restriction request restricts the subject:
// their data is kept, rectifiable and exported, every other read is 409
// with the reason and audited, listings and campaigns leave them out;
// lifting it tells them by mail and is audited.
func TestRestriction(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", map[string]any{"key": "news", "name": "News", "legal_basis": "consent",
			"data_categories": []string{"user.contact.email"}, "notice_text": "News.", "recipients": []string{"Mailer Ltd"}}); r.Status != 201 {
			t.Fatalf("purpose: %d %s", r.Status, r.Body)
		}
		ann := createSubject(t, env, env.Token, map[string]any{"email": "ann@example.org", "attributes": map[string]any{"city": "Lyon"}})["id"].(string)
		req := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "restriction", "subject_id": ann}, 201)
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann, nil); r.Status != 200 {
			t.Fatalf("a received (unverified) request restricts nothing: %d", r.Status)
		}
		if req = verify(t, env, req.ID); !hasApplied(req) {
			t.Fatalf("verified restriction not applied: %+v", req.History)
		}
		if len(req.NotifyRecipients) != 1 || req.NotifyRecipients[0] != "Mailer Ltd" {
			t.Errorf("recipients to tell (Art. 19): %v", req.NotifyRecipients)
		}
		if p := processing(t, env, ann, "news"); p.Allowed || !slices.Contains(p.Reasons, "restricted") {
			t.Errorf("processing a restricted subject: %+v", p)
		}

		r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann, nil)
		if r.Status != 409 || !strings.Contains(r.Map(t)["detail"].(string), "restricted") || strings.Contains(string(r.Body), "ann@") {
			t.Fatalf("reading a restricted subject: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/consents", nil); r.Status != 409 {
			t.Errorf("their consent ledger: %d", r.Status)
		}
		var page auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=subject.read&subject="+ann, nil).JSON(t, &page)
		denied := 0
		for _, e := range page.Items {
			if e.Outcome == audit.Denied && e.Details["reason"] == "restricted" {
				denied++
			}
		}
		if denied != 1 {
			t.Errorf("%d refused reads audited; want 1", denied)
		}
		list := env.Do(t, env.Token, "GET", "/api/v1/subjects", nil)
		if list.Status != 200 || strings.Contains(string(list.Body), "ann@example.org") || strings.Contains(string(list.Body), "Lyon") ||
			!strings.Contains(string(list.Body), ann) {
			t.Errorf("listing shows restricted data: %s", list.Body)
		}
		// Kept: rectified (the answer shows nothing), exported.
		if r := env.Do(t, env.Token, "PATCH", "/api/v1/subjects/"+ann, map[string]any{"attributes": map[string]any{"city": "Nice"}}); r.Status != 200 ||
			strings.Contains(string(r.Body), "Nice") || r.Map(t)["restricted_since"] == nil {
			t.Errorf("rectifying a restricted subject: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/export", nil); r.Status != 200 || !strings.Contains(string(unzipFile(t, r.Body, "subject.json")), "Nice") {
			t.Errorf("exporting a restricted subject: %d", r.Status)
		}
		var c consent.Campaign
		env.Do(t, env.Token, "POST", "/api/v1/campaigns", map[string]any{"name": "ask", "purpose": "news", "audience": "subjects",
			"subject_ids": []string{ann}}).JSON(t, &c)
		if c.Counts.Recipients != 0 {
			t.Errorf("a campaign mailed a restricted subject: %+v", c.Counts)
		}

		// Lifting: the person is told, the lift audited, the data readable again.
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/subjects/"+ann+"/restriction", nil); r.Status != 200 || r.Map(t)["email"] != "ann@example.org" {
			t.Fatalf("lift: %d %s", r.Status, r.Body)
		}
		env.Mail.Wait(t, "ann@example.org", "lifts the restriction", 10*time.Second)
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann, nil); r.Status != 200 {
			t.Errorf("after lifting: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/subjects/"+ann+"/restriction", nil); r.Status != 409 {
			t.Errorf("lifting twice: %d", r.Status)
		}
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=subject.unrestrict&subject="+ann, nil).JSON(t, &page)
		if len(page.Items) != 1 {
			t.Errorf("%d lifts audited; want 1", len(page.Items))
		}
	})
}

// TestObjectionAndWithdrawal: a verified consent withdrawal withdraws the
// consents it names (all when none); an objection withdraws the
// consent-based ones and opens an objection for a purpose based on
// legitimate interests, which an admin then decides, once.
func TestObjectionAndWithdrawal(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		for _, p := range []map[string]any{
			{"key": "news", "name": "News", "legal_basis": "consent", "data_categories": []string{"user.contact.email"}, "notice_text": "News."},
			{"key": "offers", "name": "Offers", "legal_basis": "consent", "data_categories": []string{"user.contact.email"}, "notice_text": "Offers."},
			{"key": "analytics", "name": "Analytics", "legal_basis": "legitimate_interests", "data_categories": []string{"user.contact.email"}},
		} {
			if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", p); r.Status != 201 {
				t.Fatalf("purpose: %d %s", r.Status, r.Body)
			}
		}
		grant := func(id, purpose string) {
			if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+id+"/consents", map[string]any{"purpose": purpose, "action": "grant", "method": "api"}); r.Status != 201 {
				t.Fatalf("grant: %d %s", r.Status, r.Body)
			}
		}
		state := func(id string) map[string]string {
			out := map[string]string{}
			for _, s := range ledger(t, env, id).State {
				out[s.Purpose] = s.Status
			}
			return out
		}
		bo := createSubject(t, env, env.Token, map[string]any{"email": "bo@example.org"})["id"].(string)
		grant(bo, "news")
		grant(bo, "offers")
		w := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "withdraw_consent", "subject_id": bo, "purposes": []string{"offers"}}, 201)
		if w.Purposes[0] != "offers" {
			t.Fatalf("purposes: %+v", w)
		}
		if w = verify(t, env, w.ID); !hasApplied(w) {
			t.Fatalf("not applied: %+v", w.History)
		}
		if s := state(bo); s["news"] != consent.Granted || s["offers"] != consent.Withdrawn {
			t.Fatalf("after withdrawing offers: %v", s)
		}
		if p := processing(t, env, bo, "news"); !p.Allowed || len(p.Reasons) != 0 {
			t.Errorf("news after withdrawing offers: %+v", p)
		}
		if p := processing(t, env, bo, "offers"); p.Allowed || p.Reasons[0] != "no_consent" {
			t.Errorf("offers after withdrawing them: %+v", p)
		}
		for _, q := range []string{"", "?purpose=nope"} {
			if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+bo+"/processing"+q, nil); r.Status != 400 || r.Map(t)["field"] != "purpose" {
				t.Errorf("processing%s: %d %s", q, r.Status, r.Body)
			}
		}
		// Moving on applies nothing twice.
		if w = request(t, env, "PATCH", "/api/v1/requests/"+w.ID, map[string]any{"status": "completed"}, 200); !hasApplied(w) {
			t.Errorf("applied again on completion: %+v", w.History)
		}

		cy := createSubject(t, env, env.Token, map[string]any{"email": "cy@example.org"})["id"].(string)
		grant(cy, "news")
		o := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "objection", "subject_id": cy}, 201)
		verify(t, env, o.ID)
		if s := state(cy); s["news"] != consent.Withdrawn {
			t.Errorf("an objection to everything leaves consent: %v", s)
		}
		var l struct {
			Objections []rights.Objection `json:"objections"`
		}
		env.Do(t, env.Token, "GET", "/api/v1/objections?status=open", nil).JSON(t, &l)
		if len(l.Objections) != 1 || l.Objections[0].SubjectID != cy || l.Objections[0].Purpose != "analytics" || l.Objections[0].RequestID != o.ID {
			t.Fatalf("open objections: %+v", l.Objections)
		}
		if p := processing(t, env, cy, "analytics"); p.Allowed || p.Reasons[0] != "objection_open" || p.LegalBasis != "legitimate_interests" {
			t.Errorf("analytics while the objection is open: %+v", p)
		}
		if p := processing(t, env, bo, "analytics"); !p.Allowed {
			t.Errorf("analytics of someone who did not object: %+v", p)
		}
		path := "/api/v1/subjects/" + cy + "/objections/analytics"
		if r := env.Do(t, env.Token, "PUT", path, map[string]any{"decision": "ignored"}); r.Status != 400 || r.Map(t)["field"] != "decision" {
			t.Errorf("bad decision: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "PUT", path, map[string]any{"decision": "upheld"}); r.Status != 200 || r.Map(t)["status"] != "upheld" {
			t.Fatalf("decide: %d %s", r.Status, r.Body)
		}
		if p := processing(t, env, cy, "analytics"); p.Allowed || p.Reasons[0] != "objection_upheld" {
			t.Errorf("analytics after the objection is upheld: %+v", p)
		}
		if r := env.Do(t, env.Token, "PUT", path, map[string]any{"decision": "overridden"}); r.Status != 409 {
			t.Errorf("deciding twice: %d", r.Status)
		}
		env.Do(t, env.Token, "GET", "/api/v1/objections?status=open", nil).JSON(t, &l)
		if len(l.Objections) != 0 {
			t.Errorf("open objections after the decision: %+v", l.Objections)
		}
		var page auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=objection.*&subject="+cy, nil).JSON(t, &page)
		if len(page.Items) != 2 {
			t.Errorf("%d objection events audited; want open and decide", len(page.Items))
		}
	})
}
