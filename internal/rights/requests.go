// Package rights handles data-subject requests (GDPR Art. 15–22): their
// intake, identity verification, deadlines in the tenant's time zone,
// extension, assignment, notes, and every transition, each one audited.
package rights

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Request types.
var Types = []string{"access", "portability", "rectification", "erasure", "restriction", "objection", "withdraw_consent"}

// Channels a request arrives by.
var Channels = []string{"email", "phone", "post", "in_person", "web_form", "api", "portal"}

// Statuses of a request.
const (
	Received   = "received"
	Verified   = "verified"
	InProgress = "in_progress"
	Completed  = "completed"
	Rejected   = "rejected"
)

// next lists the transitions allowed from each status.
var next = map[string][]string{
	Received:   {Verified, Rejected},
	Verified:   {InProgress, Completed, Rejected},
	InProgress: {Completed, Rejected},
}

// Next answers the statuses a request in status can move to.
func Next(status string) []string { return slices.Clone(next[status]) }

// ReasonCodes say why a request was rejected.
var ReasonCodes = []string{"identity_not_verified", "manifestly_unfounded", "excessive", "no_data", "other"}

// dueSoon is how close a deadline must be to count as due soon.
const dueSoon = 7 * 24 * time.Hour

// Request is a data-subject request.
type Request struct {
	ID              string     `json:"id"`
	Type            string     `json:"type"`
	SubjectID       string     `json:"subject_id"`
	Channel         string     `json:"channel"`
	Status          string     `json:"status"`
	ReasonCode      string     `json:"reason_code,omitempty"`
	AssigneeID      string     `json:"assignee_id,omitempty"`
	ReceivedAt      time.Time  `json:"received_at"`
	DueAt           time.Time  `json:"due_at"`
	ExtendedDueAt   *time.Time `json:"extended_due_at"`
	ExtensionReason string     `json:"extension_reason,omitempty"`
	Purposes        []string   `json:"purposes,omitempty"` // objection, withdraw_consent: the purposes named; none = all that apply
	// NotifyRecipients are the recipients (from the register) the
	// controller must tell of a rectification, erasure or restriction
	// (Art. 19), on a request read alone.
	NotifyRecipients []string  `json:"notify_recipients,omitempty"`
	Overdue          bool      `json:"overdue"`
	UpdatedAt        time.Time `json:"updated_at"`
	History          []Event   `json:"history,omitempty"`
}

// Event is one step of a request's history.
type Event struct {
	Seq        int       `json:"seq"`
	Kind       string    `json:"kind"` // received | status | assigned | note | extended | applied | delivered
	FromStatus string    `json:"from_status,omitempty"`
	ToStatus   string    `json:"to_status,omitempty"`
	ActorID    string    `json:"actor_id"`
	Note       string    `json:"note,omitempty"`
	At         time.Time `json:"at"`
}

// Input is a new request: the person by subject id, email or phone.
type Input struct {
	Type      string   `json:"type"`
	SubjectID string   `json:"subject_id"`
	Email     string   `json:"email"`
	Phone     string   `json:"phone"`
	Channel   string   `json:"channel"`
	Note      string   `json:"note"`
	Purposes  []string `json:"purposes"` // objection, withdraw_consent: purpose keys; none = all that apply
}

// Change moves a request on: a status (with a reason code when
// rejecting), an assignee, a note. Empty fields stay.
type Change struct {
	Status     string  `json:"status"`
	ReasonCode string  `json:"reason_code"`
	AssigneeID *string `json:"assignee_id"`
	Note       string  `json:"note"`
}

// Filter selects requests.
type Filter struct {
	Status    string // one status, or "open" (not completed nor rejected)
	Due       string // overdue | soon (within 7 days, not overdue)
	SubjectID string
	Type      string // one of Types
	Channel   string // one of Channels
	Assignee  string // a user id, or "none" for the unassigned
	// Verified, when set, keeps the requests whose identity check is done
	// (true: any status but received) or not (false: received).
	Verified *bool
	// NoStaff leaves out the requests of people who have a user account,
	// for a caller who may not read accounts.
	NoStaff bool
	Cursor  string // from a previous page
	Limit   int    // 1 to 1000; 0 means 1000
}

