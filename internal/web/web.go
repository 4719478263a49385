// Package web is Custodia's pages: the console, server-rendered for the
// people of a tenant, signed in with the API's session cookie; and the
// privacy portal, for the people whose data a tenant holds. Every page is one
// handler and one template on a shared layout, parsed once at start-up
// from embedded files; every action is a plain form POST answered by a
// redirect, and names the API route whose rules it follows — access,
// re-authentication, rate limit — so that the console and the API refuse
// the same things and leave the same audit events. The console calls the
// domain services, never the API over HTTP. See ../../../shared/CONSOLE.md.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Route is one console page or action.
type Route struct {
	Method string
	Path   string // net/http pattern
	// Rule is whom the route serves: Public, SignedIn, Enrolling, or the
	// API route ("POST /api/v1/me/mfa/totp") whose access rule and guards
	// it applies, the one that does the same through the API.
	Rule    string
	Handler func(w http.ResponseWriter, r *http.Request) error
}

// Rules other than an API route.
const (
	Public    = ""          // anyone; a page by a mailed link checks the link
	Limited   = "limited"   // anyone, rate-limited per client address as the API's sign-in
	SignedIn  = "signed-in" // a fully signed-in person
	Enrolling = "enrolling" // a signed-in person, also one who must set up a second factor first
)

