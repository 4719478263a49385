package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/identity"
)

func tenantCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Manage tenants"}
	var slug, name, defaultRegion, adminEmail string
	var regionArgs []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a tenant with its keys and its first owner",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			region, err := e.tenantRegions(regionArgs, defaultRegion)
			if err != nil {
				return err
			}
			a, ctx, err := e.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			t, err := a.Tenants.Create(ctx, slug, name, region)
			if err != nil {
				return err
			}
			u, err := a.Identity.CreateUser(ctx, t.ID, identity.NewUser{Email: adminEmail, Role: identity.RoleOwner})
			if err != nil {
				return fmt.Errorf("tenant %s created, but its owner was not: %w (retry with custodia user create --tenant %s --role owner)", t.Slug, err, t.Slug)
			}
			link, expires, err := a.Identity.SetupLink(ctx, t.ID, u.ID)
			if err != nil {
				return fmt.Errorf("tenant %s created, but no setup link: %w", t.Slug, err)
			}
			fmt.Fprintf(e.stdout, "tenant %s created\n  id:     %s\n  region: %s\n  owner:  user %s\n", t.Slug, t.ID, t.Region, u.ID)
			fmt.Fprintf(e.stdout, "setup link for %s (works once, until %s):\n  %s\n", adminEmail, expires.Format(time.RFC3339), link)
			if e.guessedURL {
				fmt.Fprintf(e.stderr, "The link starts with %s, computed from --addr: no server of this database has recorded the address it answers under yet. "+
					"If it answers elsewhere, put that address in place of %s (the part after # is what counts), or pass --public-url next time.\n",
					a.Config.PublicURL, a.Config.PublicURL)
			}
			fmt.Fprintf(e.stderr, "Give the link to the owner only: whoever opens it first chooses the password.\n")
			return nil
		},
	}
	create.Flags().StringVar(&slug, "slug", "", "short name used in URLs and commands (required)")
	create.Flags().StringVar(&name, "name", "", "organisation name (required)")
	create.Flags().StringVar(&defaultRegion, "default-region", "", "the tenant's default region (default: the first configured)")
	// --region here once meant the default region; it now means what it
	// means everywhere (NAME=URL), and a bare name is still taken as the
	// default region.
	create.Flags().StringArrayVar(&regionArgs, "region", nil, "region NAME=URL, repeatable, as for every command (a bare NAME: the default region, as --default-region)")
	create.Flags().StringVar(&adminEmail, "admin-email", "", "email of the first owner (required)")
	requireFlags(create, "slug", "name", "admin-email")
	cmd.AddCommand(create, quotaCmd(e))
	return cmd
}

// quotaCmd sets how much a tenant may store in files.
func quotaCmd(e *env) *cobra.Command {
	var slug string
	var bytes int64
	quota := &cobra.Command{
		Use:   "quota",
		Short: "Set how many bytes of files (every version) a tenant may store; 0 for no bound",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, ctx, t, err := e.openTenant(cmd.Context(), slug)
			if err != nil {
				return err
			}
			defer a.Close()
			if t, err = a.Tenants.SetQuota(ctx, t.ID, bytes); err != nil {
				return err
			}
			if t.QuotaBytes == 0 {
				fmt.Fprintf(e.stdout, "tenant %s: no storage quota\n", t.Slug)
				return nil
			}
			fmt.Fprintf(e.stdout, "tenant %s: storage quota %d bytes\n", t.Slug, t.QuotaBytes)
			return nil
		},
	}
	quota.Flags().StringVar(&slug, "tenant", "", "the tenant's slug (required)")
	quota.Flags().Int64Var(&bytes, "bytes", 0, "the quota in bytes; 0 for no bound")
	requireFlags(quota, "tenant", "bytes")
	return quota
}

func userCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users"}
	var slug, email, role string
	var passwordStdin bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a user",
		Long: `Create a user. With --password-stdin the first line of standard input is
the password (checked against the tenant's password policy); without it the
user has no password until one is set through a link.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pw string
			if passwordStdin {
				var err error
				if pw, err = readPassword(e.stdin); err != nil {
					return err
				}
			}
			a, ctx, t, err := e.openTenant(cmd.Context(), slug)
			if err != nil {
				return err
			}
			defer a.Close()
			u, err := a.Identity.CreateUser(ctx, t.ID, identity.NewUser{Email: email, Role: role, Password: pw})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "user %s created (%s) in tenant %s\n", u.ID, u.Role, t.Slug)
			return nil
		},
	}
	create.Flags().StringVar(&slug, "tenant", "", "tenant slug (required)")
	create.Flags().StringVar(&email, "email", "", "email (required)")
	create.Flags().StringVar(&role, "role", identity.RoleMember, "owner, admin or member")
	create.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	requireFlags(create, "tenant", "email")
	cmd.AddCommand(create)
	return cmd
}

func tokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var slug, email, name, expires string
	var scopes []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API token and print it once",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ttl, err := parseTTL(expires)
			if err != nil {
				return err
			}
			a, ctx, t, err := e.openTenant(cmd.Context(), slug)
			if err != nil {
				return err
			}
			defer a.Close()
			secret, tok, err := a.Identity.CreateToken(ctx, t.ID, email, name, scopes, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, secret)
			fmt.Fprintf(e.stderr, "token %s (%s), scopes %s, expires %s — shown once, store it now\n",
				tok.ID, tok.Name, strings.Join(tok.Scopes, " "), tok.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().StringVar(&slug, "tenant", "", "tenant slug (required)")
	create.Flags().StringVar(&email, "email", "", "the user the token acts for (required)")
	create.Flags().StringVar(&name, "name", "", "what the token is for (required)")
	create.Flags().StringSliceVar(&scopes, "scopes", nil, "scopes, comma-separated (default all: "+strings.Join(identity.Scopes, ",")+")")
	create.Flags().StringVar(&expires, "expires", "90d", "lifetime: Nd, or a Go duration like 12h")
	requireFlags(create, "tenant", "email", "name")
	cmd.AddCommand(create)
	return cmd
}

func parseTTL(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != d {
			return 0, fmt.Errorf("--expires %q: want a number of days like 90d or a duration like 12h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: want a number of days like 90d or a duration like 12h", s)
	}
	return d, nil
}

func auditCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with audit trails"}
	var slug string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify a tenant's audit chain; exit 0 when intact",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, ctx, t, err := e.openTenant(cmd.Context(), slug)
			if err != nil {
				return err
			}
			defer a.Close()
			v, err := a.Log.Verify(ctx, t.ID)
			if err != nil {
				return err
			}
			if !v.OK {
				return &exitError{code: 1, msg: fmt.Sprintf("tenant %s: %s", t.Slug, v)}
			}
			fmt.Fprintf(e.stdout, "tenant %s: %s\n", t.Slug, v)
			return nil
		},
	}
	verify.Flags().StringVar(&slug, "tenant", "", "tenant slug (required)")
	requireFlags(verify, "tenant")
	accounts := &cobra.Command{
		Use:   "account-writes",
		Short: "List rectifications and erasures of people with accounts made outside the account's paths (the subjects API before December 2026)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, ctx, t, err := e.openTenant(cmd.Context(), slug)
			if err != nil {
				return err
			}
			defer a.Close()
			es, err := a.Identity.AccountWrites(ctx, t.ID)
			if err != nil {
				return err
			}
			if len(es) == 0 {
				fmt.Fprintf(e.stdout, "tenant %s: no account was changed or erased outside its own paths\n", t.Slug)
				return nil
			}
			fmt.Fprintf(e.stdout, "tenant %s: %d writes to people with accounts outside the account's paths (newest first):\n", t.Slug, len(es))
			for _, ev := range es {
				what := ev.Details["fields"]
				if ev.Action == "subject.erase" {
					what = ev.Details["reason"]
				}
				fmt.Fprintf(e.stdout, "%s  %-15s  subject %s  by %s:%s (%s)  %v  request %s\n", ev.At.UTC().Format(time.RFC3339),
					ev.Action, ev.SubjectID, ev.Actor.Type, ev.Actor.ID, ev.Actor.Display, what, ev.RequestID)
			}
			return nil
		},
	}
	accounts.Flags().StringVar(&slug, "tenant", "", "tenant slug (required)")
	requireFlags(accounts, "tenant")
	cmd.AddCommand(verify, accounts)
	return cmd
}

func keysCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage keys"}
	var slug string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Give a tenant a new key-encryption key and re-wrap every subject key under it",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, ctx, t, err := e.openTenant(cmd.Context(), slug)
			if err != nil {
				return err
			}
			defer a.Close()
			res, err := a.Keys.Rotate(ctx, a.DB, t.ID, func(done int) {
				fmt.Fprintf(e.stderr, "\rre-wrapped %d subject keys", done)
			})
			if res.Rewrapped > 0 {
				fmt.Fprintln(e.stderr)
			}
			if err != nil {
				return err
			}
			if err := a.Log.Record(ctx, t.ID, audit.Event{Action: "keys.rotate", TargetType: "tenant", TargetID: t.ID,
				Details: map[string]any{"version": res.Version, "rewrapped": res.Rewrapped, "retired": res.Retired}}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "tenant %s: key version %d active, %d subject keys re-wrapped, retired versions %v\n",
				t.Slug, res.Version, res.Rewrapped, res.Retired)
			return nil
		},
	}
	rotate.Flags().StringVar(&slug, "tenant", "", "tenant slug (required)")
	requireFlags(rotate, "tenant")
	cmd.AddCommand(rotate)
	return cmd
}

// readPassword reads one line (without its line ending) from r.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("--password-stdin: standard input held no password")
	}
	return line, nil
}

// tenantRegions sorts tenant create's --region values: NAME=URL defines a
// region (replacing CUSTODIA_REGIONS, as everywhere), a bare NAME is the
// default region. It answers the default region.
func (e *env) tenantRegions(args []string, defaultRegion string) (string, error) {
	var defined []config.Region
	for _, a := range args {
		if !strings.Contains(a, "=") {
			if defaultRegion != "" && defaultRegion != a {
				return "", usageError(fmt.Errorf("--region %s and --default-region %s disagree: give the default region once", a, defaultRegion))
			}
			defaultRegion = a
			continue
		}
		r, err := config.ParseRegion(a)
		if err != nil {
			return "", usageError(err)
		}
		defined = append(defined, r)
	}
	if len(defined) > 0 {
		e.cfg.Regions = defined
	}
	return defaultRegion, nil
}
