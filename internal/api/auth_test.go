package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/passkeytest"
)

const pw = apptest.Password

// TestSignInOverHTTP: the session cookie has every protective attribute,
// /me answers, logout ends the session.
func TestSignInOverHTTP(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		b := env.Browser(t)
		r := b.Login(t, "acme", "Owner@Acme.example", pw)
		if r.Status != 200 || r.Map(t)["mfa_required"] != false {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		}
		cookies := strings.Join(r.Header.Values("Set-Cookie"), "\n")
		for _, want := range []string{api.SessionCookie + "=", api.DeviceCookie + "=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
			if !strings.Contains(cookies, want) {
				t.Errorf("Set-Cookie lacks %q:\n%s", want, cookies)
			}
		}
		if strings.Contains(cookies, "Domain=") {
			t.Errorf("a __Host- cookie must not name a domain:\n%s", cookies)
		}
		me := b.Do(t, "GET", "/api/v1/me", nil)
		if m := me.Map(t); me.Status != 200 || m["email"] != "owner@acme.example" || m["role"] != "owner" {
			t.Fatalf("me: %d %s", me.Status, me.Body)
		}
		// A signed-in owner reaches scoped routes through the role.
		if r := b.Do(t, "GET", "/api/v1/audit/verify", nil); r.Status != 200 {
			t.Errorf("owner session on a scoped route: %d", r.Status)
		}
		if r := b.Do(t, "POST", "/api/v1/auth/logout", nil); r.Status != 204 {
			t.Fatalf("logout: %d", r.Status)
		}
		if r := b.Do(t, "GET", "/api/v1/me", nil); r.Status != 401 {
			t.Errorf("me after logout: %d", r.Status)
		}
	})
}

// TestSignInRefusalsLookAlike: unknown tenant, unknown email, wrong
// password, no password yet and a locked account all get the same answer.
func TestSignInRefusalsLookAlike(t *testing.T) {
	env := apptest.New(t, "")
	env.AddUser(t, "invited@acme.example", "member", "")
	env.AddUser(t, "locked@acme.example", "member", pw)
	for range 6 {
		env.Browser(t).Login(t, "acme", "locked@acme.example", "wrong wrong wrong")
	}
	var first string
	for _, c := range []struct{ name, tenant, email, password string }{
		{"wrong password", "acme", "owner@acme.example", "not it at all, no"},
		{"unknown email", "acme", "nobody@acme.example", pw},
		{"unknown tenant", "nope", "owner@acme.example", pw},
		{"no password yet", "acme", "invited@acme.example", pw},
		{"locked", "acme", "locked@acme.example", pw},
	} {
		before := env.App.Identity.Hasher().Hashes()
		r := env.Browser(t).Login(t, c.tenant, c.email, c.password)
		m := r.Map(t)
		delete(m, "request_id")
		got := fmt.Sprint(r.Status, m)
		if first == "" {
			first = got
		}
		if r.Status != 401 || got != first {
			t.Errorf("%s: %s; want the same as a wrong password: %s", c.name, got, first)
		}
		if c.name != "locked" && env.App.Identity.Hasher().Hashes() != before+1 {
			t.Errorf("%s: no password hash computed (timing would tell)", c.name)
		}
	}
	// Malformed input is a 400 naming the field, not a sign-in failure.
	r := env.Browser(t).Do(t, "POST", "/api/v1/auth/login", map[string]any{"tenant": "acme", "email": "owner@acme.example"})
	if r.Status != 400 || r.Map(t)["field"] != "password" {
		t.Errorf("missing password: %d %s", r.Status, r.Body)
	}
}