// RequestPage is one page of requests, by deadline.
type RequestPage struct {
	Items      []Request `json:"requests"`
	NextCursor string    `json:"next_cursor,omitempty"`
	Total      int       `json:"total"`      // exact up to MaxCount
	TotalMore  bool      `json:"total_more"` // more than Total match
}

// MaxCount is how far a list's count is exact.
const MaxCount = 10_000

// Service keeps requests.
type Service struct {
	db       *sqldb.DB
	keys     *keyring.Keyring
	log      *audit.Log
	subjects *subject.Service
	register *register.Service
	consent  *consent.Service
	tenants  *tenant.Service
	mail     *mail.Outbox
	links    string
	now      func() time.Time
}

// Deps are what a Service is built from.
type Deps struct {
	DB       *sqldb.DB
	Keys     *keyring.Keyring
	Log      *audit.Log
	Subjects *subject.Service
	Register *register.Service
	Consent  *consent.Service
	Tenants  *tenant.Service
	Mail     *mail.Outbox
	Links    string // the public base URL of links mailed to people
	Now      func() time.Time
}

// NewService returns a Service.
func NewService(d Deps) *Service {
	return &Service{db: d.DB, keys: d.Keys, log: d.Log, subjects: d.Subjects, register: d.Register, consent: d.Consent,
		tenants: d.Tenants, mail: d.Mail, links: d.Links, now: d.Now}
}

func checkNote(note string) error {
	if utf8.RuneCountInString(note) > 4000 || !utf8.ValidString(note) {
		return errs.Field("note", "at most 4000 characters")
	}
	return nil
}

// Create records a request as received. A person named by email or phone
// who is not a subject yet becomes one (source "request"): the request
// and everything about it is sealed under their key, so that erasing them
// reaches it.
func (s *Service) Create(ctx context.Context, tenantID string, in Input) (Request, error) {
	if err := s.check(ctx, tenantID, &in); err != nil {
		return Request{}, err
	}
	subjectID, err := s.person(ctx, tenantID, in)
	if err != nil {
		return Request{}, err
	}
	return s.create(ctx, tenantID, subjectID, in, false, nil)
}

// check validates a new request.
func (s *Service) check(ctx context.Context, tenantID string, in *Input) error {
	if !slices.Contains(Types, in.Type) {
		return errs.Field("type", "one of %s", strings.Join(Types, ", "))
	}
	if in.Channel == "" {
		in.Channel = "api"
	}
	if !slices.Contains(Channels, in.Channel) {
		return errs.Field("channel", "one of %s", strings.Join(Channels, ", "))
	}
	if err := checkNote(in.Note); err != nil {
		return err
	}
	return s.checkPurposes(ctx, tenantID, in.Type, in.Purposes)
}

// objectableBases are the legal bases whose processing a person can stop:
// consent by withdrawing it, a public task or legitimate interests by
// objecting (Art. 21(1)).
var objectableBases = []string{register.Consent, register.PublicTask, register.LegitimateInterests}

// checkPurposes checks the purposes a request names: only an objection or
// a withdrawal names them, each a purpose of the register it can apply to.
func (s *Service) checkPurposes(ctx context.Context, tenantID, typ string, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if typ != "objection" && typ != "withdraw_consent" {
		return errs.Field("purposes", "only an objection or a consent withdrawal names purposes")
	}
	if len(keys) > 100 {
		return errs.Field("purposes", "at most 100")
	}
	for _, k := range keys {
		p, err := s.register.Get(ctx, tenantID, k)
		if errs.Is(err, errs.NotFound) {
			return errs.Field("purposes", "no purpose with the key %q in the register", k)
		}
		if err != nil {
			return err
		}
		switch {
		case typ == "withdraw_consent" && p.LegalBasis != register.Consent:
			return errs.Field("purposes", "%q is based on %s, not on consent", k, p.LegalBasis)
		case !slices.Contains(objectableBases, p.LegalBasis):
			return errs.Field("purposes", "%q is based on %s: the right to object does not apply", k, p.LegalBasis)
		}
	}
	return nil
}

