package web_test

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/web"
)

// The console's HTTP rules, below the browser: headers, the cross-origin
// check, the API rule each action follows, the re-authentication a
// sensitive action asks for, redirects that stay on the site. The
// journeys through the pages are in internal/app/browsertest.

func TestPageHeaders(t *testing.T) {
	env := apptest.New(t, "")
	r := env.Browser(t).Page(t, "GET", "/login", nil, nil)
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /login: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(string(r.Body), "style=") || strings.Contains(string(r.Body), "<script>") {
		t.Errorf("inline script or style: CSP %q", csp)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q; want no-store", got)
	}
	// The stylesheet: named by its hash, cached for ever, gzipped.
	css := regexp.MustCompile(`/static/style\.[0-9a-f]{12}\.css`).FindString(string(r.Body))
	if css == "" {
		t.Fatalf("no hashed stylesheet in %s", r.Body)
	}
	s := env.Browser(t).Page(t, "GET", css, nil, http.Header{"Accept-Encoding": {"gzip"}})
	if s.Status != 200 || !strings.Contains(s.Header.Get("Cache-Control"), "immutable") || s.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("stylesheet: %d %v", s.Status, s.Header)
	}
	zr, err := gzip.NewReader(strings.NewReader(string(s.Body)))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); !strings.Contains(string(plain), "prefers-color-scheme: dark") {
		t.Errorf("the stylesheet does not unzip to itself: %.80s", plain)
	}
	if r := env.Browser(t).Page(t, "GET", "/static/style.000000000000.css", nil, nil); r.Status != 404 {
		t.Errorf("an unknown static name: %d", r.Status)
	}
	// Pages are compressed, unless they hold a secret beside what the
	// requester typed (BREACH): here a reset link's token, shown again.
	gz := http.Header{"Accept-Encoding": {"gzip"}}
	if r := env.Browser(t).Page(t, "GET", "/login", nil, gz); r.Header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(r.Header.Get("Server-Timing"), "render;dur=") {
		t.Errorf("sign-in page: %v", r.Header)
	}
	token := strings.Repeat("s", 43)
	r = env.Browser(t).Page(t, "POST", "/login/acme/reset", url.Values{"token": {token}, "password": {"short"}}, gz)
	if r.Status != 422 || r.Header.Get("Content-Encoding") != "" || !strings.Contains(string(r.Body), token) {
		t.Errorf("a page with a secret: %d %v", r.Status, r.Header)
	}
}

// A form posted from another site is refused before anything happens.
func TestCrossOriginFormRefused(t *testing.T) {
	env := apptest.New(t, "")
	b := env.Browser(t)
	in := url.Values{"tenant": {"acme"}, "email": {"owner@acme.example"}, "password": {apptest.Password}}
	r := b.Page(t, "POST", "/login", in, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}})
	if r.Status != 403 || b.Cookie(api.SessionCookie) != "" {
		t.Fatalf("cross-site sign-in: %d, session %q", r.Status, b.Cookie(api.SessionCookie))
	}
	if r := b.Page(t, "POST", "/login", in, http.Header{"Sec-Fetch-Site": {"same-origin"}}); r.Status != 303 || r.Header.Get("Location") != "/" {
		t.Fatalf("same-origin sign-in: %d %s", r.Status, r.Header.Get("Location"))
	}
}

// Every console action (a POST) follows an API route: the same access
// rule and guards, and an API for everything the console does. Only the
// actions of a mailed link's holder — the privacy portal's, a sign-in
// address's — are pages alone.
func TestActionsFollowAPIRoutes(t *testing.T) {
	env := apptest.New(t, "")
	for _, rt := range env.App.Console.Routes() {
		if rt.Method == "GET" {
			continue
		}
		if strings.HasPrefix(rt.Path, "/privacy/{tenant}/") || strings.HasPrefix(rt.Path, "/account/email/") || strings.HasPrefix(rt.Path, "/account/email-undo/") {
			if rt.Rule != web.Public && rt.Rule != web.Limited {
				t.Errorf("%s %s: a link's page, yet follows %q", rt.Method, rt.Path, rt.Rule)
			}
			continue
		}
		if _, ok := env.App.API.Route(rt.Rule); !ok {
			t.Errorf("%s %s follows %q, no API route", rt.Method, rt.Path, rt.Rule)
		}
	}
	_, err := web.New(web.Deps{API: env.App.API})
	if err != nil {
		t.Fatalf("the console's own routes: %v", err)
	}
}

