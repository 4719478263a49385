// Package subject keeps data subjects: the people (contacts, clients, staff)
// whose personal data a tenant holds.
//
// Identifiers (email, phone, external id), attributes and source are sealed
// under the subject's own data key; email, phone and external id also get a
// blind index so they can be looked up without being stored in clear. Every
// read and change is an audit event committed with it.
package subject

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Statuses of a subject.
const (
	StatusActive     = "active"
	StatusInactive   = "inactive"   // its address has not worked for the tenant's period
	StatusAnonymised = "anonymised" // kept for counts; nothing identifies the person any more
)

// Subject is a data subject as the API shows it.
type Subject struct {
	ID         string         `json:"id"`
	Email      string         `json:"email,omitempty"`
	Phone      string         `json:"phone,omitempty"`
	ExternalID string         `json:"external_id,omitempty"`
	Attributes map[string]any `json:"attributes"`
	Source     string         `json:"source,omitempty"`
	Status     string         `json:"status"`
	CreatedAt  time.Time      `json:"created_at"` // when the contact was added
	UpdatedAt  time.Time      `json:"updated_at"`
	// LastActivityAt is the last change by or about the person: created,
	// rectified, a consent given or withdrawn.
	LastActivityAt time.Time  `json:"last_activity_at"`
	BouncingSince  *time.Time `json:"bouncing_since"` // first hard bounce since the address last worked
	InactiveSince  *time.Time `json:"inactive_since"`
	LegalHold      bool       `json:"legal_hold"` // kept from every deletion while set
	// RestrictedSince is set while processing is restricted (Art. 18):
	// the data is kept and can be exported, and is not shown otherwise.
	RestrictedSince *time.Time `json:"restricted_since"`
}

// New is the input of Create.
type New struct {
	Email      string         `json:"email"`
	Phone      string         `json:"phone"`
	ExternalID string         `json:"external_id"`
	Attributes map[string]any `json:"attributes"`
	Source     string         `json:"source"`
}

// Patch is the input of Rectify: absent fields stay, null clears, a value
// replaces. Attributes are merged (RFC 7396): a null member removes that key.
type Patch struct {
	Email      Optional[string]         `json:"email"`
	Phone      Optional[string]         `json:"phone"`
	ExternalID Optional[string]         `json:"external_id"`
	Attributes Optional[map[string]any] `json:"attributes"`
	Source     Optional[string]         `json:"source"`
}

// Lookup names one identifier to find subjects by.
type Lookup struct {
	Email, Phone, ExternalID string
}

// Service reads and writes subjects.
type Service struct {
	db      *sqldb.DB
	keys    *keyring.Keyring
	log     *audit.Log
	now     func() time.Time
	erasers []Eraser
	emails  *sqldb.Cache[[2]string, actorEmail] // by tenant and subject: Email's answers
}

// NewService returns a Service.
func NewService(db *sqldb.DB, keys *keyring.Keyring, log *audit.Log, now func() time.Time) *Service {
	return &Service{db: db, keys: keys, log: log, now: now,
		emails: sqldb.NewCache[[2]string, actorEmail](db, 10_000, sqldb.FollowSubjects)}
}

// actorEmail is what Email answers: the email and the key it opened with.
type actorEmail struct {
	email string
	key   *keyring.DataKey
}

// row is a subject as stored.
type row struct {
	id                              string
	status                          string
	emailCT, phoneCT, externalCT    []byte
	emailIdx, phoneIdx, externalIdx []byte
	attributesCT, sourceCT          []byte
	createdAt, updatedAt            int64
	lastActivity, bouncing          int64
	inactive, held, restricted      int64
}

const table = "subjects"

// fields is the normalised clear content of a subject.
type fields struct {
	email, phone, externalID, source string
	attributes                       map[string]any
}

func (f *fields) validate() error {
	var err error
	if f.email != "" {
		if f.email, err = NormalizeEmail(f.email); err != nil {
			return err
		}
	}
	if f.phone != "" {
		if f.phone, err = NormalizePhone(f.phone); err != nil {
			return err
		}
	}
	if f.externalID != "" {
		if f.externalID, err = NormalizeExternalID(f.externalID); err != nil {
			return err
		}
	}
	if f.source, err = normalizeSource(f.source); err != nil {
		return err
	}
	if f.attributes == nil {
		f.attributes = map[string]any{}
	}
	if err := validateAttributes(f.attributes); err != nil {
		return err
	}
	if f.email == "" && f.phone == "" && f.externalID == "" {
		return errs.Field("email", "a subject needs at least one of email, phone or external_id")
	}
	return nil
}

