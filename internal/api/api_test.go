package api_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

func createSubject(t *testing.T, env *apptest.Env, token string, body any) map[string]any {
	t.Helper()
	r := env.Do(t, token, "POST", "/api/v1/subjects", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("create subject: %d %s", r.Status, r.Body)
	}
	return r.Map(t)
}

func TestSubjectLifecycle(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		s := createSubject(t, env, env.Token, map[string]any{"email": "Mo@Example.org", "phone": "+33 1 23 45 67 89",
			"external_id": "app-7", "attributes": map[string]any{"plan": "pro"}, "source": "signup form"})
		id := s["id"].(string)
		if s["email"] != "mo@example.org" || s["source"] != "signup form" || s["created_at"] == nil {
			t.Fatalf("created = %v", s)
		}
		r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+id, nil)
		if r.Status != 200 || r.Map(t)["phone"] != "+33123456789" {
			t.Fatalf("get: %d %s", r.Status, r.Body)
		}
		for _, q := range []string{"email=MO%40example.org", "phone=%2B33123456789", "external_id=app-7"} {
			var page struct{ Items []map[string]any }
			r := env.Do(t, env.Token, "GET", "/api/v1/subjects?"+q, nil)
			r.JSON(t, &page)
			if r.Status != 200 || len(page.Items) != 1 || page.Items[0]["id"] != id {
				t.Errorf("lookup %s: %d %s", q, r.Status, r.Body)
			}
		}
		reads := func() int {
			var page struct{ Items []any }
			env.Do(t, env.Token, "GET", "/api/v1/audit?action=subject.read&subject="+id, nil).JSON(t, &page)
			return len(page.Items)
		}
		before := reads()
		if r := env.Do(t, env.Token, "PATCH", "/api/v1/subjects/"+id, `{}`); r.Status != 200 || r.Map(t)["email"] != "mo@example.org" {
			t.Fatalf("empty patch: %d %s", r.Status, r.Body)
		}
		if reads() != before+1 {
			t.Error("an empty PATCH returned the subject without an audited read")
		}
		r = env.Do(t, env.Token, "PATCH", "/api/v1/subjects/"+id, `{"phone": null, "attributes": {"plan": "team"}}`)
		if m := r.Map(t); r.Status != 200 || m["phone"] != nil || m["attributes"].(map[string]any)["plan"] != "team" {
			t.Fatalf("patch: %d %s", r.Status, r.Body)
		}
		// Paging through everything (the owner is a subject too).
		for i := range 4 {
			createSubject(t, env, env.Token, map[string]any{"email": fmt.Sprintf("p%d@example.org", i)})
		}
		seen, cursor := 0, ""
		for pages := 0; ; pages++ {
			var page struct {
				Items      []map[string]any
				NextCursor string `json:"next_cursor"`
			}
			env.Do(t, env.Token, "GET", "/api/v1/subjects?limit=2&cursor="+cursor, nil).JSON(t, &page)
			seen += len(page.Items)
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
			if pages > 10 {
				t.Fatal("paging does not end")
			}
		}
		if seen != 5 { // the owner is staff, not a contact
			t.Errorf("paged through %d subjects; want 5", seen)
		}
		// Every read and write left an audit event about this subject.
		var page struct{ Items []map[string]any }
		env.Do(t, env.Token, "GET", "/api/v1/audit?subject="+id, nil).JSON(t, &page)
		actions := map[string]int{}
		for _, e := range page.Items {
			actions[e["action"].(string)]++
			if a := e["actor"].(map[string]any); a["display"] != "owner@acme.example" {
				t.Errorf("actor shown as %v", a)
			}
		}
		for _, want := range []string{"subject.create", "subject.read", "subject.lookup", "subject.rectify", "subject.list"} {
			if actions[want] == 0 {
				t.Errorf("no %s event for the subject (have %v)", want, actions)
			}
		}
	})
}

