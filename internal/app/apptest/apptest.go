// Package apptest builds a whole Custodia for tests — on SQLite and on a
// throwaway PostgreSQL — with a tenant, its owner and an API token, and
// offers a small HTTP client for the API.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
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
	Logs    *LogBuffer // everything the app logged
}

// Run runs fn on SQLite and on PostgreSQL.
func Run(t *testing.T, fn func(t *testing.T, env *Env)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, New(t, "")) })
	t.Run("postgres", func(t *testing.T) { fn(t, New(t, sqldbtest.PostgresURL(t))) })
}

// New builds an app on databaseURL ("" for SQLite in a temp dir) with a
// tenant "acme", owner owner@acme.example and a token with every scope.
func New(t testing.TB, databaseURL string) *Env {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.DatabaseURL = databaseURL
	logs := &LogBuffer{}
	a, err := app.Open(ctx, cfg, app.Options{LogOutput: logs, Audit: audit.Options{CheckpointEvery: 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	env := &Env{App: a, DataDir: a.Config.DataDir, Logs: logs}
	env.Tenant, env.Token = env.AddTenant(t, "acme", "owner@acme.example")
	env.Server = httptest.NewServer(a.Handler())
	t.Cleanup(env.Server.Close)
	return env
}

// AddTenant creates a tenant with an owner and returns it with a token.
func (e *Env) AddTenant(t testing.TB, slug, ownerEmail string) (tenant.Tenant, string) {
	t.Helper()
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
	tn, err := e.App.Tenants.Create(ctx, slug, strings.ToUpper(slug)+" Ltd", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.App.Identity.CreateUser(ctx, tn.ID, ownerEmail, "owner"); err != nil {
		t.Fatal(err)
	}
	token, _, err := e.App.Identity.CreateToken(ctx, tn.ID, ownerEmail, "test", nil, 24*time.Hour)
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
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.Server.Client().Do(req)
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