// A sensitive action asks the person to confirm who they are once the
// last confirmation is older than the tenant's window, and comes back to
// the page after; the sign-in's rate limit is the API's.
func TestSensitiveActionAsksToConfirm(t *testing.T) {
	env := apptest.New(t, "")
	b := env.Browser(t)
	in := url.Values{"tenant": {"acme"}, "email": {"owner@acme.example"}, "password": {apptest.Password}}
	if r := b.Page(t, "POST", "/login", in, nil); r.Status != 303 {
		t.Fatalf("sign in: %d %s", r.Status, r.Body)
	}
	env.Now.Advance(16 * time.Minute) // past the default 15-minute window
	r := b.Page(t, "POST", "/account/second-factor/totp", url.Values{}, nil)
	if r.Status != 303 || r.Header.Get("Location") != "/login/confirm?next=%2Faccount%2Fsecond-factor%2Ftotp" {
		t.Fatalf("stale session: %d %s", r.Status, r.Header.Get("Location"))
	}
	r = b.Page(t, "POST", "/login/confirm", url.Values{"password": {"wrong password, clearly"}, "next": {"/account/second-factor"}}, nil)
	if r.Status != 422 || !strings.Contains(string(r.Body), "not correct") {
		t.Fatalf("wrong password: %d", r.Status)
	}
	r = b.Page(t, "POST", "/login/confirm", url.Values{"password": {apptest.Password}, "next": {"https://evil.example/"}}, nil)
	if r.Status != 303 || r.Header.Get("Location") != "/" {
		t.Fatalf("confirm with a foreign next: %d %s; want / (never another site)", r.Status, r.Header.Get("Location"))
	}
	r = b.Page(t, "POST", "/account/second-factor/totp", url.Values{}, nil)
	if r.Status != 303 || r.Header.Get("Location") != "/account/second-factor/totp" {
		t.Fatalf("after confirming: %d %s", r.Status, r.Header.Get("Location"))
	}
}

func TestSignInSharesTheAPIsRateLimit(t *testing.T) {
	env := apptest.NewWith(t, "", func(_ *config.Config, o *app.Options) { o.AuthRate = api.RateLimit{PerMinute: 1, Burst: 2} })
	b := env.Browser(t)
	in := url.Values{"tenant": {"acme"}, "email": {"owner@acme.example"}, "password": {"not it"}}
	b.Do(t, "POST", "/api/v1/auth/login", map[string]string{"tenant": "acme", "email": "x@acme.example", "password": "not it"})
	if r := b.Page(t, "POST", "/login", in, nil); r.Status != 422 {
		t.Fatalf("second attempt: %d", r.Status)
	}
	r := b.Page(t, "POST", "/login", in, nil)
	if r.Status != 429 || r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "Too many attempts") {
		t.Fatalf("third attempt: %d %v", r.Status, r.Header)
	}
	// The privacy portal's form spends from the same budget: nobody
	// floods mailboxes through it.
	ask := url.Values{"type": {"access"}, "email": {"someone@example.org"}}
	if r := b.Page(t, "POST", "/privacy/acme/requests", ask, nil); r.Status != 429 {
		t.Fatalf("portal form after the budget: %d", r.Status)
	}
	if n := len(env.Mail.All()); n != 0 {
		t.Errorf("%d mails went out", n)
	}
}

// Sign-in pages send nobody to another site after signing in.
func TestSignInStaysOnTheSite(t *testing.T) {
	env := apptest.New(t, "")
	for next, want := range map[string]string{"/account/second-factor": "/account/second-factor", "//evil.example/": "/",
		"https://evil.example/": "/", `/\evil.example`: "/", "": "/"} {
		b := env.Browser(t)
		in := url.Values{"tenant": {"acme"}, "email": {"owner@acme.example"}, "password": {apptest.Password}, "next": {next}}
		if r := b.Page(t, "POST", "/login", in, nil); r.Status != 303 || r.Header.Get("Location") != want {
			t.Errorf("next %q: %d %s; want %s", next, r.Status, r.Header.Get("Location"), want)
		}
	}
}