// TestOtherTenantGets404 calls every route with an {id} or {key} as another tenant's
// owner, with the id of a real object of this tenant, and wants exactly
// what a missing id gets.
func TestOtherTenantGets404(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		s := createSubject(t, env, env.Token, map[string]any{"email": "victim@example.org", "external_id": "v-1"})
		victim := env.SignIn(t, "acme", "owner@acme.example")
		ids := map[string]string{ // path prefix → a real id of acme's
			"/api/v1/subjects/":    s["id"].(string),
			"/api/v1/me/tokens/":   victim.Do(t, "POST", "/api/v1/me/tokens", map[string]any{"name": "x"}).Map(t)["id"].(string),
			"/api/v1/tokens/":      victim.Do(t, "POST", "/api/v1/me/tokens", map[string]any{"name": "y"}).Map(t)["id"].(string),
			"/api/v1/me/mfa/":      victim.Do(t, "POST", "/api/v1/me/mfa/totp", nil).Map(t)["id"].(string),
			"/api/v1/me/sessions/": firstID(t, victim.Do(t, "GET", "/api/v1/me/sessions", nil)),
			"/api/v1/users/":       env.AddUser(t, "staff@acme.example", "member", "").ID,
			"/api/v1/spaces/":      victim.Do(t, "POST", "/api/v1/spaces", map[string]any{"name": "Victim"}).Map(t)["id"].(string),
			"/api/v1/groups/":      victim.Do(t, "POST", "/api/v1/groups", map[string]any{"name": "Victims"}).Map(t)["id"].(string),
			"/api/v1/purposes/": victim.Do(t, "POST", "/api/v1/purposes", map[string]any{"key": "victim", "name": "Victims",
				"legal_basis": "contract", "data_categories": []string{"user.name"}}).Map(t)["key"].(string),
		}
		space := ids["/api/v1/spaces/"]
		upload := func(name string) string {
			r := victim.DoRaw(t, "PUT", "/api/v1/spaces/"+space+"/files/"+name, "text/plain", "victim's file")
			if r.Status != 201 {
				t.Fatalf("upload: %d %s", r.Status, r.Body)
			}
			return r.Map(t)["id"].(string)
		}
		ids["/api/v1/files/"] = upload("victim.txt")
		ids["/api/v1/uploads/"] = victim.Do(t, "POST", "/api/v1/spaces/"+space+"/uploads", map[string]any{"path": "later.bin", "size": 10}).Map(t)["id"].(string)
		upload("trashed.txt")
		ids["/api/v1/trash/"] = victim.Do(t, "DELETE", "/api/v1/spaces/"+space+"/files/trashed.txt", nil).Map(t)["id"].(string)
		staff := ids["/api/v1/users/"]
		if r := victim.Do(t, "PUT", "/api/v1/groups/"+ids["/api/v1/groups/"]+"/members/"+staff, map[string]any{}); r.Status != 204 {
			t.Fatalf("add member: %d %s", r.Status, r.Body)
		}
		grant := victim.Do(t, "POST", "/api/v1/spaces/"+ids["/api/v1/spaces/"]+"/grants", map[string]any{"user_id": staff, "access": "viewer"}).Map(t)["id"].(string)
		if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", map[string]any{"key": "victim.news", "name": "News", "legal_basis": "consent",
			"data_categories": []string{"user.contact.email"}, "notice_text": "News."}); r.Status != 201 {
			t.Fatalf("purpose: %d %s", r.Status, r.Body)
		}
		event := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+s["id"].(string)+"/consents",
			map[string]any{"purpose": "victim.news", "action": "grant", "method": "api"}).Map(t)["id"].(string)
		ids["/api/v1/campaigns/"] = env.Do(t, env.Token, "POST", "/api/v1/campaigns", map[string]any{"name": "Victims",
			"purpose": "victim.news", "audience": "subjects", "subject_ids": []string{s["id"].(string)}}).Map(t)["id"].(string)
		ids["/api/v1/retention/policies/"] = env.Do(t, env.Token, "POST", "/api/v1/retention/policies", map[string]any{"name": "Victims",
			"trigger": "created", "period_days": 3650, "action": "erase", "enabled": false}).Map(t)["id"].(string)
		ids["/api/v1/requests/"] = env.Do(t, env.Token, "POST", "/api/v1/requests", map[string]any{"type": "access",
			"subject_id": s["id"].(string)}).Map(t)["id"].(string)
		if r := env.Do(t, env.Token, "PUT", "/api/v1/files/"+ids["/api/v1/files/"]+"/subjects/"+s["id"].(string), nil); r.Status != 201 {
			t.Fatalf("link: %d %s", r.Status, r.Body)
		}
		inner := strings.NewReplacer("{user}", staff, "{grant}", grant, "{event}", event, "{path...}", "victim.txt", "{version}", "1",
			"{subject}", s["id"].(string))
		const fakeID = "01a00000-0000-7000-8000-000000000000"
		fake := strings.NewReplacer("{user}", fakeID, "{grant}", fakeID, "{event}", fakeID, "{path...}", "victim.txt", "{version}", "1",
			"{subject}", fakeID)
		env.AddTenant(t, "globex", "owner@globex.example")
		other := env.SignIn(t, "globex", "owner@globex.example")
		bodies := map[string]any{"POST": map[string]any{}, "PUT": map[string]any{}}
		n := 0
		for _, rt := range env.App.API.Routes() {
			if !strings.Contains(rt.Path, "{id}") && !strings.Contains(rt.Path, "{key}") && !strings.Contains(rt.Path, "{item}") {
				continue
			}
			n++
			var id string
			for prefix, v := range ids {
				if strings.HasPrefix(rt.Path, prefix) {
					id = v
				}
			}
			if id == "" {
				t.Errorf("%s %s: no real id to probe it with; add one to this test", rt.Method, rt.Path)
				continue
			}
			object := strings.NewReplacer("{id}", id, "{key}", id, "{item}", id)
			path := inner.Replace(object.Replace(rt.Path))
			missing := fake.Replace(strings.NewReplacer("{id}", fakeID, "{key}", fakeID, "{item}", fakeID).Replace(rt.Path))
			body := bodies[rt.Method]
			if rt.Method == "PATCH" { // a valid change of each kind of object
				body = map[string]any{"/api/v1/subjects/": map[string]any{"source": "probe"},
					"/api/v1/users/":                      map[string]any{"status": "suspended"},
					"/api/v1/spaces/":                     map[string]any{"name": "probe"},
					"/api/v1/spaces/{id}/files/{path...}": map[string]any{"path": "probe.txt"},
					"/api/v1/groups/":                     map[string]any{"name": "probe"},
					"/api/v1/purposes/":                   map[string]any{"name": "probe"},
					"/api/v1/retention/policies/":         map[string]any{"name": "probe"},
					"/api/v1/requests/":                   map[string]any{"status": "verified"}}[strings.TrimSuffix(strings.TrimSuffix(rt.Path, "{id}"), "{key}")]
			}
			got := other.Do(t, rt.Method, path, body)
			want := other.Do(t, rt.Method, missing, body)
			if got.Status != http.StatusNotFound || want.Status != http.StatusNotFound {
				t.Errorf("%s %s as other tenant: %d (missing id: %d); want 404", rt.Method, rt.Path, got.Status, want.Status)
				continue
			}
			g, w := got.Map(t), want.Map(t)
			delete(g, "request_id")
			delete(w, "request_id")
			if fmt.Sprint(g) != fmt.Sprint(w) {
				t.Errorf("%s %s: other tenant's id answers %v, a missing id %v", rt.Method, rt.Path, g, w)
			}
		}
		if n < 2 {
			t.Fatalf("only %d routes with {id}", n)
		}
		for _, q := range []string{"email=victim%40example.org", "external_id=v-1"} {
			var page struct{ Items []any }
			other.Do(t, "GET", "/api/v1/subjects?"+q, nil).JSON(t, &page)
			if len(page.Items) != 0 {
				t.Errorf("lookup %s as other tenant found %v", q, page.Items)
			}
		}
		var ledger struct{ History []any }
		if env.Do(t, env.Token, "GET", "/api/v1/subjects/"+s["id"].(string)+"/consents", nil).JSON(t, &ledger); len(ledger.History) != 1 {
			t.Errorf("other tenant changed the consent ledger: %d events", len(ledger.History))
		}
		r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+s["id"].(string), nil)
		if r.Status != 200 || r.Map(t)["source"] != "api" {
			t.Errorf("other tenant's PATCH changed the subject: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/me/tokens", nil); strings.Contains(string(r.Body), "revoked_at\":\"") {
			t.Errorf("other tenant revoked a token: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/users/"+ids["/api/v1/users/"], nil); r.Map(t)["status"] != "active" {
			t.Errorf("other tenant suspended a user: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/spaces/"+ids["/api/v1/spaces/"]+"/grants", nil); r.Status != 200 || !strings.Contains(string(r.Body), grant) ||
			strings.Contains(string(r.Body), "probe") {
			t.Errorf("other tenant changed the space's grants: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/groups/"+ids["/api/v1/groups/"], nil); r.Status != 200 || r.Map(t)["name"] != "Victims" || r.Map(t)["members"] != 1.0 {
			t.Errorf("other tenant changed the group: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/purposes/victim", nil); r.Status != 200 || r.Map(t)["name"] != "Victims" || r.Map(t)["notice"] != nil {
			t.Errorf("other tenant changed the purpose: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/spaces/"+space+"/files/victim.txt", nil); r.Status != 200 || string(r.Body) != "victim's file" {
			t.Errorf("other tenant changed the victim's file: %d %s", r.Status, r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/files/"+ids["/api/v1/files/"]+"/subjects", nil); !strings.Contains(string(r.Body), s["id"].(string)) {
			t.Errorf("other tenant unlinked the victim's file: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/trash", nil); !strings.Contains(string(r.Body), ids["/api/v1/trash/"]) {
			t.Errorf("other tenant restored or purged the victim's trash: %s", r.Body)
		}
		if r := victim.Do(t, "GET", "/api/v1/me", nil); r.Status != 200 {
			t.Errorf("other tenant ended the victim's session: %d", r.Status)
		}
	})
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		s := createSubject(t, env, env.Token, map[string]any{"email": "kim@example.org"})
		id := s["id"].(string)
		ctx := context.Background()
		state := func() string {
			var subjects, events int
			q := env.App.DB.Read()
			if err := q.QueryRow(ctx, "SELECT count(*) FROM subjects").Scan(&subjects); err != nil {
				t.Fatal(err)
			}
			if err := q.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE action <> 'subject.read'").Scan(&events); err != nil {
				t.Fatal(err)
			}
			r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+id, nil)
			return fmt.Sprint(subjects, events, string(r.Body[:0]), r.Map(t)["email"], r.Map(t)["updated_at"])
		}
		before := state()
		big := `{"email":"x@example.org","attributes":{"a":"` + strings.Repeat("x", 1<<20) + `"}}`
		cases := []struct {
			method, path string
			body         any
			status       int
			field        string
		}{
			{"POST", "/api/v1/subjects", `{"email": "a@example.org"`, 400, ""},
			{"POST", "/api/v1/subjects", `{"email": "a@example.org", "nickname": "x"}`, 400, "nickname"},
			{"POST", "/api/v1/subjects", `{"email": 42}`, 400, "email"},
			{"POST", "/api/v1/subjects", `{"attributes": "flat"}`, 400, "attributes"},
			{"POST", "/api/v1/subjects", `{"email": "not-an-email"}`, 400, "email"},
			{"POST", "/api/v1/subjects", `{"phone": "0207 946 0958"}`, 400, "phone"},
			{"POST", "/api/v1/subjects", `{"source": "web"}`, 400, "email"},
			{"POST", "/api/v1/subjects", `{"email": "kim@example.org"}`, 409, "email"},
			{"POST", "/api/v1/subjects", `[]`, 400, ""},
			{"POST", "/api/v1/subjects", `{} {}`, 400, ""},
			{"POST", "/api/v1/subjects", ``, 400, ""},
			{"POST", "/api/v1/subjects", big, 413, ""},
			{"PATCH", "/api/v1/subjects/" + id, `{"email": "bad@"}`, 400, "email"},
			{"PATCH", "/api/v1/subjects/" + id, `{"email": null}`, 400, "email"},
			{"PATCH", "/api/v1/subjects/" + id, `{"id": "other"}`, 400, "id"},
			{"GET", "/api/v1/subjects?email=a%40example.org&phone=%2B4412345678", nil, 400, "email"},
			{"GET", "/api/v1/subjects?limit=0", nil, 400, "limit"},
			{"GET", "/api/v1/subjects?limit=9999", nil, 400, "limit"},
			{"GET", "/api/v1/subjects?colour=red", nil, 400, "colour"},
			{"GET", "/api/v1/subjects?status=gone", nil, 400, "status"},
			{"GET", "/api/v1/subjects?restricted=maybe", nil, 400, "restricted"},
			{"GET", "/api/v1/subjects?legal_hold=1", nil, 400, "legal_hold"},
			{"GET", "/api/v1/subjects?sort=name", nil, 400, "sort"},
			{"GET", "/api/v1/audit?from=yesterday", nil, 400, "from"},
			{"GET", "/api/v1/audit?format=xml", nil, 400, "format"},
			{"GET", "/api/v1/audit?cursor=zzz", nil, 400, "cursor"},
			{"GET", "/api/v1/audit?outcome=maybe", nil, 400, "outcome"},
			{"GET", "/api/v1/audit?group=01a00000-0000-7000-8000-000000000000", nil, 400, "group"},
			{"GET", "/api/v1/audit?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", nil, 400, "to"},
		}
		for _, c := range cases {
			r := env.Do(t, env.Token, c.method, c.path, c.body)
			name := fmt.Sprintf("%s %s %.40v", c.method, c.path, c.body)
			if r.Status != c.status {
				t.Errorf("%s: %d %s; want %d", name, r.Status, r.Body, c.status)
				continue
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s: Content-Type %q", name, ct)
			}
			p := r.Map(t)
			if p["status"] != float64(c.status) || p["title"] == "" || p["type"] == "" || p["detail"] == "" {
				t.Errorf("%s: problem %v lacks status/title/type/detail", name, p)
			}
			if c.field != "" && p["field"] != c.field {
				t.Errorf("%s: problem names field %v; want %q (%v)", name, p["field"], c.field, p["detail"])
			}
		}
		// Wrong content type.
		req, _ := http.NewRequest("POST", env.Server.URL+"/api/v1/subjects", strings.NewReader(`email=x`))
		req.Header.Set("Authorization", "Bearer "+env.Token)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if res, err := env.Server.Client().Do(req); err != nil || res.StatusCode != 400 {
			t.Errorf("form body: %v %v", res.StatusCode, err)
		}
		if after := state(); after != before {
			t.Errorf("bad input changed state: %s → %s", before, after)
		}
	})
}

func TestAuthentication(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		r := env.Do(t, "", "GET", "/api/v1/subjects", nil)
		if r.Status != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("no token: %d %v", r.Status, r.Header)
		}
		bad := env.Token[:len(env.Token)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", env.Token[len(env.Token)-1])+1)%16])
		if r := env.Do(t, bad, "GET", "/api/v1/subjects", nil); r.Status != 401 {
			t.Errorf("bad checksum: %d", r.Status)
		}
		readOnly, _, err := env.App.Identity.CreateToken(ctx, env.Tenant.ID, "owner@acme.example", "ro", []string{"subjects:read"}, 3600e9)
		if err != nil {
			t.Fatal(err)
		}
		if r := env.Do(t, readOnly, "GET", "/api/v1/subjects", nil); r.Status != 200 {
			t.Errorf("read-only token reading: %d", r.Status)
		}
		if r := env.Do(t, readOnly, "POST", "/api/v1/subjects", map[string]any{"email": "w@example.org"}); r.Status != 403 {
			t.Errorf("read-only token writing: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, readOnly, "GET", "/api/v1/audit", nil); r.Status != 403 {
			t.Errorf("read-only token reading audit: %d", r.Status)
		}
		var denied struct{ Items []map[string]any }
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=access.denied", nil).JSON(t, &denied)
		if len(denied.Items) != 2 || denied.Items[0]["outcome"] != "denied" {
			t.Errorf("refusals in the audit: %v; want 2 denied events", denied.Items)
		}
		// Expired and revoked tokens stop working.
		exec := func(stmt string, args ...any) {
			t.Helper()
			if err := env.App.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, stmt, args...)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		exec("UPDATE api_tokens SET expires_at = 1 WHERE tenant_id = ? AND name = 'ro'", env.Tenant.ID)
		exec("UPDATE api_tokens SET revoked_at = 1 WHERE tenant_id = ? AND name = 'test'", env.Tenant.ID)
		if r := env.Do(t, readOnly, "GET", "/api/v1/subjects", nil); r.Status != 401 {
			t.Errorf("expired token: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects", nil); r.Status != 401 {
			t.Errorf("revoked token: %d", r.Status)
		}
	})
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	env := apptest.New(t, "")
	r := env.Do(t, env.Token, "DELETE", "/api/v1/subjects", nil)
	if r.Status != 405 || r.Header.Get("Allow") != "GET, POST" || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("wrong method: %d allow=%q %s", r.Status, r.Header.Get("Allow"), r.Body)
	}
	r = env.Do(t, env.Token, "GET", "/api/v1/nothing-here", nil)
	if r.Status != 404 || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("unknown path: %d %s", r.Status, r.Body)
	}
	for _, h := range []string{"Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy", "X-Request-Id", "Content-Security-Policy"} {
		if r.Header.Get(h) == "" {
			t.Errorf("missing header %s", h)
		}
	}
	if r := env.Do(t, "", "GET", "/healthz", nil); r.Status != 200 {
		t.Errorf("healthz: %d", r.Status)
	}
	if r := env.Do(t, "", "GET", "/readyz", nil); r.Status != 200 {
		t.Errorf("readyz: %d", r.Status)
	}
	r = env.Do(t, "", "GET", "/metrics", nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), `custodia_http_requests_total{code="404",method="GET",route="unmatched"}`) {
		t.Errorf("metrics: %d\n%.2000s", r.Status, r.Body)
	}
}