func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEnforcedSecondFactor: with 2FA required for everyone, a user without a
// factor gets an enrolment-only session that reaches nothing but enrolment;
// confirming the factor makes it a full session.
func TestEnforcedSecondFactor(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := env.Do(t, env.Token, "PATCH", "/api/v1/settings/security", map[string]any{"mfa_required": "all"}); r.Status != 403 {
			t.Errorf("a token changed security settings: %d", r.Status)
		}
		if r := owner.Do(t, "PATCH", "/api/v1/settings/security", map[string]any{"mfa_required": "all"}); r.Status != 200 {
			t.Fatalf("enforce 2FA: %d %s", r.Status, r.Body)
		}
		env.AddUser(t, "mia@acme.example", "member", "a long enough passphrase 77")
		b := env.Browser(t)
		r := b.Login(t, "acme", "mia@acme.example", "a long enough passphrase 77")
		if m := r.Map(t); r.Status != 200 || m["enrolment_required"] != true || m["mfa_required"] != false {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		}
		if r := b.Do(t, "GET", "/api/v1/me/sessions", nil); r.Status != 403 || !strings.Contains(r.Map(t)["detail"].(string), "second factor") {
			t.Errorf("enrolment-only session listed sessions: %d %s", r.Status, r.Body)
		}
		if r := b.Do(t, "GET", "/api/v1/me", nil); r.Status != 200 || r.Map(t)["enrolment_required"] != true {
			t.Errorf("me: %d %s", r.Status, r.Body)
		}
		e := b.Do(t, "POST", "/api/v1/me/mfa/totp", nil)
		if e.Status != 201 {
			t.Fatalf("enrol: %d %s", e.Status, e.Body)
		}
		secret := e.Map(t)["secret"].(string)
		before := b.Cookie(api.SessionCookie)
		c := b.Do(t, "POST", "/api/v1/me/mfa/totp/confirm", map[string]string{"code": totpCode(t, secret, env.Now.Now())})
		var out struct {
			RecoveryCodes []string `json:"recovery_codes"`
		}
		c.JSON(t, &out)
		if c.Status != 200 || len(out.RecoveryCodes) != 10 {
			t.Fatalf("confirm: %d %s", c.Status, c.Body)
		}
		if b.Cookie(api.SessionCookie) == before {
			t.Error("the session secret was not rotated when it became full")
		}
		if r := b.Do(t, "GET", "/api/v1/me/sessions", nil); r.Status != 200 {
			t.Errorf("after enrolment: %d %s", r.Status, r.Body)
		}
		// Next sign-in asks for the code.
		b2 := env.Browser(t)
		if r := b2.Login(t, "acme", "mia@acme.example", "a long enough passphrase 77"); r.Map(t)["mfa_required"] != true {
			t.Errorf("second login: %s", r.Body)
		}
		if r := b2.Do(t, "GET", "/api/v1/me", nil); r.Status != 401 {
			t.Errorf("pending session read /me: %d", r.Status)
		}
		env.Now.Advance(30 * time.Second)
		if r := b2.Do(t, "POST", "/api/v1/auth/mfa", map[string]string{"method": "totp", "code": totpCode(t, secret, env.Now.Now())}); r.Status != 200 {
			t.Fatalf("mfa: %d %s", r.Status, r.Body)
		}
		if r := b2.Do(t, "GET", "/api/v1/me", nil); r.Status != 200 {
			t.Errorf("after mfa: %d", r.Status)
		}
		// With 2FA enforced the last factor cannot be removed.
		f := b2.Do(t, "GET", "/api/v1/me/mfa", nil)
		fid := firstID(t, f)
		if r := b2.Do(t, "DELETE", "/api/v1/me/mfa/"+fid, nil); r.Status != 409 {
			t.Errorf("removed the last factor while enforced: %d %s", r.Status, r.Body)
		}
	})
}

// TestSessionLimits: idle 30 minutes, absolute 12 hours.
func TestSessionLimits(t *testing.T) {
	env := apptest.New(t, "")
	idle := env.SignIn(t, "acme", "owner@acme.example")
	busy := env.SignIn(t, "acme", "owner@acme.example")
	for i := range 36 { // 12 hours in steps of 20 minutes, busy stays active
		env.Now.Advance(20 * time.Minute)
		want := 200
		if i == 35 {
			want = 401
		}
		if r := busy.Do(t, "GET", "/api/v1/me", nil); r.Status != want {
			t.Fatalf("after %s: %d; want %d", time.Duration(i+1)*20*time.Minute, r.Status, want)
		}
		if i == 1 {
			if r := idle.Do(t, "GET", "/api/v1/me", nil); r.Status != 401 {
				t.Errorf("idle 40 minutes: %d; want 401", r.Status)
			}
		}
	}
}

