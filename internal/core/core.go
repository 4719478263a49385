// Package core opens Custodia's state and wires its domain services — the
// master key, the database (migrated), the file regions, the keyring, the
// audit log, the mail outbox and every domain service — without HTTP. The
// app serves it over HTTPS; tests of domain packages use it through
// coretest, without a server.
package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/anchor"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/export"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/ledger"
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

// Core is Custodia's state and domain services.
type Core struct {
	Config    config.Config
	DB        *sqldb.DB
	Keys      *keyring.Keyring
	Log       *audit.Log
	Anchor    *anchor.Anchor // the audit chain's heads, kept outside the database
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
	Export    *export.Service
	Backups   *backup.Keeper
	Ledger    *ledger.Ledger // what was taken away, kept outside the database
	Mail      *mail.Outbox
	Logger    *slog.Logger

	closeOnce sync.Once
	closeErr  error

	// MasterKeyCreated is true when this start created the master key file.
	MasterKeyCreated bool

	master keyring.MasterKey
}

// Options are the parts tests replace.
type Options struct {
	Now       func() time.Time // default time.Now
	LogOutput io.Writer        // JSON logs; default discards
	Audit     audit.Options
	Password  password.Params // default password.Default
	Test      TestOptions
}

// TestOptions trade away what a test is not about, for speed. Only code
// sets them (no flag, variable or configuration reaches them), and Open
// refuses them outside a test binary.
type TestOptions struct {
	NoSync    bool // SQLite commits without fsync (sqldb.TestOptions)
	CheapHash bool // passwords hashed with argon2id's cheapest parameters (password.NewTestHasher)
}

