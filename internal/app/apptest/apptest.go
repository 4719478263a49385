// Package apptest builds a whole Custodia for tests — on SQLite and on a
// throwaway PostgreSQL, over HTTPS, with a real SMTP server receiving its
// mail — with a tenant, its owner and an API token, and offers small HTTP
// clients for the API: one with a token, and browsers with cookies.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/mail/mailtest"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/tenant"
)

// Env is a running app with one tenant.
type Env struct {
	App     *app.App
	Server  *httptest.Server
	Tenant  tenant.Tenant
	Token   string
	DataDir string
	Logs    *LogBuffer       // everything the app logged
	Mail    *mailtest.Server // everything the app mailed
	Now     *Clock           // the app's clock; tests may move it
}

// Clock is a settable clock, starting at the real time.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// Run runs fn on SQLite and on PostgreSQL.
func Run(t *testing.T, fn func(t *testing.T, env *Env)) {
	t.Helper()
	RunWith(t, nil, fn)
}

// RunWith is Run with a hook that may change the configuration and options
// before the app opens (see NewWith).
func RunWith(t *testing.T, hook func(*config.Config, *app.Options), fn func(t *testing.T, env *Env)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, NewWith(t, "", hook)) })
	t.Run("postgres", func(t *testing.T) { fn(t, NewWith(t, sqldbtest.PostgresURL(t), hook)) })
}

// New builds an app on databaseURL ("" for SQLite in a temp dir) with a
// tenant "acme", owner owner@acme.example and a token with every scope.
func New(t testing.TB, databaseURL string) *Env {
	t.Helper()
	return NewWith(t, databaseURL, nil)
}

// NewWith is New with a hook that may change the configuration and options
// before the app opens.
func NewWith(t testing.TB, databaseURL string, hook func(*config.Config, *app.Options)) *Env {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.DatabaseURL = databaseURL
	mailbox := mailtest.Start(t)
	cfg.SMTPURL = mailbox.URL
	logs := &LogBuffer{}
	clock := &Clock{}
	opt := app.Options{LogOutput: logs, Now: clock.Now, Audit: audit.Options{CheckpointEvery: 10},
		AuthRate: api.RateLimit{PerMinute: 1e6, Burst: 1e6}}
	if hook != nil {
		hook(&cfg, &opt)
	}
	a, err := app.Open(ctx, cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	jobs, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Mail.Run(jobs, 100*time.Millisecond); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	env := &Env{App: a, DataDir: a.Config.DataDir, Logs: logs, Mail: mailbox, Now: clock}
	env.Tenant, env.Token = env.AddTenant(t, "acme", "owner@acme.example")
	env.Server = httptest.NewTLSServer(a.Handler())
	t.Cleanup(env.Server.Close)
	return env
}

// AddUser creates a user in the env's tenant (with a password when pw is
// not empty).
func (e *Env) AddUser(t testing.TB, email, role, pw string) identity.User {
	t.Helper()
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
	u, err := e.App.Identity.CreateUser(ctx, e.Tenant.ID, identity.NewUser{Email: email, Role: role, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var linkToken = regexp.MustCompile(`#token=([A-Za-z0-9_-]{43})\b`)

// LinkToken waits for a mail to `to` whose subject contains subject and
// returns the secret of the one-time link in the newest such mail.
func (e *Env) LinkToken(t testing.TB, to, subject string) string {
	t.Helper()
	m := e.Mail.Wait(t, to, subject, 10*time.Second)
	sub := linkToken.FindStringSubmatch(m.Text)
	if sub == nil {
		t.Fatalf("no one-time link in the mail %q: %q", m.Subject, m.Text)
	}
	return sub[1]
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

// Password is the password of the owners AddTenant makes.
const Password = "correct horse battery staple 42"

// AddTenant creates a tenant with an owner (whose password is Password)
// and returns it with a token of the owner's.
func (e *Env) AddTenant(t testing.TB, slug, ownerEmail string) (tenant.Tenant, string) {
	t.Helper()
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
	tn, err := e.App.Tenants.Create(ctx, slug, strings.ToUpper(slug)+" Ltd", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.App.Identity.CreateUser(ctx, tn.ID, identity.NewUser{Email: ownerEmail, Role: "owner", Password: Password}); err != nil {
		t.Fatal(err)
	}
	token, _, err := e.App.Identity.CreateToken(ctx, tn.ID, ownerEmail, "test", nil, 366*24*time.Hour) // outlives tests that travel in time
	if err != nil {
		t.Fatal(err)
	}
	return tn, token
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

// LogBuffer collects the app's logs safely across goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Errors returns the logged lines at level ERROR.
func (l *LogBuffer) Errors() string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Files lists the regular files under dir (say, a file region), none
// when dir does not exist.
func Files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
