package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/custodia/custodia/internal/sqldb"
)

// A PostgreSQL backup's database part is a dump read through the driver
// (no pg_dump: the server stays one binary): a first line naming the
// format, then per table a line "table NAME\tCOL,COL,…", its rows in COPY
// text format, and a line "\.". Every table is read in one
// repeatable-read transaction — one instant — except subject_keys, whose
// rows go to the key shards.

// dumpFormat is a dump's first line.
const dumpFormat = "custodia/v1 postgres dump"

// pgxQuerier reads through a pgx transaction.
type pgxQuerier struct{ tx pgx.Tx }

func (q pgxQuerier) query(ctx context.Context, query string) (rows, error) {
	r, err := q.tx.Query(ctx, query)
	return pgxRows{r}, err
}

type pgxRows struct{ pgx.Rows }

func (r pgxRows) Close() error { r.Rows.Close(); return nil }

// SnapshotPostgres reads the live PostgreSQL database at one instant into
// dir: the dump of every table but subject_keys (database.dump), and the
// data keys into the shards of dir/keys.
func SnapshotPostgres(ctx context.Context, live *sqldb.DB, dir string) (Snapshot, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{Database: filepath.Join(dir, "database.dump")}
	out, err := os.OpenFile(s.Database, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Snapshot{}, err
	}
	defer out.Close()
	w := bufio.NewWriterSize(out, 1<<20)
	err = live.Postgres(ctx, func(c *pgx.Conn) error {
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if err := readSnapshot(ctx, pgxQuerier{tx}, dir, &s); err != nil { // the first read fixes the instant
			return err
		}
		tables, err := tablesOf(ctx, tx)
		if err != nil {
			return err
		}
		if tables, err = referencedFirst(ctx, tx, tables); err != nil {
			return err
		}
		fmt.Fprintln(w, dumpFormat)
		for _, t := range tables {
			if t.name == "subject_keys" {
				continue
			}
			fmt.Fprintf(w, "table %s\t%s\n", t.name, strings.Join(t.columns, ","))
			if _, err := tx.Conn().PgConn().CopyTo(ctx, w, "COPY "+t.name+" ("+strings.Join(t.columns, ", ")+") TO STDOUT"); err != nil {
				return fmt.Errorf("read table %s: %w", t.name, err)
			}
			fmt.Fprintln(w, `\.`)
		}
		return tx.Commit(ctx)
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = out.Sync()
	}
	if err != nil {
		return Snapshot{}, err
	}
	return s, out.Close()
}

// table is one table of the schema: its name and columns, in order.
type table struct {
	name    string
	columns []string
}

// tablesOf answers the tables of the current schema, by name.
func tablesOf(ctx context.Context, tx pgx.Tx) ([]table, error) {
	rows, err := tx.Query(ctx, `SELECT c.table_name, c.column_name FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
		ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []table
	for rows.Next() {
		var name, col string
		if err := rows.Scan(&name, &col); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].name != name {
			out = append(out, table{name: name})
		}
		out[len(out)-1].columns = append(out[len(out)-1].columns, col)
	}
	return out, rows.Err()
}

// referencedFirst orders tables so that a table comes after every table
// its foreign keys refer to: a restore loads them in that order.
func referencedFirst(ctx context.Context, tx pgx.Tx, tables []table) ([]table, error) {
	rows, err := tx.Query(ctx, `SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c
		JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = current_schema()`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	refers := map[string][]string{}
	for rows.Next() {
		var from, to string
		if err := rows.Scan(&from, &to); err != nil {
			return nil, err
		}
		if from != to { // a table's references to itself are checked at the end of its COPY
			refers[from] = append(refers[from], to)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	byName := map[string]table{}
	for _, t := range tables {
		byName[t.name] = t
	}
	var out []table
	state := map[string]int{} // 1: being placed, 2: placed
	var place func(name string) error
	place = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("tables refer to each other in a cycle through %s", name)
		case 2:
			return nil
		}
		state[name] = 1
		for _, to := range refers[name] {
			if err := place(to); err != nil {
				return err
			}
		}
		state[name] = 2
		if t, ok := byName[name]; ok {
			out = append(out, t)
		}
		return nil
	}
	for _, t := range tables {
		if err := place(t.name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RestorePostgres loads the backup id of dir, whose manifest the key of
// fingerprint signed, into the empty PostgreSQL database target: the
// schema of the backup's version, every table's rows from the dump
// (decrypted as it streams, never written out in clear), the data keys of
// everyone not erased since from the shards — all in one transaction —
// then the migrations since. It answers the manifest.
func RestorePostgres(ctx context.Context, dir, id, fingerprint string, ids []age.Identity, target *sqldb.DB, progress Progress) (Manifest, error) {
	m, _, err := Trusted(dir, id, fingerprint)
	if err != nil {
		return m, err
	}
	return m, restorePostgres(ctx, dir, m, ids, target, progress)
}

// restorePostgres is RestorePostgres once the manifest m is trusted.
func restorePostgres(ctx context.Context, dir string, m Manifest, ids []age.Identity, target *sqldb.DB, progress Progress) error {
	id := m.ID
	if m.Engine != sqldb.Postgres.String() {
		return fmt.Errorf("backup %s is of a %s database: restore it into %s", id, m.Engine, m.Engine)
	}
	if m.Schema > sqldb.NewestSchema() {
		return fmt.Errorf("backup %s has schema version %d, newer than this program's %d: restore it with a newer custodia", id, m.Schema, sqldb.NewestSchema())
	}
	if err := verifyParts(filepath.Join(dir, id), m); err != nil {
		return err
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	err := target.Postgres(ctx, func(c *pgx.Conn) error {
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errors.New("the database holds tables: a backup is restored into an empty database")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := target.MigrateTo(ctx, m.Schema); err != nil {
		return err
	}
	in, err := os.Open(filepath.Join(dir, id, m.Database.Name))
	if err != nil {
		return err
	}
	defer in.Close()
	plain, err := age.Decrypt(&progressReader{r: in, total: m.Database.Bytes, tell: progress}, ids...)
	if err != nil {
		return fmt.Errorf("decrypt %s: %w (is this the identity the backups are encrypted to?)", m.Database.Name, err)
	}
	err = target.Postgres(ctx, func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if err := load(ctx, tx, bufio.NewReaderSize(plain, 1<<20)); err != nil {
			return err
		}
		var keys [][]any
		for _, k := range m.Keys {
			rs, err := ReadShard(filepath.Join(dir, id, "keys", k.Name))
			if err != nil {
				return err
			}
			for _, r := range rs {
				keys = append(keys, []any{r.Tenant, r.Subject, r.KEKVersion, r.Wrapped, r.Created})
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"subject_keys"}, []string{"tenant_id", "subject_id", "kek_version", "wrapped", "created_at"}, pgx.CopyFromRows(keys)); err != nil {
			return fmt.Errorf("put the data keys back: %w", err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM blob_holds"); err != nil { // the backup's own hold was copied too
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return err
	}
	_, err = target.Migrate(ctx)
	return err
}

// load reads a dump from r into tx, table by table (schema_migrations and
// cache_epochs are the target's own, made by MigrateTo).
func load(ctx context.Context, tx pgx.Tx, r *bufio.Reader) error {
	first, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(first) != dumpFormat {
		return errors.New("the database part is not a dump this program reads")
	}
	known, err := tablesOf(ctx, tx)
	if err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the dump ends in the middle of a line: %w", err)
		}
		name, cols, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(line, "table "), "\n"), "\t")
		if !ok || !strings.HasPrefix(line, "table ") || !slices.ContainsFunc(known, func(t table) bool { return t.name == name }) {
			return fmt.Errorf("the dump names a table this schema has not: %q", strings.TrimSpace(line))
		}
		section := &sectionReader{r: r}
		if name == "schema_migrations" || name == "cache_epochs" {
			_, err = io.Copy(io.Discard, section)
		} else {
			_, err = tx.Conn().PgConn().CopyFrom(ctx, section, "COPY "+name+" ("+strings.ReplaceAll(cols, ",", ", ")+") FROM STDIN")
		}
		if err != nil {
			return fmt.Errorf("load table %s: %w", name, err)
		}
		if !section.done {
			return fmt.Errorf("load table %s: the dump ends before the table does", name)
		}
	}
}

// sectionReader reads one table's COPY rows from a dump, up to the line
// "\." that ends them (COPY text escapes every newline in a value, so a
// line is a row).
type sectionReader struct {
	r    *bufio.Reader
	line []byte
	mid  bool // the last piece handed on did not end a line
	done bool
}

func (s *sectionReader) Read(p []byte) (int, error) {
	for len(s.line) == 0 {
		if s.done {
			return 0, io.EOF
		}
		line, err := s.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull { // ErrBufferFull: a long row, handed on in pieces
			return 0, io.ErrUnexpectedEOF
		}
		if !s.mid && string(line) == "\\.\n" {
			s.done = true
			return 0, io.EOF
		}
		s.mid = err == bufio.ErrBufferFull
		s.line = append(s.line[:0], line...)
	}
	n := copy(p, s.line)
	s.line = s.line[n:]
	return n, nil
}
