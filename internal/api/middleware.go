package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/subject"
)

func promhandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe adds the request id and security headers, recovers panics, and
// logs and counts every request. Logs name the route pattern, never the URL:
// query strings may carry personal data (?email=).
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := httpio.NewRequestID(r)
		ctx := audit.WithRequestID(httpio.WithRequestID(r.Context(), id), id)
		r = r.WithContext(ctx)
		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Cache-Control", "no-store")
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == http.ErrAbortHandler { // a handler cut its response on purpose: let the server drop the connection
				defer panic(p)
			} else if p != nil {
				a.logger.ErrorContext(ctx, "panic", "request_id", id, "route", r.Pattern, "panic", fmt.Sprint(p))
				if sw.code == 0 {
					httpio.Error(sw, r, a.logger, fmt.Errorf("panic: %v", p))
				}
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "unmatched"
			}
			route = strings.TrimPrefix(route, r.Method+" ")
			d := time.Since(start)
			a.requests.WithLabelValues(r.Method, route, strconv.Itoa(sw.code)).Inc()
			a.latency.WithLabelValues(r.Method, route).Observe(d.Seconds())
			a.logger.InfoContext(ctx, "request", "request_id", id, "method", r.Method, "route", route,
				"status", sw.code, "bytes", sw.bytes, "duration_ms", float64(d.Microseconds())/1000)
		}()
		next.ServeHTTP(sw, r)
	})
}

type principalKey struct{}

func principal(r *http.Request) identity.Principal {
	p, _ := r.Context().Value(principalKey{}).(identity.Principal)
	return p
}

// endpoint authenticates, checks access, sets the audit actor and answers
// the handler's error.
func (a *API) endpoint(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.serve(rt, w, r); err != nil {
			if abandoned(r, err) {
				// The client hung up and the work stopped with it: not a
				// fault of ours. Nobody reads this answer; it marks the
				// request 499 (as nginx does) in the request log and metrics.
				a.abandoned.WithLabelValues(r.Method, strings.TrimPrefix(r.Pattern, r.Method+" ")).Inc()
				a.logger.InfoContext(r.Context(), "request abandoned by the client", "request_id", httpio.RequestID(r.Context()),
					"route", r.Pattern, "err", err.Error())
				w.WriteHeader(StatusClientClosedRequest)
				return
			}
			if errs.KindOf(err) == errs.TooManyRequests {
				w.Header().Set("Retry-After", "60")
			}
			httpio.Error(w, r, a.logger, err)
		}
	})
}

// StatusClientClosedRequest is how a request its client gave up on is
// counted and logged (nginx's 499); the client never sees it.
const StatusClientClosedRequest = 499