func TestAuditEndpoints(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		createSubject(t, env, env.Token, map[string]any{"email": "csv@example.org", "source": "=cmd|' /C calc'!A0"})
		r := env.Do(t, env.Token, "GET", "/api/v1/audit/verify", nil)
		if v := r.Map(t); r.Status != 200 || v["ok"] != true || v["events"].(float64) < 4 {
			t.Fatalf("verify: %d %s", r.Status, r.Body)
		}
		r = env.Do(t, env.Token, "GET", "/api/v1/audit?format=csv&action=subject.*", nil)
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") ||
			!strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment;") {
			t.Fatalf("csv: %d %v", r.Status, r.Header)
		}
		rows, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
		if err != nil || len(rows) < 2 || rows[0][0] != "seq" {
			t.Fatalf("csv body: %v\n%s", err, r.Body)
		}
		for _, row := range rows[1:] {
			if !strings.HasPrefix(row[5], "subject.") {
				t.Errorf("filtered csv holds %v", row)
			}
		}
		// The export itself is audited.
		var page struct{ Items []map[string]any }
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=audit.export", nil).JSON(t, &page)
		if len(page.Items) != 1 {
			t.Errorf("audit.export events: %d", len(page.Items))
		}
	})
}

func firstID(t *testing.T, r apptest.Response) string {
	t.Helper()
	var page struct{ Items []struct{ ID string } }
	r.JSON(t, &page)
	if len(page.Items) == 0 {
		t.Fatalf("empty list: %d %s", r.Status, r.Body)
	}
	return page.Items[0].ID
}
