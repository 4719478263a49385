package api_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/space"
	subjectpkg "github.com/custodia/custodia/internal/subject"
)

// principals of the authorization matrix, in the order of its columns.
// viewer, editor: members with that grant on the matrix's space; folder
// editor: a member who is an editor of the folder "matrix" in that space
// (where the files called on are) and nothing else; group admin: a member
// who administers the matrix's group; member: a member with none of these;
// member token: a token of an admin since demoted to member.
var principals = []string{"anonymous", "member", "viewer", "editor", "folder editor", "group admin", "admin", "owner",
	"owner token", "member token", "other tenant's admin"}

// matrix says, for every route, what each principal gets: ok (past
// authorization: any status but 401, 403 or 404), 401, 403, or 404 (the
// object is hidden from them). Routes on spaces and groups are called with
// real objects; the /me/… ids are made up, so everyone who gets past
// authorization finds nothing there. A route missing here fails the test,
// so a new route cannot ship without a decision on who may call it.
var matrix = map[string]string{
	//                                                  anon member viewer editor gadmin admin owner o-token m-token other
	"GET /healthz":                                       "ok ok ok ok ok ok ok ok ok ok ok",
	"GET /readyz":                                        "ok ok ok ok ok ok ok ok ok ok ok",
	"GET /metrics":                                       "ok ok ok ok ok ok ok ok ok ok ok",
	"GET /api/v1/openapi.json":                           "ok ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/auth/login":                            "ok ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/auth/mfa":                              "401 ok ok ok ok ok ok ok 401 401 ok",
	"POST /api/v1/auth/mfa/sms":                          "401 ok ok ok ok ok ok ok 401 401 ok",
	"POST /api/v1/auth/mfa/passkey":                      "401 ok ok ok ok ok ok ok 401 401 ok",
	"POST /api/v1/auth/reauth":                           "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/auth/logout":                           "ok ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/auth/invitation":                       "ok ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/auth/invitation/accept":                "ok ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/auth/password-reset":                   "ok ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/auth/password-reset/confirm":           "ok ok ok ok ok ok ok ok ok ok ok",
	"GET /api/v1/me":                                     "401 ok ok ok ok ok ok ok 403 403 ok",
	"PATCH /api/v1/me":                                   "401 ok ok ok ok ok ok ok 403 403 ok",
	"PUT /api/v1/me/password":                            "401 ok ok ok ok ok ok ok 403 403 ok",
	"PUT /api/v1/me/email":                               "401 ok ok ok ok ok ok ok 403 403 ok",
	"GET /api/v1/me/export":                              "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/closure":                            "401 ok ok ok ok ok ok ok 403 403 ok",
	"DELETE /api/v1/me/closure":                          "401 ok ok ok ok ok ok ok 403 403 ok",
	"GET /api/v1/me/sessions":                            "401 ok ok ok ok ok ok ok 403 403 ok",
	"DELETE /api/v1/me/sessions/{id}":                    "401 404 404 404 404 404 404 404 403 403 404",
	"GET /api/v1/me/mfa":                                 "401 ok ok ok ok ok ok ok 403 403 ok",
	"GET /api/v1/me/mfa/totp":                            "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/totp":                           "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/totp/confirm":                   "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/sms":                            "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/sms/confirm":                    "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/passkey":                        "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/mfa/passkey/confirm":                "401 ok ok ok ok ok ok ok 403 403 ok",
	"DELETE /api/v1/me/mfa/{id}":                         "401 404 404 404 404 404 404 404 403 403 404",
	"POST /api/v1/me/mfa/recovery-codes":                 "401 ok ok ok ok ok ok ok 403 403 ok",
	"GET /api/v1/me/tokens":                              "401 ok ok ok ok ok ok ok 403 403 ok",
	"POST /api/v1/me/tokens":                             "401 ok ok ok ok ok ok ok 403 403 ok",
	"DELETE /api/v1/me/tokens/{id}":                      "401 404 404 404 404 404 404 404 403 403 404",
	"GET /api/v1/users":                                  "401 403 403 403 403 403 ok ok ok 403 ok",
	"POST /api/v1/users":                                 "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/users/export":                           "401 403 403 403 403 403 ok ok 403 403 ok",
	"POST /api/v1/users/import":                          "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/users/{id}":                             "401 403 403 403 403 403 ok ok ok 403 404",
	"PATCH /api/v1/users/{id}":                           "401 403 403 403 403 403 ok ok 403 403 404",
	"POST /api/v1/users/{id}/erase":                      "401 403 403 403 403 403 ok ok 403 403 404",
	"POST /api/v1/users/{id}/unlock":                     "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/users/{id}/mfa/reset":                  "401 403 403 403 403 403 ok ok 403 403 404",
	"GET /api/v1/tokens":                                 "401 403 403 403 403 403 ok ok ok 403 ok",
	"DELETE /api/v1/tokens/{id}":                         "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/users/{id}/invitation":                 "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/invitations":                           "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/groups":                                 "401 ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/groups":                                "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/groups/{id}":                            "401 404 404 404 404 ok ok ok ok 404 404",
	"PATCH /api/v1/groups/{id}":                          "401 403 403 403 403 403 ok ok ok 403 404",
	"DELETE /api/v1/groups/{id}":                         "401 403 403 403 403 403 ok ok ok 403 404",
	"PUT /api/v1/groups/{id}/members/{user}":             "401 404 404 404 404 ok ok ok ok 404 404",
	"DELETE /api/v1/groups/{id}/members/{user}":          "401 404 404 404 404 ok ok ok ok 404 404",
	"POST /api/v1/spaces":                                "401 ok ok ok ok ok ok ok ok ok ok",
	"GET /api/v1/spaces":                                 "401 ok ok ok ok ok ok ok ok ok ok",
	"GET /api/v1/spaces/{id}":                            "401 404 ok ok 404 404 ok ok ok 404 404",
	"PATCH /api/v1/spaces/{id}":                          "401 404 403 ok 404 404 ok ok ok 404 404",
	"GET /api/v1/spaces/{id}/grants":                     "401 404 403 ok 404 404 ok ok ok 404 404",
	"POST /api/v1/spaces/{id}/grants":                    "401 404 403 ok 404 404 ok ok ok 404 404",
	"DELETE /api/v1/spaces/{id}/grants/{grant}":          "401 404 403 ok 404 404 ok ok ok 404 404",
	"DELETE /api/v1/spaces/{id}":                         "401 404 403 ok 404 404 ok ok ok 404 404",
	"POST /api/v1/spaces/{id}/folders":                   "401 404 403 ok 404 404 ok ok ok 404 404",
	"GET /api/v1/spaces/{id}/export":                     "401 404 ok ok 404 404 ok ok ok 404 404",
	"POST /api/v1/spaces/{id}/migration":                 "401 404 403 403 404 404 ok ok ok 404 404",
	"GET /api/v1/spaces/{id}/migration":                  "401 404 ok ok 404 404 ok ok ok 404 404",
	"POST /api/v1/spaces/{id}/import":                    "401 404 403 ok 404 404 ok ok ok 404 404",
	"PUT /api/v1/spaces/{id}/files/{path...}":            "401 404 403 ok ok 404 ok ok ok 404 404",
	"POST /api/v1/spaces/{id}/uploads":                   "401 404 403 ok 404 404 ok ok ok 404 404",
	"GET /api/v1/uploads/{id}":                           "401 404 404 404 404 404 404 ok ok 404 404",
	"PATCH /api/v1/uploads/{id}":                         "401 404 404 404 404 404 404 ok ok 404 404",
	"DELETE /api/v1/uploads/{id}":                        "401 404 404 404 404 404 404 ok ok 404 404",
	"GET /api/v1/spaces/{id}/files/{path...}":            "401 404 ok ok ok 404 ok ok ok 404 404",
	"PATCH /api/v1/spaces/{id}/files/{path...}":          "401 404 403 ok ok 404 ok ok ok 404 404",
	"DELETE /api/v1/spaces/{id}/files/{path...}":         "401 404 403 ok ok 404 ok ok ok 404 404",
	"GET /api/v1/files/{id}/versions":                    "401 404 ok ok ok 404 ok ok ok 404 404",
	"GET /api/v1/files/{id}/versions/{version}":          "401 404 ok ok ok 404 ok ok ok 404 404",
	"POST /api/v1/files/{id}/versions/{version}/restore": "401 404 403 ok ok 404 ok ok ok 404 404",
	"GET /api/v1/files/{id}/grants":                      "401 404 403 ok ok 404 ok ok ok 404 404",
	"POST /api/v1/files/{id}/grants":                     "401 404 403 ok ok 404 ok ok ok 404 404",
	"DELETE /api/v1/files/{id}/grants/{grant}":           "401 404 403 ok ok 404 ok ok ok 404 404",
	"GET /api/v1/shared":                                 "401 ok ok ok ok ok ok ok ok ok ok",
	"GET /api/v1/files/{id}/subjects":                    "401 403 403 403 403 403 ok ok ok 403 404",
	"PUT /api/v1/files/{id}/subjects/{subject}":          "401 403 403 403 403 403 ok ok ok 403 404",
	"DELETE /api/v1/files/{id}/subjects/{subject}":       "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/trash":                                  "401 ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/trash/{item}/restore":                  "401 404 404 404 404 404 ok ok ok 404 404",
	"DELETE /api/v1/trash/{item}":                        "401 404 404 404 404 404 ok ok 403 403 404",
	"GET /api/v1/residency":                              "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/taxonomy":                               "401 403 403 403 403 403 ok ok ok 403 ok",
	"POST /api/v1/purposes":                              "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/purposes":                               "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/purposes/{key}":                         "401 403 403 403 403 403 ok ok ok 403 404",
	"PATCH /api/v1/purposes/{key}":                       "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/purposes/{key}/notices":                 "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/purposes/{key}/notices":                "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/register":                               "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/settings/security":                      "401 403 403 403 403 403 ok ok ok 403 ok",
	"PATCH /api/v1/settings/security":                    "401 403 403 403 403 403 ok ok 403 403 ok",
	"GET /api/v1/settings/organisation":                  "401 403 403 403 403 403 ok ok ok 403 ok",
	"PUT /api/v1/settings/organisation":                  "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/settings/controller":                    "401 403 403 403 403 403 ok ok ok 403 ok",
	"PUT /api/v1/settings/controller":                    "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/settings/retention":                     "401 403 403 403 403 403 ok ok ok 403 ok",
	"PUT /api/v1/settings/retention":                     "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/retention/policies":                     "401 403 403 403 403 403 ok ok ok 403 ok",
	"POST /api/v1/retention/policies":                    "401 403 403 403 403 403 ok ok ok 403 ok",
	"PATCH /api/v1/retention/policies/{id}":              "401 403 403 403 403 403 ok ok ok 403 404",
	"DELETE /api/v1/retention/policies/{id}":             "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/retention/run":                         "401 403 403 403 403 403 ok ok ok 403 ok",
	"POST /api/v1/subjects":                              "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/subjects":                               "401 403 403 403 403 403 ok ok ok 403 ok",
	"POST /api/v1/subjects/import":                       "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/subjects/export":                        "401 403 403 403 403 403 ok ok 403 403 ok",
	"GET /api/v1/subjects/{id}":                          "401 403 403 403 403 403 ok ok ok 403 404",
	"PATCH /api/v1/subjects/{id}":                        "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/export":                   "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/subjects/{id}/erase":                   "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/erasure":                  "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/files":                    "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/subjects/{id}/bounces":                 "401 403 403 403 403 403 ok ok ok 403 404",
	"PUT /api/v1/subjects/{id}/legal-hold":               "401 403 403 403 403 403 ok ok ok 403 404",
	"DELETE /api/v1/subjects/{id}/legal-hold":            "401 403 403 403 403 403 ok ok ok 403 404",
	"PUT /api/v1/subjects/{id}/restriction":              "401 403 403 403 403 403 ok ok ok 403 404",
	"DELETE /api/v1/subjects/{id}/restriction":           "401 403 403 403 403 403 ok ok ok 403 404",
	"PUT /api/v1/subjects/{id}/objections/{purpose}":     "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/processing":               "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/subjects/{id}/consents":                "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/consents":                 "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/consents/verify":          "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/consents/{event}/receipt": "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/campaigns":                             "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/campaigns":                              "401 403 403 403 403 403 ok ok ok 403 ok",
	"POST /api/v1/campaigns/preview":                     "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/consent/report":                         "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/consent/events":                         "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/campaigns/{id}":                         "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /privacy/{tenant}/keys":                         "ok ok ok ok ok ok ok ok ok ok ok",
	"POST /api/v1/requests":                              "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/requests":                               "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/requests/{id}":                          "401 403 403 403 403 403 ok ok ok 403 404",
	"PATCH /api/v1/requests/{id}":                        "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/requests/{id}/extend":                  "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/requests/{id}/deliver":                 "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/objections":                             "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/audit":                                  "401 403 403 403 403 403 ok ok ok 403 ok",
	"GET /api/v1/audit/verify":                           "401 403 403 403 403 403 ok ok ok 403 ok",
}

