package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/ledger"
	"github.com/custodia/custodia/internal/sqldb"
)

// backupCmd makes, lists, checks and restores backups (SQLite or
// PostgreSQL): the database without the subjects' keys encrypted with age,
// the keys in shards an erasure rewrites (docs/decisions/0025-backups.md).
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
	var listFingerprint string
	list := &cobra.Command{
		Use:   "list",
		Short: "One line per backup, newest first: time, size, id, state",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Nothing is opened or made: on a new machine the data dir
			// stays empty for the restore.
			trusted, err := backup.Known(e.cfg.DataDir)
			if err != nil {
				return err
			}
			dir := e.cfg.BackupLocation()
			ls, err := backup.Inspect(dir, trusted...)
			if err != nil {
				return err
			}
			if len(ls) == 0 {
				fmt.Fprintf(e.stdout, "no backup in %s yet\n", dir)
			}
			for _, l := range ls {
				m := l.Manifest
				state := "signed"
				switch {
				case !l.Trusted && l.Fingerprint != "" && l.Fingerprint == listFingerprint:
					state = "signed by " + l.Fingerprint + " (the fingerprint given)"
				case !l.Trusted:
					state = "NOT TRUSTED: " + l.Problem
				case m.Forgotten > 0:
					state = fmt.Sprintf("signed, %d erased people's keys removed since", m.Forgotten)
				}
				var regions []string
				for _, f := range m.Files {
					regions = append(regions, f.Region)
				}
				if len(regions) > 0 {
					state += ", files of " + strings.Join(regions, ", ")
				}
				fmt.Fprintf(e.stdout, "%s  %s  %s  %s\n", m.CreatedAt.Format("2006-01-02T15:04:05Z"), size(m), m.ID, state)
			}
			return nil
		},
	}
	list.Flags().StringVar(&listFingerprint, "fingerprint", "", "a manifest key's fingerprint (ed25519:…) whose backups this listing accepts: on a new machine, before a restore")
	var drillIdentity string
	verify := &cobra.Command{
		Use:   "verify [ID]",
		Short: "Check a backup (the newest by default) against its signed manifest, without any private key",
		Long: `Check a backup (the newest by default): its manifest's signature, every part's size and
SHA-256, and that every copy of file content it lists is in its region.

With --identity (the age identity the backups are encrypted to) it is a restore drill: the
backup is decrypted into a temporary directory and opened, every copy of file content is read
and hashed, and every tenant's audit chain is verified against the head signed in the
manifest, with this server's master key. The drill's result is recorded for the console.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, ctx, err := e.open(cmd.Context())
			if err != nil {
				return err
			}
			defer a.Close()
			s := a.Backups.Setup()
			id := ""
			if len(args) == 1 {
				id = args[0]
			} else {
				ms, err := backup.List(s.Dir, s.Trusted...)
				if err != nil {
					return err
				}
				if len(ms) == 0 {
					return &exitError{code: 1, msg: "custodia: no backup in " + s.Dir}
				}
				id = ms[0].ID
			}
			if drillIdentity != "" {
				ids, err := readIdentity(drillIdentity)
				if err != nil {
					return err
				}
				d, err := backup.RunDrill(ctx, s.Dir, id, s.Trusted, ids, a.Keys, a.Regions, e.cfg.DatabaseURL, time.Now)
				if err != nil {
					return &exitError{code: 1, msg: "custodia: " + err.Error()}
				}
				if !d.OK {
					return &exitError{code: 1, msg: "custodia: restore drill of backup " + id + " FAILED: " + d.Problem}
				}
				fmt.Fprintf(e.stdout, "backup %s: restore drill passed — decrypted, opened, %d tenants' audit chains (%d events) verified against the signed heads, %d files read back\n",
					id, d.Tenants, d.Events, d.Files)
				return nil
			}
			err = backup.Verify(s.Dir, id, s.Trusted...)
			if err == nil {
				var ms []backup.Manifest
				if ms, err = backup.List(s.Dir, s.Trusted...); err == nil {
					for _, m := range ms {
						if m.ID == id {
							err = backup.VerifyContent(ctx, a.Regions, s.Dir, m, false)
						}
					}
				}
			}
			if err != nil {
				return &exitError{code: 1, msg: "custodia: " + err.Error()}
			}
			fmt.Fprintf(e.stdout, "backup %s: every part matches its manifest, signed by %s\n", id, s.Fingerprint)
			return nil
		},
	}
	verify.Flags().StringVar(&drillIdentity, "identity", "", "the age identity file: decrypt and check the backup whole (a restore drill)")
	cmd.AddCommand(run, list, verify, restoreCmd(e))
	return cmd
}

// restoreCmd restores a backup into an empty data dir: the database with
// the keys of everyone not erased since, then the audit anchor set up
// again with a record of the restore in every tenant's trail.
func restoreCmd(e *env) *cobra.Command {
	var identityFile, fingerprint string
	var filesFrom []string
	cmd := &cobra.Command{
		Use:   "restore ID",
		Short: "Restore a backup into an empty data directory or PostgreSQL database",
		Long: `Restore the backup ID of the backup location (--backup-dir) into an empty data
directory (SQLite) or an empty PostgreSQL database (--database-url), and each region's
files back into the region's store. --identity is the age identity the backups are encrypted to, --fingerprint
the manifest key's fingerprint that serve printed ("manifests signed by ed25519:…"):
a backup signed by another key is refused. The master key must be the one the backup
was made under (--master-key-url, or master.key copied into the data directory).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := readIdentity(identityFile)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(e.cfg.DataDir, 0o700); err != nil {
				return err
			}
			location := e.cfg.BackupLocation()
			// The ledger of what was taken away since, checked before
			// anything is written: one that does not verify stops here.
			m0, pub, err := backup.Trusted(location, args[0], fingerprint)
			if err != nil {
				return &exitError{code: 1, msg: "custodia: " + err.Error()}
			}
			known, err := backup.Known(e.cfg.DataDir)
			if err != nil {
				return err
			}
			entries, err := ledger.Read(append(known, pub), backup.LedgerDir(location), filepath.Join(e.cfg.DataDir, "ledger"))
			if err != nil {
				return &exitError{code: 1, msg: "custodia: the ledger of what was taken away since the backup does not verify, so nothing was restored: " + err.Error()}
			}
			fmt.Fprintf(e.stdout, "the ledger holds %d changes that took something away; those made after the backup of %s are replayed\n",
				len(entries), m0.CreatedAt.Format("2006-01-02T15:04:05Z"))
			var m backup.Manifest
			dst, err := sqldb.SQLitePath(e.cfg.DatabaseURL, e.cfg.DataDir)
			if err == nil {
				fmt.Fprintf(e.stdout, "restoring backup %s from %s into %s\n", args[0], location, dst)
				m, err = backup.RestoreSQLite(cmd.Context(), location, args[0], fingerprint, ids, dst, e.progress("database"))
			} else {
				var target *sqldb.DB
				if target, err = sqldb.Open(cmd.Context(), e.cfg.DatabaseURL, e.cfg.DataDir); err != nil {
					return err
				}
				dst = target.Location()
				fmt.Fprintf(e.stdout, "restoring backup %s from %s into %s\n", args[0], location, dst)
				m, err = backup.RestorePostgres(cmd.Context(), location, args[0], fingerprint, ids, target, e.progress("database"))
				target.Close()
			}
			if err != nil {
				return &exitError{code: 1, msg: "custodia: " + err.Error()}
			}
			if err := backup.Trust(e.cfg.DataDir, pub); err != nil {
				return err
			}
			a, ctx, err := e.open(cmd.Context())
			if err != nil {
				return fmt.Errorf("the restored database does not open (%w); empty %s and restore again with the right master key", err, dst)
			}
			defer a.Close()
			var from backup.Regions = a.Regions
			if len(filesFrom) > 0 {
				var names, urls []string
				for _, spec := range filesFrom {
					r, err := config.ParseRegion(spec)
					if err != nil {
						return usageError(fmt.Errorf("--files-from: %w", err))
					}
					names, urls = append(names, r.Name), append(urls, r.URL)
				}
				named, err := blobstore.OpenRegions(ctx, names, urls)
				if err != nil {
					return err
				}
				defer named.Close()
				from = overlay{named, a.Regions}
			}
			if err := backup.RestoreContent(ctx, from, a.Regions, location, m, e.progress("files")); err != nil {
				return fmt.Errorf("%w; the database is restored but not every file: once this is fixed, empty %s and restore again (files already back are not copied twice)", err, dst)
			}
			lost, err := a.Backups.Restored(ctx, m)
			if err != nil {
				return err
			}
			replayed, err := a.Replay(ctx, entries)
			if err != nil {
				return fmt.Errorf("%w; the database is restored but the ledger not replayed: empty %s and restore again", err, dst)
			}
			for _, id := range slices.Sorted(maps.Keys(lost)) {
				t, err := a.Tenants.ByID(ctx, id)
				name := id
				if err == nil {
					name = t.Slug
				}
				switch {
				case lost[id] > 0:
					fmt.Fprintf(e.stdout, "  tenant %s: audit trail restored to event %d; events %d to %d, anchored since, are lost (recorded in its trail)\n",
						name, m.Heads[id].Seq, m.Heads[id].Seq+1, lost[id])
				default:
					fmt.Fprintf(e.stdout, "  tenant %s: audit trail restored to event %d; the restore is recorded in its trail\n", name, m.Heads[id].Seq)
				}
				if r := replayed[id]; r != nil {
					fmt.Fprintf(e.stdout, "  tenant %s: replayed %s; %d sessions ended", name, counts(r.Applied), r.Sessions)
					if len(r.Recorded) > 0 {
						fmt.Fprintf(e.stdout, "; NOT replayed by this version: %s", counts(r.Recorded))
					}
					fmt.Fprintln(e.stdout)
				}
			}
			fmt.Fprintf(e.stdout, "restored the backup of %s; start the server with: custodia serve\n", m.CreatedAt.Format("2006-01-02T15:04:05Z"))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&filesFrom, "files-from", nil, "region NAME=URL where the backup's copies of a region's files are (under backup/), when not the region's configured store; repeatable")
	cmd.Flags().StringVar(&identityFile, "identity", "", "the age identity file the backups are encrypted to")
	cmd.Flags().StringVar(&fingerprint, "fingerprint", "", "the manifest key's fingerprint (ed25519:…), as serve printed it")
	requireFlags(cmd, "identity", "fingerprint")
	return cmd
}

