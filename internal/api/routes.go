// Package api is Custodia's REST API under /api/v1, plus the operational
// endpoints (/healthz, /readyz, /metrics). Every endpoint is listed in
// Routes, on one screen, with the scope it needs; the OpenAPI document
// served at /api/v1/openapi.json is tested against that list.
package api

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/export"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Route is one endpoint.
type Route struct {
	Method  string
	Path    string // net/http pattern, also the OpenAPI path
	Access  string // Public, Session, Enrol, or the scopes (space-separated) a token or role must all hold
	Guard   Guard  // sensitive (recent re-authentication), limited (rate-limited per client address)
	Handler func(w http.ResponseWriter, r *http.Request) error
}

// Guard is what a route asks beyond its access rule.
type Guard uint8

// Sensitive routes need a session that re-authenticated recently; never a token.
func (rt Route) Sensitive() bool { return rt.Guard&sensitive != 0 }

// Limited routes are rate-limited per client address (sign-in, the portal's form).
func (rt Route) Limited() bool { return rt.Guard&limited != 0 }

// Access rules other than a scope.
const (
	Public  = ""        // anyone; the handler checks what it needs
	Session = "session" // a signed-in person (cookie), fully signed in
	Enrol   = "enrol"   // a signed-in person, also one who must set up a second factor first
)

// The guards.
const (
	anytime   Guard = 0
	sensitive Guard = 1 << iota // needs recent re-authentication
	limited                     // rate-limited per client address (AuthRate)
)