// abandoned tells whether err is the consequence of the client going away:
// the request's context ended and the error is that, or an unclassified
// failure it caused (a query cut short, a connection closed under it).
func abandoned(r *http.Request, err error) bool {
	if r.Context().Err() == nil {
		return false
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errs.KindOf(err) == errs.Internal
}

// Cookie names. __Host- cookies are Secure, host-only and Path=/.
const (
	SessionCookie = "__Host-custodia_session"
	DeviceCookie  = "__Host-custodia_device"
)

func (a *API) serve(rt Route, w http.ResponseWriter, r *http.Request) error {
	bearer, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !hasBearer {
		// A browser may send cookies: refuse cross-origin unsafe requests.
		if err := a.csrf.Check(r); err != nil {
			return errs.E(errs.Forbidden, "cross-origin request refused")
		}
	}
	if rt.Limited() && !a.limiter.allow(clientIP(r, a.proxies)) {
		return errs.E(errs.TooManyRequests, "too many requests from this address; wait a minute")
	}
	if rt.Access == Public {
		return rt.Handler(w, r)
	}
	// What this request reads from a node's caches (its token, its actor,
	// data keys) is as new as the database is now.
	r = r.WithContext(a.db.WithEpochs(r.Context()))
	var p identity.Principal
	var err error
	switch {
	case hasBearer && rt.Access != Session && rt.Access != Enrol:
		p, err = a.identity.Authenticate(r.Context(), strings.TrimSpace(bearer))
	case hasBearer:
		return errs.E(errs.Forbidden, "this endpoint is for signed-in people, not API tokens")
	default:
		c, cerr := r.Cookie(SessionCookie)
		if cerr != nil {
			return errs.E(errs.Unauthenticated, "sign in (POST /api/v1/auth/login) or send Authorization: Bearer <token>")
		}
		p, err = a.identity.AuthenticateSession(r.Context(), c.Value)
	}
	if err != nil {
		return err
	}
	ctx, err := a.actorContext(r, p)
	if err != nil {
		return err
	}
	if err := a.allowed(ctx, rt, p); err != nil {
		return err
	}
	if err := a.accountRules(ctx, rt, r, p); err != nil {
		return err
	}
	return rt.Handler(w, r.WithContext(withPrincipal(ctx, p)))
}

// actorContext puts the principal as audit actor into the request context.
func (a *API) actorContext(r *http.Request, p identity.Principal) (context.Context, error) {
	email, key, err := a.subjects.Email(r.Context(), p.TenantID, p.SubjectID)
	if err != nil {
		return nil, fmt.Errorf("resolve actor: %w", err)
	}
	act := audit.Actor{Type: audit.ActorUser, ID: p.UserID, SubjectID: p.SubjectID, Display: email,
		IP: clientIP(r, a.proxies), UserAgent: r.UserAgent(), Key: key}
	if p.TokenID != "" {
		act.Type, act.ID = audit.ActorToken, p.TokenID
	}
	return audit.WithActor(r.Context(), act), nil
}

// allowed checks the route's access rule against the principal; refusals
// of a signed-in principal are audited.
func (a *API) allowed(ctx context.Context, rt Route, p identity.Principal) error {
	var refusal error
	switch {
	case p.Enrolment && rt.Access != Enrol:
		refusal = errs.E(errs.Forbidden, "your organisation requires a second factor: set one up first (POST /api/v1/me/mfa/totp)")
	case rt.Access != Session && rt.Access != Enrol && !canAll(p, rt.Access):
		if p.TokenID != "" {
			refusal = errs.E(errs.Forbidden, "this token lacks a scope of %q, or its owner's role does not hold it", rt.Access)
		} else {
			refusal = errs.E(errs.Forbidden, "your role (%s) does not allow this", p.Role)
		}
	case rt.Sensitive() && p.TokenID != "":
		refusal = errs.E(errs.Forbidden, "this action needs a person who signed in recently; API tokens cannot do it")
	case rt.Sensitive() && !p.Fresh(a.now()):
		refusal = errs.E(errs.Forbidden, "confirm it is you first: POST /api/v1/auth/reauth (needed every %d minutes for this action)",
			int(p.Recent/time.Minute))
	}
	if refusal == nil {
		return nil
	}
	if err := a.log.Record(ctx, p.TenantID, audit.Event{Action: "access.denied", TargetType: "route",
		TargetID: rt.Method + " " + rt.Path, Outcome: audit.Denied,
		Details: map[string]any{"access": rt.Access, "sensitive": rt.Sensitive()}}); err != nil {
		return err
	}
	return refusal
}

// canAll reports whether p holds every scope of access (a route that
// returns another resource's data needs that resource's scope too).
func canAll(p identity.Principal, access string) bool {
	for _, sc := range strings.Fields(access) {
		if !p.Can(sc) {
			return false
		}
	}
	return true
}

// accountRules applies an account's rules to the routes that reach a
// person through another resource. Through /api/v1/subjects/{id}: when the
// person has a user account, reading them needs users:read as well, and
// writing to them is refused with the account's route — accounts change
// only through /api/v1/users. (Rectification and erasure also refuse
// accounts in the subject service itself, for every other caller.)
// Through /api/v1/requests/{id}: a request about a person with an account
// needs users:read to read and users:write to act on as well.
func (a *API) accountRules(ctx context.Context, rt Route, r *http.Request, p identity.Principal) error {
	if strings.HasPrefix(rt.Path, "/api/v1/requests/{id}") {
		subjectID, err := a.rights.SubjectOf(ctx, p.TenantID, r.PathValue("id"))
		if err != nil {
			return nil // the handler answers: 404
		}
		need := "users:write"
		if rt.Method == "GET" {
			need = "users:read"
		}
		switch _, err := a.identity.UserBySubject(ctx, p.TenantID, subjectID); {
		case errs.Is(err, errs.NotFound):
			return nil
		case err != nil:
			return err
		case !p.Can(need):
			return errs.E(errs.Forbidden, "this request is about a person with a user account: it needs %s as well", need)
		}
		return nil
	}
	if !strings.HasPrefix(rt.Path, "/api/v1/subjects/{id}") {
		return nil
	}
	u, err := a.identity.UserBySubject(ctx, p.TenantID, r.PathValue("id"))
	switch {
	case errs.Is(err, errs.NotFound):
		return nil
	case err != nil:
		return err
	case rt.Path == "/api/v1/subjects/{id}/erase":
		return subject.AccountErasure(u.ID)
	case rt.Method != "GET":
		return subject.AccountChange(u.ID)
	case !p.Can("users:read"):
		return errs.E(errs.Forbidden, "this person has a user account: reading them needs users:read as well (/api/v1/users/%s)", u.ID)
	}
	return nil
}

// ownPath tells the paths that only the API answers, whatever the method.
func ownPath(p string) bool {
	return strings.HasPrefix(p, "/api/") || p == "/healthz" || p == "/readyz" || p == "/metrics"
}

// clientIP is the peer address, or — when the peer is a trusted proxy —
// the right-most address in X-Forwarded-For that is not a trusted proxy.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(trusted) == 0 || !isTrusted(host, trusted) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if _, err := netip.ParseAddr(hop); err != nil {
			break // garbage: stop believing the chain
		}
		if !isTrusted(hop, trusted) {
			return hop
		}
		host = hop
	}
	return host
}