// counts says a count by kind as a person reads it.
func counts(by map[string]int) string {
	if len(by) == 0 {
		return "nothing"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, fmt.Sprintf("%d %s", by[k], k))
	}
	return strings.Join(parts, ", ")
}

// readIdentity reads an age identity file.
func readIdentity(path string) ([]age.Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the age identity: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("the age identity %s: %w", path, err)
	}
	return ids, nil
}

// overlay is the regions named first, then the others.
type overlay struct{ named, rest *blobstore.Regions }

func (o overlay) Names() []string { return o.rest.Names() }

func (o overlay) Store(name string) (*blobstore.Store, error) {
	if st, err := o.named.Store(name); err == nil {
		return st, nil
	}
	return o.rest.Store(name)
}

// progress reports how far a long step is: a bar redrawn in place on a
// terminal, a line every tenth otherwise.
func (e *env) progress(what string) backup.Progress {
	f, ok := e.stdout.(*os.File)
	tty := false
	if ok {
		if st, err := f.Stat(); err == nil {
			tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	last := -1
	return func(done, total int64) {
		pct := 100
		if total > 0 {
			pct = int(done * 100 / total)
		}
		switch {
		case tty && pct != last:
			fmt.Fprintf(e.stdout, "\r  %-9s [%-40s] %3d%%", what, strings.Repeat("#", pct*40/100), pct)
			if pct == 100 {
				fmt.Fprintln(e.stdout)
			}
		case !tty && pct/10 != last/10:
			fmt.Fprintf(e.stdout, "  %s: %d%% (%d of %d bytes)\n", what, pct, done, total)
		}
		last = pct
	}
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