// TestSensitiveActionsNeedRecentAuthentication: after 10 minutes a session
// must re-authenticate before creating a token; tokens never can.
func TestSensitiveActionsNeedRecentAuthentication(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		b := env.SignIn(t, "acme", "owner@acme.example")
		env.Now.Advance(11 * time.Minute)
		r := b.Do(t, "POST", "/api/v1/me/tokens", map[string]any{"name": "ci"})
		if r.Status != 403 || !strings.Contains(r.Map(t)["detail"].(string), "/api/v1/auth/reauth") {
			t.Fatalf("stale session created a token: %d %s", r.Status, r.Body)
		}
		if r := b.Do(t, "POST", "/api/v1/auth/reauth", map[string]string{"password": "wrong one, sorry"}); r.Status != 401 {
			t.Errorf("reauth with a wrong password: %d", r.Status)
		}
		before := b.Cookie(api.SessionCookie)
		if r := b.Do(t, "POST", "/api/v1/auth/reauth", map[string]string{"password": pw}); r.Status != 200 {
			t.Fatalf("reauth: %d %s", r.Status, r.Body)
		}
		if b.Cookie(api.SessionCookie) == before {
			t.Error("re-authentication did not rotate the session secret")
		}
		r = b.Do(t, "POST", "/api/v1/me/tokens", map[string]any{"name": "ci", "scopes": []string{"subjects:read"}, "expires_in_days": 7})
		if r.Status != 201 {
			t.Fatalf("create token: %d %s", r.Status, r.Body)
		}
		tok := r.Map(t)
		secret := tok["secret"].(string)
		if r := env.Do(t, secret, "GET", "/api/v1/subjects", nil); r.Status != 200 {
			t.Errorf("new token: %d", r.Status)
		}
		if r := env.Do(t, secret, "POST", "/api/v1/subjects", map[string]any{"email": "x@example.org"}); r.Status != 403 {
			t.Errorf("read-only token wrote: %d", r.Status)
		}
		// A token cannot be used where a person must be present.
		if r := env.Do(t, secret, "GET", "/api/v1/me/sessions", nil); r.Status != 403 {
			t.Errorf("token listed sessions: %d", r.Status)
		}
		if r := b.Do(t, "DELETE", "/api/v1/me/tokens/"+tok["id"].(string), nil); r.Status != 204 {
			t.Fatalf("revoke: %d", r.Status)
		}
		if r := env.Do(t, secret, "GET", "/api/v1/subjects", nil); r.Status != 401 {
			t.Errorf("revoked token: %d", r.Status)
		}
	})
}

