package identity

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/csvfile"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/subject"
)

// UserRow is an account as lists and exports show it: with whether it has
// a second factor.
type UserRow struct {
	Account
	SecondFactor bool `json:"second_factor"`
}

var exportColumns = []string{"id", "email", "name", "role", "status", "created_at", "last_login_at", "second_factor"}

// ExportUsers writes every account of p's tenant as CSV (cells that a
// spreadsheet would run as formulas neutralised) or JSON. The export is
// audited, with its size.
func (s *Service) ExportUsers(ctx context.Context, p Principal, format string, w io.Writer) error {
	if format != "csv" && format != "json" {
		return errs.Field("format", "csv or json")
	}
	accounts, err := s.accounts(ctx, p.TenantID)
	if err != nil {
		return err
	}
	out := make([]UserRow, 0, len(accounts))
	for _, a := range accounts {
		m, err := s.methods(ctx, p.TenantID, a.ID)
		if err != nil {
			return err
		}
		out = append(out, UserRow{Account: a, SecondFactor: len(m) > 0})
	}
	if err := s.log.Record(ctx, p.TenantID, audit.Event{Action: "user.export", TargetType: "user",
		Details: map[string]any{"format": format, "count": len(out)}}); err != nil {
		return err
	}
	if format == "json" {
		return json.NewEncoder(w).Encode(map[string]any{"items": out})
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(exportColumns); err != nil {
		return err
	}
	for _, u := range out {
		last := ""
		if u.LastLoginAt != nil {
			last = u.LastLoginAt.Format(time.RFC3339)
		}
		row := []string{u.ID, u.Email, u.Name, u.Role, u.Status, u.CreatedAt.Format(time.RFC3339), last, fmt.Sprint(u.SecondFactor)}
		for i := range row {
			row[i] = audit.SafeCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ImportResult reports an import: how many rows, and how many accounts
// were (or, in a dry run, would be) created and invited.
type ImportResult struct {
	DryRun  bool `json:"dry_run"`
	Rows    int  `json:"rows"`
	Created int  `json:"created"`
}

// maxImportRows bounds one import file.
const maxImportRows = 10000

type importRow struct {
	line              int
	email, name, role string
}

// ImportUsers reads a CSV file with a header row naming the columns email
// (required), name and role (default member), checks every row — a
// well-formed email not already an account nor repeated in the file, a
// role p may grant, a name of at most 200 characters — and, when every row
// is good and this is not a dry run, invites each person. A file with any
// bad row imports nothing: the error lists every bad row by line and
// column (never by value).
func (s *Service) ImportUsers(ctx context.Context, p Principal, r io.Reader, dryRun bool) (ImportResult, error) {
	rows, problems, err := readImport(r)
	if err != nil {
		return ImportResult{}, err
	}
	seen := map[string]int{}
	for i, row := range rows {
		bad := func(field, format string, args ...any) {
			problems = append(problems, errs.RowProblem{Line: row.line, Field: field, Reason: fmt.Sprintf(format, args...)})
		}
		email, err := subject.NormalizeEmail(row.email)
		if err != nil {
			bad("email", "not a valid email address")
		} else if first, ok := seen[email]; ok {
			bad("email", "the same address is on line %d", first)
		} else {
			seen[email] = row.line
			rows[i].email = email
			if _, err := s.UserByEmail(ctx, p.TenantID, email); err == nil {
				bad("email", "already has an account")
			} else if !errs.Is(err, errs.NotFound) {
				return ImportResult{}, err
			}
		}
		if row.role == "" {
			rows[i].role = RoleMember
		} else if validRole(row.role) != nil {
			bad("role", "one of owner, admin, member")
		} else if rank(row.role) > rank(p.Role) {
			bad("role", "a %s cannot make someone %s", p.Role, row.role)
		}
		if utf8.RuneCountInString(row.name) > maxName {
			bad("name", "at most %d characters", maxName)
		}
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b errs.RowProblem) int { return a.Line - b.Line })
		return ImportResult{}, errs.Rows(fmt.Sprintf("%d problems in the file; nothing was imported", len(problems)), problems)
	}
	res := ImportResult{DryRun: dryRun, Rows: len(rows), Created: len(rows)}
	if dryRun {
		return res, nil
	}
	for i, row := range rows {
		if err := s.inviteNew(ctx, p.TenantID, NewUser{Email: row.email, Role: row.role, Name: row.name}, "import"); err != nil {
			return ImportResult{Rows: len(rows), Created: i}, fmt.Errorf("line %d: %w", row.line, err)
		}
	}
	return res, nil
}

// readImport parses the CSV file into rows, reporting structural problems.
func readImport(r io.Reader) ([]importRow, []errs.RowProblem, error) {
	col := map[string]int{} // column name → index + 1; 0 means absent
	var rows []importRow
	problems, err := csvfile.Read(r, "email, name, role", maxImportRows, func(names []string) ([]errs.RowProblem, error) {
		var problems []errs.RowProblem
		for i, h := range names {
			h = strings.ToLower(h)
			switch {
			case h != "email" && h != "name" && h != "role":
				problems = append(problems, errs.RowProblem{Line: 1, Field: h, Reason: "unknown column; use email, name, role"})
			case col[h] != 0:
				problems = append(problems, errs.RowProblem{Line: 1, Field: h, Reason: "column named twice"})
			default:
				col[h] = i + 1
			}
		}
		if col["email"] == 0 {
			return nil, errs.Field("file", "the first line must name an email column")
		}
		return problems, nil
	}, func(line int, rec []string) {
		cell := func(name string) string {
			if i := col[name]; i > 0 {
				return strings.TrimSpace(rec[i-1])
			}
			return ""
		}
		rows = append(rows, importRow{line: line, email: cell("email"), name: cell("name"), role: strings.ToLower(cell("role"))})
	})
	return rows, problems, err
}
