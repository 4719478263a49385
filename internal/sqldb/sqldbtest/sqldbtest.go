// Package sqldbtest runs one test body on every database engine: SQLite
// always, PostgreSQL on a throwaway cluster started from the PostgreSQL
// binaries (initdb/pg_ctl, as a non-root user) for the test process.
//
// A package that uses Run must call Main from its TestMain. Where no
// PostgreSQL binaries exist the PostgreSQL variants are skipped loudly;
// with CUSTODIA_REQUIRE_POSTGRES=1 (set by CI) that skip is a failure.
// CUSTODIA_TEST_POSTGRES_URL points the tests at an existing server instead.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
)

// sqliteTemplate is a migrated SQLite database, made once per process
// and copied for each test: migrating from scratch costs far more.
var sqliteTemplate struct {
	mu    sync.Mutex
	bytes []byte
}

// cluster is the PostgreSQL server of this test process, set up by Main.
type cluster struct {
	adminURL string // database "postgres", for CREATE DATABASE
	reason   string // why there is none, when adminURL is empty
	template string // a migrated database used as template

	mu sync.Mutex
}

var pg cluster // test-process state, written once by Main before any test runs

// Main starts a PostgreSQL cluster (when possible), runs the tests and tears
// the cluster down.
func Main(m *testing.M) {
	stop := start()
	code := m.Run()
	stop()
	os.Exit(code)
}

