package api_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/files"
)

func init() {
	openapi3filter.RegisterBodyDecoder("application/zip", openapi3filter.FileBodyDecoder)
}

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi version %q; want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes fails when a route is missing from the document
// or the document names a route that does not exist, or the scopes differ.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadDoc(t)
	env := apptest.New(t, "")
	var inCode, inDoc []string
	for _, rt := range env.App.API.Routes() {
		inCode = append(inCode, rt.Method+" "+rt.Path)
		item := doc.Paths.Find(rt.Path)
		if item == nil {
			continue
		}
		op := item.GetOperation(rt.Method)
		if op == nil {
			continue
		}
		access, _ := op.Extensions["x-custodia-access"].(string)
		if access != rt.Access {
			t.Errorf("%s %s: document access %q, code access %q", rt.Method, rt.Path, access, rt.Access)
		}
		sensitive, _ := op.Extensions["x-custodia-sensitive"].(bool)
		if sensitive != rt.Sensitive() {
			t.Errorf("%s %s: document says sensitive=%v, code %v", rt.Method, rt.Path, sensitive, rt.Sensitive())
		}
		if (rt.Access != api.Public) != (op.Security != nil && len(*op.Security) > 0) {
			t.Errorf("%s %s: security in the document does not match the code", rt.Method, rt.Path)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc = append(inDoc, method+" "+path)
		}
	}
	slices.Sort(inCode)
	slices.Sort(inDoc)
	for _, r := range inCode {
		if !slices.Contains(inDoc, r) {
			t.Errorf("route %s is missing from openapi.json", r)
		}
	}
	for _, r := range inDoc {
		if !slices.Contains(inCode, r) {
			t.Errorf("openapi.json names %s, which is not a route", r)
		}
	}
	r := env.Do(t, "", "GET", "/api/v1/openapi.json", nil)
	if r.Status != 200 || !bytes.Equal(r.Body, api.OpenAPI()) {
		t.Errorf("GET /api/v1/openapi.json: %d", r.Status)
	}
}

