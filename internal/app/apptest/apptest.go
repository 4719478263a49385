// Package apptest builds a whole Custodia for tests of the HTTP layer — the
// core of coretest (SQLite and a throwaway PostgreSQL, a real SMTP server
// receiving its mail, a tenant, its owner and an API token) served over
// HTTPS — and offers small HTTP clients for the API: one with a token, and
// browsers with cookies.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
)

// Env is a running app with one tenant: the core's test env (tenant,
// token, mail, logs, clock) and the app serving HTTPS.
type Env struct {
	*coretest.Env
	App    *app.App
	Server *httptest.Server
	// URL is the server's public URL, https://localhost:PORT — the base
	// of mailed links, and the passkeys' relying party — where a browser
	// opens the console (Server.URL names 127.0.0.1, where passkeys fail).
	URL string
}

// Clock, LogBuffer, Password and Files are coretest's, named here too for
// the tests of the HTTP layer.
type (
	Clock     = coretest.Clock
	LogBuffer = coretest.LogBuffer
)

// Password is the password of the owners AddTenant makes.
const Password = coretest.Password

// Files lists the regular files under dir (coretest.Files).
func Files(t testing.TB, dir string) []string { t.Helper(); return coretest.Files(t, dir) }

// Run runs fn on SQLite and on PostgreSQL, the two at once
// (coretest.Engines).
func Run(t *testing.T, fn func(t *testing.T, env *Env)) {
	t.Helper()
	RunWith(t, nil, fn)
}

// RunWith is Run with a hook that may change the configuration and options
// before the app opens (see NewWith).
func RunWith(t *testing.T, hook func(*config.Config, *app.Options), fn func(t *testing.T, env *Env)) {
	t.Helper()
	coretest.Engines(t, func(t *testing.T, databaseURL string) { fn(t, NewWith(t, databaseURL, hook)) })
}

// AsInProduction is a hook (for NewWith) that turns the test options off,
// for benchmarks (coretest.AsInProduction).
func AsInProduction(c *config.Config, o *app.Options) { coretest.AsInProduction(c, &o.Options) }

// New builds an app on databaseURL ("" for SQLite in a temp dir) with a
// tenant "acme", owner owner@acme.example and a token with every scope.
func New(t testing.TB, databaseURL string) *Env {
	t.Helper()
	return NewWith(t, databaseURL, nil)
}

// NewWith is New with a hook that may change the configuration and options
// before the app opens. The app runs with core.TestOptions on (no fsync on
// SQLite commits, cheap password hashes) unless hook turns them off, and
// without a limit on sign-in attempts worth noticing.
func NewWith(t testing.TB, databaseURL string, hook func(*config.Config, *app.Options)) *Env {
	t.Helper()
	opt := app.Options{AuthRate: api.RateLimit{PerMinute: 1e6, Burst: 1e6}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var a *app.App
	ce := coretest.Open(t, databaseURL, func(c *config.Config, o *core.Options) {
		c.Addr = ln.Addr().String() // the public URL follows: https://localhost:PORT
		opt.Options = *o
		if hook != nil {
			hook(c, &opt)
		}
		*o = opt.Options
	}, func(ctx context.Context, cfg config.Config, o *core.Options) (*core.Core, error) {
		opt.Options = *o
		var err error
		if a, err = app.Open(ctx, cfg, opt); err != nil {
			return nil, err
		}
		return a.Core, nil
	})
	srv := httptest.NewUnstartedServer(a.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.StartTLS()
	env := &Env{Env: ce, App: a, Server: srv, URL: a.Config.PublicURL}
	t.Cleanup(env.Server.Close)
	return env
}

// Browser is an HTTP client with its own cookies, like one browser.
type Browser struct {
	env    *Env
	client *http.Client
}

// Browser returns a new browser with no cookies.
func (e *Env) Browser(t testing.TB) *Browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *e.Server.Client()
	c.Jar = jar
	return &Browser{env: e, client: &c}
}

// Do sends a request with the browser's cookies.
func (b *Browser) Do(t testing.TB, method, path string, body any) Response {
	t.Helper()
	return b.env.send(t, b.client, nil, method, path, body)
}

// DoRaw sends body as it is, with Content-Type ctype.
func (b *Browser) DoRaw(t testing.TB, method, path, ctype, body string) Response {
	t.Helper()
	return b.env.send(t, b.client, http.Header{"Content-Type": {ctype}}, method, path, body)
}

// Page sends a request as a console page does — a GET, or a form's POST
// when form is not nil — with the extra headers h, and answers without
// following a redirect.
func (b *Browser) Page(t testing.TB, method, path string, form url.Values, h http.Header) Response {
	t.Helper()
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if h == nil {
		h = http.Header{}
	}
	var body any
	if form != nil {
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		body = form.Encode()
	}
	return b.env.send(t, &c, h, method, path, body)
}

// Cookie returns the value of the browser's cookie name ("" if none).
func (b *Browser) Cookie(name string) string {
	u, _ := url.Parse(b.env.Server.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// SetCookie sets a cookie in the browser, as if the server had.
func (b *Browser) SetCookie(name, value string) {
	u, _ := url.Parse(b.env.Server.URL)
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/", Secure: true}})
}

// Login signs the browser in to tenant (a slug) with a password and
// returns the answer.
func (b *Browser) Login(t testing.TB, tenant, email, pw string) Response {
	t.Helper()
	return b.Do(t, "POST", "/api/v1/auth/login", map[string]string{"tenant": tenant, "email": email, "password": pw})
}

// SignIn returns a browser signed in to tenant as email with Password,
// failing the test unless that succeeds without a second factor.
func (e *Env) SignIn(t testing.TB, tenant, email string) *Browser {
	t.Helper()
	b := e.Browser(t)
	r := b.Login(t, tenant, email, Password)
	if r.Status != http.StatusOK || r.Map(t)["mfa_required"] != false {
		t.Fatalf("sign in as %s: %d %s\nlogs:\n%s", email, r.Status, r.Body, e.Logs.Errors())
	}
	return b
}

// Response is an API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test when it is not JSON.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v\n%s", r.Status, err, r.Body)
	}
}

// Map decodes the body as a JSON object.
func (r Response) Map(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// Do sends a request with token; body may be nil, a string (sent as is) or
// a value (sent as JSON).
func (e *Env) Do(t testing.TB, token, method, path string, body any) Response {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return e.send(t, e.Server.Client(), h, method, path, body)
}

// DoRaw sends body as it is, with content type ctype, and token.
func (e *Env) DoRaw(t testing.TB, token, method, path, ctype, body string) Response {
	t.Helper()
	h := http.Header{"Content-Type": {ctype}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return e.send(t, e.Server.Client(), h, method, path, body)
}

func (e *Env) send(t testing.TB, c *http.Client, h http.Header, method, path string, body any) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.Server.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: b}
}