// TestSecuritySettings: every bad value is refused naming its field and
// changes nothing; a good change is audited with old and new values.
func TestSecuritySettings(t *testing.T) {
	env := apptest.New(t, "")
	b := env.SignIn(t, "acme", "owner@acme.example")
	before := string(b.Do(t, "GET", "/api/v1/settings/security", nil).Body)
	for _, c := range []struct {
		body  string
		field string
	}{
		{`{"password_preset": "weak"}`, "password_preset"},
		{`{"lockout_threshold": 2}`, "lockout_threshold"},
		{`{"lockout_threshold": 21}`, "lockout_threshold"},
		{`{"lockout_minutes": 0}`, "lockout_minutes"},
		{`{"lockout_minutes": 1441}`, "lockout_minutes"},
		{`{"mfa_required": "sometimes"}`, "mfa_required"},
		{`{"session_idle_minutes": 4}`, "session_idle_minutes"},
		{`{"session_absolute_hours": 73}`, "session_absolute_hours"},
		{`{"reauthenticate_minutes": 61}`, "reauthenticate_minutes"},
		{`{"lockout_threshold": "6"}`, "lockout_threshold"},
		{`{"colour": "blue"}`, "colour"},
	} {
		r := b.Do(t, "PATCH", "/api/v1/settings/security", c.body)
		if r.Status != 400 || r.Map(t)["field"] != c.field {
			t.Errorf("%s: %d %s; want 400 naming %s", c.body, r.Status, r.Body, c.field)
		}
	}
	if after := string(b.Do(t, "GET", "/api/v1/settings/security", nil).Body); after != before {
		t.Errorf("refused changes changed the settings:\n%s\n%s", before, after)
	}
	r := b.Do(t, "PATCH", "/api/v1/settings/security", `{"password_preset": "complex", "lockout_threshold": 10}`)
	if m := r.Map(t); r.Status != 200 || m["password_preset"] != "complex" || m["lockout_threshold"] != 10.0 || m["lockout_minutes"] != 60.0 {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	a := b.Do(t, "GET", "/api/v1/audit?action=settings.security.update", nil)
	if !strings.Contains(string(a.Body), `"lockout_threshold":[6,10]`) || !strings.Contains(string(a.Body), `"password_preset":["standard","complex"]`) {
		t.Errorf("audit of the change: %s", a.Body)
	}
	// The complex preset now applies to new passwords.
	if r := b.Do(t, "PUT", "/api/v1/me/password", map[string]string{"current_password": pw, "new_password": "onlylettershere"}); r.Status != 400 || r.Map(t)["field"] != "new_password" {
		t.Errorf("complex preset accepted letters only: %d %s", r.Status, r.Body)
	}
}

// TestCrossOriginRequestsRefused: a cookie-carrying request from another
// site is refused; the same request with a bearer token is not a CSRF risk.
func TestCrossOriginRequestsRefused(t *testing.T) {
	env := apptest.New(t, "")
	for _, c := range []struct {
		bearer bool
		want   int
	}{{false, 403}, {true, 201}} {
		req, _ := http.NewRequest("POST", env.Server.URL+"/api/v1/subjects", strings.NewReader(`{"email": "csrf@example.org"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if c.bearer {
			req.Header.Set("Authorization", "Bearer "+env.Token)
		}
		res, err := env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("cross-site POST (bearer %v): %d; want %d", c.bearer, res.StatusCode, c.want)
		}
	}
}

// TestAuthRateLimit: past the burst, /auth/* answers 429 with Retry-After,
// per client address — and a trusted proxy's X-Forwarded-For is that address.
func TestAuthRateLimit(t *testing.T) {
	env := apptest.NewWith(t, "", func(c *config.Config, o *app.Options) {
		o.AuthRate = api.RateLimit{PerMinute: 1, Burst: 3}
		c.TrustedProxies = []string{"127.0.0.1"}
	})
	send := func(xff string) int {
		req, _ := http.NewRequest("POST", env.Server.URL+"/api/v1/auth/logout", nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		res, err := env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		return res.StatusCode
	}
	for i := range 5 {
		got, want := send("198.51.100.1"), 204
		if i >= 3 {
			want = 429
		}
		if got != want {
			t.Errorf("request %d from 198.51.100.1: %d; want %d", i+1, got, want)
		}
	}
	if got := send("198.51.100.2"); got != 204 {
		t.Errorf("another client behind the proxy: %d", got)
	}
	// A forged hop left of a real one does not help: the right-most
	// untrusted address counts.
	if got := send("203.0.113.9, 198.51.100.1"); got != 429 {
		t.Errorf("spoofed X-Forwarded-For: %d", got)
	}
	if r := env.Do(t, env.Token, "GET", "/api/v1/subjects", nil); r.Status != 200 {
		t.Errorf("the limit reached beyond /auth/*: %d", r.Status)
	}
}

// TestPasskeyOverHTTP: a passkey is registered, then answers the second
// factor at sign-in and at re-authentication, through the JSON a browser
// would pass to navigator.credentials.create/get and back.
func TestPasskeyOverHTTP(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		env.AddUser(t, "pat@acme.example", "member", pw)
		b := env.SignIn(t, "acme", "pat@acme.example")
		key := passkeytest.New(t, env.App.Config.PublicURL)
		opts := b.Do(t, "POST", "/api/v1/me/mfa/passkey", map[string]string{"name": "Desk key"})
		if opts.Status != 200 {
			t.Fatalf("enrol: %d %s", opts.Status, opts.Body)
		}
		if r := b.Do(t, "POST", "/api/v1/me/mfa/passkey/confirm", map[string]any{"credential": "not a credential"}); r.Status != 400 ||
			r.Map(t)["field"] != "credential" {
			t.Errorf("malformed credential: %d %s", r.Status, r.Body)
		}
		c := b.Do(t, "POST", "/api/v1/me/mfa/passkey/confirm", map[string]any{"credential": json.RawMessage(key.Create(t, opts.Body))})
		var codes struct {
			RecoveryCodes []string `json:"recovery_codes"`
		}
		if c.JSON(t, &codes); c.Status != 200 || len(codes.RecoveryCodes) != 10 {
			t.Fatalf("confirm: %d %s", c.Status, c.Body)
		}
		var factors struct{ Items []identity.Factor }
		if b.Do(t, "GET", "/api/v1/me/mfa", nil).JSON(t, &factors); len(factors.Items) != 1 || factors.Items[0].Name != "Desk key" {
			t.Errorf("factors: %+v", factors.Items)
		}

		b2 := env.Browser(t)
		if m := b2.Login(t, "acme", "pat@acme.example", pw).Map(t); m["mfa_required"] != true || fmt.Sprint(m["methods"]) != "[passkey recovery]" {
			t.Fatalf("login: %v", m)
		}
		ch := b2.Do(t, "POST", "/api/v1/auth/mfa/passkey", nil)
		var req struct {
			PublicKey struct {
				RPID             string `json:"rpId"`
				AllowCredentials []struct{ ID string }
			} `json:"publicKey"`
		}
		if ch.JSON(t, &req); ch.Status != 200 || req.PublicKey.RPID != "localhost" || len(req.PublicKey.AllowCredentials) != 1 ||
			req.PublicKey.AllowCredentials[0].ID != key.CredentialID() {
			t.Fatalf("challenge: %d %s", ch.Status, ch.Body)
		}
		if r := b2.Do(t, "POST", "/api/v1/auth/mfa", map[string]any{"method": "passkey", "credential": json.RawMessage(key.Get(t, ch.Body))}); r.Status != 200 {
			t.Fatalf("mfa: %d %s", r.Status, r.Body)
		}
		if r := b2.Do(t, "GET", "/api/v1/me", nil); r.Status != 200 {
			t.Errorf("after the passkey: %d", r.Status)
		}

		// Later, a sensitive action wants the password and the passkey again.
		env.Now.Advance(11 * time.Minute)
		if r := b2.Do(t, "POST", "/api/v1/me/tokens", map[string]any{"name": "ci"}); r.Status != 403 {
			t.Fatalf("token without re-authentication: %d %s", r.Status, r.Body)
		}
		ch = b2.Do(t, "POST", "/api/v1/auth/mfa/passkey", nil)
		if r := b2.Do(t, "POST", "/api/v1/auth/reauth", map[string]any{"password": pw, "method": "passkey",
			"credential": json.RawMessage(key.Get(t, ch.Body))}); r.Status != 200 {
			t.Fatalf("re-authenticate with the passkey: %d %s", r.Status, r.Body)
		}
		if r := b2.Do(t, "POST", "/api/v1/me/tokens", map[string]any{"name": "ci"}); r.Status != 201 {
			t.Errorf("token after re-authentication: %d %s", r.Status, r.Body)
		}
	})
}
