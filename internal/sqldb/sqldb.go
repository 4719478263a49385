// Package sqldb opens Custodia's database — SQLite (embedded default) or
// PostgreSQL (scale-out) — behind one small API: plain SQL written with `?`
// placeholders, a read pool, a single writer pool for SQLite, transactions as
// closures, and embedded forward-only migrations.
//
// Every table carries tenant_id and every query names it; this package does
// not enforce that, the store tests of each domain package do.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/custodia/custodia/internal/errs"
)

// Dialect names the database engine behind a DB.
type Dialect int

// The supported engines.
const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is an open database. The zero value is not usable; call Open.
type DB struct {
	dialect  Dialect
	write    *sql.DB
	read     *sql.DB
	path     string // SQLite file, empty for PostgreSQL
	location string
	rebinds  sync.Map

	stmtMu  sync.Mutex
	stmts   map[stmtKey]*sql.Stmt // SQLite prepared statements, per pool
	pending map[stmtKey]bool      // seen inside a transaction, to prepare after it

	cacheMu sync.Mutex
	caches  []observer // every Cache of this database, emptied as the epochs move
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// maxStmts bounds the statement cache; queries are constants (and a few
// filter combinations), so it is never reached in practice.
const maxStmts = 512

// Open connects to url: empty means SQLite in dataDir/custodia.db;
// "sqlite:///path" names another SQLite file; "postgres://…" PostgreSQL.
// It does not migrate; call Migrate.
func Open(ctx context.Context, rawURL, dataDir string) (*DB, error) {
	return OpenWith(ctx, rawURL, dataDir, TestOptions{})
}

// SQLitePath answers the file of the SQLite database rawURL names (empty:
// custodia.db in dataDir), or an error when it names none.
func SQLitePath(rawURL, dataDir string) (string, error) {
	switch {
	case rawURL == "":
		return filepath.Join(dataDir, "custodia.db"), nil
	case strings.HasPrefix(rawURL, "sqlite://"):
		u, err := url.Parse(rawURL)
		if err != nil {
			return "", fmt.Errorf("parse database url: %w", err)
		}
		return u.Path, nil
	}
	return "", fmt.Errorf("database url: not an SQLite database")
}

// TestOptions are settings for tests that are not about durability. They
// are not part of the configuration: only code sets them, and OpenWith
// refuses them outside a test binary (testing.Testing).
type TestOptions struct {
	// NoSync opens SQLite with synchronous=OFF: a commit returns before it
	// is on disk, so a power cut could lose it. (The tests' PostgreSQL
	// cluster runs without fsync for the same reason.)
	NoSync bool
}

// ErrTestOnly is returned when test-only options are asked for outside a
// test binary.
var ErrTestOnly = errors.New("test-only database options outside a test binary")

// OpenWith is Open with test-only options.
func OpenWith(ctx context.Context, rawURL, dataDir string, opt TestOptions) (*DB, error) {
	if opt != (TestOptions{}) && !testing.Testing() {
		return nil, ErrTestOnly
	}
	switch {
	case rawURL == "":
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		fallthrough
	case strings.HasPrefix(rawURL, "sqlite://"):
		path, err := SQLitePath(rawURL, dataDir)
		if err != nil {
			return nil, err
		}
		return openSQLite(ctx, path, opt)
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		return openPostgres(ctx, rawURL)
	default:
		return nil, fmt.Errorf("database url: unsupported scheme (want empty, sqlite:// or postgres://)")
	}
}

func openSQLite(ctx context.Context, path string, opt TestOptions) (*DB, error) {
	// synchronous(FULL): a commit is on disk before the caller hears about it.
	// secure_delete: freed pages are zeroed, so erased ciphertext does not linger.
	syncMode := "FULL"
	if opt.NoSync {
		syncMode = "OFF"
	}
	pragmas := "_pragma=busy_timeout(15000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(" + syncMode + ")&_pragma=secure_delete(1)&_pragma=cache_size(-32768)"
	// wal_autocheckpoint(16384): the WAL is copied back into the database
	// every 64 MiB rather than every 4 MiB, so a page changed again and
	// again (a random index page in a big import) is copied once, not each
	// time (an import into a tenant of 900 000 contacts: 7 700 → 8 800 a
	// second; commits stay as durable: each still fsyncs the WAL).
	write, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=wal_autocheckpoint(16384)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", filepath.Base(path), err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		write.Close()
		return nil, fmt.Errorf("restrict sqlite file mode: %w", err)
	}
	read, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite reader: %w", err)
	}
	n := max(4, runtime.NumCPU())
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	return &DB{dialect: SQLite, write: write, read: read, path: path, location: "file://" + path,
		stmts: map[stmtKey]*sql.Stmt{}, pending: map[stmtKey]bool{}}, nil
}

