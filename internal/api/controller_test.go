package api_test

import (
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
)

// The controller's details are kept sealed (the DPO is a person), read
// back whole, refused field by field, and audited by field name only.
func TestControllerDetails(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		body := map[string]any{"legal_name": "ACME Holdings Ltd", "address": "1 Quillpen Lane\nLondon", "email": "privacy@acme.example",
			"dpo_name": "Dorothea Quillfeather", "dpo_email": "dpo@acme.example", "privacy_policy_url": "https://acme.example/privacy"}
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/controller", body); r.Status != 200 {
			t.Fatalf("set: %d %s", r.Status, r.Body)
		}
		r := env.Do(t, env.Token, "GET", "/api/v1/settings/controller", nil)
		if got := r.Map(t); r.Status != 200 || got["dpo_name"] != "Dorothea Quillfeather" || got["address"] != "1 Quillpen Lane\nLondon" {
			t.Errorf("read back: %d %v", r.Status, got)
		}
		assertNoSecrets(t, "the store", dumpStore(t, env), "Quillfeather", "Quillpen")
		for field, v := range map[string]any{"dpo_email": "not an address", "privacy_policy_url": "ftp://acme.example", "legal_name": strings.Repeat("x", 201)} {
			bad := map[string]any{field: v}
			if field == "dpo_email" {
				bad["dpo_name"] = "Someone"
			}
			if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/controller", bad); r.Status != 400 || r.Map(t)["field"] != field {
				t.Errorf("%s = %v: %d %s", field, v, r.Status, r.Body)
			}
		}
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/controller", map[string]any{"dpo_name": "Someone"}); r.Status != 400 || r.Map(t)["field"] != "dpo_email" {
			t.Errorf("a DPO nobody can reach: %d %s", r.Status, r.Body)
		}
		trail := env.Do(t, env.Token, "GET", "/api/v1/audit?action=tenant.controller", nil)
		if s := string(trail.Body); !strings.Contains(s, `"dpo_name"`) || strings.Contains(s, "Quillfeather") {
			t.Errorf("the audit: %s", s)
		}
	})
}