// Open builds the core: master key, database (migrated), regions, services.
// opt is completed with its defaults.
func Open(ctx context.Context, cfg config.Config, opt *Options) (*Core, error) {
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
	c := &Core{Config: cfg, Logger: slog.New(slog.NewJSONHandler(opt.LogOutput, &slog.HandlerOptions{Level: level}))}
	master, created, err := keyring.OpenMaster(ctx, cfg.MasterKeyURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	c.master, c.MasterKeyCreated = master, created
	db, err := sqldb.OpenWith(ctx, cfg.DatabaseURL, cfg.DataDir, sqldb.TestOptions{NoSync: opt.Test.NoSync})
	if err != nil {
		master.Close()
		return nil, err
	}
	c.DB = db
	if _, err := db.Migrate(ctx); err != nil {
		c.Close()
		return nil, err
	}
	var names, urls []string
	for _, r := range cfg.Regions {
		names, urls = append(names, r.Name), append(urls, r.URL)
	}
	if c.Regions, err = blobstore.OpenRegions(ctx, names, urls); err != nil {
		c.Close()
		return nil, err
	}
	now := opt.Now
	c.Keys = keyring.New(master, now)
	c.Keys.CacheSubjectKeys(db, 50_000) // about 5 MB of keys
	// The anchor is flushed by the audit.anchor job (Jobs), and at Close.
	if c.Anchor, err = anchor.Open(ctx, cfg.AnchorURL, cfg.Node, anchor.Options{Logger: c.Logger, Now: now, Manual: true}); err != nil {
		c.Close()
		return nil, err
	}
	setup, err := backup.Prepare(cfg.DataDir, cfg.BackupLocation(), cfg.BackupRecipients, cfg.BackupKeep, now)
	if err != nil {
		c.Close()
		return nil, err
	}
	// The ledger of what was taken away, signed with the backups' key and
	// appended as each change commits (docs/decisions/0026-ledger.md).
	if c.Ledger, err = ledger.Open(filepath.Join(cfg.DataDir, "ledger"), cfg.Node, setup.Signer); err != nil {
		c.Close()
		return nil, err
	}
	opt.Audit.Committed = func(_ context.Context, events []audit.Committed) error {
		return c.Ledger.Append(ledger.Follow(events)...)
	}
	opt.Audit.Anchor, opt.Audit.AnchorSync, opt.Audit.Logger = c.Anchor, cfg.AnchorEachBatch, c.Logger
	c.Log = audit.New(db, c.Keys, now, opt.Audit)
	c.Tenants = tenant.NewService(db, c.Keys, c.Log, cfg.RegionNames(), now)
	c.Subjects = subject.NewService(db, c.Keys, c.Log, now)
	if c.Mail, err = mail.New(db, c.Keys, mail.Config{URL: cfg.SMTPURL, From: cfg.MailFrom}, c.Logger, now); err != nil {
		c.Close()
		return nil, err
	}
	if opt.Password == (password.Params{}) {
		opt.Password = password.Default
	}
	// Each hash holds 19 MiB for ~40 ms: a few per core keeps memory bounded
	// and the cores busy; the rest wait up to 5 s, then get a 503.
	slots, wait := 2*runtime.GOMAXPROCS(0), 5*time.Second
	hasher, err := password.NewHasher(opt.Password, slots, wait)
	if opt.Test.CheapHash {
		hasher, err = password.NewTestHasher(slots, wait)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	texts, err := sms.New(sms.Config{Provider: cfg.SMSProvider, URL: cfg.SMSWebhookURL, Secret: cfg.SMSWebhookSecret}, c.Logger, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.Identity = identity.NewService(identity.Deps{DB: db, Keys: c.Keys, Log: c.Log, Subjects: c.Subjects,
		Tenants: c.Tenants, Hasher: hasher, Mail: c.Mail, SMS: texts, Links: cfg.PublicURL, Now: now})
	c.Spaces = space.NewService(db, c.Keys, c.Log, c.Tenants, c.Identity, now)
	c.Files = files.NewService(files.Deps{DB: db, Keys: c.Keys, Log: c.Log, Spaces: c.Spaces, Tenants: c.Tenants,
		Subjects: c.Subjects, Regions: c.Regions, Logger: c.Logger, Now: now})
	c.Register = register.NewService(db, c.Log, now)
	c.Consent = consent.NewService(consent.Deps{DB: db, Keys: c.Keys, Log: c.Log, Subjects: c.Subjects, Register: c.Register,
		Tenants: c.Tenants, Mail: c.Mail, Issuer: cfg.PublicURL, Now: now})
	c.Retention = retention.NewService(db, c.Log, c.Subjects, c.Logger, now)
	c.Mail.SetFeedback(c.Retention)
	c.Rights = rights.NewService(rights.Deps{DB: db, Keys: c.Keys, Log: c.Log, Subjects: c.Subjects, Register: c.Register,
		Consent: c.Consent, Tenants: c.Tenants, Mail: c.Mail, Links: cfg.PublicURL, Now: now})
	setup.Regions, setup.Ledger = c.Regions, c.Ledger
	setup.At, _ = cfg.BackupTime() // checked by Validate
	c.Backups = backup.NewKeeper(db, c.Log, setup, c.Logger)
	if to := cfg.OperatorEmail; to != "" {
		c.Backups.AlertWith(func(ctx context.Context, subject, text string) error { return c.Mail.Alert(ctx, to, subject, text) })
	}
	// Erasure: each part removes what it holds about the person, in this
	// order; the backups' part after the files' (it forgets the content
	// they shredded), the account last, once the others have seen it whole.
	for _, er := range []subject.Eraser{c.Files.Eraser(), c.Backups.Eraser(), c.Consent.Eraser(), c.Rights.Eraser(), mailEraser(c.Mail), c.Spaces.Eraser(), c.Identity.Eraser()} {
		c.Subjects.AddEraser(er)
	}
	c.Export = export.NewService(export.Deps{DB: db, Log: c.Log, Audit: audit.NewReader(db, c.Keys), Subjects: c.Subjects,
		Consent: c.Consent, Register: c.Register, Rights: c.Rights, Tenants: c.Tenants, Files: c.Files, Now: now})
	// Names of accounts made before names were indexed for search (once).
	if err := c.Identity.IndexNames(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("index the names of accounts: %w", err)
	}
	return c, nil
}

// Close stops the audit committer (after it finishes queued work), writes
// the audit anchor and closes the database, the master key and the
// regions. Closing again does nothing.
func (c *Core) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Core) close() error {
	if c.Log != nil {
		c.Log.Close()
	}
	var err error
	if c.Anchor != nil {
		err = c.Anchor.Close()
	}
	if c.Ledger != nil {
		if c.Backups != nil { // the location's copy, up to the last change
			err = errors.Join(err, c.Ledger.CopyTo(backup.LedgerDir(c.Backups.Setup().Dir)))
		}
		err = errors.Join(err, c.Ledger.Close())
	}
	if c.DB != nil {
		err = errors.Join(err, c.DB.Close())
	}
	if c.master != nil {
		err = errors.Join(err, c.master.Close())
	}
	if c.Regions != nil {
		err = errors.Join(err, c.Regions.Close())
	}
	return err
}

// mailEraser is the outbox's part of an erasure (package mail, a
// platform package, does not know subjects).
func mailEraser(o *mail.Outbox) subject.Eraser {
	return subject.Eraser{Name: "mail", Tables: []string{"mail_outbox"}, Erase: func(ctx context.Context, e *subject.Erasure) (func(context.Context), error) {
		n, err := o.ForgetSubject(ctx, e.Tx, e.TenantID, e.SubjectID)
		e.Count("mail_outbox", n)
		return nil, err
	}}
}
