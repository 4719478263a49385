package main

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custodia/custodia/internal/backup"
)

// backupCmd makes, lists and checks backups (SQLite for now): the database
// without the subjects' keys encrypted with age, the keys in shards an
// erasure rewrites (docs/decisions/0025-backups.md).
func backupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Make, list and verify encrypted backups"}
	run := &cobra.Command{
		Use:   "run",
		Short: "Make a backup now and keep the newest (CUSTODIA_BACKUP_KEEP)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, ctx, err := e.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			e.warnBackups(a.Backups.Setup())
			m, err := a.Backups.Run(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s  %s  backup %s written to %s\n", m.CreatedAt.Format("2006-01-02T15:04:05Z"), size(m), m.ID, a.Backups.Setup().Dir)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "One line per backup, newest first: time, size, id, state",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, _, err := e.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			s := a.Backups.Setup()
			pub := s.Signer.Public().(ed25519.PublicKey)
			ms, err := backup.List(s.Dir, pub)
			if err != nil {
				return err
			}
			if len(ms) == 0 {
				fmt.Fprintf(e.stdout, "no backup in %s yet\n", s.Dir)
			}
			for _, m := range ms {
				state := "signed"
				if m.Forgotten > 0 {
					state = fmt.Sprintf("signed, %d erased people's keys removed since", m.Forgotten)
				}
				fmt.Fprintf(e.stdout, "%s  %s  %s  %s\n", m.CreatedAt.Format("2006-01-02T15:04:05Z"), size(m), m.ID, state)
			}
			return nil
		},
	}
	verify := &cobra.Command{
		Use:   "verify [ID]",
		Short: "Check a backup (the newest by default) against its signed manifest, without any private key",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, _, err := e.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			s := a.Backups.Setup()
			pub := s.Signer.Public().(ed25519.PublicKey)
			id := ""
			if len(args) == 1 {
				id = args[0]
			} else {
				ms, err := backup.List(s.Dir, pub)
				if err != nil {
					return err
				}
				if len(ms) == 0 {
					return &exitError{code: 1, msg: "custodia: no backup in " + s.Dir}
				}
				id = ms[0].ID
			}
			if err := backup.Verify(s.Dir, id, pub); err != nil {
				return &exitError{code: 1, msg: "custodia: " + err.Error()}
			}
			fmt.Fprintf(e.stdout, "backup %s: every part matches its manifest, signed by %s\n", id, s.Fingerprint)
			return nil
		},
	}
	cmd.AddCommand(run, list, verify)
	return cmd
}

// warnBackups says what the operator should change about backups.
func (e *env) warnBackups(s backup.Setup) {
	for _, w := range s.Warnings {
		fmt.Fprintln(e.stderr, "custodia: warning:", w)
	}
}

// size says a backup's size as a person reads it.
func size(m backup.Manifest) string {
	n := m.Database.Bytes
	for _, k := range m.Keys {
		n += k.Bytes
	}
	switch {
	case n < 1<<20:
		return fmt.Sprintf("%6.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%6.1f MiB", float64(n)/(1<<20))
	}
	return strings.TrimSpace(fmt.Sprintf("%6.1f GiB", float64(n)/(1<<30)))
}
