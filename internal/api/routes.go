// Package api is Custodia's REST API under /api/v1, plus the operational
// endpoints (/healthz, /readyz, /metrics). Every endpoint is listed in
// Routes, on one screen, with the scope it needs; the OpenAPI document
// served at /api/v1/openapi.json is tested against that list.
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// Route is one endpoint.
type Route struct {
	Method  string
	Path    string // net/http pattern, also the OpenAPI path
	Scope   string // token scope required; "" = public
	Handler func(w http.ResponseWriter, r *http.Request) error
}

// Routes lists every endpoint.
func (a *API) Routes() []Route {
	return []Route{
		{"GET", "/healthz", "", a.healthz},
		{"GET", "/readyz", "", a.readyz},
		{"GET", "/metrics", "", a.metrics},
		{"GET", "/api/v1/openapi.json", "", a.openapi},

		{"POST", "/api/v1/subjects", "subjects:write", a.createSubject},
		{"GET", "/api/v1/subjects", "subjects:read", a.listSubjects},
		{"GET", "/api/v1/subjects/{id}", "subjects:read", a.getSubject},
		{"PATCH", "/api/v1/subjects/{id}", "subjects:write", a.rectifySubject},

		{"GET", "/api/v1/audit", "audit:read", a.listAudit},
		{"GET", "/api/v1/audit/verify", "audit:read", a.verifyAudit},
	}
}

// API serves the routes.
type API struct {
	db       *sqldb.DB
	keys     *keyring.Keyring
	subjects *subject.Service
	identity *identity.Service
	log      *audit.Log
	audit    *audit.Reader
	logger   *slog.Logger
	metricsH http.Handler
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	now      func() time.Time
}

// Deps are what the API is built from.
type Deps struct {
	DB       *sqldb.DB
	Keys     *keyring.Keyring
	Subjects *subject.Service
	Identity *identity.Service
	Log      *audit.Log
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
}

// New builds the API and registers its metrics.
func New(d Deps) *API {
	a := &API{
		db: d.DB, keys: d.Keys, subjects: d.Subjects, identity: d.Identity, log: d.Log,
		audit: audit.NewReader(d.DB, d.Keys), logger: d.Logger, now: d.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custodia_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "custodia_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method", "route"}),
	}
	d.Registry.MustRegister(a.requests, a.latency)
	a.metricsH = promhandler(d.Registry)
	return a
}

// Handler returns the API with its middleware: request id, security
// headers, logging, metrics and panic recovery outside; authentication and
// scope checks per route.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.Routes() {
		mux.Handle(rt.Method+" "+rt.Path, a.endpoint(rt))
	}
	return a.observe(a.unmatched(mux))
}