// create inserts a request about subjectID, received — or verified, with
// the step in its history — and runs within, when not nil, in the same
// transaction.
func (s *Service) create(ctx context.Context, tenantID, subjectID string, in Input, verified bool, within func(ctx context.Context, tx *sqldb.Tx) error) (Request, error) {
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return Request{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Request{}, err
	}
	purposes, err := json.Marshal(append([]string{}, in.Purposes...))
	if err != nil {
		return Request{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	r := Request{ID: id.String(), Type: in.Type, SubjectID: subjectID, Channel: in.Channel, Status: Received,
		ReceivedAt: now, DueAt: DueAt(now, t.Location()), UpdatedAt: now}
	if verified {
		r.Status = Verified
	}
	key, err := s.subjects.Key(ctx, tenantID, subjectID)
	if err != nil {
		return Request{}, err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if within != nil {
			if err := within(ctx, tx); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO data_requests (tenant_id, id, subject_id, type, channel, status, received_at, due_at, updated_at, purposes)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, tenantID, r.ID, subjectID, r.Type, r.Channel, r.Status,
			now.UnixMicro(), r.DueAt.UnixMicro(), now.UnixMicro(), string(purposes)); err != nil {
			return err
		}
		if err := s.addEvent(ctx, tx, tenantID, r.ID, subjectID, key, Event{Kind: "received", ToStatus: Received, Note: in.Note, At: now}); err != nil {
			return err
		}
		if !verified {
			return nil
		}
		return s.addEvent(ctx, tx, tenantID, r.ID, subjectID, key, Event{Kind: "status", FromStatus: Received, ToStatus: Verified,
			Note: "The requester confirmed their email address with the link mailed to it.", At: now})
	}, audit.Event{Action: "request.create", TargetType: "request", TargetID: r.ID, SubjectID: subjectID,
		Details: map[string]any{"type": r.Type, "channel": r.Channel, "status": r.Status, "due_at": r.DueAt.Format(time.RFC3339)}})
	if err != nil {
		return Request{}, err
	}
	return s.Get(ctx, tenantID, r.ID)
}

// person resolves who a request is about.
func (s *Service) person(ctx context.Context, tenantID string, in Input) (string, error) {
	n := 0
	for _, v := range []string{in.SubjectID, in.Email, in.Phone} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return "", errs.Field("subject_id", "name the person by exactly one of subject_id, email or phone")
	}
	switch {
	case in.SubjectID != "":
		if _, err := s.subjects.Key(ctx, tenantID, in.SubjectID); err != nil {
			if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Gone) {
				return "", errs.Field("subject_id", "no such subject")
			}
			return "", err
		}
		return in.SubjectID, nil
	case in.Email != "":
		id, err := s.subjects.IDByEmail(ctx, s.db.Read(), tenantID, in.Email)
		if !errs.Is(err, errs.NotFound) {
			return id, err
		}
	default:
		found, err := s.subjects.Find(ctx, tenantID, subject.Lookup{Phone: in.Phone})
		if err != nil || len(found) > 0 {
			if len(found) > 0 {
				return found[0].ID, nil
			}
			return "", err
		}
	}
	sub, err := s.subjects.Create(ctx, tenantID, subject.New{Email: in.Email, Phone: in.Phone, Source: "request"})
	if err != nil {
		return "", err
	}
	return sub.ID, nil
}

