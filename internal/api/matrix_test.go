package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
)

// principals of the authorization matrix, in the order of its columns.
var principals = []string{"anonymous", "member", "admin", "owner", "owner token", "member token", "other tenant's admin"}

// matrix says, for every route, what each principal gets: ok (past
// authorization: any status but 401/403), 401 or 403. A route missing here
// fails the test, so a new route cannot ship without a decision on who may
// call it. Viewer, editor and group-admin columns arrive with spaces and
// groups.
var matrix = map[string]string{
	//                                          anon member admin owner owner-token member-token other-admin
	"GET /healthz":                             "ok ok ok ok ok ok ok",
	"GET /readyz":                              "ok ok ok ok ok ok ok",
	"GET /metrics":                             "ok ok ok ok ok ok ok",
	"GET /api/v1/openapi.json":                 "ok ok ok ok ok ok ok",
	"POST /api/v1/auth/login":                  "ok ok ok ok ok ok ok",
	"POST /api/v1/auth/mfa":                    "401 ok ok ok 401 401 ok",
	"POST /api/v1/auth/reauth":                 "401 ok ok ok 403 403 ok",
	"POST /api/v1/auth/logout":                 "ok ok ok ok ok ok ok",
	"POST /api/v1/auth/invitation":             "ok ok ok ok ok ok ok",
	"POST /api/v1/auth/invitation/accept":      "ok ok ok ok ok ok ok",
	"POST /api/v1/auth/password-reset":         "ok ok ok ok ok ok ok",
	"POST /api/v1/auth/password-reset/confirm": "ok ok ok ok ok ok ok",
	"GET /api/v1/me":                           "401 ok ok ok 403 403 ok",
	"PUT /api/v1/me/password":                  "401 ok ok ok 403 403 ok",
	"GET /api/v1/me/sessions":                  "401 ok ok ok 403 403 ok",
	"DELETE /api/v1/me/sessions/{id}":          "401 ok ok ok 403 403 ok",
	"GET /api/v1/me/mfa":                       "401 ok ok ok 403 403 ok",
	"GET /api/v1/me/mfa/totp":                  "401 ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/totp":                 "401 ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/totp/confirm":         "401 ok ok ok 403 403 ok",
	"DELETE /api/v1/me/mfa/{id}":               "401 ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/recovery-codes":       "401 ok ok ok 403 403 ok",
	"GET /api/v1/me/tokens":                    "401 ok ok ok 403 403 ok",
	"POST /api/v1/me/tokens":                   "401 ok ok ok 403 403 ok",
	"DELETE /api/v1/me/tokens/{id}":            "401 ok ok ok 403 403 ok",
	"GET /api/v1/users":                        "401 403 ok ok ok 403 ok",
	"POST /api/v1/users":                       "401 403 ok ok ok 403 ok",
	"GET /api/v1/users/{id}":                   "401 403 ok ok ok 403 ok",
	"PATCH /api/v1/users/{id}":                 "401 403 ok ok 403 403 ok",
	"POST /api/v1/users/{id}/unlock":           "401 403 ok ok ok 403 ok",
	"POST /api/v1/users/{id}/invitation":       "401 403 ok ok ok 403 ok",
	"POST /api/v1/invitations":                 "401 403 ok ok ok 403 ok",
	"GET /api/v1/settings/security":            "401 403 ok ok ok 403 ok",
	"PATCH /api/v1/settings/security":          "401 403 ok ok 403 403 ok",
	"POST /api/v1/subjects":                    "401 403 ok ok ok 403 ok",
	"GET /api/v1/subjects":                     "401 403 ok ok ok 403 ok",
	"GET /api/v1/subjects/{id}":                "401 403 ok ok ok 403 ok",
	"PATCH /api/v1/subjects/{id}":              "401 403 ok ok ok 403 ok",
	"GET /api/v1/audit":                        "401 403 ok ok ok 403 ok",
	"GET /api/v1/audit/verify":                 "401 403 ok ok ok 403 ok",
}

// TestAuthorizationMatrix walks every route × principal.
func TestAuthorizationMatrix(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		env.AddUser(t, "member@acme.example", "member", apptest.Password)
		env.AddUser(t, "admin@acme.example", "admin", apptest.Password)
		env.AddTenant(t, "globex", "owner@globex.example")
		// The member token belongs to an admin demoted to member after
		// making it: its scopes shrink with the role.
		demoted := env.AddUser(t, "demoted@acme.example", "admin", apptest.Password)
		memberToken, _, err := env.App.Identity.CreateToken(context.Background(), env.Tenant.ID, "demoted@acme.example", "t", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := owner.Do(t, "PATCH", "/api/v1/users/"+demoted.ID, map[string]string{"role": "member"}); r.Status != 200 {
			t.Fatalf("demote: %d %s", r.Status, r.Body)
		}

		seen := map[string]bool{}
		for _, rt := range env.App.API.Routes() {
			key := rt.Method + " " + rt.Path
			seen[key] = true
			want, ok := matrix[key]
			if !ok {
				t.Errorf("route %s is not in the authorization matrix; add it", key)
				continue
			}
			wants := strings.Fields(want)
			if len(wants) != len(principals) {
				t.Fatalf("%s: %d columns; want %d", key, len(wants), len(principals))
			}
			path := strings.ReplaceAll(rt.Path, "{id}", "01a00000-0000-7000-8000-000000000000")
			body := map[string]string{"POST": "{}", "PATCH": "{}", "PUT": "{}"}[rt.Method]
			for i, who := range principals {
				var r apptest.Response
				var b any
				if body != "" {
					b = body
				}
				switch who {
				case "anonymous":
					r = env.Browser(t).Do(t, rt.Method, path, b)
				case "member":
					r = env.SignIn(t, "acme", "member@acme.example").Do(t, rt.Method, path, b)
				case "admin":
					r = env.SignIn(t, "acme", "admin@acme.example").Do(t, rt.Method, path, b)
				case "owner":
					r = env.SignIn(t, "acme", "owner@acme.example").Do(t, rt.Method, path, b)
				case "owner token":
					r = env.Do(t, env.Token, rt.Method, path, b)
				case "member token":
					r = env.Do(t, memberToken, rt.Method, path, b)
				case "other tenant's admin":
					r = env.SignIn(t, "globex", "owner@globex.example").Do(t, rt.Method, path, b)
				}
				got := fmt.Sprint(r.Status)
				if r.Status != 401 && r.Status != 403 {
					got = "ok"
				}
				if got != wants[i] {
					t.Errorf("%s as %s: %s (%d %.200s); want %s", key, who, got, r.Status, r.Body, wants[i])
				}
			}
		}
		for key := range matrix {
			if !seen[key] {
				t.Errorf("the matrix names %s, which is not a route", key)
			}
		}
	})
}