// Routes lists every console page and action.
func (c *Console) Routes() []Route {
	return []Route{
		{"GET", "/static/{name}", Public, c.static},
		{"GET", "/{$}", SignedIn, c.home},

		{"GET", "/login", Public, c.signInPage},
		{"POST", "/login", "POST /api/v1/auth/login", c.signIn},
		{"GET", "/login/second-factor", Public, c.secondFactorPage},
		{"POST", "/login/second-factor", "POST /api/v1/auth/mfa", c.secondFactor},
		{"POST", "/login/second-factor/sms", "POST /api/v1/auth/mfa/sms", c.sendSignInCode},
		{"GET", "/login/confirm", SignedIn, c.confirmPage},
		{"POST", "/login/confirm", "POST /api/v1/auth/reauth", c.confirm},
		{"POST", "/logout", "POST /api/v1/auth/logout", c.signOut},
		{"GET", "/login/reset", Public, c.resetRequestPage},
		{"POST", "/login/reset", "POST /api/v1/auth/password-reset", c.requestReset},
		{"GET", "/login/{tenant}/reset", Public, c.resetPage},
		{"POST", "/login/{tenant}/reset", "POST /api/v1/auth/password-reset/confirm", c.reset},
		{"GET", "/login/{tenant}/invitation", Public, c.invitationPage},
		{"POST", "/login/{tenant}/invitation", "POST /api/v1/auth/invitation/accept", c.acceptInvitation},

		{"GET", "/account/second-factor", Enrolling, c.factorsPage},
		{"POST", "/account/second-factor/totp", "POST /api/v1/me/mfa/totp", c.startTOTP},
		{"GET", "/account/second-factor/totp", Enrolling, c.totpPage},
		{"POST", "/account/second-factor/totp/confirm", "POST /api/v1/me/mfa/totp/confirm", c.confirmTOTP},
		{"POST", "/account/second-factor/sms", "POST /api/v1/me/mfa/sms", c.startSMS},
		{"GET", "/account/second-factor/sms", Enrolling, c.smsPage},
		{"POST", "/account/second-factor/sms/confirm", "POST /api/v1/me/mfa/sms/confirm", c.confirmSMS},
		{"POST", "/account/second-factor/passkey", "POST /api/v1/me/mfa/passkey", c.startPasskey},
		{"POST", "/account/second-factor/passkey/confirm", "POST /api/v1/me/mfa/passkey/confirm", c.confirmPasskey},
		{"GET", "/account/second-factor/{id}/remove", SignedIn, c.removeFactorPage},
		{"POST", "/account/second-factor/{id}/remove", "DELETE /api/v1/me/mfa/{id}", c.removeFactor},
		{"POST", "/account/second-factor/recovery-codes", "POST /api/v1/me/mfa/recovery-codes", c.newRecoveryCodes},

		{"GET", "/account", SignedIn, c.accountPage},
		{"GET", "/account/name", SignedIn, c.namePage},
		{"POST", "/account/name", "PATCH /api/v1/me", c.setName},
		{"GET", "/account/time-zone", SignedIn, c.zonePage},
		{"POST", "/account/time-zone", "PATCH /api/v1/me", c.setZone},
		{"GET", "/account/email", SignedIn, c.emailPage},
		{"POST", "/account/email", "PUT /api/v1/me/email", c.changeEmail},
		{"GET", "/account/password", SignedIn, c.passwordPage},
		{"POST", "/account/password", "PUT /api/v1/me/password", c.changePassword},
		{"GET", "/account/sessions", "GET /api/v1/me/sessions", c.sessionsPage},
		{"POST", "/account/sessions/{id}/end", "DELETE /api/v1/me/sessions/{id}", c.revokeSession},
		{"GET", "/account/tokens", "GET /api/v1/me/tokens", c.tokensPage},
		{"GET", "/account/tokens/new", SignedIn, c.newTokenPage},
		{"POST", "/account/tokens", "POST /api/v1/me/tokens", c.createToken},
		{"GET", "/account/tokens/{id}/revoke", "GET /api/v1/me/tokens", c.revokeTokenPage},
		{"POST", "/account/tokens/{id}/revoke", "DELETE /api/v1/me/tokens/{id}", c.revokeToken},
		{"GET", "/account/data", SignedIn, c.dataPage},
		{"POST", "/account/data", "GET /api/v1/me/export", c.downloadMine},
		{"GET", "/account/close", SignedIn, c.closePage},
		{"POST", "/account/close", "POST /api/v1/me/closure", c.closeAccount},
		{"POST", "/account/close/cancel", "DELETE /api/v1/me/closure", c.cancelClose},
		{"GET", "/users", "GET /api/v1/users", c.usersPage},
		{"GET", "/users/invite", "POST /api/v1/invitations", c.invitePage},
		{"GET", "/users/export", "GET /api/v1/users/export", c.exportUsers},
		{"GET", "/users/import", "POST /api/v1/users/import", c.importPage},
		{"POST", "/users/import", "POST /api/v1/users/import", c.importUsers},
		{"POST", "/users/invite", "POST /api/v1/invitations", c.invite},
		{"GET", "/users/{id}", "GET /api/v1/users/{id}", c.userPage},
		{"GET", "/users/{id}/role", "PATCH /api/v1/users/{id}", c.rolePage},
		{"POST", "/users/{id}/role", "PATCH /api/v1/users/{id}", c.setRole},
		{"GET", "/users/{id}/suspend", "PATCH /api/v1/users/{id}", c.suspendPage},
		{"POST", "/users/{id}/suspend", "PATCH /api/v1/users/{id}", c.setStatus(identity.StatusSuspended, "suspended")},
		{"POST", "/users/{id}/reactivate", "PATCH /api/v1/users/{id}", c.setStatus(identity.StatusActive, "reactivated")},
		{"POST", "/users/{id}/unlock", "POST /api/v1/users/{id}/unlock", c.unlock},
		{"GET", "/users/{id}/second-factors/reset", "POST /api/v1/users/{id}/mfa/reset", c.resetFactorsPage},
		{"POST", "/users/{id}/second-factors/reset", "POST /api/v1/users/{id}/mfa/reset", c.resetFactors},

		{"GET", "/groups", "GET /api/v1/groups", c.groupsPage},
		{"POST", "/groups", "POST /api/v1/groups", c.createGroup},
		{"GET", "/groups/{id}", "GET /api/v1/groups/{id}", c.groupPage},
		{"POST", "/groups/{id}/members", "PUT /api/v1/groups/{id}/members/{user}", c.addMember},
		{"POST", "/groups/{id}/members/{user}/admin", "PUT /api/v1/groups/{id}/members/{user}", c.setGroupAdmin(true)},
		{"POST", "/groups/{id}/members/{user}/member", "PUT /api/v1/groups/{id}/members/{user}", c.setGroupAdmin(false)},
		{"POST", "/groups/{id}/members/{user}/remove", "DELETE /api/v1/groups/{id}/members/{user}", c.removeMember},
		{"GET", "/tokens", "GET /api/v1/tokens", c.tenantTokensPage},
		{"GET", "/tokens/{id}/revoke", "DELETE /api/v1/tokens/{id}", c.revokeTenantTokenPage},
		{"POST", "/tokens/{id}/revoke", "DELETE /api/v1/tokens/{id}", c.revokeTenantToken},
		{"GET", "/settings/security", "GET /api/v1/settings/security", c.securityPage},
		{"POST", "/settings/security", "PATCH /api/v1/settings/security", c.saveSecurity},
		{"GET", "/settings/organisation", "GET /api/v1/settings/organisation", c.organisationPage},
		{"POST", "/settings/organisation", "PUT /api/v1/settings/organisation", c.saveOrganisation},
		{"GET", "/settings/controller", "GET /api/v1/settings/controller", c.controllerPage},
		{"POST", "/settings/controller", "PUT /api/v1/settings/controller", c.saveController},

		{"GET", "/contacts", "GET /api/v1/subjects", c.contactsPage},
		{"GET", "/contacts/import", "POST /api/v1/subjects/import", c.importContactsPage},
		{"POST", "/contacts/import", "POST /api/v1/subjects/import", c.importContacts},
		{"GET", "/contacts/export", "GET /api/v1/subjects/export", c.exportContacts},
		{"GET", "/contacts/{id}", "GET /api/v1/subjects/{id}", c.contactPage},
		{"GET", "/contacts/{id}/edit", "PATCH /api/v1/subjects/{id}", c.editContactPage},
		{"POST", "/contacts/{id}/edit", "PATCH /api/v1/subjects/{id}", c.editContact},
		{"GET", "/contacts/{id}/consents/{event}/receipt", "GET /api/v1/subjects/{id}/consents/{event}/receipt", c.receipt},
		{"GET", "/contacts/{id}/hold", "PUT /api/v1/subjects/{id}/legal-hold", c.reasonPage("contact-hold", "Put on legal hold")},
		{"POST", "/contacts/{id}/hold", "PUT /api/v1/subjects/{id}/legal-hold", c.holdContact},
		{"POST", "/contacts/{id}/hold/release", "DELETE /api/v1/subjects/{id}/legal-hold", c.releaseContact},
		{"GET", "/contacts/{id}/restrict", "PUT /api/v1/subjects/{id}/restriction", c.reasonPage("contact-restrict", "Restrict processing")},
		{"POST", "/contacts/{id}/restrict", "PUT /api/v1/subjects/{id}/restriction", c.restrictContact},
		{"POST", "/contacts/{id}/restrict/lift", "DELETE /api/v1/subjects/{id}/restriction", c.unrestrictContact},
		{"POST", "/contacts/{id}/export", "GET /api/v1/subjects/{id}/export", c.exportContact},
		{"GET", "/contacts/{id}/erase", "POST /api/v1/subjects/{id}/erase", c.erasePage},
		{"POST", "/contacts/{id}/erase", "POST /api/v1/subjects/{id}/erase", c.eraseContact},
		{"GET", "/contacts/{id}/erasure", "GET /api/v1/subjects/{id}/erasure", c.erasurePage},

		{"GET", "/requests", "GET /api/v1/requests", c.requestsPage},
		{"GET", "/requests/export.csv", "GET /api/v1/requests", c.exportRequests},
		{"POST", "/requests/bulk", "PATCH /api/v1/requests/{id}", c.bulkPage},
		{"POST", "/requests/bulk/apply", "PATCH /api/v1/requests/{id}", c.bulkApply},
		{"GET", "/requests/new", "POST /api/v1/requests", c.newRequestPage},
		{"POST", "/requests/new", "POST /api/v1/requests", c.createRequest},
		{"GET", "/requests/{id}", "GET /api/v1/requests/{id}", c.requestPage},
		{"POST", "/requests/{id}/verify", "PATCH /api/v1/requests/{id}", c.moveRequest(rights.Verified, "request-verified")},
		{"POST", "/requests/{id}/start", "PATCH /api/v1/requests/{id}", c.moveRequest(rights.InProgress, "request-started")},
		{"POST", "/requests/{id}/complete", "PATCH /api/v1/requests/{id}", c.moveRequest(rights.Completed, "request-completed")},
		{"POST", "/requests/{id}/assign", "PATCH /api/v1/requests/{id}", c.assignRequest},
		{"POST", "/requests/{id}/note", "PATCH /api/v1/requests/{id}", c.noteRequest},
		{"GET", "/requests/{id}/extend", "POST /api/v1/requests/{id}/extend", c.requestStepPage("request-extend", "Extend the deadline")},
		{"POST", "/requests/{id}/extend", "POST /api/v1/requests/{id}/extend", c.extendRequest},
		{"GET", "/requests/{id}/reject", "PATCH /api/v1/requests/{id}", c.requestStepPage("request-reject", "Reject the request")},
		{"POST", "/requests/{id}/reject", "PATCH /api/v1/requests/{id}", c.rejectRequest},
		{"POST", "/requests/{id}/deliver", "POST /api/v1/requests/{id}/deliver", c.deliverRequest},
		{"GET", "/objections", "GET /api/v1/objections", c.objectionsPage},
		{"POST", "/objections/{id}/{purpose}/uphold", "PUT /api/v1/subjects/{id}/objections/{purpose}", c.decideObjection(rights.ObjectionUpheld)},
		{"POST", "/objections/{id}/{purpose}/override", "PUT /api/v1/subjects/{id}/objections/{purpose}", c.decideObjection(rights.ObjectionOverridden)},

		{"GET", "/consent", "GET /api/v1/consent/report", c.consentReportPage},
		{"GET", "/consent/history.csv", "GET /api/v1/consent/events", c.consentCSV},
		{"GET", "/campaigns", "GET /api/v1/campaigns", c.campaignsPage},
		{"GET", "/campaigns/new", "POST /api/v1/campaigns", c.newCampaignPage},
		{"POST", "/campaigns/preview", "POST /api/v1/campaigns/preview", c.previewCampaign},
		{"POST", "/campaigns", "POST /api/v1/campaigns", c.startCampaign},
		{"GET", "/campaigns/{id}", "GET /api/v1/campaigns/{id}", c.campaignPage},

		{"GET", "/register", "GET /api/v1/purposes", c.registerPage},
		{"GET", "/register/export", "GET /api/v1/register", c.exportRegister},
		{"GET", "/register/new", "POST /api/v1/purposes", c.newPurposePage},
		{"POST", "/register/new", "POST /api/v1/purposes", c.createPurpose},
		{"GET", "/register/{key}", "GET /api/v1/purposes/{key}", c.purposePage},
		{"GET", "/register/{key}/edit", "PATCH /api/v1/purposes/{key}", c.editPurposePage},
		{"POST", "/register/{key}/edit", "PATCH /api/v1/purposes/{key}", c.updatePurpose},
		{"POST", "/register/{key}/notices", "POST /api/v1/purposes/{key}/notices", c.addNotice},

		{"GET", "/retention", "GET /api/v1/retention/policies", c.retentionPage},
		{"POST", "/retention/settings", "PUT /api/v1/settings/retention", c.saveRetentionSettings},
		{"GET", "/retention/new", "POST /api/v1/retention/policies", c.newPolicyPage},
		{"POST", "/retention/new", "POST /api/v1/retention/policies", c.createPolicy},
		{"POST", "/retention/policies/{id}/enable", "PATCH /api/v1/retention/policies/{id}", c.enablePolicy(true)},
		{"POST", "/retention/policies/{id}/disable", "PATCH /api/v1/retention/policies/{id}", c.enablePolicy(false)},
		{"POST", "/retention/policies/{id}/delete", "DELETE /api/v1/retention/policies/{id}", c.deletePolicy},
		{"POST", "/retention/preview", "POST /api/v1/retention/run", c.previewRetention},
		{"POST", "/retention/run", "POST /api/v1/retention/run", c.runRetention},

		{"GET", "/spaces", "GET /api/v1/spaces", c.spacesPage},
		{"POST", "/spaces", "POST /api/v1/spaces", c.createSpace},
		{"GET", "/spaces/{id}", "GET /api/v1/spaces/{id}", c.folderPage},
		{"POST", "/spaces/{id}/folders", "POST /api/v1/spaces/{id}/folders", c.makeFolder},
		{"POST", "/spaces/{id}/upload", "PUT /api/v1/spaces/{id}/files/{path...}", c.upload},
		{"GET", "/spaces/{id}/file", "GET /api/v1/spaces/{id}/files/{path...}", c.filePage},
		{"GET", "/spaces/{id}/download", "GET /api/v1/spaces/{id}/files/{path...}", c.downloadFile},
		{"POST", "/spaces/{id}/move", "PATCH /api/v1/spaces/{id}/files/{path...}", c.moveItem},
		{"POST", "/spaces/{id}/delete", "DELETE /api/v1/spaces/{id}/files/{path...}", c.trashItem},
		{"POST", "/spaces/{id}/versions/{file}/{version}/restore", "POST /api/v1/files/{id}/versions/{version}/restore", c.restoreVersion},
		{"GET", "/spaces/{id}/grants", "GET /api/v1/spaces/{id}/grants", c.grantsPage},
		{"POST", "/spaces/{id}/grants", "POST /api/v1/spaces/{id}/grants", c.grant},
		{"POST", "/spaces/{id}/grants/{grant}/revoke", "DELETE /api/v1/spaces/{id}/grants/{grant}", c.revokeGrant},
		{"POST", "/spaces/{id}/migration", "POST /api/v1/spaces/{id}/migration", c.migrateSpace},
		{"GET", "/trash", "GET /api/v1/trash", c.trashPage},
		{"POST", "/trash/{item}/restore", "POST /api/v1/trash/{item}/restore", c.restoreTrash},
		{"POST", "/trash/{item}/purge", "DELETE /api/v1/trash/{item}", c.purgeTrash},
		{"GET", "/residency", "GET /api/v1/residency", c.residencyPage},

		{"GET", "/audit", "GET /api/v1/audit", c.auditPage},
		{"POST", "/audit/verify", "GET /api/v1/audit/verify", c.auditVerify},

		{"GET", "/account/email/{token}", Public, c.emailLinkPage},
		{"POST", "/account/email/{token}", Public, c.useEmailLink},
		{"GET", "/account/email-undo/{token}", Public, c.emailLinkPage},
		{"POST", "/account/email-undo/{token}", Public, c.useEmailLink},

		{"GET", "/privacy/{tenant}", Public, c.portalPage},
		{"POST", "/privacy/{tenant}/requests", Limited, c.portalIntake},
		{"GET", "/privacy/{tenant}/sent", Public, c.portalSent},
		{"GET", "/privacy/{tenant}/confirm/{token}", Public, c.confirmPortalPage},
		{"POST", "/privacy/{tenant}/confirm/{token}", Public, c.confirmPortal},
		{"GET", "/privacy/{tenant}/download/{token}", Public, c.downloadPage},
		{"POST", "/privacy/{tenant}/download/{token}", Public, c.download},
		{"GET", "/privacy/{tenant}/consent/{token}", Public, c.consentPage},
		{"POST", "/privacy/{tenant}/consent/{token}", Public, c.answerConsent},
		{"GET", "/privacy/{tenant}/withdraw/{purpose}/{token}", Public, c.withdrawPage},
		{"POST", "/privacy/{tenant}/withdraw/{purpose}/{token}", Public, c.withdraw},
	}
}

