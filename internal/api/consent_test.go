package api_test

import (
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/consent"
)

// TestConsentOverHTTP: a grant through the API, the contacts still
// missing consent, and a receipt checked against the keys anyone can
// fetch without signing in.
func TestConsentOverHTTP(t *testing.T) {
	env := apptest.New(t, "")
	if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", map[string]any{"key": "news", "name": "News", "legal_basis": "consent",
		"data_categories": []string{"user.contact.email"}, "notice_text": "Monthly news."}); r.Status != 201 {
		t.Fatalf("purpose: %d %s", r.Status, r.Body)
	}
	ann := createSubject(t, env, env.Token, map[string]any{"email": "ann@example.org"})["id"].(string)
	bo := createSubject(t, env, env.Token, map[string]any{"email": "bo@example.org"})["id"].(string)
	if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+ann+"/consents", map[string]any{"purpose": "news", "action": "grant",
		"method": "teleport"}); r.Status != 400 || r.Map(t)["field"] != "method" {
		t.Errorf("bad method: %d %s", r.Status, r.Body)
	}
	var rec consent.Recorded
	r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+ann+"/consents", map[string]any{"purpose": "news", "action": "grant",
		"method": "web_form", "source": "footer form", "ip": "2001:db8:aa:bb::1"})
	if r.JSON(t, &rec); r.Status != 201 || rec.Seq != 1 || rec.IP != "2001:db8:aa::/48" || rec.Receipt == "" {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	var page struct{ Items []struct{ ID, Email string } }
	env.Do(t, env.Token, "GET", "/api/v1/subjects?consent=missing&purpose=news", nil).JSON(t, &page)
	var ids []string
	for _, s := range page.Items {
		ids = append(ids, s.ID)
	}
	if len(ids) != 1 || ids[0] != bo { // bo; not the owner: staff are not contacts
		t.Errorf("missing consent: %v (ann %s, bo %s)", ids, ann, bo)
	}
	if r := env.Do(t, env.Token, "GET", "/api/v1/subjects?purpose=news", nil); r.Status != 400 {
		t.Errorf("purpose without consent=missing: %d", r.Status)
	}
	var keys consent.JWKS
	if k := env.Browser(t).Do(t, "GET", "/privacy/acme/keys", nil); k.Status != 200 {
		t.Fatalf("keys: %d %s", k.Status, k.Body)
	} else {
		k.JSON(t, &keys)
	}
	var stored struct{ Receipt string }
	env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/consents/"+rec.ID+"/receipt", nil).JSON(t, &stored)
	c, err := consent.VerifyReceipt(stored.Receipt, keys)
	if err != nil || c.ConsentReceiptID != rec.ID || c.Custodia.PurposeKey != "news" {
		t.Errorf("receipt over HTTP: %+v %v", c, err)
	}
	var v consent.Verdict
	if env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/consents/verify", nil).JSON(t, &v); !v.OK || v.Events != 1 {
		t.Errorf("verify: %+v", v)
	}
}
