package subject

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/csvfile"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Import and export of contacts, as CSV or JSON. An import is checked in
// full first: a file with any bad row imports nothing, and the answer
// names every bad row by line and column, never by value. A clean file is
// written in chunks, each one transaction with the audit events of its
// contacts; progress is reported after each chunk.

// CSV columns. An export has them all; an import needs at least one
// identifier and ignores the read-only ones, so an export imports back.
var (
	importColumns   = []string{"email", "phone", "external_id", "source", "name"}
	readOnlyColumns = []string{"id", "status", "created_at", "updated_at", "last_activity_at", "bouncing_since", "inactive_since", "legal_hold", "restricted_since"}
)

const attrPrefix = "attributes."

// MaxImportRows bounds one file.
const MaxImportRows = 1_000_000

// importChunk is how many contacts one import transaction writes.
const importChunk = 1000

// ImportRow is one contact of a file, with its line (CSV) or position
// (JSON, from 1).
type ImportRow struct {
	Line int
	New
}

// Existing says what an import does with a contact that is already there
// (same email or external id).
const (
	ExistingFail = "fail" // a bad row: nothing is imported
	ExistingSkip = "skip" // left as it is, counted as skipped
)

// ImportResult is what an import did, or would do.
type ImportResult struct {
	DryRun  bool `json:"dry_run"`
	Rows    int  `json:"rows"`
	Created int  `json:"created"` // dry run: would be
	Skipped int  `json:"skipped"` // already there, with existing=skip
}

// ParseCSV reads a contacts file with a header row.
func ParseCSV(r io.Reader) ([]ImportRow, []errs.RowProblem, error) {
	var header []string
	var rows []ImportRow
	problems, err := csvfile.Read(r, "email, phone, external_id, source, name, attributes.<key>", MaxImportRows,
		func(names []string) ([]errs.RowProblem, error) {
			var problems []errs.RowProblem
			seen := map[string]bool{}
			for _, h := range names {
				if !strings.HasPrefix(h, attrPrefix) {
					h = strings.ToLower(h)
				}
				header = append(header, h)
				switch {
				case seen[h]:
					problems = append(problems, errs.RowProblem{Line: 1, Field: h, Reason: "column named twice"})
				case slices.Contains(importColumns, h), slices.Contains(readOnlyColumns, h), strings.HasPrefix(h, attrPrefix) && len(h) > len(attrPrefix):
				default:
					problems = append(problems, errs.RowProblem{Line: 1, Field: h,
						Reason: "unknown column; use email, phone, external_id, source, name or attributes.<key>"})
				}
				seen[h] = true
			}
			if !seen["email"] && !seen["phone"] && !seen["external_id"] {
				return nil, errs.Field("file", "the first line must name an email, phone or external_id column")
			}
			return problems, nil
		}, func(line int, rec []string) {
			row := ImportRow{Line: line}
			for i, h := range header {
				v := unsafeCell(strings.TrimSpace(rec[i]))
				if v == "" {
					continue
				}
				switch {
				case h == "email":
					row.Email = v
				case h == "phone":
					row.Phone = v
				case h == "external_id":
					row.ExternalID = v
				case h == "source":
					row.Source = v
				case h == "name", strings.HasPrefix(h, attrPrefix):
					if row.Attributes == nil {
						row.Attributes = map[string]any{}
					}
					row.Attributes[strings.TrimPrefix(h, attrPrefix)] = v
				}
			}
			rows = append(rows, row)
		})
	return rows, problems, err
}

// unsafeCell undoes audit.SafeCell, so that an exported phone number
// ('+44…) imports as it was.
func unsafeCell(s string) string {
	if len(s) > 1 && s[0] == '\'' && strings.ContainsRune("=+-@\t\r", rune(s[1])) {
		return s[1:]
	}
	return s
}

