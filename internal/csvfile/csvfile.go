// Package csvfile reads the CSV files people upload (users, contacts) the
// one way Custodia does: a header row naming the columns, then rows; blank
// lines skipped; a row with the wrong number of cells, or a bad header,
// reported as a problem with its line and column, never its value; a file
// that is empty, not CSV, without rows or too long refused as a whole.
// Cells must be UTF-8: a row with a cell that is not is a problem naming
// the column, never silently repaired.
package csvfile

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
)

// Read reads r. header gets the column names (trimmed, without a byte
// order mark) and returns the header's problems, or an error that refuses
// the file; row gets each row with as many cells as the header and its
// line. columns names the expected columns in the message for an empty
// file. Read returns the problems found; an error refuses the file.
func Read(r io.Reader, columns string, maxRows int, header func(names []string) ([]errs.RowProblem, error),
	row func(line int, rec []string)) ([]errs.RowProblem, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	names, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errs.Field("file", "empty: the first line must name the columns (%s)", columns)
	}
	if err != nil {
		return nil, errs.Field("file", "not CSV: %s", reason(err))
	}
	for i, h := range names {
		if !utf8.ValidString(h) {
			return nil, errs.Field("file", "the header is not UTF-8 text (save the file as CSV UTF-8)")
		}
		names[i] = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
	}
	problems, err := header(names)
	if err != nil {
		return nil, err
	}
	rows := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, errs.Rows(fmt.Sprintf("line %d is not valid CSV; nothing was imported", pe.StartLine),
					[]errs.RowProblem{{Line: pe.StartLine, Field: "file", Reason: reason(err)}})
			}
			return nil, err
		}
		line, _ := cr.FieldPos(0) // only after a record was read: it panics otherwise
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		if rows == maxRows {
			return nil, errs.Field("file", "at most %d rows per file", maxRows)
		}
		rows++
		if len(rec) != len(names) {
			problems = append(problems, errs.RowProblem{Line: line, Field: "file",
				Reason: fmt.Sprintf("%d cells; the header has %d", len(rec), len(names))})
			continue
		}
		if i := slices.IndexFunc(rec, func(c string) bool { return !utf8.ValidString(c) }); i >= 0 {
			problems = append(problems, errs.RowProblem{Line: line, Field: names[i],
				Reason: "not UTF-8 text (save the file as CSV UTF-8)"})
			continue
		}
		row(line, rec)
	}
	if rows == 0 && len(problems) == 0 {
		return nil, errs.Field("file", "no rows after the header")
	}
	return problems, nil
}

// reason is a parse error without the offending text.
func reason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return "unreadable"
}