// Console serves the pages.
type Console struct {
	api      *api.API
	identity *identity.Service
	subjects *subject.Service
	tenants  *tenant.Service
	rights   *rights.Service
	consent  *consent.Service
	register *register.Service
	retain   *retention.Service
	files    *files.Service
	spaces   *space.Service
	logger   *slog.Logger
	now      func() time.Time
	failing  func(context.Context) ([]string, error)
	backups  *backup.Keeper
	pages    pages
	assets   assets
	mux      *http.ServeMux
}

// Deps are what the console is built from.
type Deps struct {
	API      *api.API // the rules of the routes, sessions, rate limits
	Identity *identity.Service
	Subjects *subject.Service
	Tenants  *tenant.Service
	Rights   *rights.Service
	Consent  *consent.Service
	Register *register.Service
	Retain   *retention.Service
	Files    *files.Service
	Spaces   *space.Service
	Logger   *slog.Logger
	Now      func() time.Time
	// Backups, when set, say how old the newest backup is (home).
	Backups *backup.Keeper
	// FailingJobs names the background jobs whose last run failed.
	FailingJobs func(context.Context) ([]string, error)
}

// New parses the templates and static files; a missing one is an error.
func New(d Deps) (*Console, error) {
	c := &Console{api: d.API, identity: d.Identity, subjects: d.Subjects, tenants: d.Tenants, rights: d.Rights, consent: d.Consent, register: d.Register, retain: d.Retain, files: d.Files, spaces: d.Spaces, logger: d.Logger, now: d.Now, failing: d.FailingJobs, backups: d.Backups}
	var err error
	if c.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	if c.pages, err = parsePages(c.assets); err != nil {
		return nil, err
	}
	c.mux = http.NewServeMux()
	for _, rt := range c.Routes() {
		if _, err := c.rule(rt); err != nil {
			return nil, err
		}
		c.mux.Handle(rt.Method+" "+rt.Path, c.endpoint(rt))
	}
	c.mux.Handle("/", c.endpoint(Route{Handler: c.notFound}))
	return c, nil
}

// Handler serves the routes, and a page for every other path. It runs
// inside the API's handler (api.API.Handler), which adds the request id,
// logs and metrics.
func (c *Console) Handler() http.Handler { return c.mux }
