package main

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/keyring"
)

func serveCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTPS server",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			a, err := app.Open(ctx, e.cfg, app.Options{Options: core.Options{LogOutput: e.stderr}})
			if err != nil {
				return err
			}
			defer a.Close()
			if _, err := a.TLSConfig(); err != nil { // make the certificate before announcing
				return err
			}
			ln, err := net.Listen("tcp", a.Config.Addr)
			if err != nil {
				return err
			}
			w := e.stdout
			fmt.Fprintf(w, "Custodia is listening on https://%s\n", ln.Addr())
			if a.DB.Path() != "" {
				fmt.Fprintf(w, "  database:   SQLite %s\n", a.DB.Path())
			} else {
				fmt.Fprintf(w, "  database:   PostgreSQL\n")
			}
			if a.Config.TLSCert == "" {
				fmt.Fprintf(w, "  TLS:        self-signed certificate %s (use --tls-cert/--tls-key for a real one)\n",
					filepath.Join(a.Config.DataDir, "tls", "cert.pem"))
			}
			if a.Config.MasterKeyURL == "" {
				fmt.Fprintf(w, "  master key: %s\n", filepath.Join(a.Config.DataDir, keyring.MasterKeyFile))
			}
			bs := a.Backups.Setup()
			fmt.Fprintf(w, "  backups:    %s, daily at %s UTC, the %d newest kept, manifests signed by %s\n", bs.Dir, a.Config.BackupAt, bs.Keep, bs.Fingerprint)
			for _, warning := range bs.Warnings {
				fmt.Fprintf(w, "  WARNING:    %s\n", warning)
			}
			if a.MasterKeyCreated {
				fmt.Fprintf(w, "\nA new master key was created. Back it up somewhere safe and separate from the data:\n"+
					"without it nothing stored here can ever be read again.\n")
			}
			fmt.Fprintf(w, "\nNext, in another terminal (same --data-dir):\n"+
				"  custodia tenant create --slug acme --name \"Acme Ltd\" --admin-email admin@acme.example\n"+
				"and open the setup link it prints to choose the owner's password; the console is at %s/login.\n"+
				"For the API: custodia token create --tenant acme --email admin@acme.example --name first-token,\n"+
				"then  Authorization: Bearer <token>  (see README.md).\n", a.Config.PublicURL)
			return a.Serve(ctx, ln)
		},
	}
}

func migrateCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply database schema migrations and exit",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, _, err := e.open(cmd.Context()) // Open migrates
			if err != nil {
				return err
			}
			defer a.Close()
			fmt.Fprintln(e.stdout, "database schema is current")
			return nil
		},
	}
}
