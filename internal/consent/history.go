package consent

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// The tenant's consent history: every grant and withdrawal of every
// contact, newest first, by date and purpose — the proof a controller
// shows. Only what the ledger keeps in the clear is read (never the
// sealed source and network), and each page read is one audit event
// naming the people it showed.

// HistoryFilter selects consent events. Zero fields match everything.
type HistoryFilter struct {
	From, To time.Time // From inclusive, To exclusive
	Purpose  string    // a purpose key
	Cursor   string    // from a previous page
	Limit    int       // default 100, at most 1000
}

// History answers one page of the tenant's consent events, newest first,
// and the cursor of the next page ("" at the end).
func (s *Service) History(ctx context.Context, tenantID string, f HistoryFilter) ([]Event, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		return nil, "", errs.Field("limit", "at most 1000")
	}
	where, args := []string{"tenant_id = ?"}, []any{tenantID}
	if f.Cursor != "" {
		at, id, err := sqldb.DecodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where, args = append(where, "(created_at < ? OR created_at = ? AND id < ?)"), append(args, at, at, id)
	}
	if !f.From.IsZero() {
		where, args = append(where, "created_at >= ?"), append(args, f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		where, args = append(where, "created_at < ?"), append(args, f.To.UnixMicro())
	}
	if f.Purpose != "" {
		if _, err := s.register.Get(ctx, tenantID, f.Purpose); errs.Is(err, errs.NotFound) {
			return nil, "", errs.Field("purpose", "no purpose with the key %q in the register", f.Purpose)
		} else if err != nil {
			return nil, "", err
		}
		where, args = append(where, "purpose_key = ?"), append(args, f.Purpose)
	}
	rows, err := s.db.Read().Query(ctx, `SELECT id, subject_id, seq, purpose_key, notice_version, notice_hash, action, method,
		created_at, valid_until, hash FROM consent_events WHERE `+strings.Join(where, " AND ")+`
		ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, f.Limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("consent history: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var created, until int64
		var hash []byte
		if err := rows.Scan(&e.ID, &e.SubjectID, &e.Seq, &e.Purpose, &e.NoticeVersion, &e.NoticeHash, &e.Action, &e.Method,
			&created, &until, &hash); err != nil {
			return nil, "", err
		}
		e.CreatedAt, e.Hash = time.UnixMicro(created).UTC(), hex.EncodeToString(hash)
		if until != 0 {
			t := time.UnixMicro(until).UTC()
			e.ValidUntil = &t
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		last := out[len(out)-1]
		next = sqldb.EncodeCursor(last.CreatedAt.UnixMicro(), last.ID)
	}
	if len(out) > 0 {
		people := make([]string, 0, len(out))
		for _, e := range out {
			people = append(people, e.SubjectID)
		}
		if err := s.log.Record(ctx, tenantID, audit.Event{Action: "consent.history", TargetType: "subject", Subjects: people,
			Details: map[string]any{"count": len(out)}}); err != nil {
			return nil, "", err
		}
	}
	return out, next, nil
}

// HistoryCSVHeader is the header row of WriteHistoryCSV.
var HistoryCSVHeader = []string{"time", "subject_id", "purpose", "action", "method", "notice_version", "notice_hash",
	"valid_until", "seq", "hash", "event_id"}

// WriteHistoryCSV streams every consent event matching f (all pages,
// newest first) as CSV; each page of 1000 is one audit event.
func (s *Service) WriteHistoryCSV(ctx context.Context, w io.Writer, tenantID string, f HistoryFilter) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(HistoryCSVHeader); err != nil {
		return err
	}
	f.Limit = 1000
	for {
		es, next, err := s.History(ctx, tenantID, f)
		if err != nil {
			return err
		}
		for _, e := range es {
			until := ""
			if e.ValidUntil != nil {
				until = e.ValidUntil.Format(time.RFC3339)
			}
			row := []string{e.CreatedAt.Format(time.RFC3339Nano), e.SubjectID, e.Purpose, e.Action, e.Method,
				strconv.Itoa(e.NoticeVersion), e.NoticeHash, until, strconv.FormatInt(e.Seq, 10), e.Hash, e.ID}
			for i := range row {
				row[i] = audit.SafeCell(row[i])
			}
			if err := cw.Write(row); err != nil {
				return err
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		f.Cursor = next
	}
}
