// Package coretest builds Custodia's core for tests of domain packages —
// its database (SQLite, and a throwaway PostgreSQL), keyring, audit log,
// mail outbox (delivering to a real SMTP server in the test) and domain
// services, on a settable clock — with a tenant, its owner and an API
// token: everything but HTTP (for that, apptest).
package coretest

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/job"
	"github.com/custodia/custodia/internal/mail/mailtest"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/tenant"
)

// Env is an open core with one tenant.
type Env struct {
	Core    *core.Core
	Tenant  tenant.Tenant
	Token   string
	DataDir string
	Logs    *LogBuffer       // everything the core logged
	Mail    *mailtest.Server // everything the core mailed
	Now     *Clock           // the core's clock; tests may move it
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

// Run runs fn on SQLite and on PostgreSQL, the two at once (see Engines).
func Run(t *testing.T, fn func(t *testing.T, env *Env)) {
	t.Helper()
	RunWith(t, nil, fn)
}

// RunWith is Run with a hook that may change the configuration and options
// before the core opens (see NewWith).
func RunWith(t *testing.T, hook func(*config.Config, *core.Options), fn func(t *testing.T, env *Env)) {
	t.Helper()
	Engines(t, func(t *testing.T, databaseURL string) { fn(t, NewWith(t, databaseURL, hook)) })
}

// Engines runs fn as the subtests "sqlite" (databaseURL "") and "postgres"
// (a fresh migrated database), in parallel: they start once the calling
// test's function has returned, and must share nothing they change —
// start per subtest whatever a test sends to or counts.
func Engines(t *testing.T, fn func(t *testing.T, databaseURL string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); fn(t, "") })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); fn(t, sqldbtest.PostgresURL(t)) })
}

// AsInProduction is a hook (for NewWith) that turns the test options off:
// SQLite commits wait for fsync and passwords are hashed at full cost.
// Benchmarks use it, so that their figures are the product's.
func AsInProduction(_ *config.Config, o *core.Options) { o.Test = core.TestOptions{} }

// ThreeRegions returns a configuration change for tests of residency:
// the regions "local" under the data dir, "eu" in a directory of its own
// (per data dir, under a temp dir of t's), and "down", an S3 region on a
// closed port (with the credentials the S3 driver asks for).
func ThreeRegions(t testing.TB) func(*config.Config) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testsecret123")
	eu := t.TempDir()
	return func(c *config.Config) {
		c.Regions = []config.Region{{Name: "local", URL: "file://" + filepath.Join(c.DataDir, "regions", "local")},
			{Name: "eu", URL: "file://" + filepath.Join(eu, filepath.Base(filepath.Dir(c.DataDir)))},
			{Name: "down", URL: "s3://down?endpoint=http://127.0.0.1:1&region=us-east-1&use_path_style=true"}}
	}
}

// New opens a core on databaseURL ("" for SQLite in a temp dir) with a
// tenant "acme", owner owner@acme.example and a token with every scope.
func New(t testing.TB, databaseURL string) *Env {
	t.Helper()
	return NewWith(t, databaseURL, nil)
}

// NewWith is New with a hook that may change the configuration and options
// before the core opens. The core runs with core.TestOptions on (no fsync
// on SQLite commits, cheap password hashes) unless hook turns them off.
func NewWith(t testing.TB, databaseURL string, hook func(*config.Config, *core.Options)) *Env {
	t.Helper()
	return Open(t, databaseURL, hook, func(ctx context.Context, cfg config.Config, opt *core.Options) (*core.Core, error) {
		return core.Open(ctx, cfg, opt)
	})
}

// Open prepares what a test runs a core with — a temp data dir (SQLite
// there already migrated), a real SMTP server, collected logs, a settable
// clock, the test options — lets hook change it, opens the core with open
// (which may build more around it, as the app does), delivers its mail in
// the background and adds the tenant "acme". Everything stops when the
// test ends.
func Open(t testing.TB, databaseURL string, hook func(*config.Config, *core.Options),
	open func(context.Context, config.Config, *core.Options) (*core.Core, error)) *Env {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.DatabaseURL = databaseURL
	mailbox := mailtest.Start(t)
	cfg.SMTPURL = mailbox.URL
	logs := &LogBuffer{}
	clock := &Clock{}
	// Tests about passwords or durability turn the test options off in hook.
	opt := core.Options{LogOutput: logs, Now: clock.Now, Audit: audit.Options{CheckpointEvery: 10},
		Test: core.TestOptions{NoSync: true, CheapHash: true}}
	if hook != nil {
		hook(&cfg, &opt)
	}
	if cfg.DatabaseURL == "" {
		sqldbtest.SQLiteFile(t, cfg.DataDir) // migrated already: Open finds nothing to do
	}
	c, err := open(ctx, cfg, &opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The per-node jobs run as in production, through the job runner —
	// the outbox every 100 ms, the anchor every second; tests run the
	// hourly ones themselves.
	jobs := job.New(c.DB, job.Options{Node: "test", Now: clock.Now, Logger: c.Logger})
	for _, j := range c.Jobs() {
		if j.Kind == job.PerNode {
			if j.Name == "mail.outbox" {
				j.Every = 100 * time.Millisecond
			}
			jobs.Add(j)
		}
	}
	if err := jobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Stop)
	env := &Env{Core: c, DataDir: c.Config.DataDir, Logs: logs, Mail: mailbox, Now: clock}
	env.Tenant, env.Token = env.AddTenant(t, "acme", "owner@acme.example")
	return env
}

// AddUser creates a user in the env's tenant (with a password when pw is
// not empty).
func (e *Env) AddUser(t testing.TB, email, role, pw string) identity.User {
	t.Helper()
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
	u, err := e.Core.Identity.CreateUser(ctx, e.Tenant.ID, identity.NewUser{Email: email, Role: role, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// AsToken acts as the env's token does through the API: it answers the
// token's principal and a context with it as the audit actor.
func (e *Env) AsToken(t testing.TB) (context.Context, identity.Principal) {
	t.Helper()
	ctx := context.Background()
	p, err := e.Core.Identity.Authenticate(ctx, e.Token)
	if err != nil {
		t.Fatal(err)
	}
	return audit.WithActor(ctx, audit.Actor{Type: audit.ActorToken, ID: p.TokenID, SubjectID: p.SubjectID}), p
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

// Password is the password of the owners AddTenant makes.
const Password = "correct horse battery staple 42"

// AddTenant creates a tenant with an owner (whose password is Password)
// and returns it with a token of the owner's.
func (e *Env) AddTenant(t testing.TB, slug, ownerEmail string) (tenant.Tenant, string) {
	t.Helper()
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "test"})
	tn, err := e.Core.Tenants.Create(ctx, slug, strings.ToUpper(slug)+" Ltd", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Core.Identity.CreateUser(ctx, tn.ID, identity.NewUser{Email: ownerEmail, Role: "owner", Password: Password}); err != nil {
		t.Fatal(err)
	}
	token, _, err := e.Core.Identity.CreateToken(ctx, tn.ID, ownerEmail, "test", nil, 366*24*time.Hour) // outlives tests that travel in time
	if err != nil {
		t.Fatal(err)
	}
	return tn, token
}

// LogBuffer collects the core's logs safely across goroutines.
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