// onAccounts says what each principal gets on the routes that name a
// person, when that person is the holder of a user account — an owner's,
// an admin's and a member's are called alike and must answer alike.
// Accounts change only through /api/v1/users: a write answers "account"
// (409, naming the account's route) to everyone past authorization, and
// reading them needs users:read as well as the route's scope. A file may
// still be linked to a person with an account (HR records): that writes
// nothing of theirs. The routes that name a person are called on a
// contact with linked files too, where the matrix's own row holds: scopes
// follow the data (the export needs subjects:export, the files list
// spaces:read as well).
var onAccounts = map[string]string{
	//                                                  anon member viewer editor gadmin admin owner o-token m-token other
	"GET /api/v1/subjects/{id}":                          "401 403 403 403 403 403 ok ok ok 403 404",
	"PATCH /api/v1/subjects/{id}":                        "401 403 403 403 403 403 account account account 403 404",
	"GET /api/v1/subjects/{id}/export":                   "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/subjects/{id}/erase":                   "401 403 403 403 403 403 account account account 403 404",
	"GET /api/v1/subjects/{id}/erasure":                  "401 403 403 403 403 403 404 404 404 403 404", // a live account has no certificate
	"GET /api/v1/subjects/{id}/files":                    "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/subjects/{id}/bounces":                 "401 403 403 403 403 403 account account account 403 404",
	"PUT /api/v1/subjects/{id}/legal-hold":               "401 403 403 403 403 403 account account account 403 404",
	"DELETE /api/v1/subjects/{id}/legal-hold":            "401 403 403 403 403 403 account account account 403 404",
	"PUT /api/v1/subjects/{id}/restriction":              "401 403 403 403 403 403 account account account 403 404",
	"DELETE /api/v1/subjects/{id}/restriction":           "401 403 403 403 403 403 account account account 403 404",
	"PUT /api/v1/subjects/{id}/objections/{purpose}":     "401 403 403 403 403 403 account account account 403 404",
	"GET /api/v1/subjects/{id}/processing":               "401 403 403 403 403 403 ok ok ok 403 404",
	"POST /api/v1/subjects/{id}/consents":                "401 403 403 403 403 403 account account account 403 404",
	"GET /api/v1/subjects/{id}/consents":                 "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/consents/verify":          "401 403 403 403 403 403 ok ok ok 403 404",
	"GET /api/v1/subjects/{id}/consents/{event}/receipt": "401 403 403 403 403 403 ok ok ok 403 404",
	"PUT /api/v1/files/{id}/subjects/{subject}":          "401 403 403 403 403 403 ok ok ok 403 404",
	"DELETE /api/v1/files/{id}/subjects/{subject}":       "401 403 403 403 403 403 ok ok ok 403 404",
}

