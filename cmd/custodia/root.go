package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/tenant"
)

// env is what every command gets from run.
type env struct {
	cfg     config.Config
	regions []string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer

	guessedURL bool // links start with the URL computed from --addr, not one a server recorded
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is a mistake in how the command was called: exit code 2.
func usageError(err error) error {
	return &exitError{code: 2, msg: "custodia: " + err.Error() + " (see custodia --help)"}
}

// requiredFlag marks the flags a command cannot run without (checked by
// checkRequired, so that a missing one is a usage mistake: exit 2).
const requiredFlag = "custodia_required"

func requireFlags(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		_ = cmd.Flags().SetAnnotation(n, requiredFlag, []string{"true"})
	}
}

func checkRequired(cmd *cobra.Command) error {
	var missing []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[requiredFlag]; ok && !f.Changed {
			missing = append(missing, "--"+f.Name)
		}
	})
	if len(missing) > 0 {
		return usageError(fmt.Errorf("required flag(s) %s not set", strings.Join(missing, ", ")))
	}
	return nil
}

// noArgs refuses positional arguments as a usage mistake.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError(err)
	}
	return nil
}

// run is the whole program; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := config.Load(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "custodia:", err)
		return 2
	}
	e := &env{cfg: cfg, stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "custodia",
		Short:         "Custodia keeps personal data the way the GDPR asks",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkRequired(cmd); err != nil {
				return err
			}
			if len(e.regions) == 0 {
				return nil
			}
			e.cfg.Regions = nil // --region flags replace CUSTODIA_REGIONS
			for _, spec := range e.regions {
				r, err := config.ParseRegion(spec)
				if err != nil {
					return err
				}
				e.cfg.Regions = append(e.cfg.Regions, r)
			}
			return nil
		},
	}
	// Usage mistakes — an unknown command or flag, a bad flag value,
	// arguments where none are taken — exit 2, everything else 1.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	f := root.PersistentFlags()
	f.StringVar(&e.cfg.DataDir, "data-dir", cfg.DataDir, "data directory (CUSTODIA_DATA_DIR)")
	f.StringVar(&e.cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "empty for SQLite in the data dir, or postgres://… (CUSTODIA_DATABASE_URL)")
	f.StringVar(&e.cfg.Addr, "addr", cfg.Addr, "HTTPS listen address (CUSTODIA_ADDR)")
	f.StringVar(&e.cfg.MasterKeyURL, "master-key-url", cfg.MasterKeyURL, "master key: empty for a key file in the data dir, file:///path, or a gocloud.dev/secrets URL (CUSTODIA_MASTER_KEY_URL)")
	f.StringArrayVar(&e.regions, "region", nil, "region NAME=URL, repeatable (CUSTODIA_REGIONS); default one region \"local\" under the data dir")
	f.StringVar(&e.cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate file (CUSTODIA_TLS_CERT); default self-signed")
	f.StringVar(&e.cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS key file (CUSTODIA_TLS_KEY)")
	f.StringVar(&e.cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (CUSTODIA_LOG_LEVEL)")
	f.StringVar(&e.cfg.PublicURL, "public-url", cfg.PublicURL, "base URL of links in mail (CUSTODIA_PUBLIC_URL); default https://ADDR")
	f.StringVar(&e.cfg.SMTPURL, "smtp-url", cfg.SMTPURL, "outgoing mail: smtp://user:password@host:587, smtps://…:465, or smtp://host:25?tls=none (CUSTODIA_SMTP_URL); empty = mail waits in the outbox")
	f.StringVar(&e.cfg.MailFrom, "mail-from", cfg.MailFrom, "From address of outgoing mail (CUSTODIA_MAIL_FROM)")
	f.StringVar(&e.cfg.SMSProvider, "sms-provider", cfg.SMSProvider, "second-factor codes by SMS: webhook, or log (development only; codes in the log) (CUSTODIA_SMS_PROVIDER); empty = no SMS")
	f.StringVar(&e.cfg.SMSWebhookURL, "sms-webhook-url", cfg.SMSWebhookURL, "URL the SMS webhook posts {to, text} to (CUSTODIA_SMS_WEBHOOK_URL)")
	f.StringVar(&e.cfg.SMSWebhookSecret, "sms-webhook-secret", cfg.SMSWebhookSecret, "HMAC-SHA256 key signing webhook posts, 32+ characters (CUSTODIA_SMS_WEBHOOK_SECRET; prefer the variable)")
	f.StringSliceVar(&e.cfg.TrustedProxies, "trusted-proxy", cfg.TrustedProxies, "address or CIDR of a reverse proxy whose X-Forwarded-For is believed, repeatable (CUSTODIA_TRUSTED_PROXIES)")
	f.StringVar(&e.cfg.AnchorURL, "anchor-url", cfg.AnchorURL, "where the audit chains' signed heads are kept outside the database: file:///dir or s3://bucket?… (CUSTODIA_ANCHOR_URL); default the anchor directory in the data dir")
	f.BoolVar(&e.cfg.AnchorEachBatch, "anchor-each-batch", cfg.AnchorEachBatch, "write the audit anchor with every commit batch, not once a second (CUSTODIA_ANCHOR_EACH_BATCH)")
	f.Int64Var(&e.cfg.MinFreeMB, "min-free-mb", cfg.MinFreeMB, "MiB of free space below which /readyz fails for a local data location (CUSTODIA_MIN_FREE_MB); 0 = no floor")
	f.StringVar(&e.cfg.BackupDir, "backup-dir", cfg.BackupDir, "the backup location, a directory (CUSTODIA_BACKUP_DIR); default the backups directory in the data dir")
	f.StringVar(&e.cfg.BackupAt, "backup-at", cfg.BackupAt, "time of day, UTC, when the daily backup is due (CUSTODIA_BACKUP_AT)")
	f.StringVar(&e.cfg.PprofAddr, "pprof-addr", cfg.PprofAddr, "a loopback host:port serving Go's profiler, for the operator (CUSTODIA_PPROF_ADDR); empty: off")
	f.StringVar(&e.cfg.OperatorEmail, "operator-email", cfg.OperatorEmail, "address mailed directly over SMTP (not through the database) when a backup fails (CUSTODIA_OPERATOR_EMAIL)")
	f.StringVar(&e.cfg.Node, "node", cfg.Node, "this node's name, its audit anchor object's name (CUSTODIA_NODE); default the host name")
	root.AddCommand(serveCmd(e), migrateCmd(e), tenantCmd(e), userCmd(e), tokenCmd(e), auditCmd(e), keysCmd(e), backupCmd(e))

	if _, _, err := root.Find(args); err != nil {
		err = usageError(err)
		fmt.Fprintln(stderr, err.(*exitError).msg)
		return 2
	}
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(stderr, ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(stderr, "custodia:", describe(err))
		return 1
	}
	return 0
}

// describe shows a classified error by its detail, anything else whole.
func describe(err error) string {
	if e, ok := errs.As(err); ok && e.Kind != errs.Internal {
		if e.Field != "" {
			return e.Field + ": " + e.Detail
		}
		return e.Detail
	}
	return err.Error()
}

// open builds the core (no API) for an operator command, acting as the
// operator.
func (e *env) open(ctx context.Context) (*core.Core, context.Context, error) {
	cfg := e.cfg
	// Links printed by a command start with, in order: --public-url
	// (CUSTODIA_PUBLIC_URL), the URL a server of this database recorded,
	// or the default computed from --addr (and a warning says so).
	e.guessedURL = false
	if cfg.PublicURL == "" {
		if u := core.RecordedPublicURL(ctx, cfg); u != "" {
			cfg.PublicURL = u
		} else {
			e.guessedURL = true
		}
	}
	// A command writes the audit anchor under a name of its own: were it
	// the server's (the host name), a command run beside a running server
	// would replace the server's anchor object with its own view of it.
	if cfg.Node == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, ctx, fmt.Errorf("node name: %w (set CUSTODIA_NODE)", err)
		}
		cfg.Node = host
	}
	cfg.Node = cfg.Node[:min(len(cfg.Node), 60)] + "-cli"
	a, err := core.Open(ctx, cfg, &core.Options{})
	if err != nil {
		return nil, ctx, err
	}
	return a, audit.WithActor(ctx, audit.Actor{Type: audit.ActorOperator, ID: "cli"}), nil
}

// openTenant is open for a command about the tenant with slug.
func (e *env) openTenant(ctx context.Context, slug string) (*core.Core, context.Context, tenant.Tenant, error) {
	a, ctx, err := e.open(ctx)
	if err != nil {
		return nil, ctx, tenant.Tenant{}, err
	}
	t, err := a.Tenants.BySlug(ctx, slug)
	if err != nil {
		a.Close()
		return nil, ctx, tenant.Tenant{}, err
	}
	return a, ctx, t, nil
}
