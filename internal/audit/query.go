package audit

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Filter selects events. Zero fields match everything.
type Filter struct {
	From, To time.Time // From inclusive, To exclusive
	Actor    string    // actor id or actor subject id
	// ActorSubjects, when not nil, keeps the events whose actor is one of
	// these people (a group's members); empty, it keeps none.
	ActorSubjects []string
	Action        string // exact action, or a prefix ending in "*" ("subject.*")
	Outcome       string // success, failure or denied; "" for any
	SubjectID     string
	Cursor        string // from a previous page
	Limit         int    // default 100, at most 1000
}

// Entry is an event as shown to people: the actor revealed when their key
// still exists, "erased subject #id" when it does not.
type Entry struct {
	Seq       int64          `json:"seq"`
	ID        string         `json:"id"`
	At        time.Time      `json:"at"`
	Actor     EntryActor     `json:"actor"`
	Action    string         `json:"action"`
	Target    EntryTarget    `json:"target"`
	SubjectID string         `json:"subject_id,omitempty"`
	Outcome   string         `json:"outcome"`
	IP        string         `json:"ip,omitempty"`
	UserAgent string         `json:"user_agent,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
	Hash      string         `json:"hash"`
}

// EntryActor is the actor part of an Entry.
type EntryActor struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	SubjectID string `json:"subject_id,omitempty"`
	Display   string `json:"display,omitempty"`
}

// EntryTarget is the target part of an Entry.
type EntryTarget struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Reader queries and reveals events.
type Reader struct {
	db   *sqldb.DB
	keys *keyring.Keyring
}

// NewReader returns a Reader.
func NewReader(db *sqldb.DB, keys *keyring.Keyring) *Reader { return &Reader{db: db, keys: keys} }

func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("seq:" + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if s, ok := strings.CutPrefix(string(b), "seq:"); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
				return n, nil
			}
		}
	}
	return 0, errs.Field("cursor", "not a cursor from a previous page")
}

// Query returns one page of tenantID's events, newest first, and the cursor
// of the next page ("" at the end).
func (rd *Reader) Query(ctx context.Context, tenantID string, f Filter) ([]Entry, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		return nil, "", errs.Field("limit", "at most 1000")
	}
	where := []string{"tenant_id = ?"}
	args := []any{tenantID}
	if f.Cursor != "" {
		seq, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where, args = append(where, "seq < ?"), append(args, seq)
	}
	if !f.From.IsZero() {
		where, args = append(where, "at >= ?"), append(args, f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		where, args = append(where, "at < ?"), append(args, f.To.UnixMicro())
	}
	if f.Actor != "" {
		where, args = append(where, "(actor_id = ? OR actor_subject_id = ?)"), append(args, f.Actor, f.Actor)
	}
	prefix, isPrefix := strings.CutSuffix(f.Action, "*")
	if !isPrefix && f.Action != "" {
		where, args = append(where, "action = ?"), append(args, f.Action)
	}
	if f.SubjectID != "" {
		// The person's own events, and the lists that showed them: both
		// from their indexes — a test per event of the trail would read
		// all of it to find a person's few.
		where = append(where, `seq IN (SELECT seq FROM audit_events WHERE tenant_id = ? AND subject_id = ?
			UNION SELECT seq FROM audit_event_subjects WHERE tenant_id = ? AND subject_id = ?)`)
		args = append(args, tenantID, f.SubjectID, tenantID, f.SubjectID)
	}
	if f.Outcome != "" {
		where, args = append(where, "outcome = ?"), append(args, f.Outcome)
	}
	if f.ActorSubjects != nil {
		if len(f.ActorSubjects) == 0 {
			return nil, "", nil
		}
		where = append(where, "actor_subject_id IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(f.ActorSubjects)), ", ")+")")
		for _, id := range f.ActorSubjects {
			args = append(args, id)
		}
	}
	var recs []record
	if isPrefix && prefix != "" {
		// One read per action under the prefix, each newest first by
		// the index on (tenant_id, action, seq), merged: a rare action is
		// found without reading the whole trail, a common one without
		// sorting it.
		actions, err := rd.actionsUnder(ctx, tenantID, prefix)
		if err != nil {
			return nil, "", err
		}
		for _, a := range actions {
			rs, err := rd.page(ctx, slices.Concat(where, []string{"action = ?"}), slices.Concat(args, []any{a}), f.Limit+1)
			if err != nil {
				return nil, "", err
			}
			recs = append(recs, rs...)
		}
		slices.SortFunc(recs, func(a, b record) int { return cmp.Compare(b.Seq, a.Seq) })
		recs = recs[:min(len(recs), f.Limit+1)]
	} else {
		var err error
		if recs, err = rd.page(ctx, where, args, f.Limit+1); err != nil {
			return nil, "", err
		}
	}
	next := ""
	if len(recs) > f.Limit {
		recs = recs[:f.Limit]
		next = encodeCursor(recs[len(recs)-1].Seq)
	}
	entries, err := rd.reveal(ctx, tenantID, recs)
	return entries, next, err
}

// page reads up to limit events matching where, newest first.
func (rd *Reader) page(ctx context.Context, where []string, args []any, limit int) ([]record, error) {
	rows, err := rd.db.Read().Query(ctx, `SELECT seq, id, at, actor_type, actor_id, actor_subject_id, actor_ct, action,
		target_type, target_id, subject_id, outcome, request_id, details, hash
		FROM audit_events WHERE `+strings.Join(where, " AND ")+` ORDER BY seq DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("query audit events: %w", err)
	}
	defer rows.Close()
	var recs []record
	for rows.Next() {
		var r record
		if err := rows.Scan(&r.Seq, &r.ID, &r.At, &r.ActorType, &r.ActorID, &r.ActorSubjectID, &r.ActorCT, &r.Action,
			&r.TargetType, &r.TargetID, &r.SubjectID, &r.Outcome, &r.RequestID, &r.Details, &r.Hash); err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// actionsUnder answers the distinct actions of the tenant's trail that
// start with prefix, one index seek each (a loose index scan), never
// reading the events in between. Actions compare byte by byte (on
// PostgreSQL, COLLATE "C"), as the prefix does.
func (rd *Reader) actionsUnder(ctx context.Context, tenantID, prefix string) ([]string, error) {
	col := "action"
	if rd.db.Dialect() == sqldb.Postgres {
		col = `action COLLATE "C"`
	}
	var out []string
	op, from := ">=", prefix
	for {
		var a sql.NullString
		if err := rd.db.Read().QueryRow(ctx, "SELECT min("+col+") FROM audit_events WHERE tenant_id = ? AND "+col+" "+op+" ?",
			tenantID, from).Scan(&a); err != nil {
			return nil, err
		}
		if !a.Valid || !strings.HasPrefix(a.String, prefix) {
			return out, nil
		}
		if out = append(out, a.String); len(out) > 1000 {
			return nil, fmt.Errorf("more than 1000 actions under %q", prefix)
		}
		op, from = ">", a.String
	}
}

// reveal decrypts actor identities, one key load per distinct actor.
func (rd *Reader) reveal(ctx context.Context, tenantID string, recs []record) ([]Entry, error) {
	keys := map[string]*keyring.DataKey{}
	out := make([]Entry, 0, len(recs))
	for _, r := range recs {
		e := Entry{
			Seq: r.Seq, ID: r.ID, At: time.UnixMicro(r.At).UTC(),
			Actor:  EntryActor{Type: r.ActorType, ID: r.ActorID, SubjectID: r.ActorSubjectID},
			Action: r.Action, Target: EntryTarget{Type: r.TargetType, ID: r.TargetID},
			SubjectID: r.SubjectID, Outcome: r.Outcome, RequestID: r.RequestID, Hash: fmt.Sprintf("%x", r.Hash),
		}
		if r.Details != "" && r.Details != "{}" {
			if err := json.Unmarshal([]byte(r.Details), &e.Details); err != nil {
				return nil, fmt.Errorf("audit event %d details: %w", r.Seq, err)
			}
		}
		if len(r.ActorCT) > 0 {
			k, seen := keys[r.ActorSubjectID]
			if !seen {
				var err error
				k, err = rd.keys.SubjectKey(ctx, rd.db.Read(), tenantID, r.ActorSubjectID)
				if errs.Is(err, errs.Gone) {
					k = nil
				} else if err != nil {
					return nil, err
				}
				keys[r.ActorSubjectID] = k
			}
			if k == nil {
				e.Actor.Display = "erased subject #" + r.ActorSubjectID
			} else {
				pt, err := k.Open("audit_events", "actor_ct", r.ID, r.ActorCT)
				if err != nil {
					return nil, fmt.Errorf("audit event %d actor: %w", r.Seq, err)
				}
				var s actorSecret
				if err := json.Unmarshal(pt, &s); err != nil {
					return nil, fmt.Errorf("audit event %d actor: %w", r.Seq, err)
				}
				e.Actor.Display, e.IP, e.UserAgent = s.Display, s.IP, s.UserAgent
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"seq", "time", "actor_type", "actor_id", "actor", "action", "target_type", "target_id",
	"subject_id", "outcome", "ip", "user_agent", "request_id", "details", "hash"}

// WriteCSV streams every event matching f (all pages) as CSV. Cells that a
// spreadsheet would run as a formula are neutralised.
func (rd *Reader) WriteCSV(ctx context.Context, w io.Writer, tenantID string, f Filter) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	n := 0
	err := rd.Each(ctx, tenantID, f, func(e Entry) error {
		details := ""
		if len(e.Details) > 0 {
			b, _ := json.Marshal(e.Details)
			details = string(b)
		}
		row := []string{strconv.FormatInt(e.Seq, 10), e.At.Format(time.RFC3339Nano), e.Actor.Type, e.Actor.ID,
			e.Actor.Display, e.Action, e.Target.Type, e.Target.ID, e.SubjectID, e.Outcome, e.IP, e.UserAgent,
			e.RequestID, details, e.Hash}
		for i := range row {
			row[i] = SafeCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
		if n++; n%1000 == 0 { // a page at a time
			cw.Flush()
			return cw.Error()
		}
		return nil
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// Each calls fn with every event matching f (all pages), newest first,
// and stops at fn's first error.
func (rd *Reader) Each(ctx context.Context, tenantID string, f Filter, fn func(Entry) error) error {
	f.Limit = 1000
	for {
		entries, next, err := rd.Query(ctx, tenantID, f)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		f.Cursor = next
	}
}

// SafeCell neutralises a CSV cell that a spreadsheet would treat as a
// formula (OWASP "CSV injection"): it prefixes a single quote to cells that
// begin with = + - @, a tab or a carriage return.
func SafeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// HeadState is where a tenant's chain ends, as the head row says (not
// verified: Log.Verify checks it).
type HeadState struct {
	Events    int64     // the position of the last event
	Hash      string    // its hash, hex
	UpdatedAt time.Time // when it was appended
}

// Head answers where tenantID's chain ends (zero before its first event).
func (rd *Reader) Head(ctx context.Context, tenantID string) (HeadState, error) {
	var h HeadState
	var hash []byte
	var at int64
	err := rd.db.Read().QueryRow(ctx, "SELECT seq, hash, updated_at FROM audit_heads WHERE tenant_id = ?", tenantID).Scan(&h.Events, &hash, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	h.Hash, h.UpdatedAt = hex.EncodeToString(hash), time.UnixMicro(at).UTC()
	return h, err
}