// seal encrypts f into r and computes its blind indexes.
func (s *Service) seal(ctx context.Context, tenantID string, dk *keyring.DataKey, f fields, r *row) error {
	q := s.db.Read()
	sealOpt := func(column, field, v string) ([]byte, []byte, error) {
		if v == "" {
			return nil, nil, nil
		}
		idx, err := s.keys.BlindIndex(ctx, q, tenantID, field, v)
		if err != nil {
			return nil, nil, err
		}
		return dk.Seal(table, column, r.id, []byte(v)), idx, nil
	}
	var err error
	if r.emailCT, r.emailIdx, err = sealOpt("email_ct", "email", f.email); err != nil {
		return err
	}
	if r.phoneCT, r.phoneIdx, err = sealOpt("phone_ct", "phone", f.phone); err != nil {
		return err
	}
	if r.externalCT, r.externalIdx, err = sealOpt("external_id_ct", "external_id", f.externalID); err != nil {
		return err
	}
	attrs, err := json.Marshal(f.attributes)
	if err != nil {
		return errs.Field("attributes", "must be a JSON object")
	}
	r.attributesCT = dk.Seal(table, "attributes_ct", r.id, attrs)
	r.sourceCT = dk.Seal(table, "source_ct", r.id, []byte(f.source))
	return nil
}

// open decrypts r.
func open(dk *keyring.DataKey, r *row) (fields, error) {
	var f fields
	openOpt := func(column string, ct []byte) (string, error) {
		if ct == nil {
			return "", nil
		}
		pt, err := dk.Open(table, column, r.id, ct)
		if err != nil {
			return "", fmt.Errorf("subject %s %s: %w", r.id, column, err)
		}
		return string(pt), nil
	}
	var err error
	if f.email, err = openOpt("email_ct", r.emailCT); err != nil {
		return f, err
	}
	if f.phone, err = openOpt("phone_ct", r.phoneCT); err != nil {
		return f, err
	}
	if f.externalID, err = openOpt("external_id_ct", r.externalCT); err != nil {
		return f, err
	}
	if f.source, err = openOpt("source_ct", r.sourceCT); err != nil {
		return f, err
	}
	attrs, err := openOpt("attributes_ct", r.attributesCT)
	if err != nil {
		return f, err
	}
	f.attributes = map[string]any{}
	if attrs != "" {
		if err := json.Unmarshal([]byte(attrs), &f.attributes); err != nil {
			return f, fmt.Errorf("subject %s attributes: %w", r.id, err)
		}
	}
	return f, nil
}

func (r *row) subject(f fields) Subject {
	return Subject{
		ID: r.id, Email: f.email, Phone: f.phone, ExternalID: f.externalID, Attributes: f.attributes,
		Source: f.source, Status: r.status,
		CreatedAt: time.UnixMicro(r.createdAt).UTC(), UpdatedAt: time.UnixMicro(r.updatedAt).UTC(),
		LastActivityAt: time.UnixMicro(r.lastActivity).UTC(), BouncingSince: timeOrNil(r.bouncing),
		InactiveSince: timeOrNil(r.inactive), LegalHold: r.held != 0, RestrictedSince: timeOrNil(r.restricted),
	}
}

// shown is the subject as answered after a change: a restricted
// subject's data is kept, not shown.
func (r *row) shown(f fields) Subject {
	if r.restricted != 0 {
		return r.subject(fields{attributes: map[string]any{}})
	}
	return r.subject(f)
}

func timeOrNil(us int64) *time.Time {
	if us == 0 {
		return nil
	}
	t := time.UnixMicro(us).UTC()
	return &t
}