// ParseJSON reads contacts as {"items": [...]} or a bare array; a row's
// line is its position from 1.
func ParseJSON(r io.Reader) ([]ImportRow, []errs.RowProblem, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	var items []json.RawMessage
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		err = json.Unmarshal(body, &items)
	} else {
		var doc struct {
			Items []json.RawMessage `json:"items"`
		}
		err = json.Unmarshal(body, &doc)
		items = doc.Items
	}
	if err != nil {
		return nil, nil, errs.Field("file", "not JSON: want {\"items\": [contact, …]} or [contact, …]")
	}
	if len(items) == 0 {
		return nil, nil, errs.Field("file", "no contacts")
	}
	if len(items) > MaxImportRows {
		return nil, nil, errs.Field("file", "at most %d contacts per file", MaxImportRows)
	}
	var rows []ImportRow
	var problems []errs.RowProblem
	for i, raw := range items {
		var in struct {
			New
			ID             string         `json:"id"` // the read-only fields of an export, ignored
			Status         string         `json:"status"`
			CreatedAt      string         `json:"created_at"`
			UpdatedAt      string         `json:"updated_at"`
			LastActivityAt string         `json:"last_activity_at"`
			BouncingSince  *string        `json:"bouncing_since"`
			InactiveSince  *string        `json:"inactive_since"`
			LegalHold      bool           `json:"legal_hold"`
			Restricted     *string        `json:"restricted_since"`
			Attributes     map[string]any `json:"attributes"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			problems = append(problems, errs.RowProblem{Line: i + 1, Field: jsonField(err), Reason: "not a contact: " + jsonReason(err)})
			continue
		}
		in.New.Attributes = in.Attributes
		rows = append(rows, ImportRow{Line: i + 1, New: in.New})
	}
	return rows, problems, nil
}

func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return strings.Trim(f, `"`)
	}
	return "item"
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "wrong type, want " + te.Type.String()
	}
	if strings.HasPrefix(err.Error(), "json: unknown field ") {
		return "unknown field"
	}
	return "malformed"
}

// prepared is a checked row, sealed and ready to insert.
type prepared struct {
	line int
	r    row
	f    fields
	wk   *keyring.WrappedKey
}

// Import checks rows and, when every one is good and this is not a dry
// run, creates them. existing says what to do with contacts already there.
// progress, when not nil, hears after each written chunk.
func (s *Service) Import(ctx context.Context, tenantID string, rows []ImportRow, problems []errs.RowProblem,
	existing string, dryRun bool, progress func(done, total int)) (ImportResult, error) {
	if existing != ExistingFail && existing != ExistingSkip {
		return ImportResult{}, errs.Field("existing", "fail or skip")
	}
	res := ImportResult{DryRun: dryRun, Rows: len(rows)}
	q := s.db.Read()
	firstEmail, firstExternal := map[string]int{}, map[string]int{}
	var todo []prepared
	// Every row checked first, so that the identifiers already taken are
	// asked for in a few queries rather than one a row.
	checked := make([]fields, len(rows))
	invalid := make([]error, len(rows))
	index := make([]map[string]string, len(rows)) // field → blind index
	var wanted [][2]string                        // field, blind index
	for i, in := range rows {
		f := fields{email: in.Email, phone: in.Phone, externalID: in.ExternalID, source: in.Source, attributes: in.Attributes}
		if f.source == "" {
			f.source = "import"
		}
		checked[i], invalid[i], index[i] = f, f.validate(), map[string]string{}
		for _, c := range [][2]string{{"email", checked[i].email}, {"external_id", checked[i].externalID}} {
			if invalid[i] == nil && c[1] != "" {
				idx, err := s.keys.BlindIndex(ctx, q, tenantID, c[0], c[1])
				if err != nil {
					return ImportResult{}, err
				}
				index[i][c[0]] = string(idx)
				wanted = append(wanted, [2]string{c[0], string(idx)})
			}
		}
	}
	taken, err := s.taken(ctx, tenantID, wanted)
	if err != nil {
		return ImportResult{}, err
	}
	for i, in := range rows {
		bad := func(field, format string, args ...any) {
			problems = append(problems, errs.RowProblem{Line: in.Line, Field: field, Reason: fmt.Sprintf(format, args...)})
		}
		f := checked[i]
		if err := invalid[i]; err != nil {
			if e, ok := errs.As(err); ok && e.Field != "" {
				bad(e.Field, "%s", e.Detail)
				continue
			}
			return ImportResult{}, err
		}
		p := prepared{line: in.Line, f: f}
		dup := false
		for _, c := range []struct {
			field, value string
			first        map[string]int
		}{{"email", f.email, firstEmail}, {"external_id", f.externalID, firstExternal}} {
			if c.value == "" {
				continue
			}
			if line, ok := c.first[c.value]; ok {
				bad(c.field, "the same %s is on line %d", c.field, line)
				dup = true
				continue
			}
			c.first[c.value] = in.Line
			there := taken[[2]string{c.field, index[i][c.field]}]
			switch {
			case there && existing == ExistingSkip:
				dup = true
			case there:
				bad(c.field, "a subject with this %s exists already (existing=skip leaves such rows out)", c.field)
				dup = true
			}
		}
		if dup {
			if existing == ExistingSkip {
				res.Skipped++
			}
			continue
		}
		todo = append(todo, p)
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b errs.RowProblem) int { return a.Line - b.Line })
		return ImportResult{}, errs.Rows(fmt.Sprintf("%d problems in the file; nothing was imported", len(problems)), problems)
	}
	res.Created = len(todo)
	if dryRun {
		return res, nil
	}
	// The next chunk is sealed while one is written: the CPU work of keys
	// and encryption overlaps the commit's.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sealed := make(chan sealedChunk)
	go func() {
		defer close(sealed)
		for start := 0; start < len(todo); start += importChunk {
			c := sealedChunk{start: start, chunk: todo[start:min(start+importChunk, len(todo))]}
			c.insert, c.err = s.sealChunk(ctx, tenantID, c.chunk)
			select {
			case sealed <- c:
			case <-ctx.Done():
				return
			}
			if c.err != nil {
				return
			}
		}
	}()
	for c := range sealed {
		err := c.err
		if err == nil {
			err = c.insert(ctx)
		}
		if err != nil {
			return ImportResult{Rows: len(rows), Created: c.start, Skipped: res.Skipped},
				fmt.Errorf("import stopped at line %d, after %d contacts were created: %w", c.chunk[0].line, c.start, err)
		}
		if progress != nil {
			progress(c.start+len(c.chunk), len(todo))
		}
	}
	return res, s.log.Record(ctx, tenantID, audit.Event{Action: "subject.import", TargetType: "subject",
		Details: map[string]any{"rows": res.Rows, "created": res.Created, "skipped": res.Skipped}})
}

