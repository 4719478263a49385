package api_test

import (
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
)

// TestResetAnswersAlike: a reset request answers the same for an active
// account, an unknown email, a suspended account and an unknown tenant;
// only the active account gets mail. The link then sets a password once.
func TestResetAnswersAlike(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		u := env.AddUser(t, "gone@acme.example", "member", pw)
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := owner.Do(t, "PATCH", "/api/v1/users/"+u.ID, map[string]string{"status": "suspended"}); r.Status != 200 {
			t.Fatalf("suspend: %d %s", r.Status, r.Body)
		}
		var first apptest.Response
		for i, in := range []map[string]string{
			{"tenant": "acme", "email": "owner@acme.example"},
			{"tenant": "acme", "email": "nobody@acme.example"},
			{"tenant": "acme", "email": "gone@acme.example"},
			{"tenant": "nope", "email": "owner@acme.example"},
		} {
			r := env.Browser(t).Do(t, "POST", "/api/v1/auth/password-reset", in)
			if i == 0 {
				first = r
			}
			if r.Status != 202 || string(r.Body) != string(first.Body) {
				t.Errorf("reset request %v: %d %s; want what an active account gets: %d %s", in, r.Status, r.Body, first.Status, first.Body)
			}
		}
		if r := env.Browser(t).Do(t, "POST", "/api/v1/auth/password-reset", map[string]string{"tenant": "acme"}); r.Status != 400 || r.Map(t)["field"] != "email" {
			t.Errorf("no email: %d %s", r.Status, r.Body)
		}
		token := env.LinkToken(t, "owner@acme.example", "Reset")
		b := env.Browser(t)
		r := b.Do(t, "POST", "/api/v1/auth/password-reset/confirm", map[string]string{"token": token, "password": "short"})
		if r.Status != 400 || r.Map(t)["field"] != "password" {
			t.Fatalf("short password: %d %s", r.Status, r.Body)
		}
		in := map[string]string{"token": token, "password": "correct horse battery staple again"}
		if r := b.Do(t, "POST", "/api/v1/auth/password-reset/confirm", in); r.Status != 204 {
			t.Fatalf("reset: %d %s", r.Status, r.Body)
		}
		if b.Cookie("__Host-custodia_session") != "" {
			t.Error("a reset signed the browser in")
		}
		if r := b.Do(t, "POST", "/api/v1/auth/password-reset/confirm", in); r.Status != 410 {
			t.Errorf("second use of the link: %d %s", r.Status, r.Body)
		}
		if r := owner.Do(t, "GET", "/api/v1/me", nil); r.Status != 401 {
			t.Errorf("session from before the reset: %d", r.Status)
		}
		if r := b.Login(t, "acme", "owner@acme.example", in["password"]); r.Status != 200 {
			t.Errorf("sign in with the new password: %d %s", r.Status, r.Body)
		}
		if n := len(env.Mail.To("nobody@acme.example", "")) + len(env.Mail.To("gone@acme.example", "")); n != 0 {
			t.Errorf("%d mails to unknown or suspended addresses", n)
		}
	})
}

// TestInvitationOverHTTP: inviting a new and an existing address answer
// alike; the invitee sees what the link is for, chooses a password and is
// signed in.
func TestInvitationOverHTTP(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		owner := env.SignIn(t, "acme", "owner@acme.example")
		a := owner.Do(t, "POST", "/api/v1/invitations", map[string]string{"email": "jo@acme.example", "role": "admin"})
		b := owner.Do(t, "POST", "/api/v1/invitations", map[string]string{"email": "owner@acme.example", "role": "admin"})
		if a.Status != 202 || b.Status != 202 || string(a.Body) != string(b.Body) {
			t.Fatalf("invitations: new %d %s, existing %d %s", a.Status, a.Body, b.Status, b.Body)
		}
		if r := owner.Do(t, "POST", "/api/v1/invitations", map[string]string{"email": "x@acme.example", "role": "root"}); r.Status != 400 || r.Map(t)["field"] != "role" {
			t.Errorf("bad role: %d %s", r.Status, r.Body)
		}
		token := env.LinkToken(t, "jo@acme.example", "invited")
		invitee := env.Browser(t)
		info := invitee.Do(t, "POST", "/api/v1/auth/invitation", map[string]string{"token": token})
		if m := info.Map(t); info.Status != 200 || m["email"] != "jo@acme.example" || m["tenant"] != "acme" {
			t.Fatalf("invitation: %d %s", info.Status, info.Body)
		}
		r := invitee.Do(t, "POST", "/api/v1/auth/invitation/accept", map[string]string{"token": token, "password": "jo's own long passphrase"})
		if r.Status != 200 || invitee.Cookie("__Host-custodia_session") == "" {
			t.Fatalf("accept: %d %s", r.Status, r.Body)
		}
		if m := invitee.Do(t, "GET", "/api/v1/me", nil).Map(t); m["email"] != "jo@acme.example" || m["role"] != "admin" {
			t.Errorf("me after accepting: %v", m)
		}
		if r := env.Browser(t).Do(t, "POST", "/api/v1/auth/invitation", map[string]string{"token": token}); r.Status != 410 {
			t.Errorf("used invitation: %d %s", r.Status, r.Body)
		}
	})
}