// addEvent appends to a request's history inside tx.
func (s *Service) addEvent(ctx context.Context, tx *sqldb.Tx, tenantID, requestID, subjectID string, key *keyring.DataKey, e Event) error {
	var seq int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(seq), 0) FROM data_request_events WHERE tenant_id = ? AND request_id = ?",
		tenantID, requestID).Scan(&seq); err != nil {
		return err
	}
	seq++
	var note []byte
	if e.Note != "" {
		note = key.Seal("data_request_events", "note_ct", fmt.Sprintf("%s/%d", requestID, seq), []byte(e.Note))
	}
	actor := audit.ActorFrom(ctx)
	_, err := tx.Exec(ctx, `INSERT INTO data_request_events (tenant_id, request_id, seq, subject_id, kind, from_status, to_status, actor_id, note_ct, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, tenantID, requestID, seq, subjectID, e.Kind, e.FromStatus, e.ToStatus,
		actor.Type+":"+actor.ID, note, e.At.UnixMicro())
	return err
}

const selectRequest = `SELECT id, subject_id, type, channel, status, reason_code, assignee_id, received_at, due_at,
	extended_due_at, extension_ct, updated_at, purposes FROM data_requests`

type stored struct {
	Request
	extensionCT []byte
}

func (s *Service) scan(rows interface{ Scan(...any) error }) (stored, error) {
	var r stored
	var received, due, extended, updated int64
	var purposes string
	err := rows.Scan(&r.ID, &r.SubjectID, &r.Type, &r.Channel, &r.Status, &r.ReasonCode, &r.AssigneeID, &received, &due,
		&extended, &r.extensionCT, &updated, &purposes)
	if err == nil {
		err = json.Unmarshal([]byte(purposes), &r.Purposes)
	}
	r.ReceivedAt, r.DueAt, r.UpdatedAt = time.UnixMicro(received).UTC(), time.UnixMicro(due).UTC(), time.UnixMicro(updated).UTC()
	deadline := r.DueAt
	if extended != 0 {
		t := time.UnixMicro(extended).UTC()
		r.ExtendedDueAt, deadline = &t, t
	}
	r.Overdue = r.open() && s.now().After(deadline)
	return r, err
}

func (r Request) open() bool { return r.Status != Completed && r.Status != Rejected }

// Peek returns a request without its history or anything sealed in it:
// its type, dates, status and assignee, which the list shows too. Nothing
// is recorded.
func (s *Service) Peek(ctx context.Context, tenantID, id string) (Request, error) {
	r, err := s.scan(s.db.Read().QueryRow(ctx, selectRequest+" WHERE tenant_id = ? AND id = ?", tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Request{}, errs.E(errs.NotFound, "no such request")
	}
	return r.Request, err
}

// Get returns a request with its history. Reading it is audited.
func (s *Service) Get(ctx context.Context, tenantID, id string) (Request, error) {
	r, err := s.scan(s.db.Read().QueryRow(ctx, selectRequest+" WHERE tenant_id = ? AND id = ?", tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Request{}, errs.E(errs.NotFound, "no such request")
	}
	if err != nil {
		return Request{}, err
	}
	key, err := s.keys.SubjectKey(ctx, s.db.Read(), tenantID, r.SubjectID)
	if err != nil && !errors.Is(err, keyring.ErrKeyDestroyed) {
		return Request{}, err
	}
	if key != nil && r.extensionCT != nil {
		if pt, err := key.Open("data_requests", "extension_ct", r.ID, r.extensionCT); err == nil {
			r.ExtensionReason = string(pt)
		}
	}
	rows, err := s.db.Read().Query(ctx, `SELECT seq, kind, from_status, to_status, actor_id, note_ct, at FROM data_request_events
		WHERE tenant_id = ? AND request_id = ? ORDER BY seq`, tenantID, id)
	if err != nil {
		return Request{}, err
	}
	defer rows.Close()
	r.History = []Event{}
	for rows.Next() {
		var e Event
		var note []byte
		var at int64
		if err := rows.Scan(&e.Seq, &e.Kind, &e.FromStatus, &e.ToStatus, &e.ActorID, &note, &at); err != nil {
			return Request{}, err
		}
		e.At = time.UnixMicro(at).UTC()
		if key != nil && note != nil {
			if pt, err := key.Open("data_request_events", "note_ct", fmt.Sprintf("%s/%d", id, e.Seq), note); err == nil {
				e.Note = string(pt)
			}
		}
		r.History = append(r.History, e)
	}
	if err := rows.Err(); err != nil {
		return Request{}, err
	}
	if slices.Contains(notifiedTypes, r.Type) {
		if r.NotifyRecipients, err = s.recipients(ctx, tenantID); err != nil {
			return Request{}, err
		}
	}
	return r.Request, s.log.Record(ctx, tenantID, audit.Event{Action: "request.read", TargetType: "request", TargetID: id, SubjectID: r.SubjectID})
}

// List returns the tenant's requests matching f (at most 1000), the nearest deadline
// first.
func (s *Service) List(ctx context.Context, tenantID string, f Filter) ([]Request, error) {
	f.Cursor, f.Limit = "", 1000
	p, err := s.Query(ctx, tenantID, f)
	return p.Items, err
}

// deadline is a request's deadline in SQL: the extended one when set.
const deadline = "CASE WHEN extended_due_at <> 0 THEN extended_due_at ELSE due_at END"

// where is f's filters as SQL.
func (s *Service) where(tenantID string, f Filter) (string, []any, error) {
	q, args := " WHERE tenant_id = ?", []any{tenantID}
	switch {
	case f.Status == "open":
		q += " AND status NOT IN (?, ?)"
		args = append(args, Completed, Rejected)
	case f.Status != "":
		if !slices.Contains([]string{Received, Verified, InProgress, Completed, Rejected}, f.Status) {
			return "", nil, errs.Field("status", "open, received, verified, in_progress, completed or rejected")
		}
		q += " AND status = ?"
		args = append(args, f.Status)
	}
	if f.SubjectID != "" {
		q += " AND subject_id = ?"
		args = append(args, f.SubjectID)
	}
	if f.Type != "" {
		if !slices.Contains(Types, f.Type) {
			return "", nil, errs.Field("type", "one of %s", strings.Join(Types, ", "))
		}
		q += " AND type = ?"
		args = append(args, f.Type)
	}
	if f.Channel != "" {
		if !slices.Contains(Channels, f.Channel) {
			return "", nil, errs.Field("channel", "one of %s", strings.Join(Channels, ", "))
		}
		q += " AND channel = ?"
		args = append(args, f.Channel)
	}
	switch f.Assignee {
	case "":
	case "none":
		q += " AND assignee_id = ''"
	default:
		q += " AND assignee_id = ?"
		args = append(args, f.Assignee)
	}
	if f.Verified != nil {
		q += map[bool]string{true: " AND status <> ?", false: " AND status = ?"}[*f.Verified]
		args = append(args, Received)
	}
	if f.NoStaff {
		q += " AND NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = data_requests.tenant_id AND u.subject_id = data_requests.subject_id)"
	}
	now := s.now().UnixMicro()
	switch f.Due {
	case "":
	case "overdue":
		q += " AND status NOT IN (?, ?) AND " + deadline + " < ?"
		args = append(args, Completed, Rejected, now)
	case "soon":
		q += " AND status NOT IN (?, ?) AND " + deadline + " >= ? AND " + deadline + " < ?"
		args = append(args, Completed, Rejected, now, now+dueSoon.Microseconds())
	default:
		return "", nil, errs.Field("due", "overdue or soon")
	}
	return q, args, nil
}

// Query answers a page of the requests f selects, soonest deadline
// first, with the cursor of the next page and how many match (exact up to
// MaxCount). Nothing personal is read.
func (s *Service) Query(ctx context.Context, tenantID string, f Filter) (RequestPage, error) {
	if f.Limit == 0 {
		f.Limit = 1000
	}
	if f.Limit < 1 || f.Limit > 1000 {
		return RequestPage{}, errs.Field("limit", "1 to 1000")
	}
	where, args, err := s.where(tenantID, f)
	if err != nil {
		return RequestPage{}, err
	}
	page := RequestPage{Items: []Request{}}
	var n int
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM (SELECT 1 FROM data_requests"+where+" LIMIT ?) AS matched",
		append(args, MaxCount+1)...).Scan(&n); err != nil {
		return page, err
	}
	page.Total, page.TotalMore = min(n, MaxCount), n > MaxCount
	if f.Cursor != "" {
		at, id, err := sqldb.DecodeCursor(f.Cursor)
		if err != nil {
			return page, err
		}
		where += " AND (" + deadline + " > ? OR " + deadline + " = ? AND id > ?)"
		args = append(args, at, at, id)
	}
	rows, err := s.db.Read().Query(ctx, selectRequest+where+" ORDER BY "+deadline+", id LIMIT ?", append(args, f.Limit+1)...)
	if err != nil {
		return page, err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := s.scan(rows)
		if err != nil {
			return page, err
		}
		page.Items = append(page.Items, r.Request)
	}
	if err := rows.Err(); err != nil {
		return page, err
	}
	if len(page.Items) > f.Limit {
		page.Items = page.Items[:f.Limit]
		last := page.Items[f.Limit-1]
		page.NextCursor = sqldb.EncodeCursor(last.Deadline().UnixMicro(), last.ID)
	}
	return page, nil
}

// Deadline is when the request must be answered: the extended date when
// it was extended.
func (r Request) Deadline() time.Time {
	if r.ExtendedDueAt != nil {
		return *r.ExtendedDueAt
	}
	return r.DueAt
}

// Update applies a change: a transition (audited with from and to), an
// assignee, a note.
func (s *Service) Update(ctx context.Context, tenantID, id string, c Change) (Request, error) {
	cur, err := s.scan(s.db.Read().QueryRow(ctx, selectRequest+" WHERE tenant_id = ? AND id = ?", tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Request{}, errs.E(errs.NotFound, "no such request")
	}
	if err != nil {
		return Request{}, err
	}
	if err := checkNote(c.Note); err != nil {
		return Request{}, err
	}
	if c.Status != "" && !slices.Contains(next[cur.Status], c.Status) {
		return Request{}, &errs.Error{Kind: errs.Conflict, Field: "status",
			Detail: fmt.Sprintf("a %s request can move to %s", cur.Status, orNothing(next[cur.Status]))}
	}
	if c.Status == Rejected && !slices.Contains(ReasonCodes, c.ReasonCode) {
		return Request{}, errs.Field("reason_code", "rejecting needs one of %s", strings.Join(ReasonCodes, ", "))
	}
	if c.Status != Rejected && c.ReasonCode != "" {
		return Request{}, errs.Field("reason_code", "only when rejecting")
	}
	if c.AssigneeID != nil && *c.AssigneeID != "" {
		var role string
		err := s.db.Read().QueryRow(ctx, "SELECT role FROM users WHERE tenant_id = ? AND id = ? AND status = 'active'", tenantID, *c.AssigneeID).Scan(&role)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && role == "member") {
			return Request{}, errs.Field("assignee_id", "an active owner or admin of the tenant")
		}
		if err != nil {
			return Request{}, err
		}
	}
	if c.Status == "" && c.AssigneeID == nil && c.Note == "" {
		return Request{}, errs.Field("status", "nothing to change: give status, assignee_id or note")
	}
	key, err := s.keys.SubjectKey(ctx, s.db.Read(), tenantID, cur.SubjectID)
	if errors.Is(err, keyring.ErrKeyDestroyed) {
		key = nil // the person was erased: the request's record stays, without notes
	} else if err != nil {
		return Request{}, err
	}
	if key == nil && c.Note != "" {
		return Request{}, errs.E(errs.Gone, "the person was erased; notes about them can no longer be kept")
	}
	events := []audit.Event{{Action: "request.update", TargetType: "request", TargetID: id, SubjectID: cur.SubjectID, Details: map[string]any{}}}
	var tell *mail.Message // a rejection is told to the person, with its reason (Art. 12(4))
	if c.Status == Rejected && key != nil {
		if tell, err = s.rejection(ctx, tenantID, cur.Request, c.ReasonCode); err != nil {
			return Request{}, err
		}
		events[0].Details["notified"] = tell != nil
	}
	var applied string
	if need, err := s.needsApply(ctx, tenantID, cur.Request, c.Status); err != nil {
		return Request{}, err
	} else if need {
		var did map[string]any
		if did, applied, err = s.apply(ctx, tenantID, cur.Request); err != nil {
			return Request{}, err
		}
		events = append(events, audit.Event{Action: "request.apply", TargetType: "request", TargetID: id, SubjectID: cur.SubjectID, Details: did})
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	details := events[0].Details
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		status, reason, assignee := cur.Status, cur.ReasonCode, cur.AssigneeID
		if c.Status != "" {
			status, reason = c.Status, c.ReasonCode
			details["from"], details["to"] = cur.Status, c.Status
			if reason != "" {
				details["reason_code"] = reason
			}
		}
		if c.AssigneeID != nil {
			assignee = *c.AssigneeID
			details["assignee_id"] = assignee
		}
		res, err := tx.Exec(ctx, `UPDATE data_requests SET status = ?, reason_code = ?, assignee_id = ?, updated_at = ?
			WHERE tenant_id = ? AND id = ? AND status = ?`, status, reason, assignee, now.UnixMicro(), tenantID, id, cur.Status)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errs.E(errs.Conflict, "the request changed meanwhile; read it again")
		}
		kind := "note"
		switch {
		case c.Status != "":
			kind = "status"
		case c.AssigneeID != nil:
			kind = "assigned"
		}
		from, to := "", ""
		if c.Status != "" {
			from, to = cur.Status, c.Status
		}
		if applied != "" {
			if err := s.addEvent(ctx, tx, tenantID, id, cur.SubjectID, key, Event{Kind: "applied", Note: applied, At: now}); err != nil {
				return err
			}
		}
		if tell != nil {
			if err := s.mail.Queue(ctx, tx, key, *tell); err != nil {
				return err
			}
		}
		return s.addEvent(ctx, tx, tenantID, id, cur.SubjectID, key, Event{Kind: kind, FromStatus: from, ToStatus: to, Note: c.Note, At: now})
	}, events...)
	if err != nil {
		return Request{}, err
	}
	return s.Get(ctx, tenantID, id)
}

// RejectionReasons say each reason code to the person it is told to.
var RejectionReasons = map[string]string{
	"identity_not_verified": "We could not verify that the request came from you.",
	"manifestly_unfounded":  "The request is manifestly unfounded (GDPR Art. 12(5)).",
	"excessive":             "The request is excessive, in particular because it repeats an earlier one (GDPR Art. 12(5)).",
	"no_data":               "We hold no personal data about you.",
	"other":                 "We can tell you why if you reply to this message.",
}

// rejection is the mail that tells the person their request is rejected
// and why, and where they may complain; nil when they have no address.
func (s *Service) rejection(ctx context.Context, tenantID string, r Request, code string) (*mail.Message, error) {
	email, _, err := s.subjects.Email(ctx, tenantID, r.SubjectID)
	if err != nil || email == "" {
		return nil, err
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return &mail.Message{TenantID: tenantID, SubjectID: r.SubjectID, Kind: "request-rejected", To: email,
		Subject: t.Name + " cannot act on your request",
		Text: fmt.Sprintf(`Hello,

%s received your %s request on %s and cannot act on it.
%s

You may lodge a complaint with a data protection supervisory authority,
in particular in the country where you live or work, and seek a judicial
remedy (GDPR Art. 12(4), 77 and 79).

%s`, t.Name, strings.ReplaceAll(r.Type, "_", " "), r.ReceivedAt.In(t.Location()).Format("2 January 2006"), RejectionReasons[code],
			s.tenants.Footer(ctx, t))}, nil
}

func orNothing(list []string) string {
	if len(list) == 0 {
		return "nothing: it is closed"
	}
	return strings.Join(list, " or ")
}

// Extend pushes a request's deadline to three months after receipt, with
// a reason the requester is told by mail (Art. 12(3)). Only before the
// first deadline has passed, once, and while the request is open.
func (s *Service) Extend(ctx context.Context, tenantID, id, reason string) (Request, error) {
	cur, err := s.scan(s.db.Read().QueryRow(ctx, selectRequest+" WHERE tenant_id = ? AND id = ?", tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Request{}, errs.E(errs.NotFound, "no such request")
	}
	if err != nil {
		return Request{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || utf8.RuneCountInString(reason) > 2000 {
		return Request{}, errs.Field("reason", "required (the requester is told it), at most 2000 characters")
	}
	switch {
	case !cur.open():
		return Request{}, errs.E(errs.Conflict, "the request is %s", cur.Status)
	case cur.ExtendedDueAt != nil:
		return Request{}, errs.E(errs.Conflict, "the deadline was extended already")
	case s.now().After(cur.DueAt):
		return Request{}, errs.E(errs.Conflict, "the deadline (%s) has passed: an extension must be decided and told within the first month", cur.DueAt.Format(time.RFC3339))
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return Request{}, err
	}
	email, key, err := s.subjects.Email(ctx, tenantID, cur.SubjectID)
	if err != nil {
		return Request{}, err
	}
	extended := ExtendedDueAt(cur.ReceivedAt, t.Location())
	now := s.now().UTC().Truncate(time.Microsecond)
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE data_requests SET extended_due_at = ?, extension_ct = ?, updated_at = ?
			WHERE tenant_id = ? AND id = ? AND extended_due_at = 0`, extended.UnixMicro(),
			key.Seal("data_requests", "extension_ct", id, []byte(reason)), now.UnixMicro(), tenantID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errs.E(errs.Conflict, "the deadline was extended already")
		}
		if err := s.addEvent(ctx, tx, tenantID, id, cur.SubjectID, key, Event{Kind: "extended", Note: reason, At: now}); err != nil {
			return err
		}
		if email == "" {
			return nil // no address: the admin tells the person by the channel the request came in
		}
		return s.mail.Queue(ctx, tx, key, mail.Message{TenantID: tenantID, SubjectID: cur.SubjectID, Kind: "request-extended", To: email,
			Subject: t.Name + " needs more time for your request",
			Text: fmt.Sprintf(`Hello,

%s received your %s request on %s. It needs more time to answer it,
and will answer by %s at the latest, for this reason:

%s

%s`, t.Name, strings.ReplaceAll(cur.Type, "_", " "), cur.ReceivedAt.In(t.Location()).Format("2 January 2006"),
				extended.In(t.Location()).Format("2 January 2006"), reason, s.tenants.Footer(ctx, t))})
	}, audit.Event{Action: "request.extend", TargetType: "request", TargetID: id, SubjectID: cur.SubjectID,
		Details: map[string]any{"extended_due_at": extended.Format(time.RFC3339), "notified": email != ""}})
	if err != nil {
		return Request{}, err
	}
	return s.Get(ctx, tenantID, id)
}