// Routes lists every endpoint.
func (a *API) Routes() []Route {
	return []Route{
		{"GET", "/healthz", Public, anytime, a.healthz},
		{"GET", "/readyz", Public, anytime, a.readyz},
		{"GET", "/metrics", Public, anytime, a.metrics},
		{"GET", "/api/v1/openapi.json", Public, anytime, a.openapi},

		{"POST", "/api/v1/auth/login", Public, limited, a.login},
		{"POST", "/api/v1/auth/mfa", Public, limited, a.mfa},
		{"POST", "/api/v1/auth/mfa/sms", Public, limited, a.sendSMSCode},
		{"POST", "/api/v1/auth/mfa/passkey", Public, limited, a.passkeyChallenge},
		{"POST", "/api/v1/auth/reauth", Session, limited, a.reauth},
		{"POST", "/api/v1/auth/logout", Public, limited, a.logout},
		{"POST", "/api/v1/auth/invitation", Public, limited, a.invitation},
		{"POST", "/api/v1/auth/invitation/accept", Public, limited, a.acceptInvitation},
		{"POST", "/api/v1/auth/password-reset", Public, limited, a.requestReset},
		{"POST", "/api/v1/auth/password-reset/confirm", Public, limited, a.resetPassword},

		{"GET", "/api/v1/me", Enrol, anytime, a.me},
		{"PATCH", "/api/v1/me", Session, anytime, a.updateMe},
		{"PUT", "/api/v1/me/password", Session, sensitive, a.changePassword},
		{"PUT", "/api/v1/me/email", Session, sensitive, a.changeMyEmail},
		{"GET", "/api/v1/me/export", Session, sensitive, a.exportMe},
		{"POST", "/api/v1/me/closure", Session, sensitive, a.closeMe},
		{"DELETE", "/api/v1/me/closure", Session, anytime, a.cancelCloseMe},
		{"GET", "/api/v1/me/sessions", Session, anytime, a.listSessions},
		{"DELETE", "/api/v1/me/sessions/{id}", Session, anytime, a.revokeSession},
		{"GET", "/api/v1/me/mfa", Enrol, anytime, a.listFactors},
		{"GET", "/api/v1/me/mfa/totp", Enrol, anytime, a.totpStatus},
		{"POST", "/api/v1/me/mfa/totp", Enrol, sensitive, a.enrolTOTP},
		{"POST", "/api/v1/me/mfa/totp/confirm", Enrol, anytime, a.confirmTOTP},
		{"POST", "/api/v1/me/mfa/sms", Enrol, sensitive, a.enrolSMS},
		{"POST", "/api/v1/me/mfa/sms/confirm", Enrol, anytime, a.confirmSMS},
		{"POST", "/api/v1/me/mfa/passkey", Enrol, sensitive, a.enrolPasskey},
		{"POST", "/api/v1/me/mfa/passkey/confirm", Enrol, anytime, a.confirmPasskey},
		{"DELETE", "/api/v1/me/mfa/{id}", Session, sensitive, a.removeFactor},
		{"POST", "/api/v1/me/mfa/recovery-codes", Session, sensitive, a.regenerateRecoveryCodes},
		{"GET", "/api/v1/me/tokens", Session, anytime, a.listTokens},
		{"POST", "/api/v1/me/tokens", Session, sensitive, a.createToken},
		{"DELETE", "/api/v1/me/tokens/{id}", Session, anytime, a.revokeToken},

		{"GET", "/api/v1/users", "users:read", anytime, a.listUsers},
		{"POST", "/api/v1/users", "users:write", anytime, a.createUser},
		{"GET", "/api/v1/users/export", "users:read", sensitive, a.exportUsers},
		{"POST", "/api/v1/users/import", "users:write", anytime, a.importUsers},
		{"GET", "/api/v1/users/{id}", "users:read", anytime, a.getUser},
		{"PATCH", "/api/v1/users/{id}", "users:write", sensitive, a.updateUser},
		{"POST", "/api/v1/users/{id}/erase", "users:write", sensitive, a.eraseUser},
		{"POST", "/api/v1/users/{id}/unlock", "users:write", anytime, a.unlockUser},
		{"POST", "/api/v1/users/{id}/mfa/reset", "users:write", sensitive, a.resetFactors},
		{"POST", "/api/v1/users/{id}/invitation", "users:write", anytime, a.resendInvitation},
		{"POST", "/api/v1/invitations", "users:write", anytime, a.invite},
		{"GET", "/api/v1/tokens", "users:read", anytime, a.listTenantTokens},
		{"DELETE", "/api/v1/tokens/{id}", "users:write", anytime, a.revokeTenantToken},

		{"GET", "/api/v1/groups", "groups:read", anytime, a.listGroups},
		{"POST", "/api/v1/groups", "groups:write", anytime, a.createGroup},
		{"GET", "/api/v1/groups/{id}", "groups:read", anytime, a.getGroup},
		{"PATCH", "/api/v1/groups/{id}", "groups:write", anytime, a.renameGroup},
		{"DELETE", "/api/v1/groups/{id}", "groups:write", anytime, a.deleteGroup},
		{"PUT", "/api/v1/groups/{id}/members/{user}", "groups:write", anytime, a.setMember},
		{"DELETE", "/api/v1/groups/{id}/members/{user}", "groups:write", anytime, a.removeMember},

		{"POST", "/api/v1/spaces", "spaces:write", anytime, a.createSpace},
		{"GET", "/api/v1/spaces", "spaces:read", anytime, a.listSpaces},
		{"GET", "/api/v1/spaces/{id}", "spaces:read", anytime, a.getSpace},
		{"PATCH", "/api/v1/spaces/{id}", "spaces:write", anytime, a.renameSpace},
		{"GET", "/api/v1/spaces/{id}/grants", "spaces:read", anytime, a.listGrants},
		{"POST", "/api/v1/spaces/{id}/grants", "spaces:write", anytime, a.grant},
		{"DELETE", "/api/v1/spaces/{id}/grants/{grant}", "spaces:write", anytime, a.revoke},
		{"DELETE", "/api/v1/spaces/{id}", "spaces:write", anytime, a.trashSpace},
		{"POST", "/api/v1/spaces/{id}/migration", "spaces:write", anytime, a.migrateSpace},
		{"GET", "/api/v1/spaces/{id}/migration", "spaces:read", anytime, a.migrationStatus},
		{"POST", "/api/v1/spaces/{id}/folders", "spaces:write", anytime, a.makeFolder},
		{"GET", "/api/v1/spaces/{id}/export", "spaces:read", anytime, a.exportZip},
		{"POST", "/api/v1/spaces/{id}/import", "spaces:write", anytime, a.importZip},
		{"PUT", "/api/v1/spaces/{id}/files/{path...}", "spaces:write", anytime, a.upload},
		{"POST", "/api/v1/spaces/{id}/uploads", "spaces:write", anytime, a.startUpload},
		{"GET", "/api/v1/uploads/{id}", "spaces:write", anytime, a.getUpload},
		{"PATCH", "/api/v1/uploads/{id}", "spaces:write", anytime, a.appendUpload},
		{"DELETE", "/api/v1/uploads/{id}", "spaces:write", anytime, a.cancelUpload},
		{"GET", "/api/v1/spaces/{id}/files/{path...}", "spaces:read", anytime, a.getFile},
		{"PATCH", "/api/v1/spaces/{id}/files/{path...}", "spaces:write", anytime, a.moveFile},
		{"DELETE", "/api/v1/spaces/{id}/files/{path...}", "spaces:write", anytime, a.trashFile},
		{"GET", "/api/v1/files/{id}/versions", "spaces:read", anytime, a.listVersions},
		{"GET", "/api/v1/files/{id}/versions/{version}", "spaces:read", anytime, a.downloadVersion},
		{"POST", "/api/v1/files/{id}/versions/{version}/restore", "spaces:write", anytime, a.restoreVersion},
		{"GET", "/api/v1/files/{id}/grants", "spaces:read", anytime, a.listFolderGrants},
		{"POST", "/api/v1/files/{id}/grants", "spaces:write", anytime, a.grantFolder},
		{"DELETE", "/api/v1/files/{id}/grants/{grant}", "spaces:write", anytime, a.revokeFolder},
		{"GET", "/api/v1/shared", "spaces:read", anytime, a.listShared},
		{"GET", "/api/v1/files/{id}/subjects", "subjects:read", anytime, a.listLinks},
		{"PUT", "/api/v1/files/{id}/subjects/{subject}", "subjects:write", anytime, a.link},
		{"DELETE", "/api/v1/files/{id}/subjects/{subject}", "subjects:write", anytime, a.unlink},
		{"GET", "/api/v1/trash", "spaces:read", anytime, a.listTrash},
		{"POST", "/api/v1/trash/{item}/restore", "spaces:write", anytime, a.restoreTrash},
		{"DELETE", "/api/v1/trash/{item}", "spaces:write", sensitive, a.purgeTrash},
		{"GET", "/api/v1/residency", "settings:read", anytime, a.residency},

		{"GET", "/api/v1/taxonomy", "purposes:read", anytime, a.taxonomy},
		{"POST", "/api/v1/purposes", "purposes:write", anytime, a.createPurpose},
		{"GET", "/api/v1/purposes", "purposes:read", anytime, a.listPurposes},
		{"GET", "/api/v1/purposes/{key}", "purposes:read", anytime, a.getPurpose},
		{"PATCH", "/api/v1/purposes/{key}", "purposes:write", anytime, a.updatePurpose},
		{"GET", "/api/v1/purposes/{key}/notices", "purposes:read", anytime, a.listNotices},
		{"POST", "/api/v1/purposes/{key}/notices", "purposes:write", anytime, a.addNotice},
		{"GET", "/api/v1/register", "purposes:read", anytime, a.exportRegister},

		{"GET", "/api/v1/settings/security", "settings:read", anytime, a.getSecurity},
		{"PATCH", "/api/v1/settings/security", "settings:write", sensitive, a.patchSecurity},
		{"GET", "/api/v1/settings/organisation", "settings:read", anytime, a.getOrganisation},
		{"PUT", "/api/v1/settings/organisation", "settings:write", anytime, a.putOrganisation},
		{"GET", "/api/v1/settings/controller", "settings:read", anytime, a.getController},
		{"PUT", "/api/v1/settings/controller", "settings:write", anytime, a.putController},
		{"GET", "/api/v1/settings/retention", "settings:read", anytime, a.getRetentionSettings},
		{"PUT", "/api/v1/settings/retention", "settings:write", anytime, a.putRetentionSettings},
		{"GET", "/api/v1/retention/policies", "settings:read", anytime, a.listPolicies},
		{"POST", "/api/v1/retention/policies", "settings:write", anytime, a.createPolicy},
		{"PATCH", "/api/v1/retention/policies/{id}", "settings:write", anytime, a.updatePolicy},
		{"DELETE", "/api/v1/retention/policies/{id}", "settings:write", anytime, a.deletePolicy},
		{"POST", "/api/v1/retention/run", "settings:write", anytime, a.runRetention},

		{"POST", "/api/v1/subjects", "subjects:write", anytime, a.createSubject},
		{"GET", "/api/v1/subjects", "subjects:read", anytime, a.listSubjects},
		{"POST", "/api/v1/subjects/import", "subjects:write", anytime, a.importSubjects},
		{"GET", "/api/v1/subjects/export", "subjects:read", sensitive, a.exportSubjects},
		{"GET", "/api/v1/subjects/{id}", "subjects:read", anytime, a.getSubject},
		{"PATCH", "/api/v1/subjects/{id}", "subjects:write", anytime, a.rectifySubject},
		{"GET", "/api/v1/subjects/{id}/export", "subjects:export", anytime, a.exportSubject},
		{"POST", "/api/v1/subjects/{id}/erase", "subjects:write", anytime, a.eraseSubject},
		{"GET", "/api/v1/subjects/{id}/erasure", "subjects:read", anytime, a.erasureCertificate},
		{"GET", "/api/v1/subjects/{id}/files", "subjects:read spaces:read", anytime, a.subjectFiles},
		{"POST", "/api/v1/subjects/{id}/bounces", "subjects:write", anytime, a.recordBounce},
		{"PUT", "/api/v1/subjects/{id}/legal-hold", "subjects:write", anytime, a.holdSubject},
		{"DELETE", "/api/v1/subjects/{id}/legal-hold", "subjects:write", anytime, a.releaseSubject},
		{"PUT", "/api/v1/subjects/{id}/restriction", "subjects:write", anytime, a.restrictSubject},
		{"DELETE", "/api/v1/subjects/{id}/restriction", "subjects:write", anytime, a.unrestrictSubject},
		{"PUT", "/api/v1/subjects/{id}/objections/{purpose}", "subjects:write", anytime, a.decideObjection},
		{"GET", "/api/v1/subjects/{id}/processing", "subjects:read", anytime, a.processing},
		{"POST", "/api/v1/subjects/{id}/consents", "subjects:write", anytime, a.recordConsent},
		{"GET", "/api/v1/subjects/{id}/consents", "subjects:read", anytime, a.consentLedger},
		{"GET", "/api/v1/subjects/{id}/consents/verify", "subjects:read", anytime, a.verifyConsent},
		{"GET", "/api/v1/subjects/{id}/consents/{event}/receipt", "subjects:read", anytime, a.consentReceipt},
		{"GET", "/api/v1/consent/report", "subjects:read", anytime, a.consentReport},
		{"GET", "/api/v1/consent/events", "subjects:read", anytime, a.consentHistory},
		{"POST", "/api/v1/campaigns", "subjects:write", anytime, a.startCampaign},
		{"POST", "/api/v1/campaigns/preview", "subjects:read", anytime, a.previewCampaign},
		{"GET", "/api/v1/campaigns", "subjects:read", anytime, a.listCampaigns},
		{"GET", "/api/v1/campaigns/{id}", "subjects:read", anytime, a.getCampaign},

		{"GET", "/privacy/{tenant}/keys", Public, anytime, a.receiptKeys},

		{"POST", "/api/v1/requests", "subjects:write", anytime, a.createRequest},
		{"GET", "/api/v1/requests", "subjects:read", anytime, a.listRequests},
		{"GET", "/api/v1/requests/{id}", "subjects:read", anytime, a.getRequest},
		{"PATCH", "/api/v1/requests/{id}", "subjects:write", anytime, a.updateRequest},
		{"POST", "/api/v1/requests/{id}/extend", "subjects:write", anytime, a.extendRequest},
		{"POST", "/api/v1/requests/{id}/deliver", "subjects:write", anytime, a.deliverRequest},
		{"GET", "/api/v1/objections", "subjects:read", anytime, a.listObjections},

		{"GET", "/api/v1/audit", "audit:read", anytime, a.listAudit},
		{"GET", "/api/v1/audit/verify", "audit:read", anytime, a.verifyAudit},
	}
}

