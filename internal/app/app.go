package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/custodia/custodia/internal/access"
	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// App is a built Custodia.
type App struct {
	Config    config.Config
	DB        *sqldb.DB
	Keys      *keyring.Keyring
	Log       *audit.Log
	Tenants   *tenant.Service
	Subjects  *subject.Service
	Identity  *identity.Service
	Spaces    *space.Service
	Files     *files.Service
	Regions   *blobstore.Regions
	Register  *register.Service
	Consent   *consent.Service
	Retention *retention.Service
	Rights    *rights.Service
	Access    *access.Service
	Mail      *mail.Outbox
	API       *api.API
	Logger    *slog.Logger

	// MasterKeyCreated is true when this start created the master key file.
	MasterKeyCreated bool

	master keyring.MasterKey
	now    func() time.Time
}

// Options are the parts tests replace.
type Options struct {
	Now       func() time.Time // default time.Now
	LogOutput io.Writer        // JSON logs; default discards
	Audit     audit.Options
	Password  password.Params // default password.Default
	AuthRate  api.RateLimit   // default api.DefaultAuthRate
}

// Open builds the app: master key, database (migrated), services, API.
func Open(ctx context.Context, cfg config.Config, opt Options) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.LogOutput == nil {
		opt.LogOutput = io.Discard
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, err
	}
	a := &App{Config: cfg, now: opt.Now,
		Logger: slog.New(slog.NewJSONHandler(opt.LogOutput, &slog.HandlerOptions{Level: level}))}
	master, created, err := keyring.OpenMaster(ctx, cfg.MasterKeyURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.master, a.MasterKeyCreated = master, created
	db, err := sqldb.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		master.Close()
		return nil, err
	}
	a.DB = db
	if _, err := db.Migrate(ctx); err != nil {
		a.Close()
		return nil, err
	}
	var names, urls []string
	for _, r := range cfg.Regions {
		names, urls = append(names, r.Name), append(urls, r.URL)
	}
	if a.Regions, err = blobstore.OpenRegions(ctx, names, urls); err != nil {
		a.Close()
		return nil, err
	}
	a.Keys = keyring.New(master, opt.Now)
	a.Log = audit.New(db, a.Keys, opt.Now, opt.Audit)
	a.Tenants = tenant.NewService(db, a.Keys, a.Log, cfg.RegionNames(), opt.Now)
	a.Subjects = subject.NewService(db, a.Keys, a.Log, opt.Now)
	if a.Mail, err = mail.New(db, a.Keys, mail.Config{URL: cfg.SMTPURL, From: cfg.MailFrom}, a.Logger, opt.Now); err != nil {
		a.Close()
		return nil, err
	}
	if opt.Password == (password.Params{}) {
		opt.Password = password.Default
	}
	// Each hash holds 19 MiB for ~40 ms: a few per core keeps memory bounded
	// and the cores busy; the rest wait up to 5 s, then get a 503.
	hasher, err := password.NewHasher(opt.Password, 2*runtime.GOMAXPROCS(0), 5*time.Second)
	if err != nil {
		a.Close()
		return nil, err
	}
	texts, err := sms.New(sms.Config{Provider: cfg.SMSProvider, URL: cfg.SMSWebhookURL, Secret: cfg.SMSWebhookSecret}, a.Logger, nil)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Identity = identity.NewService(identity.Deps{DB: db, Keys: a.Keys, Log: a.Log, Subjects: a.Subjects,
		Tenants: a.Tenants, Hasher: hasher, Mail: a.Mail, SMS: texts, Links: cfg.PublicURL, Now: opt.Now})
	a.Spaces = space.NewService(db, a.Keys, a.Log, a.Tenants, a.Identity, opt.Now)
	a.Files = files.NewService(files.Deps{DB: db, Keys: a.Keys, Log: a.Log, Spaces: a.Spaces, Tenants: a.Tenants,
		Subjects: a.Subjects, Regions: a.Regions, Logger: a.Logger, Now: opt.Now})
	a.Subjects.OnErase(a.Files.EraseLinked)
	a.Subjects.OnErase(a.Files.EraseUploads)
	a.Register = register.NewService(db, a.Log, opt.Now)
	a.Consent = consent.NewService(consent.Deps{DB: db, Keys: a.Keys, Log: a.Log, Subjects: a.Subjects, Register: a.Register,
		Tenants: a.Tenants, Mail: a.Mail, Issuer: cfg.PublicURL, Now: opt.Now})
	a.Retention = retention.NewService(db, a.Log, a.Subjects, a.Logger, opt.Now)
	a.Mail.SetFeedback(a.Retention)
	a.Rights = rights.NewService(rights.Deps{DB: db, Keys: a.Keys, Log: a.Log, Subjects: a.Subjects, Register: a.Register,
		Consent: a.Consent, Tenants: a.Tenants, Mail: a.Mail, Links: cfg.PublicURL, Now: opt.Now})
	a.Access = access.NewService(access.Deps{DB: db, Log: a.Log, Audit: audit.NewReader(db, a.Keys), Subjects: a.Subjects,
		Consent: a.Consent, Register: a.Register, Rights: a.Rights, Tenants: a.Tenants, Files: a.Files, Now: opt.Now})
	proxies, err := cfg.Proxies()
	if err != nil {
		a.Close()
		return nil, err
	}
	if opt.AuthRate == (api.RateLimit{}) {
		opt.AuthRate = api.DefaultAuthRate
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.API = api.New(api.Deps{DB: db, Keys: a.Keys, Subjects: a.Subjects, Identity: a.Identity, Spaces: a.Spaces, Files: a.Files, Register: a.Register, Consent: a.Consent, Retention: a.Retention, Rights: a.Rights, Access: a.Access, Tenants: a.Tenants, Log: a.Log,
		Logger: a.Logger, Registry: reg, Now: opt.Now, TrustedProxies: proxies, AuthRate: opt.AuthRate})
	return a, nil
}

// Close stops the audit committer (after it finishes queued work) and
// closes the database and master key.
func (a *App) Close() error {
	if a.Log != nil {
		a.Log.Close()
	}
	var err error
	if a.DB != nil {
		err = a.DB.Close()
	}
	if a.master != nil {
		err = errors.Join(err, a.master.Close())
	}
	if a.Regions != nil {
		err = errors.Join(err, a.Regions.Close())
	}
	return err
}

// Handler is the whole HTTP handler.
func (a *App) Handler() http.Handler { return a.API.Handler() }

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

// Serve answers HTTPS on ln until ctx ends, then shuts down gracefully:
// in-flight requests finish (up to the shutdown timeout) and the audit
// committer drains.
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
	jobs, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	go a.Mail.Run(jobs, 30*time.Second)
	go a.Retention.Loop(jobs, time.Hour)
	go a.Rights.Loop(jobs, time.Hour, a.Logger)
	go a.Files.Loop(jobs, time.Hour)
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
	if errors.Is(<-errc, http.ErrServerClosed) {
		return err
	}
	return err
}