func isTrusted(addr string, trusted []netip.Prefix) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func withPrincipal(ctx context.Context, p identity.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// unmatched answers requests no route matches: 405 with Allow when the path
// exists under other methods, 404 otherwise — both as problem+json.
func (a *API) unmatched(mux *http.ServeMux, pages http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pages != nil && !ownPath(r.URL.Path) {
			if _, pattern := mux.Handler(r); pattern == "" {
				pages.ServeHTTP(w, r)
				return
			}
		}
		if p := r.URL.Path; strings.HasPrefix(p, "/api/") && path.Clean(p) != strings.TrimSuffix(p, "/") {
			// ServeMux would redirect to the cleaned path; a file path with
			// '..' or '.' is refused instead, naming what is wrong.
			httpio.Error(w, r, a.logger, errs.Field("path", "the URL path may not contain '.', '..' or empty segments"))
			return
		}
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			httpio.Error(w, r, a.logger, &errs.Error{Kind: errs.MethodNotAllowed, Detail: "use " + strings.Join(allow, ", ")})
			return
		}
		httpio.Error(w, r, a.logger, errs.E(errs.NotFound, "no such endpoint"))
	})
}

// Console rules: what a console page (internal/web) asks of a request
// before it acts as an API route would.

// Limit is the guard of a public console form rate-limited per client
// address, as the API's sign-in (the privacy portal's request form).
const Limit = limited

// Rules of pages that act as no API route.
var (
	SignedIn  = Route{Access: Session} // a fully signed-in person
	Enrolling = Route{Access: Enrol}   // also one who must set up a second factor first
)

// Route answers the API route method and path name ("POST /api/v1/me/mfa/totp").
func (a *API) Route(key string) (Route, bool) {
	rt, ok := a.byKey[key]
	return rt, ok
}

// Admit authenticates a console request by its session cookie and checks
// it against rt's access rule and guard as the API would — the same
// refusals, the same audit events — answering the request with the
// principal and audit actor in its context. The principal (and that
// request) are answered whenever the session is valid, also with a
// refusal, so that the page can tell why — enrolment first, or a recent
// re-authentication — and keep the person's header; only a nil error
// admits.
func (a *API) Admit(r *http.Request, rt Route) (*http.Request, identity.Principal, error) {
	p, err := a.identity.AuthenticateSession(r.Context(), cookieValue(r, SessionCookie))
	if err != nil {
		return r, identity.Principal{}, err
	}
	ctx, err := a.actorContext(r, p)
	if err != nil {
		return r, p, err
	}
	// Refused, the request still carries who asked: the page that says no
	// keeps the person's header.
	admitted := r.WithContext(withPrincipal(ctx, p))
	return admitted, p, a.allowed(ctx, rt, p)
}

// Principal answers the principal Admit put into r's context.
func Principal(r *http.Request) identity.Principal { return principal(r) }

// Client answers who sends r: the client address (trusted proxies
// applied) and user agent.
func (a *API) Client(r *http.Request) identity.Client { return a.client(r) }

// Allow spends one of the client address's sign-in attempts (the budget
// the API's limited routes share) and reports whether one was left.
func (a *API) Allow(r *http.Request) bool { return a.limiter.allow(clientIP(r, a.proxies)) }

// StartSession sets the cookies of a session that began or rotated.
func StartSession(w http.ResponseWriter, session, device string) { sessionStarted(w, session, device) }

// EndSession clears the session cookie (the device cookie stays: the
// browser remains a known device).
func EndSession(w http.ResponseWriter) { setCookie(w, SessionCookie, "", -1) }

// Cookie answers the value of r's cookie name, or "".
func Cookie(r *http.Request, name string) string { return cookieValue(r, name) }

// ImportContacts imports the contacts file that is r's body, as the API's
// import does (the console's import with a progress bar).
func (a *API) ImportContacts(w http.ResponseWriter, r *http.Request) error {
	return a.importSubjects(w, r)
}

// SendContacts answers every contact as CSV or JSON (format), as the
// API's export does.
func (a *API) SendContacts(w http.ResponseWriter, r *http.Request, format string) error {
	var buf bytes.Buffer // built in full first, so that an error never follows a 200
	if err := a.subjects.Export(r.Context(), principal(r).TenantID, format, &buf); err != nil {
		return err
	}
	return a.attachment(w, "contacts", format, buf.Bytes())
}

// SendFile answers a file's content as the API's download does (ranges,
// the content type, the version's hash as ETag), and closes it.
func (a *API) SendFile(w http.ResponseWriter, r *http.Request, c *files.Content) error {
	return a.serveContent(w, r, c)
}

// SendExport answers the access zip of the person subjectID as the
// request's principal asked for it (the console's "download my data").
func (a *API) SendExport(w http.ResponseWriter, r *http.Request, subjectID string) error {
	return a.accessZip(w, r, subjectID)
}