// API serves the routes.
type API struct {
	db        *sqldb.DB
	keys      *keyring.Keyring
	subjects  *subject.Service
	identity  *identity.Service
	spaces    *space.Service
	files     *files.Service
	register  *register.Service
	consent   *consent.Service
	retain    *retention.Service
	backups   *backup.Keeper
	rights    *rights.Service
	export    *export.Service
	tenants   *tenant.Service
	log       *audit.Log
	audit     *audit.Reader
	logger    *slog.Logger
	metricsH  http.Handler
	byKey     map[string]Route // the routes by "METHOD /path"
	csrf      *http.CrossOriginProtection
	limiter   *limiter
	proxies   []netip.Prefix
	storage   []Location
	freeSpace func(string) (int64, error)
	minFree   int64
	requests  *prometheus.CounterVec
	abandoned *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	now       func() time.Time
}

// Deps are what the API is built from.
type Deps struct {
	DB        *sqldb.DB
	Keys      *keyring.Keyring
	Subjects  *subject.Service
	Identity  *identity.Service
	Spaces    *space.Service
	Files     *files.Service
	Register  *register.Service
	Consent   *consent.Service
	Retention *retention.Service
	Backups   *backup.Keeper // nil: no backups listed
	Rights    *rights.Service
	Export    *export.Service
	Tenants   *tenant.Service
	Log       *audit.Log
	Logger    *slog.Logger
	Registry  *prometheus.Registry
	Now       func() time.Time

	TrustedProxies []netip.Prefix // whose X-Forwarded-For is believed
	AuthRate       RateLimit      // per-address limit on /api/v1/auth/*

	Storage   []Location                       // local folders watched for free space
	FreeSpace func(path string) (int64, error) // default FreeSpace
	MinFree   int64                            // bytes below which /readyz fails
}

