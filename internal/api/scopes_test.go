package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
)

// TestScopesFollowTheData: a route that returns another resource's data
// needs that resource's scope too — a person's linked files need
// spaces:read beside subjects:read — and the access export, which carries
// the files' content, has a scope of its own, so that it is never cut
// down to what a token may see.
func TestScopesFollowTheData(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		token := func(scopes ...string) string {
			t.Helper()
			secret, _, err := env.App.Identity.CreateToken(ctx, env.Tenant.ID, "owner@acme.example", "scoped", scopes, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return secret
		}
		sp := newSpace(t, env, map[string]any{"name": "Clients"})
		ann := createSubject(t, env, env.Token, map[string]any{"email": "ann@example.org"})["id"].(string)
		doc := put(t, env, sp, "Ann/contract.pdf", content(1000, "Ann's contract"), 201)
		if r := env.Do(t, env.Token, "PUT", "/api/v1/files/"+doc.ID+"/subjects/"+ann, nil); r.Status != 201 {
			t.Fatalf("link: %d %s", r.Status, r.Body)
		}
		reader, both, exporter := token("subjects:read"), token("subjects:read", "spaces:read"), token("subjects:export")
		for _, c := range []struct {
			token, path string
			want        int
		}{
			{reader, "/api/v1/subjects/" + ann, 200},
			{reader, "/api/v1/subjects/" + ann + "/files", 403},
			{both, "/api/v1/subjects/" + ann + "/files", 200},
			{reader, "/api/v1/subjects/" + ann + "/export", 403},
			{both, "/api/v1/subjects/" + ann + "/export", 403},
			{exporter, "/api/v1/subjects/" + ann + "/export", 200},
		} {
			r := env.Do(t, c.token, "GET", c.path, nil)
			if r.Status != c.want {
				t.Errorf("GET %s: %d %s; want %d", c.path, r.Status, r.Body, c.want)
			}
			if c.want == 200 && c.token == exporter {
				_, entries := unzip(t, r.Body)
				found := false
				for name, b := range entries {
					found = found || strings.HasPrefix(name, "files/") && strings.Contains(string(b), "Ann's contract")
				}
				if !found {
					t.Errorf("the export with subjects:export lacks the linked file")
				}
			}
		}
	})
}
