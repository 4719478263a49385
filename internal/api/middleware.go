package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
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
			if p := recover(); p != nil {
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

// endpoint authenticates (when the route has a scope), checks the scope,
// sets the audit actor and answers the handler's error.
func (a *API) endpoint(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.serve(rt, w, r); err != nil {
			httpio.Error(w, r, a.logger, err)
		}
	})
}

func (a *API) serve(rt Route, w http.ResponseWriter, r *http.Request) error {
	if rt.Scope == "" {
		return rt.Handler(w, r)
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return errs.E(errs.Unauthenticated, "send Authorization: Bearer <token>")
	}
	p, err := a.identity.Authenticate(r.Context(), strings.TrimSpace(secret))
	if err != nil {
		return err
	}
	email, key, err := a.subjects.Email(r.Context(), p.TenantID, p.SubjectID)
	if err != nil {
		return fmt.Errorf("resolve actor: %w", err)
	}
	ctx := audit.WithActor(r.Context(), audit.Actor{
		Type: audit.ActorToken, ID: p.TokenID, SubjectID: p.SubjectID, Display: email,
		IP: clientIP(r), UserAgent: r.UserAgent(), Key: key,
	})
	if !p.Can(rt.Scope) {
		if err := a.log.Record(ctx, p.TenantID, audit.Event{Action: "access.denied", TargetType: "route",
			TargetID: rt.Method + " " + rt.Path, Outcome: audit.Denied, Details: map[string]any{"scope": rt.Scope}}); err != nil {
			return err
		}
		return errs.E(errs.Forbidden, "this token lacks the scope %s", rt.Scope)
	}
	ctx = withPrincipal(ctx, p)
	return rt.Handler(w, r.WithContext(ctx))
}

// clientIP is the peer address. X-Forwarded-For is not trusted until
// trusted proxies can be configured.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func withPrincipal(ctx context.Context, p identity.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// unmatched answers requests no route matches: 405 with Allow when the path
// exists under other methods, 404 otherwise — both as problem+json.
func (a *API) unmatched(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