// New builds the API and registers its metrics.
func New(d Deps) (*API, error) {
	a := &API{
		db: d.DB, keys: d.Keys, subjects: d.Subjects, identity: d.Identity, spaces: d.Spaces, files: d.Files, log: d.Log,
		register: d.Register, consent: d.Consent, retain: d.Retention, backups: d.Backups, rights: d.Rights, export: d.Export, tenants: d.Tenants,
		audit: audit.NewReader(d.DB, d.Keys), logger: d.Logger, now: d.Now,
		csrf: http.NewCrossOriginProtection(), limiter: newLimiter(d.AuthRate), proxies: d.TrustedProxies,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custodia_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"method", "route", "code"}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custodia_http_requests_abandoned_total", Help: "Requests whose client hung up before the answer, by route (logged at INFO, counted as 499).",
		}, []string{"method", "route"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "custodia_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method", "route"}),
	}
	a.storage, a.freeSpace, a.minFree = d.Storage, d.FreeSpace, d.MinFree
	if a.freeSpace == nil {
		a.freeSpace = FreeSpace
	}
	d.Registry.MustRegister(a.requests, a.abandoned, a.latency)
	a.storageMetrics(d.Registry)
	a.backupMetrics(d.Registry)
	a.byKey = map[string]Route{}
	for _, rt := range a.Routes() {
		a.byKey[rt.Method+" "+rt.Path] = rt
	}
	a.metricsH = promhandler(d.Registry)
	return a, nil
}

// Handler returns the API with its middleware: request id, security
// headers, logging, metrics and panic recovery outside; authentication and
// scope checks per route. Requests for no route of the API and outside
// its paths (/api/, /healthz, /readyz, /metrics) go to pages — the
// console's handler — under the same request id, logs and metrics.
func (a *API) Handler(pages http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.Routes() {
		mux.Handle(rt.Method+" "+rt.Path, a.endpoint(rt))
	}
	return a.observe(a.unmatched(mux, pages))
}