// namesPerson reports whether a route names a person by subject id.
func namesPerson(path string) bool {
	return strings.HasPrefix(path, "/api/v1/subjects/{id}") || strings.Contains(path, "/subjects/{subject}")
}

// TestAuthorizationMatrix walks every route × principal, and every route ×
// a token holding each scope alone.
func TestAuthorizationMatrix(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		ids, sps := env.App.Identity, env.App.Spaces
		for _, u := range []struct{ email, role string }{{"member", "member"}, {"viewer", "member"}, {"editor", "member"},
			{"gadmin", "member"}, {"feditor", "member"}, {"admin", "admin"}} {
			env.AddUser(t, u.email+"@acme.example", u.role, apptest.Password)
		}
		env.AddTenant(t, "globex", "owner@globex.example")
		// The member token belongs to an admin demoted to member after
		// making it: its scopes shrink with the role.
		demoted := env.AddUser(t, "demoted@acme.example", "admin", apptest.Password)
		memberToken, _, err := ids.CreateToken(ctx, env.Tenant.ID, "demoted@acme.example", "t", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := owner.Do(t, "PATCH", "/api/v1/users/"+demoted.ID, map[string]string{"role": "member"}); r.Status != 200 {
			t.Fatalf("demote: %d %s", r.Status, r.Body)
		}
		op := principalOf(t, env, "owner@acme.example")
		user := func(email string) string {
			u, err := ids.UserByEmail(ctx, env.Tenant.ID, email)
			if err != nil {
				t.Fatal(err)
			}
			return u.ID
		}
		sp, err := sps.Create(ctx, op, "Matrix", "")
		if err != nil {
			t.Fatal(err)
		}
		for email, access := range map[string]string{"viewer@acme.example": space.Viewer, "editor@acme.example": space.Editor} {
			if _, err := sps.Grant(ctx, op, sp.ID, space.GrantInput{UserID: user(email), Access: access}); err != nil {
				t.Fatal(err)
			}
		}
		group, err := ids.CreateGroup(ctx, op, "Matrix")
		if err != nil {
			t.Fatal(err)
		}
		if err := ids.SetMember(ctx, op, group.ID, user("gadmin@acme.example"), true); err != nil {
			t.Fatal(err)
		}
		staff := env.AddUser(t, "staff@acme.example", "member", "")
		purpose, err := env.App.Register.Create(ctx, env.Tenant.ID, register.New{Purpose: register.Purpose{Key: "matrix",
			Name: "Matrix", LegalBasis: register.Contract, DataCategories: []string{"user.name"}}})
		if err != nil {
			t.Fatal(err)
		}
		subject := createSubject(t, env, env.Token, map[string]any{"email": "matrix@example.org"})["id"].(string)
		if _, err := env.App.Register.Create(ctx, env.Tenant.ID, register.New{NoticeText: "Matrix news.", Purpose: register.Purpose{
			Key: "matrix.news", Name: "Matrix news", LegalBasis: register.Consent, DataCategories: []string{"user.contact.email"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Register.Create(ctx, env.Tenant.ID, register.New{Purpose: register.Purpose{
			Key: "matrix.analytics", Name: "Matrix analytics", LegalBasis: register.LegitimateInterests, DataCategories: []string{"user.contact.email"}}}); err != nil {
			t.Fatal(err)
		}
		event, err := env.App.Consent.Record(ctx, env.Tenant.ID, subject, consent.Input{Purpose: "matrix.news", Action: consent.Grant, Method: "api"})
		if err != nil {
			t.Fatal(err)
		}
		camp, err := env.App.Consent.StartCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "Matrix", Purpose: "matrix.news",
			Audience: consent.AudienceSubjects, SubjectIDs: []string{subject}})
		if err != nil {
			t.Fatal(err)
		}
		erased := createSubject(t, env, env.Token, map[string]any{"email": "erased@example.org"})["id"].(string)
		if _, err := env.App.Subjects.Erase(ctx, env.Tenant.ID, erased, subjectpkg.EraseInput{Reason: "api"}); err != nil {
			t.Fatal(err)
		}
		dsr, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "access", SubjectID: subject})
		if err != nil {
			t.Fatal(err)
		}
		created, erase, off := retention.Created, retention.Erase, false
		policy, err := env.App.Retention.CreatePolicy(ctx, env.Tenant.ID, retention.PolicyInput{Name: &created, Trigger: &created,
			PeriodDays: ptr(1), Action: &erase, Enabled: &off})
		if err != nil {
			t.Fatal(err)
		}
		// objection opens (again) an objection of a contact to a purpose
		// based on legitimate interests, and answers the purpose.
		objection := func(subject string) string {
			r, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "objection", SubjectID: subject, Purposes: []string{"matrix.analytics"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := env.App.Rights.Update(ctx, env.Tenant.ID, r.ID, rights.Change{Status: rights.Verified}); err != nil {
				t.Fatal(err)
			}
			return "matrix.analytics"
		}
		n := 1
		// upload stores a fresh file in the matrix's space.
		upload := func() files.Item {
			n++
			it, _, err := env.App.Files.Put(ctx, op, sp.ID, files.Upload{Path: fmt.Sprintf("matrix/%d.txt", n), Length: -1, Body: strings.NewReader("matrix")})
			if err != nil {
				t.Fatal(err)
			}
			return it
		}
		doc := upload()
		// The people the routes that name a person are called on: a
		// contact, a contact with a linked file, and three account holders
		// (each with a consent event, for the receipt's route).
		people := map[string]string{"a contact": subject}
		events := map[string]string{"a contact": event.ID}
		// filed is a new contact with a new file linked to them.
		filed := func(erase bool) string {
			n++
			id := createSubject(t, env, env.Token, map[string]any{"email": fmt.Sprintf("filed%d@example.org", n)})["id"].(string)
			if _, _, err := env.App.Files.Link(ctx, op, upload().ID, id); err != nil {
				t.Fatal(err)
			}
			if erase {
				if _, err := env.App.Subjects.Erase(ctx, env.Tenant.ID, id, subjectpkg.EraseInput{Reason: "api"}); err != nil {
					t.Fatal(err)
				}
			}
			return id
		}
		people["a contact with files"] = filed(false)
		erasedWithFiles := filed(true)
		holders := []string{"the owner's account", "an admin's account", "a member's account"}
		for i, email := range []string{"owner@acme.example", "admin@acme.example", "member@acme.example"} {
			u, err := ids.UserByEmail(ctx, env.Tenant.ID, email)
			if err != nil {
				t.Fatal(err)
			}
			people[holders[i]] = u.SubjectID
		}
		for who, id := range people {
			if events[who] == "" {
				e, err := env.App.Consent.Record(ctx, env.Tenant.ID, id, consent.Input{Purpose: "matrix.news", Action: consent.Grant, Method: "api"})
				if err != nil {
					t.Fatal(err)
				}
				events[who] = e.ID
			}
		}
		// newUpload opens an upload session as the owner.
		newUpload := func() string {
			n++
			u, err := env.App.Files.StartUpload(ctx, op, sp.ID, files.NewUpload{Path: fmt.Sprintf("matrix/up%d.bin", n), Size: ptr(int64(10))})
			if err != nil {
				t.Fatal(err)
			}
			return u.ID
		}
		session := newUpload()
		folder, err := env.App.Files.Stat(ctx, op, sp.ID, "matrix")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Files.GrantFolder(ctx, op, folder.ID, space.GrantInput{UserID: user("feditor@acme.example"), Access: space.Editor}); err != nil {
			t.Fatal(err)
		}
		// grantedSpace makes a space with the matrix's viewer and editor.
		grantedSpace := func() string {
			s, err := sps.Create(ctx, op, "Doomed", "")
			if err != nil {
				t.Fatal(err)
			}
			for email, access := range map[string]string{"viewer@acme.example": space.Viewer, "editor@acme.example": space.Editor} {
				if _, err := sps.Grant(ctx, op, s.ID, space.GrantInput{UserID: user(email), Access: access}); err != nil {
					t.Fatal(err)
				}
			}
			return s.ID
		}
		throwaway := func() string {
			n++
			return env.AddUser(t, fmt.Sprintf("x%d@acme.example", n), "member", "").ID
		}
		// path gives the path to call route key with: real objects where
		// access depends on them, fresh ones for each destructive call.
		// A route that names a person names people[who].
		path := func(key, p, who string) string {
			contact, account := who == "a contact", !strings.HasPrefix(who, "a contact")
			p = strings.NewReplacer("{key}", purpose.Key, "{event}", events[who], "{tenant}", "acme").Replace(p)
			switch key {
			case "GET /privacy/{tenant}/withdraw/{purpose}/{token}", "POST /privacy/{tenant}/withdraw/{purpose}/{token}":
				return event.WithdrawURL[strings.Index(event.WithdrawURL, "/privacy/"):]
			case "PUT /api/v1/subjects/{id}/objections/{purpose}":
				if account {
					return "/api/v1/subjects/" + people[who] + "/objections/matrix.analytics"
				}
				return "/api/v1/subjects/" + people[who] + "/objections/" + objection(people[who])
			case "GET /privacy/{tenant}/consent/{token}", "POST /privacy/{tenant}/consent/{token}",
				"GET /privacy/{tenant}/confirm/{token}", "POST /privacy/{tenant}/confirm/{token}",
				"GET /privacy/{tenant}/download/{token}", "POST /privacy/{tenant}/download/{token}",
				"GET /account/email/{token}", "POST /account/email/{token}", "GET /account/email-undo/{token}", "POST /account/email-undo/{token}":
				return strings.Replace(p, "{token}", strings.Repeat("x", 43), 1) // a link that is not (any more): 410
			case "GET /api/v1/subjects/{id}/erasure":
				// an erased contact's certificate; a live account has none
				if account {
					break
				}
				return "/api/v1/subjects/" + map[bool]string{true: erased, false: erasedWithFiles}[contact] + "/erasure"
			case "POST /api/v1/subjects/{id}/erase":
				switch {
				case contact:
					n++
					return "/api/v1/subjects/" + createSubject(t, env, env.Token, map[string]any{"email": fmt.Sprintf("doomed%d@example.org", n)})["id"].(string) + "/erase"
				case !account:
					return "/api/v1/subjects/" + filed(false) + "/erase"
				}
			case "DELETE /api/v1/retention/policies/{id}":
				p, err := env.App.Retention.CreatePolicy(ctx, env.Tenant.ID, retention.PolicyInput{Name: &key, Trigger: &created, PeriodDays: &n, Action: &erase, Enabled: &off})
				n++
				if err != nil {
					t.Fatal(err)
				}
				return "/api/v1/retention/policies/" + p.ID
			case "DELETE /api/v1/groups/{id}":
				g, err := ids.CreateGroup(ctx, op, fmt.Sprintf("doomed %d", n))
				n++
				if err != nil {
					t.Fatal(err)
				}
				return "/api/v1/groups/" + g.ID
			case "DELETE /api/v1/groups/{id}/members/{user}":
				u := throwaway()
				if err := ids.SetMember(ctx, op, group.ID, u, false); err != nil {
					t.Fatal(err)
				}
				return "/api/v1/groups/" + group.ID + "/members/" + u
			case "POST /api/v1/users/{id}/erase":
				return "/api/v1/users/" + throwaway() + "/erase"
			case "POST /api/v1/users/{id}/mfa/reset":
				return "/api/v1/users/" + throwaway() + "/mfa/reset"
			case "DELETE /api/v1/tokens/{id}":
				u, err := ids.UserByID(ctx, env.Tenant.ID, throwaway())
				if err != nil {
					t.Fatal(err)
				}
				_, tok, err := ids.CreateTokenFor(ctx, env.Tenant.ID, u, "doomed", []string{"spaces:read"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				return "/api/v1/tokens/" + tok.ID
			case "PUT /api/v1/groups/{id}/members/{user}":
				return "/api/v1/groups/" + group.ID + "/members/" + throwaway()
			case "DELETE /api/v1/spaces/{id}":
				return "/api/v1/spaces/" + grantedSpace()
			case "GET /api/v1/spaces/{id}/files/{path...}", "PATCH /api/v1/spaces/{id}/files/{path...}":
				return "/api/v1/spaces/" + sp.ID + "/files/" + doc.Path
			case "PUT /api/v1/spaces/{id}/files/{path...}", "DELETE /api/v1/spaces/{id}/files/{path...}":
				return "/api/v1/spaces/" + sp.ID + "/files/" + upload().Path
			case "GET /api/v1/files/{id}/versions/{version}", "POST /api/v1/files/{id}/versions/{version}/restore":
				return strings.NewReplacer("{id}", doc.ID, "{version}", "1").Replace(p)
			case "PUT /api/v1/files/{id}/subjects/{subject}":
				return "/api/v1/files/" + doc.ID + "/subjects/" + people[who]
			case "DELETE /api/v1/files/{id}/subjects/{subject}":
				if _, _, err := env.App.Files.Link(ctx, op, doc.ID, people[who]); err != nil {
					t.Fatal(err)
				}
				return "/api/v1/files/" + doc.ID + "/subjects/" + people[who]
			case "POST /api/v1/trash/{item}/restore", "DELETE /api/v1/trash/{item}":
				it, err := env.App.Files.Trash(ctx, op, sp.ID, upload().Path)
				if err != nil {
					t.Fatal(err)
				}
				return strings.Replace(p, "{item}", it.ID, 1)
			case "GET /api/v1/files/{id}/grants", "POST /api/v1/files/{id}/grants":
				return "/api/v1/files/" + folder.ID + "/grants"
			case "DELETE /api/v1/files/{id}/grants/{grant}":
				g, err := env.App.Files.GrantFolder(ctx, op, folder.ID, space.GrantInput{UserID: throwaway(), Access: space.Viewer})
				if err != nil {
					t.Fatal(err)
				}
				return "/api/v1/files/" + folder.ID + "/grants/" + g.ID
			case "DELETE /api/v1/uploads/{id}":
				return "/api/v1/uploads/" + newUpload()
			case "DELETE /api/v1/spaces/{id}/grants/{grant}":
				g, err := sps.Grant(ctx, op, sp.ID, space.GrantInput{UserID: throwaway(), Access: space.Viewer})
				if err != nil {
					t.Fatal(err)
				}
				return "/api/v1/spaces/" + sp.ID + "/grants/" + g.ID
			}
			for prefix, id := range map[string]string{"/api/v1/spaces/": sp.ID, "/api/v1/files/": doc.ID, "/api/v1/groups/": group.ID,
				"/api/v1/users/": staff.ID, "/api/v1/subjects/": people[who], "/api/v1/campaigns/": camp.ID,
				"/api/v1/retention/policies/": policy.ID, "/api/v1/requests/": dsr.ID, "/api/v1/uploads/": session} {
				if strings.HasPrefix(p, prefix) {
					return strings.Replace(p, "{id}", id, 1)
				}
			}
			return strings.ReplaceAll(p, "{id}", "01a00000-0000-7000-8000-000000000000")
		}

		// Tokens of the owner's, each holding one scope alone.
		scoped := map[string]string{}
		for _, scope := range identity.Scopes {
			if scoped[scope], _, err = ids.CreateToken(ctx, env.Tenant.ID, "owner@acme.example", scope, []string{scope}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		// Each principal signs in once; a browser whose session a route
		// ended (its cookie gone or changed) signs in again before its next
		// call.
		browsers := map[string]*apptest.Browser{}
		signedIn := func(who string) *apptest.Browser {
			if b := browsers[who]; b != nil && b.Cookie(api.SessionCookie) != "" {
				return b
			}
			tenant, email := "acme", map[string]string{"group admin": "gadmin", "folder editor": "feditor"}[who]
			switch {
			case who == "other tenant's admin":
				tenant, email = "globex", "owner@globex.example"
			case email == "":
				email = who + "@acme.example"
			default:
				email += "@acme.example"
			}
			browsers[who] = env.SignIn(t, tenant, email)
			return browsers[who]
		}
		// check calls route rt on who's person (where it names one) as
		// every principal, and as a token holding each scope alone.
		check := func(rt api.Route, who, want string) {
			key := rt.Method + " " + rt.Path
			on := ""
			if namesPerson(rt.Path) {
				on = " on " + who
			}
			wants := strings.Fields(want)
			if len(wants) != len(principals) {
				t.Fatalf("%s%s: %d columns; want %d", key, on, len(wants), len(principals))
			}
			var body any
			if rt.Method == "POST" || rt.Method == "PATCH" || rt.Method == "PUT" {
				body = "{}"
			}
			for i, as := range principals {
				p := path(key, rt.Path, who)
				var r apptest.Response
				switch as {
				case "anonymous":
					r = env.Browser(t).Do(t, rt.Method, p, body)
				case "owner token":
					r = env.Do(t, env.Token, rt.Method, p, body)
				case "member token":
					r = env.Do(t, memberToken, rt.Method, p, body)
				default:
					br := signedIn(as)
					before := br.Cookie(api.SessionCookie)
					r = br.Do(t, rt.Method, p, body)
					if br.Cookie(api.SessionCookie) != before {
						delete(browsers, as)
					}
				}
				if got := outcome(r); got != wants[i] {
					t.Errorf("%s%s as %s: %s (%d %.200s); want %s", key, on, as, got, r.Status, r.Body, wants[i])
				}
			}
			// A token holding one scope alone: what the owner's token gets
			// where that scope is all the route needs (or it needs none),
			// 403 everywhere else — no route lets a scope reach more.
			// Reading a person with an account needs users:read as well.
			ownerToken := wants[slices.Index(principals, "owner token")]
			need := strings.Fields(rt.Access)
			if !strings.HasPrefix(who, "a contact") && rt.Method == "GET" && strings.HasPrefix(rt.Path, "/api/v1/subjects/{id}") {
				need = append(need, "users:read")
			}
			for _, scope := range identity.Scopes {
				want := "403"
				if rt.Access == api.Public || rt.Access == api.Session || rt.Access == api.Enrol || slices.Equal(need, []string{scope}) {
					want = ownerToken
				}
				// refused before any object is looked at, unless the scope is
				// all the route asks for
				p := placeholder.ReplaceAllString(rt.Path, "01a00000-0000-7000-8000-000000000000")
				if want != "403" || rt.Access == scope {
					p = path(key, rt.Path, who)
				}
				r := env.Do(t, scoped[scope], rt.Method, p, body)
				if got := outcome(r); got != want {
					t.Errorf("%s%s with a token holding only %s: %s (%d %.200s); want %s", key, on, scope, got, r.Status, r.Body, want)
				}
			}
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
			check(rt, "a contact", want)
			if !namesPerson(rt.Path) || rt.Path == "/api/v1/files/{id}/subjects" {
				continue
			}
			check(rt, "a contact with files", want)
			if want, ok = onAccounts[key]; !ok {
				t.Errorf("route %s names a person and is not in onAccounts; add it", key)
				continue
			}
			for _, who := range holders {
				check(rt, who, want)
			}
		}
		for _, m := range []map[string]string{matrix, onAccounts} {
			for key := range m {
				if !seen[key] {
					t.Errorf("the matrix names %s, which is not a route", key)
				}
			}
		}
		// However they were called, the account holders still sign in with
		// their own address and password.
		for _, email := range []string{"owner@acme.example", "admin@acme.example", "member@acme.example"} {
			env.SignIn(t, "acme", email)
		}
	})
}

var placeholder = regexp.MustCompile(`\{[^}]+\}`)

// outcome is what the matrix says of an answer: "account" (a 409
// refusal naming a person's account route), "ok" (past authorization:
// any other status but 401, 403 or 404), or that status.
func outcome(r apptest.Response) string {
	switch {
	case r.Status == 409 && strings.Contains(string(r.Body), "has a user account"):
		return "account"
	case r.Status == 401 || r.Status == 403 || r.Status == 404:
		return fmt.Sprint(r.Status)
	}
	return "ok"
}

// principalOf signs email in (with apptest.Password) and returns how the
// session acts.
func principalOf(t *testing.T, env *apptest.Env, email string) identity.Principal {
	t.Helper()
	res, err := env.App.Identity.Login(context.Background(), identity.LoginInput{Tenant: "acme", Email: email, Password: apptest.Password})
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.App.Identity.AuthenticateSession(context.Background(), res.Session)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ptr[T any](v T) *T { return &v }