func openPostgres(ctx context.Context, rawURL string) (*DB, error) {
	db, err := sql.Open("pgx", rawURL)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	// As many idle as open: a connection closed because more than the idle
	// bound came back at once is a PostgreSQL backend forked again at the
	// next burst (at 64 clients, reads fell from 4 000/s to 2 500/s).
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	loc := "postgres"
	if u, err := url.Parse(rawURL); err == nil {
		loc = "postgres://" + u.Host + u.Path
	}
	return &DB{dialect: Postgres, write: db, read: db, location: loc}, nil
}

// Postgres runs fn on a connection of the PostgreSQL pool as pgx sees it:
// backups read and load tables through COPY, which database/sql has not.
func (db *DB) Postgres(ctx context.Context, fn func(c *pgx.Conn) error) error {
	if db.dialect != Postgres {
		return errors.New("not a PostgreSQL database")
	}
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error { return fn(dc.(*stdlib.Conn).Conn()) })
}

// Dialect reports the engine.
func (db *DB) Dialect() Dialect { return db.dialect }

// Location says where the database is, for reports: the SQLite file, or
// PostgreSQL's host, port and database name (never credentials).
func (db *DB) Location() string { return db.location }

// Path is the SQLite file, or "" for PostgreSQL.
func (db *DB) Path() string { return db.path }

// Close closes both pools.
func (db *DB) Close() error {
	db.stmtMu.Lock()
	for _, st := range db.stmts {
		st.Close()
	}
	db.stmts, db.pending = nil, nil
	db.stmtMu.Unlock()
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.read.PingContext(ctx) }

// Read returns a querier on the read pool.
func (db *DB) Read() Q { return Q{db: db, pool: db.read} }

// Tx is a write transaction.
type Tx struct {
	Q
	tx *sql.Tx
}

// txState is what every copy of a transaction's Q shares.
type txState struct {
	conn *sql.Conn // PostgreSQL: the connection under the transaction, for statements sent together
	// pending are the savepoint statements of a Step, sent to the server
	// with the first statement that follows them (on PostgreSQL in the
	// same round trip).
	pending []string
	open    bool  // a Step's savepoint is established on the server
	err     error // sending pending failed: the transaction cannot commit
}

// WithTx runs fn in a write transaction, committing when fn returns nil and
// rolling back otherwise. fn must not keep tx.
func (db *DB) WithTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) (err error) {
	st := &txState{}
	var stx *sql.Tx
	if db.dialect == Postgres {
		// The connection is kept at hand to send statements together
		// (pgx batches) inside the transaction.
		if st.conn, err = db.write.Conn(ctx); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer st.conn.Close()
		stx, err = st.conn.BeginTx(ctx, nil)
	} else {
		stx, err = db.write.BeginTx(ctx, nil)
	}
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx := &Tx{Q: Q{db: db, pool: db.write, tx: stx, st: st}, tx: stx}
	defer func() {
		if p := recover(); p != nil {
			_ = stx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = stx.Rollback()
		}
	}()
	if err := fn(ctx, tx); err != nil {
		return classify(err)
	}
	if st.err != nil {
		return classify(st.err)
	}
	if err := stx.Commit(); err != nil {
		return classify(fmt.Errorf("commit: %w", err))
	}
	if db.dialect == SQLite {
		db.preparePending(context.WithoutCancel(ctx))
	}
	return nil
}