// taken answers which of the wanted identifiers (field, blind index) a
// subject of the tenant holds already, asking 500 at a time.
func (s *Service) taken(ctx context.Context, tenantID string, wanted [][2]string) (map[[2]string]bool, error) {
	out := map[[2]string]bool{}
	for _, field := range []string{"email", "external_id"} {
		var idxs []any
		for _, w := range wanted {
			if w[0] == field {
				idxs = append(idxs, []byte(w[1]))
			}
		}
		for len(idxs) > 0 {
			n := min(len(idxs), 500)
			rows, err := s.db.Read().Query(ctx, "SELECT "+field+"_bidx FROM subjects WHERE tenant_id = ? AND "+field+"_bidx IN (?"+
				strings.Repeat(", ?", n-1)+")", append([]any{tenantID}, idxs[:n]...)...)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var idx []byte
				if err := rows.Scan(&idx); err != nil {
					rows.Close()
					return nil, err
				}
				out[[2]string{field, string(idx)}] = true
			}
			if err := rows.Close(); err != nil {
				return nil, err
			}
			if err := rows.Err(); err != nil {
				return nil, err
			}
			idxs = idxs[n:]
		}
	}
	return out, nil
}

// sealedChunk is a chunk of an import ready to be written by insert.
type sealedChunk struct {
	start  int
	chunk  []prepared
	insert func(ctx context.Context) error
	err    error
}

