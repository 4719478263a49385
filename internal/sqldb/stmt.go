package sqldb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// maxRowsPerInsert is the most rows InsertRows puts in one statement (a
// table of 17 columns: 544 parameters, far below both engines' limits).
const maxRowsPerInsert = 32

// Stmt is one statement, written with `?` placeholders, for Run and
// Pipeline.
type Stmt struct {
	SQL  string
	Args []any
	// Changes: the statement must change at least one row (an UPDATE that
	// names the row it expects to find). When it changes none, Run answers
	// ErrNoChange — the caller's transaction goes on, or rolls back if the
	// caller returns it — and Pipeline keeps nothing and answers it.
	Changes bool
}

// ErrNoChange: a statement marked Changes changed no row.
var ErrNoChange = errors.New("a statement changed no row")

// InsertRows inserts rows into table, each row's values in the order of
// columns, in multi-row statements of 1, 2, 4 … 32 rows: a statement costs
// about as much as a row, and the few sizes keep the prepared statements
// few. On a failure the statement that failed has inserted nothing; those
// before it stand.
func (q Q) InsertRows(ctx context.Context, table string, columns []string, rows [][]any) error {
	stmts, err := InsertStmts(table, columns, rows)
	if err != nil {
		return err
	}
	return q.run(ctx, stmts)
}

// InsertStmts returns the statements with which InsertRows inserts rows.
func InsertStmts(table string, columns []string, rows [][]any) ([]Stmt, error) {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ")"
	head := "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES "
	var stmts []Stmt
	for len(rows) > 0 {
		n := 1
		for n*2 <= len(rows) && n*2 <= maxRowsPerInsert {
			n *= 2
		}
		args := make([]any, 0, n*len(columns))
		for _, r := range rows[:n] {
			if len(r) != len(columns) {
				return nil, fmt.Errorf("insert into %s: a row of %d values for %d columns", table, len(r), len(columns))
			}
			args = append(args, r...)
		}
		stmts = append(stmts, Stmt{SQL: head + strings.TrimSuffix(strings.Repeat(one+", ", n), ", "), Args: args})
		rows = rows[n:]
	}
	return stmts, nil
}

// Run runs stmts in order in tx — on PostgreSQL sent together, one round
// trip for all. A statement marked Changes that changes no row makes it
// answer ErrNoChange.
func (tx *Tx) Run(ctx context.Context, stmts []Stmt) error { return tx.run(ctx, stmts) }

func (q Q) run(ctx context.Context, stmts []Stmt) error {
	if q.st != nil && q.st.conn != nil && len(stmts) > 0 {
		n, err := q.together(ctx, stmts)
		if err != nil {
			return err
		}
		for i, s := range stmts {
			if s.Changes && n[i] == 0 {
				return ErrNoChange
			}
		}
		return nil
	}
	for _, s := range stmts {
		res, err := q.Exec(ctx, s.SQL, s.Args...)
		if err != nil {
			return err
		}
		if !s.Changes {
			continue
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNoChange
		}
	}
	return nil
}

// together sends a PostgreSQL transaction's pending savepoint statements
// and stmts in one round trip (a pgx batch on the transaction's own
// connection), and answers how many rows each of stmts changed. The first
// that fails ends it; the server skips those after it.
func (q Q) together(ctx context.Context, stmts []Stmt) ([]int64, error) {
	pending := q.st.pending
	n := make([]int64, 0, len(stmts))
	err := q.st.conn.Raw(func(dc any) error {
		b := &pgx.Batch{}
		for _, p := range pending {
			b.Queue(p)
		}
		for _, s := range stmts {
			b.Queue(q.db.rebind(s.SQL), s.Args...)
		}
		br := dc.(*stdlib.Conn).Conn().SendBatch(ctx, b)
		for i := range len(pending) + len(stmts) {
			tag, err := br.Exec()
			if i < len(pending) {
				if err != nil || i == len(pending)-1 {
					q.st.sent(err)
				}
			} else {
				n = append(n, tag.RowsAffected())
			}
			if err != nil {
				_ = br.Close()
				return err
			}
		}
		return br.Close()
	})
	if len(q.st.pending) > 0 { // never reached the server's answers
		q.st.sent(err)
	}
	return n, err
}

// rowsAffected is the result of a statement sent with others.
type rowsAffected int64

func (n rowsAffected) LastInsertId() (int64, error) {
	return 0, errors.New("no LastInsertId for a statement sent with others")
}
func (n rowsAffected) RowsAffected() (int64, error) { return int64(n), nil }

// Pipeline runs stmts in one transaction of their own, all or none. On
// PostgreSQL they are sent together and run in the implicit transaction of
// one pipeline: a single round trip, committed — durably — once the last
// has run, nothing kept when one fails. On SQLite (in process, where a
// round trip costs nothing) they run one after the other in a write
// transaction.
func (db *DB) Pipeline(ctx context.Context, stmts []Stmt) error {
	if db.dialect != Postgres {
		return db.WithTx(ctx, func(ctx context.Context, tx *Tx) error { return tx.Run(ctx, stmts) })
	}
	err := db.Postgres(ctx, func(c *pgx.Conn) error {
		b := &pgx.Batch{}
		for _, s := range stmts {
			q := db.rebind(s.SQL)
			if s.Changes {
				// No row changed: a division by zero, which ends the
				// pipeline's transaction before it commits.
				q = "WITH changed AS (" + q + " RETURNING 1) SELECT 1 / count(*) FROM changed"
			}
			b.Queue(q, s.Args...)
		}
		return c.SendBatch(ctx, b).Close()
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "22012" {
		return ErrNoChange
	}
	return classify(err)
}