// Savepoint runs fn inside a savepoint of tx: when fn fails, only its own
// changes are undone and the transaction goes on.
func (tx *Tx) Savepoint(ctx context.Context, name string, fn func() error) error {
	tx.flush(ctx) // a Step's savepoint first
	if _, err := tx.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return classify(fmt.Errorf("savepoint: %w", err))
	}
	if err := fn(); err != nil {
		if _, rerr := tx.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+name); rerr != nil {
			return classify(errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rerr)))
		}
		_, _ = tx.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name)
		return classify(err)
	}
	if _, err := tx.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name); err != nil {
		return classify(fmt.Errorf("release savepoint: %w", err))
	}
	return nil
}

// Step runs fn inside a savepoint of its own, as Savepoint does, for the
// many members of one transaction run one after the other (the audit
// committer's units). The savepoint is not released when fn is done: the
// next Step releases it in the same statement that opens its own, and the
// commit releases the last — a round trip less for every member on
// PostgreSQL. What runs between two steps runs inside the earlier step's
// savepoint, which nothing rolls back to once its fn has returned. Steps
// do not nest; a Savepoint inside a Step's fn does.
func (tx *Tx) Step(ctx context.Context, fn func() error) error {
	st := tx.st
	if len(st.pending) == 0 { // else the last step sent nothing: its statements serve this one
		st.pending = []string{"SAVEPOINT step"}
		if st.open {
			st.pending = []string{"RELEASE SAVEPOINT step", "SAVEPOINT step"}
		}
	}
	err := fn()
	if st.err != nil {
		return classify(errors.Join(err, st.err))
	}
	if err == nil || len(st.pending) > 0 { // succeeded, or failed before a statement: nothing to undo
		return classify(err)
	}
	if _, rerr := tx.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT step"); rerr != nil {
		return classify(errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rerr)))
	}
	return classify(err)
}

// flush sends the pending savepoint statements on their own, before a
// statement that cannot go with them.
func (q Q) flush(ctx context.Context) {
	if q.st == nil || len(q.st.pending) == 0 {
		return
	}
	_, err := q.tx.ExecContext(ctx, strings.Join(q.st.pending, "; "))
	q.st.sent(err)
}

// sent records that the pending statements went to the server, and how
// they fared.
func (st *txState) sent(err error) {
	st.pending, st.open = nil, true
	if err != nil && st.err == nil {
		st.err = fmt.Errorf("savepoint: %w", err)
	}
}

// ForUpdate is the row-locking suffix for a SELECT inside a transaction:
// " FOR UPDATE" on PostgreSQL, nothing on SQLite (whose writer is single).
func (db *DB) ForUpdate() string {
	if db.dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// Q runs SQL written with `?` placeholders on a pool or a transaction.
// On SQLite, statements are prepared once per pool and reused: parsing SQL
// is a fifth of the CPU of a write otherwise. (pgx caches statements per
// connection by itself.)
type Q struct {
	db   *DB
	pool *sql.DB
	tx   *sql.Tx  // nil outside a transaction
	st   *txState // nil outside a transaction
}

// stmt returns the cached prepared statement for query, or nil when there
// is none to use (PostgreSQL, or a full cache).
func (q Q) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if q.db.dialect != SQLite {
		return nil, nil
	}
	k := stmtKey{q.pool, query}
	q.db.stmtMu.Lock()
	st, ok := q.db.stmts[k]
	q.db.stmtMu.Unlock()
	if !ok {
		if q.tx != nil {
			// The writer pool's one connection is held by this transaction:
			// prepare on the pool once the transaction is over.
			q.db.stmtMu.Lock()
			if q.db.pending != nil {
				q.db.pending[k] = true
			}
			q.db.stmtMu.Unlock()
			return nil, nil
		}
		return q.prepare(ctx, k)
	}
	if q.tx != nil {
		return q.tx.StmtContext(ctx, st), nil
	}
	return st, nil
}

// prepare prepares k on its pool and caches it.
func (q Q) prepare(ctx context.Context, k stmtKey) (*sql.Stmt, error) {
	st, err := k.pool.PrepareContext(ctx, k.query)
	if err != nil {
		return nil, err
	}
	q.db.stmtMu.Lock()
	defer q.db.stmtMu.Unlock()
	if q.db.stmts == nil || len(q.db.stmts) >= maxStmts {
		st.Close()
		return nil, nil
	}
	if prev, dup := q.db.stmts[k]; dup {
		st.Close()
		return prev, nil
	}
	q.db.stmts[k] = st
	return st, nil
}