// Create stores a new subject. Email and external id are unique per tenant.
func (s *Service) Create(ctx context.Context, tenantID string, in New) (Subject, error) {
	f := fields{email: in.Email, phone: in.Phone, externalID: in.ExternalID, source: in.Source, attributes: in.Attributes}
	if f.source == "" {
		f.source = "api"
	}
	if err := f.validate(); err != nil {
		return Subject{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Subject{}, err
	}
	now := s.now().UnixMicro()
	r := row{id: id.String(), status: StatusActive, createdAt: now, updatedAt: now, lastActivity: now}
	dk, wk, err := s.keys.NewSubjectKey(ctx, s.db.Read(), tenantID, r.id)
	if err != nil {
		return Subject{}, err
	}
	if err := s.seal(ctx, tenantID, dk, f, &r); err != nil {
		return Subject{}, err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		// The key and the subject go together (one round trip on
		// PostgreSQL); the unique indexes refuse a taken email or
		// external id.
		return tx.Run(ctx, []sqldb.Stmt{wk.Stmt(), {SQL: `INSERT INTO subjects (tenant_id, id, status, email_ct, email_bidx, phone_ct, phone_bidx,
			external_id_ct, external_id_bidx, attributes_ct, source_ct, created_at, updated_at, last_activity_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			Args: []any{tenantID, r.id, r.status, r.emailCT, r.emailIdx, r.phoneCT, r.phoneIdx, r.externalCT, r.externalIdx,
				r.attributesCT, r.sourceCT, r.createdAt, r.updatedAt, r.lastActivity}}})
	}, audit.Event{Action: "subject.create", TargetType: "subject", TargetID: r.id, SubjectID: r.id,
		Details: map[string]any{"fields": f.present()}})
	if sqldb.IsUniqueViolation(err) {
		// Which one, to name the field: the other subject is committed.
		if err := checkUnique(ctx, s.db.Read(), tenantID, r.id, &r); err != nil {
			return Subject{}, err
		}
		return Subject{}, errs.E(errs.Conflict, "a subject with this email or external_id already exists")
	}
	if err != nil {
		return Subject{}, err
	}
	return r.subject(f), nil
}

// present lists the names (never the values) of the fields that hold data.
func (f fields) present() []string {
	var names []string
	for _, p := range []struct{ name, v string }{{"email", f.email}, {"phone", f.phone}, {"external_id", f.externalID}, {"source", f.source}} {
		if p.v != "" {
			names = append(names, p.name)
		}
	}
	if len(f.attributes) > 0 {
		names = append(names, "attributes")
	}
	return names
}

// checkUnique refuses an email or external id that another subject of the
// tenant already has, naming the field.
func checkUnique(ctx context.Context, q sqldb.Q, tenantID, selfID string, r *row) error {
	for _, c := range []struct {
		field, column string
		idx           []byte
	}{{"email", "email_bidx", r.emailIdx}, {"external_id", "external_id_bidx", r.externalIdx}} {
		if c.idx == nil {
			continue
		}
		var other string
		err := q.QueryRow(ctx, "SELECT id FROM subjects WHERE tenant_id = ? AND "+c.column+" = ? AND id <> ?",
			tenantID, c.idx, selfID).Scan(&other)
		if err == nil {
			return &errs.Error{Kind: errs.Conflict, Field: c.field, Detail: "another subject already has this " + c.field}
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	return nil
}

const selectRow = `SELECT id, status, email_ct, email_bidx, phone_ct, phone_bidx, external_id_ct, external_id_bidx,
	attributes_ct, source_ct, created_at, updated_at, last_activity_at, bouncing_since, inactive_since, held_since, restricted_since FROM subjects`

func scanRow(sc interface{ Scan(...any) error }) (row, error) {
	var r row
	err := sc.Scan(&r.id, &r.status, &r.emailCT, &r.emailIdx, &r.phoneCT, &r.phoneIdx, &r.externalCT, &r.externalIdx,
		&r.attributesCT, &r.sourceCT, &r.createdAt, &r.updatedAt, &r.lastActivity, &r.bouncing, &r.inactive, &r.held, &r.restricted)
	return r, err
}

var errNotFound = errs.E(errs.NotFound, "no such subject")

func findRow(ctx context.Context, q sqldb.Q, tenantID, id string) (row, error) {
	r, err := scanRow(q.QueryRow(ctx, selectRow+" WHERE tenant_id = ? AND id = ?", tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, gone(ctx, q, tenantID, id)
	}
	if err != nil {
		return r, fmt.Errorf("find subject: %w", err)
	}
	return r, nil
}

// reveal opens a subject's row; a restricted subject's data stays closed
// (see ReadForExport for the one use left to it).
func (s *Service) reveal(ctx context.Context, tenantID string, r row) (Subject, error) {
	if r.status == StatusAnonymised || r.restricted != 0 { // anonymised: its key is gone and nothing about the person is left
		return r.subject(fields{attributes: map[string]any{}}), nil
	}
	return s.open(ctx, tenantID, r)
}

// open decrypts a subject's row.
func (s *Service) open(ctx context.Context, tenantID string, r row) (Subject, error) {
	if r.status == StatusAnonymised {
		return r.subject(fields{attributes: map[string]any{}}), nil
	}
	dk, err := s.keys.SubjectKey(ctx, s.db.Read(), tenantID, r.id)
	if err != nil {
		return Subject{}, err
	}
	f, err := open(dk, &r)
	if err != nil {
		return Subject{}, err
	}
	return r.subject(f), nil
}

// Get reads one subject and records the read. A restricted subject is
// refused (409), and the refusal recorded.
func (s *Service) Get(ctx context.Context, tenantID, id string) (Subject, error) {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Subject{}, err
	}
	if err := s.refuseRestricted(ctx, tenantID, r, "subject.read"); err != nil {
		return Subject{}, err
	}
	sub, err := s.reveal(ctx, tenantID, r)
	if err != nil {
		return Subject{}, err
	}
	if err := s.log.Record(ctx, tenantID, audit.Event{Action: "subject.read", TargetType: "subject", TargetID: id, SubjectID: id}); err != nil {
		return Subject{}, err
	}
	return sub, nil
}

// Find returns the subjects matching exactly one identifier and records
// the read of each.
func (s *Service) Find(ctx context.Context, tenantID string, l Lookup) ([]Subject, error) {
	var field, column, value string
	var err error
	n := 0
	if l.Email != "" {
		n++
		field, column = "email", "email_bidx"
		if value, err = NormalizeEmail(l.Email); err != nil {
			return nil, err
		}
	}
	if l.Phone != "" {
		n++
		field, column = "phone", "phone_bidx"
		if value, err = NormalizePhone(l.Phone); err != nil {
			return nil, err
		}
	}
	if l.ExternalID != "" {
		n++
		field, column = "external_id", "external_id_bidx"
		if value, err = NormalizeExternalID(l.ExternalID); err != nil {
			return nil, err
		}
	}
	if n != 1 {
		return nil, errs.Field("email", "look up by exactly one of email, phone or external_id")
	}
	idx, err := s.keys.BlindIndex(ctx, s.db.Read(), tenantID, field, value)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Read().Query(ctx, selectRow+" WHERE tenant_id = ? AND "+column+" = ? ORDER BY id LIMIT 100", tenantID, idx)
	if err != nil {
		return nil, fmt.Errorf("look up subjects: %w", err)
	}
	subs, _, err := s.revealRows(ctx, tenantID, rows, 0, s.reveal, "subject.lookup", map[string]any{"by": field})
	return subs, err
}

// Some reads the subjects of ids that still exist (staff too), for a list
// that shows who each row is about (the requests inbox): one audit event
// names them. A restricted subject's data stays closed.
func (s *Service) Some(ctx context.Context, tenantID string, ids []string) (map[string]Subject, error) {
	out := make(map[string]Subject, len(ids))
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	if len(ids) == 0 {
		return out, nil
	}
	args := []any{tenantID}
	for _, id := range ids {
		args = append(args, id)
	}
	rows, err := s.db.Read().Query(ctx, selectRow+" WHERE tenant_id = ? AND id IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+")", args...)
	if err != nil {
		return nil, fmt.Errorf("read subjects: %w", err)
	}
	subs, _, err := s.revealRows(ctx, tenantID, rows, 0, s.reveal, "subject.list", nil)
	for _, sub := range subs {
		out[sub.ID] = sub
	}
	return out, err
}

// Where narrows a listing: a condition on the subjects table from another
// package of this module (never from a client), with its arguments.
type Where struct {
	SQL  string
	Args []any
}

// ListOptions select a page of subjects.
type ListOptions struct {
	After      string // the cursor: list subjects after this id (before it, Newest first)
	Limit      int    // 1 to 500; 0 means 50
	Where      Where  // optional
	Status     string // active, inactive or anonymised; "" for any
	Restricted *bool  // restricted (Art. 18) or not; nil for either
	Held       *bool  // on legal hold or not; nil for either
	Newest     bool   // the most recently added first (ids are time-ordered)
}

// filter is o's filters as SQL.
func (o ListOptions) filter() (Where, error) {
	var w Where
	and := func(sql string, args ...any) {
		if w.SQL != "" {
			w.SQL += " AND "
		}
		w.SQL, w.Args = w.SQL+sql, append(w.Args, args...)
	}
	switch o.Status {
	case "":
	case StatusActive, StatusInactive, StatusAnonymised:
		and("status = ?", o.Status)
	default:
		return w, errs.Field("status", "active, inactive or anonymised")
	}
	flag := func(b *bool, column string) {
		if b != nil {
			and(column + map[bool]string{true: " <> 0", false: " = 0"}[*b])
		}
	}
	flag(o.Restricted, "restricted_since")
	flag(o.Held, "held_since")
	if o.Where.SQL != "" {
		and("("+o.Where.SQL+")", o.Where.Args...)
	}
	return w, nil
}

// ContactsOnly is contactsOnly, for another package's query that joins
// the subjects table under its own name.
const ContactsOnly = contactsOnly

// contactsOnly keeps the subjects who have no user account: staff are not
// contacts (no contact list, audience, campaign, export or retention
// reaches them); they are reached through /api/v1/users.
const contactsOnly = "NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = subjects.tenant_id AND u.subject_id = subjects.id)"

// List returns a page of the tenant's contacts (subjects without an
// account) in creation order (or newest first) matching o's filters, and
// the cursor of the next page ("" at the end); each subject read is
// recorded.
func (s *Service) List(ctx context.Context, tenantID string, o ListOptions) ([]Subject, string, error) {
	if o.Limit <= 0 {
		o.Limit = 50
	}
	if o.Limit > 500 {
		return nil, "", errs.Field("limit", "at most 500")
	}
	w, err := o.filter()
	if err != nil {
		return nil, "", err
	}
	q, args, order := selectRow+" WHERE tenant_id = ? AND id > ? AND "+contactsOnly, []any{tenantID, o.After}, " ORDER BY id"
	if o.Newest {
		q, order = selectRow+" WHERE tenant_id = ? AND (? = '' OR id < ?) AND "+contactsOnly, " ORDER BY id DESC"
		args = append(args, o.After)
	}
	if w.SQL != "" {
		q, args = q+" AND "+w.SQL, append(args, w.Args...)
	}
	rows, err := s.db.Read().Query(ctx, q+order+" LIMIT ?", append(args, o.Limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list subjects: %w", err)
	}
	subs, more, err := s.revealRows(ctx, tenantID, rows, o.Limit, s.reveal, "subject.list", nil)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = subs[len(subs)-1].ID
	}
	return subs, next, nil
}

// Count answers how many contacts (subjects without an account) of the
// tenant match w. Nothing personal is read.
func (s *Service) Count(ctx context.Context, tenantID string, w Where) (int, error) {
	q, args := "SELECT count(*) FROM subjects WHERE tenant_id = ? AND "+contactsOnly, []any{tenantID}
	if w.SQL != "" {
		q, args = q+" AND ("+w.SQL+")", append(args, w.Args...)
	}
	var n int
	err := s.db.Read().QueryRow(ctx, q, args...).Scan(&n)
	return n, err
}

// Active answers how many active contacts the tenant has: the active
// subjects by the index on status, less the active ones with an account
// (a few). Nothing personal is read.
func (s *Service) Active(ctx context.Context, tenantID string) (int, error) {
	var all, staff int
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM subjects WHERE tenant_id = ? AND status = ?",
		tenantID, StatusActive).Scan(&all); err != nil {
		return 0, err
	}
	err := s.db.Read().QueryRow(ctx, `SELECT count(*) FROM users u JOIN subjects s ON s.tenant_id = u.tenant_id AND s.id = u.subject_id
		WHERE u.tenant_id = ? AND s.status = ?`, tenantID, StatusActive).Scan(&staff)
	return all - staff, err
}

// MaxCount is how far a list's count is exact: beyond it, a list says
// "more than MaxCount" (counting further costs more than it tells).
const MaxCount = 10_000

// ListCount answers how many contacts match o's filters, counted up to
// MaxCount, and whether there are more.
func (s *Service) ListCount(ctx context.Context, tenantID string, o ListOptions) (int, bool, error) {
	w, err := o.filter()
	if err != nil {
		return 0, false, err
	}
	q, args := "SELECT 1 FROM subjects WHERE tenant_id = ? AND "+contactsOnly, []any{tenantID}
	if w.SQL != "" {
		q, args = q+" AND "+w.SQL, append(args, w.Args...)
	}
	var n int
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM ("+q+" LIMIT ?) AS matched", append(args, MaxCount+1)...).Scan(&n); err != nil {
		return 0, false, err
	}
	return min(n, MaxCount), n > MaxCount, nil
}

// IDs returns the ids of up to limit contacts (subjects without an
// account) of the tenant after the id after that match w, in id order. Nothing personal is read, so nothing is
// audited: callers record what they then do with each subject.
func (s *Service) IDs(ctx context.Context, tenantID string, w Where, after string, limit int) ([]string, error) {
	q, args := "SELECT id FROM subjects WHERE tenant_id = ? AND id > ? AND "+contactsOnly, []any{tenantID, after}
	if w.SQL != "" {
		q, args = q+" AND ("+w.SQL+")", append(args, w.Args...)
	}
	rows, err := s.db.Read().Query(ctx, q+" ORDER BY id LIMIT ?", append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("subject ids: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// revealRows reveals up to limit of rows (0: all) and records one event
// naming them; more says whether rows held more than limit.
func (s *Service) revealRows(ctx context.Context, tenantID string, rows *sql.Rows, limit int, reveal func(context.Context, string, row) (Subject, error),
	action string, details map[string]any) (subs []Subject, more bool, err error) {
	var rs []row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return nil, false, err
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if limit > 0 && len(rs) > limit {
		rs, more = rs[:limit], true
	}
	subs = make([]Subject, 0, len(rs))
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		sub, err := reveal(ctx, tenantID, r)
		if err != nil {
			return nil, false, err
		}
		subs = append(subs, sub)
		ids = append(ids, r.id)
	}
	if len(ids) == 0 {
		return subs, more, nil
	}
	// One event names everyone the page showed: each of them finds it
	// among their own events (audit.Event.Subjects).
	d := maps.Clone(details)
	if d == nil {
		d = map[string]any{}
	}
	d["count"] = len(ids)
	if err := s.log.Record(ctx, tenantID, audit.Event{Action: action, TargetType: "subject", Subjects: ids, Details: d}); err != nil {
		return nil, false, err
	}
	return subs, more, nil
}

// Rectify applies p to a subject. Only the names of changed fields are
// audited, never their old or new values.
//
// A subject who has a user account is refused (409, naming the account's
// route): an account is changed only through its own paths and rules
// (identity), which call RectifyAccount.
func (s *Service) Rectify(ctx context.Context, tenantID, id string, p Patch) (Subject, error) {
	return s.rectify(ctx, tenantID, id, p, false)
}

// RectifyAccount is Rectify for the account paths, which have applied the
// account's rules already: it also changes a subject who has an account.
func (s *Service) RectifyAccount(ctx context.Context, tenantID, id string, p Patch) (Subject, error) {
	return s.rectify(ctx, tenantID, id, p, true)
}

// Change is a rectification prepared for an account path that must apply
// it in the same unit as its own writes (a confirmed address and the link
// it spends): Apply inside the unit, and record Events with it.
type Change struct {
	Subject Subject       // the person as the change leaves them
	Events  []audit.Event // none when nothing changes
	apply   func(ctx context.Context, tx *sqldb.Tx) error
}

// Apply writes the change in tx; it fails with a conflict when the person
// changed since it was prepared.
func (c Change) Apply(ctx context.Context, tx *sqldb.Tx) error {
	if c.apply == nil {
		return nil
	}
	return c.apply(ctx, tx)
}

// PrepareAccountChange prepares p for a subject who has an account (see
// RectifyAccount), to be applied by the caller.
func (s *Service) PrepareAccountChange(ctx context.Context, tenantID, id string, p Patch) (Change, error) {
	return s.prepare(ctx, tenantID, id, p, true)
}

func (s *Service) rectify(ctx context.Context, tenantID, id string, p Patch, account bool) (Subject, error) {
	c, err := s.prepare(ctx, tenantID, id, p, account)
	if err != nil {
		return Subject{}, err
	}
	if len(c.Events) == 0 { // nothing to change: still a read of the subject, and audited as one
		err = s.log.Record(ctx, tenantID, audit.Event{Action: "subject.read", TargetType: "subject", TargetID: id, SubjectID: id})
	} else {
		err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error { return c.Apply(ctx, tx) }, c.Events...)
	}
	if err != nil {
		return Subject{}, err
	}
	return c.Subject, nil
}

// prepare reads the subject, applies p to it, checks and seals the result:
// the write itself is left to the Change.
func (s *Service) prepare(ctx context.Context, tenantID, id string, p Patch, account bool) (Change, error) {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Change{}, err
	}
	dk, err := s.keys.SubjectKey(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Change{}, err
	}
	f, err := open(dk, &r)
	if err != nil {
		return Change{}, err
	}
	before := f
	var changed []string
	str := func(name string, o Optional[string], dst *string) {
		if o.Set && (o.Null || o.Value != *dst) {
			*dst = o.Value // "" when null
			changed = append(changed, name)
		}
	}
	str("email", p.Email, &f.email)
	str("phone", p.Phone, &f.phone)
	str("external_id", p.ExternalID, &f.externalID)
	str("source", p.Source, &f.source)
	if p.Attributes.Set {
		merged := map[string]any{}
		if !p.Attributes.Null {
			for k, v := range before.attributes {
				merged[k] = v
			}
			for k, v := range p.Attributes.Value {
				if v == nil {
					delete(merged, k)
				} else {
					merged[k] = v
				}
			}
		}
		f.attributes = merged
		changed = append(changed, "attributes")
	}
	if err := f.validate(); err != nil {
		return Change{}, err
	}
	if len(changed) == 0 {
		return Change{Subject: r.shown(f)}, nil
	}
	if r.status == StatusAnonymised {
		return Change{}, errs.E(errs.Conflict, "this subject is anonymised; nothing about them can be changed")
	}
	prevUpdated := r.updatedAt
	r.updatedAt = max(s.now().UnixMicro(), prevUpdated+1)
	r.lastActivity = r.updatedAt
	if slices.Contains(changed, "email") { // a new address has not bounced
		r.bouncing = 0
		if r.status == StatusInactive {
			r.status, r.inactive = StatusActive, 0
		}
	}
	if err := s.seal(ctx, tenantID, dk, f, &r); err != nil {
		return Change{}, err
	}
	apply := func(ctx context.Context, tx *sqldb.Tx) error {
		if !account {
			if err := notAnAccount(ctx, tx.Q, tenantID, id); err != nil {
				return err
			}
		}
		if err := checkUnique(ctx, tx.Q, tenantID, r.id, &r); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `UPDATE subjects SET email_ct = ?, email_bidx = ?, phone_ct = ?, phone_bidx = ?,
			external_id_ct = ?, external_id_bidx = ?, attributes_ct = ?, source_ct = ?, updated_at = ?,
			last_activity_at = ?, bouncing_since = ?, status = ?, inactive_since = ?
			WHERE tenant_id = ? AND id = ? AND updated_at = ?`,
			r.emailCT, r.emailIdx, r.phoneCT, r.phoneIdx, r.externalCT, r.externalIdx, r.attributesCT, r.sourceCT,
			r.updatedAt, r.lastActivity, r.bouncing, r.status, r.inactive, tenantID, r.id, prevUpdated)
		if err != nil {
			return fmt.Errorf("update subject: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errs.E(errs.Conflict, "the subject changed meanwhile; read it again and retry")
		}
		return nil
	}
	return Change{Subject: r.shown(f), apply: apply, Events: []audit.Event{{Action: "subject.rectify", TargetType: "subject",
		TargetID: id, SubjectID: id, Details: viaAccount(map[string]any{"fields": changed}, account)}}}, nil
}

// Key returns the data key of a subject, for services that seal data about
// them (the audit actor, accounts).
func (s *Service) Key(ctx context.Context, tenantID, id string) (*keyring.DataKey, error) {
	k, err := s.keys.SubjectKey(ctx, s.db.Read(), tenantID, id)
	if errors.Is(err, keyring.ErrKeyDestroyed) {
		if _, err := findRow(ctx, s.db.Read(), tenantID, id); err != nil {
			return nil, err // no such subject (in this tenant): 404, not 410
		}
	}
	return k, err
}

// IDByEmail finds the subject id with this email, without recording a read
// of personal data (only an id is returned).
func (s *Service) IDByEmail(ctx context.Context, q sqldb.Q, tenantID, email string) (string, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return "", err
	}
	idx, err := s.keys.BlindIndex(ctx, q, tenantID, "email", e)
	if err != nil {
		return "", err
	}
	var id string
	err = q.QueryRow(ctx, "SELECT id FROM subjects WHERE tenant_id = ? AND email_bidx = ?", tenantID, idx).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errNotFound
	}
	return id, err
}

// WithEmail answers which of the subjects ids have an email address, by
// its blind index: nothing personal is read.
func (s *Service) WithEmail(ctx context.Context, tenantID string, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(ids); start += 500 {
		batch := ids[start:min(len(ids), start+500)]
		args := []any{tenantID}
		for _, id := range batch {
			args = append(args, id)
		}
		has, err := s.db.Read().Strings(ctx, "SELECT id FROM subjects WHERE tenant_id = ? AND email_bidx IS NOT NULL AND id IN ("+
			strings.TrimSuffix(strings.Repeat("?, ", len(batch)), ", ")+")", args...)
		if err != nil {
			return nil, err
		}
		for _, id := range has {
			out[id] = true
		}
	}
	return out, nil
}

// Email decrypts a subject's email without recording a read; for the
// system's own use (showing who an actor is, on every request), not for
// handing out. Answers are cached while the subjects epoch stands (a
// change of the person's email or status, or of their key, moves it).
func (s *Service) Email(ctx context.Context, tenantID, id string) (string, *keyring.DataKey, error) {
	if c, ok := s.emails.Get(ctx, [2]string{tenantID, id}); ok {
		return c.email, c.key, nil
	}
	email, dk, err := s.email(ctx, tenantID, id)
	if err == nil {
		s.emails.Put(ctx, [2]string{tenantID, id}, actorEmail{email, dk})
	}
	return email, dk, err
}

func (s *Service) email(ctx context.Context, tenantID, id string) (string, *keyring.DataKey, error) {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return "", nil, err
	}
	if r.status == StatusAnonymised {
		return "", nil, errs.E(errs.Gone, "this subject is anonymised")
	}
	dk, err := s.keys.SubjectKey(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return "", nil, err
	}
	if r.emailCT == nil {
		return "", dk, nil
	}
	pt, err := dk.Open(table, "email_ct", id, r.emailCT)
	return string(pt), dk, err
}

// Profile is what an account shows of its person: email and name (the
// "name" attribute).
type Profile struct {
	Email    string
	Name     string
	TimeZone string // the attribute time_zone: the person's own, for dates shown to them
}

// Profile returns a subject's email and name without recording a read:
// for services that show an account to whoever may manage it, and record
// that read themselves.
func (s *Service) Profile(ctx context.Context, tenantID, id string) (Profile, error) {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Profile{}, err
	}
	dk, err := s.keys.SubjectKey(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Profile{}, err
	}
	f, err := open(dk, &r)
	if err != nil {
		return Profile{}, err
	}
	name, _ := f.attributes["name"].(string)
	zone, _ := f.attributes["time_zone"].(string)
	return Profile{Email: f.email, Name: name, TimeZone: zone}, nil
}

// viaAccount marks the details of a write made through an account's own
// paths ("via": "account"), so that the audit trail tells them from writes
// through the subjects API (see identity.AccountWrites).
func viaAccount(details map[string]any, account bool) map[string]any {
	if account {
		details["via"] = "account"
	}
	return details
}

// notAnAccount refuses a write to a subject who has a user account: an
// account is changed and erased only through its own paths and rules.
func notAnAccount(ctx context.Context, q sqldb.Q, tenantID, subjectID string) error {
	userID, err := accountOf(ctx, q, tenantID, subjectID)
	if err != nil || userID == "" {
		return err
	}
	return AccountChange(userID)
}

// AccountChange is the refusal to change, as a contact, a person who has
// the user account userID: it names the account's route.
func AccountChange(userID string) error {
	return errs.E(errs.Conflict, "this person has a user account: change it through /api/v1/users/%s", userID)
}

// AccountErasure is the refusal to erase, as a contact, a person who has
// the user account userID: it names the account's route.
func AccountErasure(userID string) error {
	return errs.E(errs.Conflict, "this person has a user account: it is erased through POST /api/v1/users/%s/erase, or closed by its holder", userID)
}

// accountOf answers the id of the subject's user account, "" when they
// have none.
func accountOf(ctx context.Context, q sqldb.Q, tenantID, subjectID string) (string, error) {
	var userID string
	err := q.QueryRow(ctx, "SELECT id FROM users WHERE tenant_id = ? AND subject_id = ?", tenantID, subjectID).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return userID, err
}