// sealChunk makes the keys of a chunk's contacts and seals their fields,
// and answers how to insert them: in one transaction with their audit
// events.
func (s *Service) sealChunk(ctx context.Context, tenantID string, chunk []prepared) (func(context.Context) error, error) {
	now := s.now().UnixMicro()
	events := make([]audit.Event, 0, len(chunk))
	ids := make([]string, len(chunk))
	for i := range chunk {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		ids[i] = id.String()
	}
	dks, wks, err := s.keys.NewSubjectKeys(ctx, s.db.Read(), tenantID, ids)
	if err != nil {
		return nil, err
	}
	for i := range chunk {
		p := &chunk[i]
		p.r = row{id: ids[i], status: StatusActive, createdAt: now, updatedAt: now, lastActivity: now}
		p.wk = wks[i]
		if err := s.seal(ctx, tenantID, dks[i], p.f, &p.r); err != nil {
			return nil, err
		}
		events = append(events, audit.Event{Action: "subject.create", TargetType: "subject", TargetID: p.r.id, SubjectID: p.r.id,
			Details: map[string]any{"fields": p.f.present(), "via": "import", "line": p.line}})
	}
	keys := make([]*keyring.WrappedKey, len(chunk))
	rows := make([][]any, len(chunk))
	for i, p := range chunk {
		r := p.r
		keys[i] = p.wk
		rows[i] = []any{tenantID, r.id, r.status, r.emailCT, r.emailIdx, r.phoneCT, r.phoneIdx, r.externalCT, r.externalIdx,
			r.attributesCT, r.sourceCT, r.createdAt, r.updatedAt, r.lastActivity}
	}
	write := func(ctx context.Context, tx *sqldb.Tx) error {
		if err := keyring.InsertKeys(ctx, tx, keys); err != nil {
			return err
		}
		// Many rows a statement; should one collide with a contact added
		// meanwhile, row by row again to name its line.
		err := tx.Savepoint(ctx, "rows", func() error { return tx.InsertRows(ctx, "subjects", subjectColumns, rows) })
		if !sqldb.IsUniqueViolation(err) {
			return err
		}
		for i, row := range rows {
			err := tx.InsertRows(ctx, "subjects", subjectColumns, [][]any{row})
			if sqldb.IsUniqueViolation(err) {
				return &errs.Error{Kind: errs.Conflict, Field: "email", Detail: fmt.Sprintf("line %d: a subject with this email or external_id was added meanwhile", chunk[i].line)}
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return func(ctx context.Context) error { return s.log.Commit(ctx, tenantID, write, events...) }, nil
}

// subjectColumns are the columns an import writes.
var subjectColumns = []string{"tenant_id", "id", "status", "email_ct", "email_bidx", "phone_ct", "phone_bidx",
	"external_id_ct", "external_id_bidx", "attributes_ct", "source_ct", "created_at", "updated_at", "last_activity_at"}

// Export writes every contact of the tenant (staff, who have accounts, are
// not contacts) — restricted ones too, whose
// data may be stored and exported — as CSV (cells a spreadsheet
// would run as formulas neutralised; one attributes.<key> column per
// attribute key in use) or JSON ({"items": [...]}). Each subject exported
// is an audit event, and so is the export.
func (s *Service) Export(ctx context.Context, tenantID, format string, w io.Writer) error {
	if format != "csv" && format != "json" {
		return errs.Field("format", "csv or json")
	}
	var all []Subject
	for after := ""; ; {
		rows, err := s.db.Read().Query(ctx, selectRow+" WHERE tenant_id = ? AND id > ? AND "+contactsOnly+" ORDER BY id LIMIT 500", tenantID, after)
		if err != nil {
			return err
		}
		page, _, err := s.revealRows(ctx, tenantID, rows, 0, s.open, "subject.export", nil) // exporting is left to restricted data
		if err != nil {
			return err
		}
		all = append(all, page...)
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].ID
	}
	if err := s.log.Record(ctx, tenantID, audit.Event{Action: "subject.export.file", TargetType: "subject",
		Details: map[string]any{"format": format, "count": len(all)}}); err != nil {
		return err
	}
	if all == nil {
		all = []Subject{}
	}
	if format == "json" {
		return json.NewEncoder(w).Encode(map[string]any{"items": all})
	}
	keys := map[string]bool{}
	for _, sub := range all {
		for k := range sub.Attributes {
			keys[k] = true
		}
	}
	attrs := slices.Sorted(maps.Keys(keys))
	header := []string{"id", "email", "phone", "external_id", "source", "status", "created_at", "updated_at",
		"last_activity_at", "bouncing_since", "inactive_since", "legal_hold", "restricted_since"}
	for _, k := range attrs {
		header = append(header, attrPrefix+k)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	stamp := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339Nano)
	}
	for _, sub := range all {
		rec := []string{sub.ID, sub.Email, sub.Phone, sub.ExternalID, sub.Source, sub.Status, stamp(&sub.CreatedAt),
			stamp(&sub.UpdatedAt), stamp(&sub.LastActivityAt), stamp(sub.BouncingSince), stamp(sub.InactiveSince),
			fmt.Sprint(sub.LegalHold), stamp(sub.RestrictedSince)}
		for _, k := range attrs {
			v, ok := sub.Attributes[k]
			switch {
			case !ok || v == nil:
				rec = append(rec, "")
			case isString(v):
				rec = append(rec, v.(string))
			default:
				b, _ := json.Marshal(v)
				rec = append(rec, string(b))
			}
		}
		for i := range rec {
			rec[i] = audit.SafeCell(rec[i])
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func isString(v any) bool { _, ok := v.(string); return ok }