// preparePending prepares the statements first seen inside a transaction.
func (db *DB) preparePending(ctx context.Context) {
	db.stmtMu.Lock()
	var keys []stmtKey
	for k := range db.pending {
		keys = append(keys, k)
		delete(db.pending, k)
	}
	db.stmtMu.Unlock()
	for _, k := range keys {
		_, _ = Q{db: db, pool: k.pool}.prepare(ctx, k) // an unprepared statement still runs, parsed each time
	}
}

// Exec runs a statement.
func (q Q) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if q.st != nil && q.st.conn != nil && len(q.st.pending) > 0 { // with the savepoint, one round trip
		n, err := q.together(ctx, []Stmt{{SQL: query, Args: args}})
		if err != nil {
			return nil, err
		}
		return rowsAffected(n[0]), nil
	}
	q.flush(ctx)
	query = q.db.rebind(query)
	if st, err := q.stmt(ctx, query); err != nil {
		return nil, err
	} else if st != nil {
		return st.ExecContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.ExecContext(ctx, query, args...)
	}
	return q.pool.ExecContext(ctx, query, args...)
}

// Query runs a query returning rows.
func (q Q) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q.flush(ctx)
	query = q.db.rebind(query)
	if st, err := q.stmt(ctx, query); err != nil {
		return nil, err
	} else if st != nil {
		return st.QueryContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryContext(ctx, query, args...)
	}
	return q.pool.QueryContext(ctx, query, args...)
}

// QueryRow runs a query returning at most one row.
func (q Q) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	q.flush(ctx)
	query = q.db.rebind(query)
	if st, err := q.stmt(ctx, query); err == nil && st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryRowContext(ctx, query, args...)
	}
	return q.pool.QueryRowContext(ctx, query, args...)
}

// Strings runs a query of one text column and answers its values.
func (q Q) Strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// DB returns the database q runs on.
func (q Q) DB() *DB { return q.db }

// InTx reports whether q runs inside a transaction.
func (q Q) InTx() bool { return q.tx != nil }

// rebind turns `?` placeholders into `$n` for PostgreSQL. Queries are
// constants, so the result is cached.
func (db *DB) rebind(query string) string {
	if db.dialect != Postgres || !strings.Contains(query, "?") {
		return query
	}
	if s, ok := db.rebinds.Load(query); ok {
		return s.(string)
	}
	var b strings.Builder
	n, inQuote := 0, false
	for _, r := range query {
		switch {
		case r == '\'':
			inQuote = !inQuote
		case r == '?' && !inQuote:
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	s := b.String()
	db.rebinds.Store(query, s)
	return s
}

// IsUniqueViolation reports whether err is a unique or primary key violation.
func IsUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// IsFull reports whether err is the database refusing a write for want
// of space: SQLite's SQLITE_FULL (a full disk, or max_page_count reached)
// or PostgreSQL's disk_full (53100).
func IsFull(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_FULL
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "53100"
}

// classify makes a full database an errs.NoSpace error (507): every write
// goes through WithTx or Savepoint, so callers need not check.
func classify(err error) error {
	if err == nil || !IsFull(err) {
		return err
	}
	if e, ok := errs.As(err); ok && e.Kind == errs.NoSpace {
		return err
	}
	return &errs.Error{Kind: errs.NoSpace, Detail: "the database's disk is full; nothing was written", Err: err}
}

// IsForeignKeyViolation reports whether err is a foreign key violation.
func IsForeignKeyViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// Scrub makes deleted rows leave the files now rather than later, after an
// erasure: on SQLite (whose freed pages secure_delete zeroes) it
// checkpoints the WAL into the database and truncates it, so that no old
// page image with the deleted rows stays in the WAL. It retries while
// readers hold old snapshots and reports whether it got through. On
// PostgreSQL it does nothing: dead tuples stay in the data files until
// their space is reused (see SECURITY.md).
func (db *DB) Scrub(ctx context.Context) (bool, error) {
	if db.dialect != SQLite {
		return true, nil
	}
	for range 20 {
		var busy, logFrames, done int
		if err := db.write.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
			return false, err
		}
		if busy == 0 {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false, nil
}
