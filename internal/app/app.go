package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/job"
	"github.com/custodia/custodia/internal/web"
)

// App is a built Custodia: its core (state and domain services), the API
// over it and the console beside the API.
type App struct {
	*core.Core
	API     *api.API
	Console *web.Console

	now      func() time.Time
	registry *prometheus.Registry
}

// Options are the parts tests replace.
type Options struct {
	core.Options
	AuthRate api.RateLimit // default api.DefaultAuthRate
	// FreeSpace replaces the file system's answer (api.FreeSpace).
	FreeSpace func(path string) (int64, error)
}

// Open builds the app: the core (master key, database, services), then
// the API and the console.
func Open(ctx context.Context, cfg config.Config, opt Options) (*App, error) {
	c, err := core.Open(ctx, cfg, &opt.Options)
	if err != nil {
		return nil, err
	}
	a := &App{Core: c, now: opt.Now}
	if a.now == nil {
		a.now = time.Now
	}
	proxies, err := cfg.Proxies()
	if err != nil {
		a.Close()
		return nil, err
	}
	if opt.AuthRate == (api.RateLimit{}) {
		opt.AuthRate = api.DefaultAuthRate
	}
	reg := prometheus.NewRegistry()
	a.registry = reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.API, err = api.New(api.Deps{DB: c.DB, Keys: c.Keys, Subjects: c.Subjects, Identity: c.Identity, Spaces: c.Spaces, Files: c.Files,
		Register: c.Register, Consent: c.Consent, Retention: c.Retention, Backups: c.Backups, Rights: c.Rights, Export: c.Export, Tenants: c.Tenants,
		Log: c.Log, Logger: c.Logger, Registry: reg, Now: opt.Now, TrustedProxies: proxies, AuthRate: opt.AuthRate,
		Storage: locations(c.Config, c), FreeSpace: opt.FreeSpace, MinFree: c.Config.MinFreeMB << 20})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Console, err = web.New(web.Deps{API: a.API, Identity: c.Identity, Subjects: c.Subjects, Tenants: c.Tenants,
		Rights: c.Rights, Consent: c.Consent, Register: c.Register, Retain: c.Retention, Files: c.Files, Spaces: c.Spaces, Logger: c.Logger, Now: a.now,
		FailingJobs: func(ctx context.Context) ([]string, error) { return job.Failing(ctx, c.DB) }, Backups: c.Backups})
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// locations are the local folders Custodia writes to: the data dir, the
// database's folder (SQLite), every file:// region and a file:// anchor.
func locations(cfg config.Config, c *core.Core) []api.Location {
	ls := []api.Location{{Name: "data dir", Path: cfg.DataDir}}
	if p := c.DB.Path(); p != "" {
		ls = append(ls, api.Location{Name: "database", Path: filepath.Dir(p)})
	}
	for _, r := range cfg.Regions {
		if u, err := url.Parse(r.URL); err == nil && u.Scheme == "file" {
			ls = append(ls, api.Location{Name: "region " + r.Name, Path: u.Path})
		}
	}
	if u, err := url.Parse(cfg.AnchorURL); err == nil && u.Scheme == "file" {
		ls = append(ls, api.Location{Name: "anchor", Path: u.Path})
	}
	return ls
}

// Runner is a job runner with every background job (core.Jobs), its
// metrics in /metrics. Serve starts one.
func (a *App) Runner() *job.Runner {
	r := job.New(a.DB, job.Options{Node: a.Config.Node, Now: a.now, Logger: a.Logger, Registry: a.registry})
	for _, j := range a.Jobs() {
		r.Add(j)
	}
	return r
}

// Handler is the whole HTTP handler: the API, and the console for the
// paths the API does not answer.
func (a *App) Handler() http.Handler { return a.API.Handler(a.Console.Handler()) }

// TLSConfig returns the server TLS configuration: TLS 1.2 or newer, AEAD
// cipher suites with forward secrecy only, and the configured or
// self-signed certificate.
func (a *App) TLSConfig() (*tls.Config, error) {
	certFile, keyFile := a.Config.TLSCert, a.Config.TLSKey
	if certFile == "" {
		var err error
		if certFile, keyFile, err = ensureSelfSigned(a.Config.DataDir, a.Config.Addr, a.now()); err != nil {
			return nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		CipherSuites: []uint16{ // TLS 1.2 only; TLS 1.3 suites are all AEAD and not configurable
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}, nil
}

// Serve answers HTTPS on ln, and runs the background jobs (core.Jobs),
// until ctx ends, then shuts down gracefully: in-flight requests finish
// (up to the shutdown timeout), the jobs stop and are waited for, and the
// audit committer drains (at Close).
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	tlsCfg, err := a.TLSConfig()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.Logger.Handler(), slog.LevelWarn),
	}
	// Anchoring at start is short and must finish even when a stop is
	// asked for meanwhile.
	if _, err := a.Log.AnchorUnanchored(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("audit anchor: %w", err)
	}
	// Commands run beside the server print links under the URL it answers
	// under: the configured one, or the listener's real port for :0.
	public := a.Config.PublicURL
	if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil && strings.HasSuffix(public, ":0") {
		public = strings.TrimSuffix(public, ":0") + ":" + port
	}
	if err := a.RecordPublicURL(context.WithoutCancel(ctx), public, a.now().UnixMicro()); err != nil {
		return fmt.Errorf("record the public URL: %w", err)
	}
	// Background jobs stop after the server has, and before Close shuts
	// the database: Stop waits for each.
	if a.Config.PprofAddr != "" {
		stop, err := a.profiler(a.Config.PprofAddr)
		if err != nil {
			return err
		}
		defer stop()
	}
	jobs := a.Runner()
	if err := jobs.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("background jobs: %w", err)
	}
	defer jobs.Stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

// profiler serves Go's profiles (net/http/pprof) on addr, a loopback
// address the configuration checked, apart from the API: plain HTTP, no
// authentication, for the operator on the machine. While it is on, the
// block and mutex profiles record too (where goroutines wait: the
// committer's queue, a commit's fsync, a lock), at a small cost. It
// answers how to stop it.
func (a *App) profiler(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("the profiler's listener: %w", err)
	}
	runtime.SetBlockProfileRate(int(10 * time.Microsecond)) // about one event per 10 µs spent blocked
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	a.Logger.Warn("the profiler is on: Go's profiles of this process are served without authentication", "addr", ln.Addr().String())
	return func() {
		_ = srv.Close()
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
	}, nil
}
