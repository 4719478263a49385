package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/subject"
)

// TestAccountClosure: a member closes their own account; it stays for the
// tenant's grace period, in which they can cancel, and is then erased with
// a certificate; the last owner cannot close theirs; a grace period of 0
// erases at once.
func TestAccountClosure(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		for _, bad := range []any{-1, 366} {
			if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/organisation", map[string]any{"time_zone": "UTC", "account_closure_grace_days": bad}); r.Status != 400 ||
				r.Map(t)["field"] != "account_closure_grace_days" {
				t.Errorf("grace %v: %d %s", bad, r.Status, r.Body)
			}
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/settings/organisation", nil); r.Map(t)["account_closure_grace_days"] != 30.0 {
			t.Errorf("default grace: %s", r.Body)
		}
		if r := env.SignIn(t, "acme", "owner@acme.example").Do(t, "POST", "/api/v1/me/closure", nil); r.Status != 409 {
			t.Errorf("the last owner closing: %d %s", r.Status, r.Body)
		}

		kim := env.AddUser(t, "kim@acme.example", "member", apptest.Password)
		b := env.SignIn(t, "acme", "kim@acme.example")
		r := b.Do(t, "POST", "/api/v1/me/closure", nil)
		if r.Status != 200 {
			t.Fatalf("close: %d %s", r.Status, r.Body)
		}
		closes, _ := time.Parse(time.RFC3339Nano, r.Map(t)["closes_at"].(string))
		if want := env.Now.Now().AddDate(0, 0, 30); closes.Sub(want).Abs() > time.Minute {
			t.Fatalf("closes at %s; want about %s", closes, want)
		}
		env.Mail.Wait(t, "kim@acme.example", "closes on", 10*time.Second)
		if again := b.Do(t, "POST", "/api/v1/me/closure", nil).Map(t)["closes_at"]; again != r.Map(t)["closes_at"] {
			t.Errorf("closing again moved the date: %v", again)
		}
		if u := env.Do(t, env.Token, "GET", "/api/v1/users/"+kim.ID, nil).Map(t); u["closes_at"] == nil {
			t.Errorf("admins do not see the closure: %v", u)
		}
		// Cancelled, then asked again; before the date nothing goes.
		if r := b.Do(t, "DELETE", "/api/v1/me/closure", nil); r.Status != 200 || b.Do(t, "GET", "/api/v1/me", nil).Map(t)["closes_at"] != nil {
			t.Fatalf("cancel: %d %s", r.Status, r.Body)
		}
		if r := b.Do(t, "DELETE", "/api/v1/me/closure", nil); r.Status != 409 {
			t.Errorf("cancelling twice: %d", r.Status)
		}
		b.Do(t, "POST", "/api/v1/me/closure", nil)
		env.Now.Advance(29 * 24 * time.Hour)
		if n, err := env.App.Rights.CloseDue(ctx); err != nil || n != 0 {
			t.Fatalf("before the date: %d closed, %v", n, err)
		}
		env.Now.Advance(2 * 24 * time.Hour)
		if n, err := env.App.Rights.CloseDue(ctx); err != nil || n != 1 {
			t.Fatalf("after the date: %d closed, %v", n, err)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/users/"+kim.ID, nil); r.Status != 404 {
			t.Errorf("the closed account: %d", r.Status)
		}
		var cert subject.Certificate
		env.Do(t, env.Token, "GET", "/api/v1/subjects/"+kim.SubjectID+"/erasure", nil).JSON(t, &cert)
		if cert.Reason != "account closed by its holder" || cert.Erased["users"] != 1 {
			t.Errorf("certificate: %+v", cert)
		}
		if n := countRows(t, env, "SELECT COUNT(*) FROM sessions WHERE user_id = ?", kim.ID); n != "0" {
			t.Errorf("the closed account keeps %s sessions", n)
		}

		// A grace period of 0: erased at once.
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/organisation", map[string]any{"time_zone": "UTC", "account_closure_grace_days": 0}); r.Status != 200 {
			t.Fatalf("grace 0: %d %s", r.Status, r.Body)
		}
		lou := env.AddUser(t, "lou@acme.example", "member", apptest.Password)
		if r := env.SignIn(t, "acme", "lou@acme.example").Do(t, "POST", "/api/v1/me/closure", nil); r.Status != 200 {
			t.Fatalf("close at once: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+lou.SubjectID, nil); r.Status != 410 {
			t.Errorf("closed at once: %d", r.Status)
		}
	})
}