// TestResponsesMatchOpenAPI sends real requests (good and bad) and validates
// both the requests and the answers against the document.
func TestResponsesMatchOpenAPI(t *testing.T) {
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: "http://localhost"}} // the document's relative "/" as seen by this test
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		created := env.Do(t, env.Token, "POST", "/api/v1/subjects", map[string]any{"email": "oa@example.org", "attributes": map[string]any{"k": 1}})
		id, _ := created.Map(t)["id"].(string)
		spaceID, _ := env.Do(t, env.Token, "POST", "/api/v1/spaces", map[string]any{"name": "OA"}).Map(t)["id"].(string)
		groupID, _ := env.Do(t, env.Token, "POST", "/api/v1/groups", map[string]any{"name": "OA"}).Map(t)["id"].(string)
		owner, err := env.App.Identity.UserByEmail(context.Background(), env.Tenant.ID, "owner@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		op := principalOf(t, env, "owner@acme.example")
		pre, _, err := env.App.Files.Put(context.Background(), op, spaceID, files.Upload{Path: "pre.txt", Length: -1, Body: strings.NewReader("pre")})
		if err != nil {
			t.Fatal(err)
		}
		doomed, _ := env.Do(t, env.Token, "POST", "/api/v1/spaces", map[string]any{"name": "OA doomed"}).Map(t)["id"].(string)
		folder, err := env.App.Files.Mkdir(context.Background(), op, spaceID, "oa-folder")
		if err != nil {
			t.Fatal(err)
		}
		session, err := env.App.Files.StartUpload(context.Background(), op, spaceID, files.NewUpload{Path: "oa-session.bin", Size: ptr(int64(5))})
		if err != nil {
			t.Fatal(err)
		}
		oaZip := string(zipOf(t, [2]string{"a/", ""}, [2]string{"a/b.txt", "imported"}))
		b := env.Browser(t)
		type step struct {
			method, path, body string
			validRequest       bool
			browser            bool
		}
		steps := []step{
			{"POST", "/api/v1/subjects", `{"email":"oa2@example.org","phone":"+4420794600","external_id":"e","source":"s"}`, true, false},
			{"POST", "/api/v1/subjects", `{"email":"oa@example.org"}`, true, false}, // 409
			{"POST", "/api/v1/subjects", `{"nope":1}`, false, false},
			{"GET", "/api/v1/subjects/" + id, "", true, false},
			{"GET", "/api/v1/subjects/01a00000-0000-7000-8000-000000000000", "", true, false},
			{"PATCH", "/api/v1/subjects/" + id, `{"phone":null,"attributes":{"k":null}}`, true, false},
			{"GET", "/api/v1/subjects?email=oa%40example.org", "", true, false},
			{"GET", "/api/v1/subjects?limit=1", "", true, false},
			{"GET", "/api/v1/audit?limit=5&action=subject.*", "", true, false},
			{"GET", "/api/v1/audit?format=csv", "", true, false},
			{"GET", "/api/v1/audit/verify", "", true, false},
			{"POST", "/api/v1/spaces", `{"name":"OA2","region":"local"}`, true, false},
			{"POST", "/api/v1/spaces", `{"name":"OA3","region":"mars"}`, true, false}, // 400
			{"GET", "/api/v1/spaces", "", true, false},
			{"GET", "/api/v1/spaces/" + spaceID, "", true, false},
			{"PATCH", "/api/v1/spaces/" + spaceID, `{"name":"OA renamed"}`, true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/grants", `{"user_id":"` + owner.ID + `","access":"viewer"}`, true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/grants", `{"user_id":"` + owner.ID + `","access":"owner"}`, false, false}, // 400
			{"GET", "/api/v1/spaces/" + spaceID + "/grants", "", true, false},
			{"DELETE", "/api/v1/spaces/" + spaceID + "/grants/01a00000-0000-7000-8000-000000000000", "", true, false}, // 404
			{"GET", "/api/v1/groups", "", true, false},
			{"POST", "/api/v1/groups", `{"name":"OA"}`, true, false}, // 400: taken
			{"PUT", "/api/v1/groups/" + groupID + "/members/" + owner.ID, `{"admin":true}`, true, false},
			{"GET", "/api/v1/groups/" + groupID, "", true, false},
			{"PATCH", "/api/v1/groups/" + groupID, `{"name":"OA renamed"}`, true, false},
			{"DELETE", "/api/v1/groups/" + groupID + "/members/" + owner.ID, "", true, false},
			{"DELETE", "/api/v1/groups/" + groupID, "", true, false},
			{"GET", "/api/v1/taxonomy", "", true, false},
			{"POST", "/api/v1/purposes", `{"key":"oa.news","name":"News","legal_basis":"consent","data_categories":["user.contact.email"],"transfers":[{"country":"US","mechanism":"adequacy_decision"}],"consent_valid_days":30,"notice_text":"We send news."}`, true, false},
			{"POST", "/api/v1/purposes", `{"key":"oa.bad","name":"Bad","legal_basis":"consent","data_categories":["user.contact.email"]}`, true, false}, // 400: no notice
			{"POST", "/api/v1/purposes", `{"key":"oa.bad","legal_basis":"whim"}`, false, false},
			{"GET", "/api/v1/purposes", "", true, false},
			{"GET", "/api/v1/purposes/oa.news", "", true, false},
			{"GET", "/api/v1/purposes/oa.none", "", true, false}, // 404
			{"PATCH", "/api/v1/purposes/oa.news", `{"recipients":["Printer Ltd"]}`, true, false},
			{"POST", "/api/v1/purposes/oa.news/notices", `{"text":"We send news weekly."}`, true, false},
			{"GET", "/api/v1/purposes/oa.news/notices", "", true, false},
			{"GET", "/api/v1/register?format=json", "", true, false},
			{"GET", "/api/v1/register?format=csv", "", true, false},
			{"POST", "/api/v1/subjects/" + id + "/consents", `{"purpose":"oa.news","action":"grant","method":"web_form","source":"form","ip":"192.0.2.9"}`, true, false},
			{"POST", "/api/v1/subjects/" + id + "/consents", `{"purpose":"oa.news","action":"perhaps","method":"api"}`, false, false}, // 400
			{"GET", "/api/v1/subjects/" + id + "/consents", "", true, false},
			{"GET", "/api/v1/subjects/" + id + "/consents/verify", "", true, false},
			{"GET", "/api/v1/subjects/" + id + "/consents/01a00000-0000-7000-8000-000000000000/receipt", "", true, false}, // 404
			{"GET", "/api/v1/subjects?consent=missing&purpose=oa.news", "", true, false},
			{"GET", "/api/v1/subjects?consent=missing", "", true, false},
			{"POST", "/api/v1/subjects/" + id + "/bounces", `{"kind":"soft","reason":"4.2.2"}`, true, false},
			{"POST", "/api/v1/subjects/" + id + "/bounces", `{"kind":"maybe"}`, false, false}, // 400
			{"PUT", "/api/v1/subjects/" + id + "/legal-hold", `{"reason":"Case 7"}`, true, false},
			{"DELETE", "/api/v1/subjects/" + id + "/legal-hold", "", true, false},
			{"GET", "/api/v1/settings/retention", "", true, false},
			{"PUT", "/api/v1/settings/retention", `{"inactive_after_bounce_days":45}`, true, false},
			{"PUT", "/api/v1/settings/retention", `{"inactive_after_bounce_days":-1}`, false, false}, // 400
			{"POST", "/api/v1/retention/policies", `{"name":"OA","trigger":"created","period_days":3650,"action":"anonymise"}`, true, false},
			{"POST", "/api/v1/retention/policies", `{"name":"OA","trigger":"created","period_days":0,"action":"erase"}`, false, false}, // 400
			{"GET", "/api/v1/retention/policies", "", true, false},
			{"PATCH", "/api/v1/retention/policies/01a00000-0000-7000-8000-000000000000", `{"enabled":false}`, true, false}, // 404
			{"POST", "/api/v1/retention/run", `{"dry_run":true}`, true, false},
			{"POST", "/api/v1/subjects/import?dry_run=true", `[{"email":"oa-import@example.org"}]`, true, false},
			{"POST", "/api/v1/subjects/import?dry_run=true", `[{"email":"oops"}]`, true, false},      // 400
			{"GET", "/api/v1/subjects/" + id + "/erasure", "", true, false},                          // 404: not erased
			{"POST", "/api/v1/subjects/01a00000-0000-7000-8000-000000000000/erase", "", true, false}, // 404
			{"GET", "/api/v1/settings/organisation", "", true, false},
			{"PUT", "/api/v1/settings/organisation", `{"time_zone":"Europe/Paris"}`, true, false},
			{"PUT", "/api/v1/settings/controller", `{"legal_name":"ACME Ltd","address":"1 High Street\nLondon","email":"privacy@acme.example","phone":"","dpo_name":"Dee Po","dpo_email":"dpo@acme.example","dpo_phone":"","dpo_address":"","representative_name":"","representative_contact":"","privacy_policy_url":"https://acme.example/privacy"}`, true, false},
			{"GET", "/api/v1/settings/controller", "", true, false},
			{"PUT", "/api/v1/settings/controller", `{"legal_name":"","address":"","email":"not an address","phone":"","dpo_name":"","dpo_email":"","dpo_phone":"","dpo_address":"","representative_name":"","representative_contact":"","privacy_policy_url":""}`, true, false}, // 400
			{"POST", "/api/v1/requests", `{"type":"access","subject_id":"` + id + `","channel":"email"}`, true, false},
			{"POST", "/api/v1/requests", `{"type":"gossip","email":"x@example.org"}`, false, false}, // 400
			{"GET", "/api/v1/requests?status=open", "", true, false},
			{"GET", "/api/v1/requests?due=overdue", "", true, false},
			{"GET", "/api/v1/requests?status=open&type=access&channel=email&assignee=none&verified=false&limit=1", "", true, false},
			{"GET", "/api/v1/requests?format=csv&verified=true", "", true, false},
			{"GET", "/api/v1/requests?cursor=nope", "", true, false},                                                   // 400
			{"GET", "/api/v1/requests/01a00000-0000-7000-8000-000000000000", "", true, false},                          // 404
			{"PATCH", "/api/v1/requests/01a00000-0000-7000-8000-000000000000", `{"status":"verified"}`, true, false},   // 404
			{"POST", "/api/v1/requests/01a00000-0000-7000-8000-000000000000/extend", `{"reason":"busy"}`, true, false}, // 404
			{"POST", "/api/v1/campaigns/preview", `{"name":"OA","purpose":"oa.news","audience":"missing"}`, true, false},
			{"GET", "/api/v1/consent/report", "", true, false},
			{"GET", "/api/v1/users?locked=true&second_factor=false&role=admin", "", true, false},
			{"GET", "/api/v1/consent/events?purpose=oa.news&from=2026-01-01T00:00:00Z", "", true, false},
			{"GET", "/api/v1/consent/events?format=csv", "", true, false},
			{"GET", "/api/v1/consent/events?purpose=nope", "", true, false}, // 400
			{"GET", "/api/v1/subjects?restricted=false&legal_hold=false&status=active&sort=-added", "", true, false},
			{"POST", "/api/v1/campaigns/preview", `{"name":"OA","purpose":"oa.news","audience":"everyone"}`, false, false}, // 400
			{"POST", "/api/v1/campaigns", `{"name":"OA","purpose":"oa.news","audience":"missing"}`, true, false},
			{"POST", "/api/v1/campaigns", `{"name":"OA","purpose":"oa.news","audience":"all"}`, false, false}, // 400
			{"GET", "/api/v1/campaigns", "", true, false},
			{"GET", "/api/v1/campaigns/01a00000-0000-7000-8000-000000000000", "", true, false}, // 404
			{"PUT", "/api/v1/subjects/" + id + "/restriction", `{"reason":"Accuracy disputed"}`, true, false},
			{"GET", "/api/v1/subjects/" + id, "", true, false},               // 409: restricted
			{"GET", "/api/v1/subjects/" + id + "/consents", "", true, false}, // 409: restricted
			{"DELETE", "/api/v1/subjects/" + id + "/restriction", "", true, false},
			{"DELETE", "/api/v1/subjects/" + id + "/restriction", "", true, false}, // 409: not restricted
			{"PUT", "/api/v1/subjects/" + id + "/restriction", `{}`, false, false}, // 400
			{"POST", "/api/v1/requests", `{"type":"withdraw_consent","subject_id":"` + id + `","purposes":["oa.news"]}`, true, false},
			{"POST", "/api/v1/requests", `{"type":"access","subject_id":"` + id + `","purposes":["oa.news"]}`, true, false}, // 400
			{"GET", "/api/v1/objections?status=open", "", true, false},
			{"GET", "/api/v1/subjects/" + id + "/processing?purpose=oa.news", "", true, false},
			{"GET", "/api/v1/subjects/" + id + "/processing?purpose=oa.none", "", true, false},              // 400
			{"GET", "/api/v1/objections?status=maybe", "", false, false},                                    // 400
			{"PUT", "/api/v1/subjects/" + id + "/objections/oa.news", `{"decision":"upheld"}`, true, false}, // 404
			{"POST", "/api/v1/requests/01a00000-0000-7000-8000-000000000000/deliver", "", true, false},      // 404
			{"GET", "/privacy/acme/keys", "", true, false},
			{"GET", "/privacy/nobody/keys", "", true, false}, // 404
			{"PUT", "/api/v1/spaces/" + spaceID + "/files/oa.txt", "hello", true, false},
			{"PUT", "/api/v1/spaces/" + spaceID + "/files/oa.txt", "hello again", true, false},
			{"PUT", "/api/v1/spaces/" + spaceID + "/files/a%5Cb", "x", true, false}, // 400: backslash
			{"GET", "/api/v1/spaces/" + spaceID + "/files/oa.txt", "", true, false},
			{"GET", "/api/v1/spaces/" + spaceID + "/files/oa.txt?version=1", "", true, false},
			{"GET", "/api/v1/spaces/" + spaceID + "/files/oa.txt?version=9", "", true, false}, // 404
			{"POST", "/api/v1/spaces/" + spaceID + "/folders", `{"path":"oa-folder/inner"}`, true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/folders", `{"path":"oa-folder/inner"}`, true, false}, // 409
			{"POST", "/api/v1/spaces/" + spaceID + "/folders", `{"path":"/abs"}`, true, false},            // 400
			{"GET", "/api/v1/spaces/" + spaceID + "/files/oa-folder", "", true, false},
			{"PATCH", "/api/v1/spaces/" + spaceID + "/files/oa.txt", `{"path":"oa-folder/oa2.txt"}`, true, false},
			{"PATCH", "/api/v1/spaces/" + spaceID + "/files/oa-folder", `{"path":"oa-folder/inner/x"}`, true, false}, // 400: into itself
			{"GET", "/api/v1/files/" + pre.ID + "/versions", "", true, false},
			{"GET", "/api/v1/spaces/" + spaceID + "/export", "", true, false},
			{"GET", "/api/v1/spaces/" + spaceID + "/migration", "", true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/migration", `{"region":"mars"}`, true, false},  // 400
			{"POST", "/api/v1/spaces/" + spaceID + "/migration", `{"region":"local"}`, true, false}, // 400: there already
			{"POST", "/api/v1/spaces/" + spaceID + "/migration", `{"area":"local"}`, false, false},  // 400
			{"GET", "/api/v1/spaces/" + spaceID + "/export?path=nowhere", "", true, false},          // 404
			{"POST", "/api/v1/spaces/" + spaceID + "/import?path=oa-import&dry_run=true", oaZip, true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/import?path=oa-import", oaZip, true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/import?path=oa-import", oaZip, true, false}, // 400: exists
			{"PUT", "/api/v1/files/" + pre.ID + "/subjects/" + id, "", true, false},
			{"PUT", "/api/v1/files/" + pre.ID + "/subjects/" + id, "", true, false},
			{"PUT", "/api/v1/files/" + pre.ID + "/subjects/01a00000-0000-7000-8000-000000000000", "", true, false}, // 404
			{"GET", "/api/v1/files/" + pre.ID + "/subjects", "", true, false},
			{"GET", "/api/v1/subjects/" + id + "/files", "", true, false},
			{"DELETE", "/api/v1/files/" + pre.ID + "/subjects/" + id, "", true, false},
			{"DELETE", "/api/v1/files/" + pre.ID + "/subjects/" + id, "", true, false},                                      // 404
			{"PUT", "/api/v1/settings/organisation", `{"time_zone":"UTC","linked_files_on_erasure":"shred"}`, false, false}, // 400
			{"PUT", "/api/v1/settings/organisation", `{"time_zone":"UTC","versions_kept":50}`, true, false},
			{"GET", "/api/v1/settings/organisation", "", true, false},
			{"GET", "/api/v1/files/" + pre.ID + "/versions/1", "", true, false},
			{"POST", "/api/v1/files/" + folder.ID + "/grants", `{"user_id":"` + owner.ID + `","access":"viewer"}`, true, false},
			{"POST", "/api/v1/files/" + folder.ID + "/grants", `{"user_id":"` + owner.ID + `","access":"owner"}`, false, false}, // 400
			{"POST", "/api/v1/files/" + pre.ID + "/grants", `{"user_id":"` + owner.ID + `","access":"viewer"}`, true, false},    // 400: a file
			{"GET", "/api/v1/files/" + folder.ID + "/grants", "", true, false},
			{"DELETE", "/api/v1/files/" + folder.ID + "/grants/01a00000-0000-7000-8000-000000000000", "", true, false}, // 404
			{"GET", "/api/v1/shared", "", true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/uploads", `{"path":"oa-up.bin","size":3,"content_type":"text/plain"}`, true, false},
			{"POST", "/api/v1/spaces/" + spaceID + "/uploads", `{"path":"oa-up.bin"}`, false, false}, // 400: no size
			{"GET", "/api/v1/uploads/01a00000-0000-7000-8000-000000000000", "", true, false},         // 404
			{"GET", "/api/v1/uploads/" + session.ID, "", true, false},
			{"DELETE", "/api/v1/uploads/" + session.ID, "", true, false},
			{"DELETE", "/api/v1/uploads/01a00000-0000-7000-8000-000000000000", "", true, false}, // 404
			{"POST", "/api/v1/files/" + pre.ID + "/versions/1/restore", "", true, false},
			{"DELETE", "/api/v1/spaces/" + spaceID + "/files/pre.txt", "", true, false},
			{"GET", "/api/v1/trash", "", true, false},
			{"POST", "/api/v1/trash/" + pre.ID + "/restore", "", true, false},
			{"DELETE", "/api/v1/spaces/" + spaceID + "/files/pre.txt", "", true, false},
			{"DELETE", "/api/v1/trash/" + pre.ID, "", true, false}, // 403: needs a recently re-authenticated session
			{"DELETE", "/api/v1/spaces/" + doomed, "", true, false},
			{"GET", "/api/v1/residency", "", true, false},
			{"GET", "/healthz", "", true, false},
			{"GET", "/readyz", "", true, false},
			{"GET", "/metrics", "", true, false},
		}
		steps = append(steps, []step{
			{"POST", "/api/v1/auth/login", `{"tenant":"acme","email":"owner@acme.example","password":"nope nope nope"}`, true, true},
			{"POST", "/api/v1/auth/login", `{"tenant":"acme","email":"owner@acme.example"}`, false, true},
			{"POST", "/api/v1/auth/login", `{"tenant":"acme","email":"owner@acme.example","password":"` + apptest.Password + `"}`, true, true},
			{"DELETE", "/api/v1/trash/" + pre.ID, "", true, true},
			{"GET", "/api/v1/me", "", true, true},
			{"PATCH", "/api/v1/me", `{"name":"O. Wner"}`, true, true},
			{"GET", "/api/v1/users/export?format=json", "", true, true},
			{"GET", "/api/v1/subjects/export?format=json", "", true, true},
			{"GET", "/api/v1/subjects/export?format=csv", "", true, true},
			{"GET", "/api/v1/users/export?format=csv", "", true, true},
			{"GET", "/api/v1/users", "", true, true},
			{"POST", "/api/v1/users/import?dry_run=true", `{}`, false, true}, // 400: not CSV
			{"GET", "/api/v1/me/export", "", true, true},
			{"POST", "/api/v1/me/closure", "", true, true},   // 409: the last owner
			{"DELETE", "/api/v1/me/closure", "", true, true}, // 409: not closing
			{"GET", "/api/v1/me/sessions", "", true, true},
			{"GET", "/api/v1/me/mfa", "", true, true},
			{"GET", "/api/v1/me/mfa/totp", "", true, true},
			{"POST", "/api/v1/me/mfa/totp/confirm", `{"code":"123456"}`, true, true}, // 409: nothing to confirm
			{"POST", "/api/v1/me/mfa/totp", "", true, true},
			{"GET", "/api/v1/me/mfa/totp", "", true, true},
			{"POST", "/api/v1/me/mfa/totp/confirm", `{"code":"x"}`, true, true},     // 400
			{"POST", "/api/v1/me/mfa/recovery-codes", "", true, true},               // 409: no factor yet
			{"POST", "/api/v1/me/mfa/sms", `{"phone":"+447700900123"}`, true, true}, // 409: no SMS provider
			{"POST", "/api/v1/me/mfa/sms/confirm", `{"code":"123456"}`, true, true}, // 409: nothing to confirm
			{"POST", "/api/v1/auth/mfa/sms", "", true, true},                        // 409: no SMS provider
			{"POST", "/api/v1/me/mfa/passkey", `{"name":"OA key"}`, true, true},
			{"POST", "/api/v1/me/mfa/passkey/confirm", `{"credential":{"id":"x"}}`, true, true}, // 400
			{"POST", "/api/v1/me/mfa/passkey/confirm", `{}`, false, true},                       // 400
			{"POST", "/api/v1/auth/mfa/passkey", "", true, true},                                // 409: no passkey
			{"POST", "/api/v1/me/tokens", `{"name":"oa","scopes":["audit:read"],"expires_in_days":3}`, true, true},
			{"GET", "/api/v1/me/tokens", "", true, true},
			{"GET", "/api/v1/settings/security", "", true, true},
			{"PATCH", "/api/v1/settings/security", `{"lockout_minutes":30}`, true, true},
			{"PATCH", "/api/v1/settings/security", `{"lockout_minutes":0}`, false, true}, // 400: out of bounds
			{"POST", "/api/v1/auth/reauth", `{"password":"` + apptest.Password + `"}`, true, true},
			{"POST", "/api/v1/auth/mfa", `{"method":"totp","code":"123456"}`, true, true}, // 409: not pending
			{"PUT", "/api/v1/me/password", `{"current_password":"x","new_password":"short"}`, true, true},
			{"POST", "/api/v1/invitations", `{"email":"oa-new@acme.example","role":"member"}`, true, true},
			{"POST", "/api/v1/invitations", `{"email":"oa-new@acme.example","role":"root"}`, false, true}, // 400
			{"POST", "/api/v1/auth/logout", "", true, true},
			{"POST", "/api/v1/auth/password-reset", `{"tenant":"acme","email":"owner@acme.example"}`, true, true},
			{"POST", "/api/v1/auth/password-reset", `{"tenant":"acme"}`, false, true},                                          // 400
			{"POST", "/api/v1/auth/password-reset/confirm", `{"token":"not-a-token","password":"whatever it is"}`, true, true}, // 410
			{"POST", "/api/v1/auth/invitation", `{"token":"not-a-token"}`, true, true},                                         // 410
			{"POST", "/api/v1/auth/invitation/accept", `{"token":"x"}`, false, true},                                           // 400
		}...)
		for _, s := range steps {
			var body any
			if s.body != "" {
				body = s.body
			}
			var res apptest.Response
			req, _ := http.NewRequest(s.method, "http://localhost"+s.path, strings.NewReader(s.body))
			ctype := "application/json"
			if s.method == "PUT" && strings.Contains(s.path, "/files/") {
				ctype = "application/octet-stream"
			}
			if strings.HasPrefix(s.path, "/api/v1/spaces/") && strings.Contains(s.path, "/import?") {
				ctype = "application/zip"
			}
			switch {
			case s.browser:
				res = b.DoRaw(t, s.method, s.path, ctype, s.body)
			case s.body != "":
				res = env.DoRaw(t, env.Token, s.method, s.path, ctype, s.body)
			default:
				res = env.Do(t, env.Token, s.method, s.path, body)
			}
			if !s.browser {
				req.Header.Set("Authorization", "Bearer "+env.Token)
			}
			if s.body != "" {
				req.Header.Set("Content-Type", ctype)
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Errorf("%s %s: no route in the document: %v", s.method, s.path, err)
				continue
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
			if err := openapi3filter.ValidateRequest(context.Background(), in); (err == nil) != s.validRequest {
				t.Errorf("%s %s: request validation = %v; want valid=%v", s.method, s.path, err, s.validRequest)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.Status, Header: res.Header,
				Options: &openapi3filter.Options{IncludeResponseStatus: true}}
			out.SetBodyBytes(res.Body)
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
				t.Errorf("%s %s → %d: response does not match the document: %v\n%.500s", s.method, s.path, res.Status, err, res.Body)
			}
		}
	})
}