// SubjectOf answers whom request id is about, without reading anything
// personal (NotFound when there is no such request).
func (s *Service) SubjectOf(ctx context.Context, tenantID, id string) (string, error) {
	var subjectID string
	err := s.db.Read().QueryRow(ctx, "SELECT subject_id FROM data_requests WHERE tenant_id = ? AND id = ?", tenantID, id).Scan(&subjectID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errs.E(errs.NotFound, "no such request")
	}
	return subjectID, err
}

// ErasureRequest checks that request id asks for the erasure of
// subjectID and has been verified, so that the erasure can answer it.
func (s *Service) ErasureRequest(ctx context.Context, tenantID, id, subjectID string) error {
	r, err := s.scan(s.db.Read().QueryRow(ctx, selectRequest+" WHERE tenant_id = ? AND id = ?", tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return errs.Field("request_id", "no such request")
	}
	if err != nil {
		return err
	}
	switch {
	case r.Type != "erasure" || r.SubjectID != subjectID:
		return errs.Field("request_id", "not an erasure request of this subject")
	case r.Status != Verified && r.Status != InProgress:
		return &errs.Error{Kind: errs.Conflict, Field: "request_id", Detail: "the request is " + r.Status + "; erase once it is verified"}
	}
	return nil
}

// Complete marks a request completed (after the erasure that answers it).
func (s *Service) Complete(ctx context.Context, tenantID, id string) error {
	_, err := s.Update(ctx, tenantID, id, Change{Status: Completed})
	return err
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"id", "type", "status", "channel", "received_at", "due_at", "extended_due_at", "deadline", "overdue",
	"assignee_id", "reason_code", "subject_id"}

// WriteCSV records the export, then streams every request f selects (all
// pages, by deadline) as CSV. Nothing personal is in it: the person is
// their id.
func (s *Service) WriteCSV(ctx context.Context, w io.Writer, tenantID string, f Filter) error {
	if _, _, err := s.where(tenantID, f); err != nil {
		return err
	}
	if err := s.log.Record(ctx, tenantID, audit.Event{Action: "request.export", TargetType: "request",
		Details: map[string]any{"format": "csv"}}); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f.Cursor, f.Limit = "", 1000
	day := func(t time.Time) string { return t.Format(time.RFC3339) }
	for {
		p, err := s.Query(ctx, tenantID, f)
		if err != nil {
			return err
		}
		for _, r := range p.Items {
			extended := ""
			if r.ExtendedDueAt != nil {
				extended = day(*r.ExtendedDueAt)
			}
			row := []string{r.ID, r.Type, r.Status, r.Channel, day(r.ReceivedAt), day(r.DueAt), extended, day(r.Deadline()),
				strconv.FormatBool(r.Overdue), r.AssigneeID, r.ReasonCode, r.SubjectID}
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
		if p.NextCursor == "" {
			return nil
		}
		f.Cursor = p.NextCursor
	}
}
