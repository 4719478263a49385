package sqldb

import (
	"context"
	"fmt"
	"strings"
)

// maxRowsPerInsert is the most rows InsertRows puts in one statement (a
// table of 17 columns: 544 parameters, far below both engines' limits).
const maxRowsPerInsert = 32

// InsertRows inserts rows into table, each row's values in the order of
// columns, in multi-row statements of 1, 2, 4 … 32 rows: a statement costs
// about as much as a row, and the few sizes keep the prepared statements
// few. On a failure the statement that failed has inserted nothing; those
// before it stand.
func (q Q) InsertRows(ctx context.Context, table string, columns []string, rows [][]any) error {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ")"
	head := "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES "
	for len(rows) > 0 {
		n := 1
		for n*2 <= len(rows) && n*2 <= maxRowsPerInsert {
			n *= 2
		}
		args := make([]any, 0, n*len(columns))
		for _, r := range rows[:n] {
			if len(r) != len(columns) {
				return fmt.Errorf("insert into %s: a row of %d values for %d columns", table, len(r), len(columns))
			}
			args = append(args, r...)
		}
		if _, err := q.Exec(ctx, head+strings.TrimSuffix(strings.Repeat(one+", ", n), ", "), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}