func start() (stop func()) {
	// A fuzzing run (go test -fuzz, and each of its workers) runs fuzz
	// targets alone, which use no database: no cluster per worker.
	if slices.ContainsFunc(os.Args[1:], func(a string) bool {
		return strings.HasPrefix(a, "-test.fuzz=") || strings.HasPrefix(a, "-test.fuzzworker")
	}) {
		pg.reason = "fuzzing"
		return func() {}
	}
	if u := os.Getenv("CUSTODIA_TEST_POSTGRES_URL"); u != "" {
		pg.adminURL = u
		return func() {}
	}
	bin := os.Getenv("CUSTODIA_PGBIN")
	if bin == "" {
		bin = "/usr/lib/postgresql/15/bin"
	}
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		pg.reason = "no PostgreSQL binaries at " + bin + " (set CUSTODIA_PGBIN)"
		return func() {}
	}
	dir, err := os.MkdirTemp("", "custodia-pg-")
	if err != nil {
		pg.reason = err.Error()
		return func() {}
	}
	asUser := func(name string, args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, name), args...)
	}
	if os.Geteuid() == 0 { // initdb refuses root: run the cluster as "postgres"
		u, err := user.Lookup("postgres")
		if err != nil {
			pg.reason = "running as root and no postgres user to drop to"
			return func() { os.RemoveAll(dir) }
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			pg.reason = err.Error()
			return func() { os.RemoveAll(dir) }
		}
		asUser = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
	}
	port, err := freePort()
	if err != nil {
		pg.reason = err.Error()
		return func() { os.RemoveAll(dir) }
	}
	data := filepath.Join(dir, "data")
	if out, err := asUser("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C.UTF-8", "--no-sync").CombinedOutput(); err != nil {
		pg.reason = fmt.Sprintf("initdb failed: %v\n%s", err, out)
		return func() { os.RemoveAll(dir) }
	}
	opts := fmt.Sprintf("-k %s -h 127.0.0.1 -p %d -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300", dir, port)
	if out, err := asUser("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
		"-o", opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		pg.reason = fmt.Sprintf("pg_ctl start failed: %v\n%s\n%s", err, out, log)
		return func() { os.RemoveAll(dir) }
	}
	pg.adminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return func() {
		_ = asUser("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Run runs fn once per engine as subtests "sqlite" and "postgres", each on a
// fresh, migrated database.
func Run(t *testing.T, fn func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// SQLite opens a fresh migrated SQLite database in a temp dir, without
// fsync on commit (sqldb.TestOptions): tests about durability open their
// own.
func SQLite(t testing.TB) *sqldb.DB {
	t.Helper()
	dir := t.TempDir()
	SQLiteFile(t, dir)
	db, err := sqldb.OpenWith(context.Background(), "", dir, sqldb.TestOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// SQLiteFile puts a migrated SQLite database where sqldb.Open looks for it
// in dataDir (custodia.db): a copy of a database migrated once per test
// process.
func SQLiteFile(t testing.TB, dataDir string) {
	t.Helper()
	b, err := migratedSQLite()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "custodia.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// migratedSQLite returns the bytes of a migrated SQLite database, made on
// first use.
func migratedSQLite() ([]byte, error) {
	sqliteTemplate.mu.Lock()
	defer sqliteTemplate.mu.Unlock()
	if sqliteTemplate.bytes != nil {
		return sqliteTemplate.bytes, nil
	}
	dir, err := os.MkdirTemp("", "custodia-sqlite-template-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := sqldb.OpenWith(ctx, "", dir, sqldb.TestOptions{NoSync: true})
	if err != nil {
		return nil, err
	}
	_, err = db.Migrate(ctx)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	// The last connection closed checkpoints the WAL into the file.
	if _, err := os.Stat(filepath.Join(dir, "custodia.db-wal")); err == nil {
		return nil, fmt.Errorf("the migrated template still has a WAL after close")
	}
	b, err := os.ReadFile(filepath.Join(dir, "custodia.db"))
	if err != nil {
		return nil, err
	}
	sqliteTemplate.bytes = b
	return b, nil
}

// Postgres opens a fresh migrated PostgreSQL database, or skips (fails under
// CUSTODIA_REQUIRE_POSTGRES=1) when there is no cluster.
func Postgres(t testing.TB) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), PostgresURL(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresURL creates a fresh migrated PostgreSQL database and returns its URL.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return newPostgres(t, true)
}

// EmptyPostgresURL creates a fresh PostgreSQL database without any table
// (what a restore goes into) and returns its URL.
func EmptyPostgresURL(t testing.TB) string {
	t.Helper()
	return newPostgres(t, false)
}

// newPostgres creates a database, migrated or empty, dropped when the test
// ends, and returns its URL.
func newPostgres(t testing.TB, migrated bool) string {
	t.Helper()
	if pg.adminURL == "" {
		reason := pg.reason
		if reason == "" {
			reason = "sqldbtest.Main was not called from TestMain"
		}
		if os.Getenv("CUSTODIA_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL required (CUSTODIA_REQUIRE_POSTGRES=1) but unavailable: %s", reason)
		}
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING PostgreSQL TESTS: %s ***\n\n", reason)
		t.Skip("PostgreSQL unavailable: " + reason)
	}
	ctx := context.Background()
	admin, err := sql.Open("pgx", pg.adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := "t_" + randHex(8)
	create := "CREATE DATABASE " + name
	if migrated {
		tmpl, err := templateDB(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		create += " TEMPLATE " + tmpl
	}
	pg.mu.Lock() // CREATE DATABASE … TEMPLATE needs the template to be idle
	_, err = admin.ExecContext(ctx, create)
	pg.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", pg.adminURL)
		if err != nil {
			return
		}
		defer admin.Close()
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDatabase(pg.adminURL, name)
}

// templateDB creates (once per process) a migrated database to clone.
func templateDB(ctx context.Context, admin *sql.DB) (string, error) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.template != "" {
		return pg.template, nil
	}
	name := "tmpl_" + randHex(8)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	db, err := sqldb.Open(ctx, withDatabase(pg.adminURL, name), "")
	if err != nil {
		return "", err
	}
	_, err = db.Migrate(ctx)
	db.Close()
	if err != nil {
		return "", err
	}
	pg.template = name
	return name, nil
}

func withDatabase(rawURL, name string) string {
	base, query, _ := strings.Cut(rawURL, "?")
	i := strings.LastIndex(base, "/")
	u := base[:i+1] + name
	if query != "" {
		u += "?" + query
	}
	return u
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Strings runs query on the read pool and returns its first column.
func Strings(t testing.TB, db *sqldb.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Read().Query(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Bytes runs query on the read pool and returns the first column of its
// one row, failing the test when there is none.
func Bytes(t testing.TB, db *sqldb.DB, query string, args ...any) []byte {
	t.Helper()
	var b []byte
	if err := db.Read().QueryRow(context.Background(), query, args...).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Int runs query on the read pool and returns the first column of its one
// row as an int (a count), failing the test on an error.
func Int(t testing.TB, db *sqldb.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Read().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Exec runs one statement in a write transaction of its own (a change
// made by hand, as another node or the CLI would), failing the test on an
// error.
func Exec(t testing.TB, db *sqldb.DB, query string, args ...any) {
	t.Helper()
	if err := db.WithTx(context.Background(), func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, query, args...)
		return err
	}); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
