// Package register keeps the controller's record of processing activities
// (GDPR Art. 30): each purpose of processing with its legal basis (Art. 6),
// the condition for special categories where they are used (Art. 9, 10),
// the categories of data and of people from a shipped taxonomy with
// fideslang keys, recipients, transfers abroad and retention — and, for
// purposes based on consent, the versioned notice text people agree to.
//
// A notice text is never edited: a new text is a new version, kept with
// its SHA-256, which consent events and receipts refer to. Every change is
// audited. The register is organisational data and is stored in clear.
package register

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Legal bases of Art. 6(1).
const (
	Consent             = "consent"              // (a)
	Contract            = "contract"             // (b)
	LegalObligation     = "legal_obligation"     // (c)
	VitalInterests      = "vital_interests"      // (d)
	PublicTask          = "public_task"          // (e)
	LegitimateInterests = "legitimate_interests" // (f)
)

// LegalBases lists the six bases of Art. 6(1), (a) to (f).
var LegalBases = []string{Consent, Contract, LegalObligation, VitalInterests, PublicTask, LegitimateInterests}

// Art9Conditions are the conditions of Art. 9(2), (a) to (j), one of which
// processing special categories needs.
var Art9Conditions = []string{"explicit_consent", "employment_social_security", "vital_interests", "not_for_profit_body",
	"made_public_by_subject", "legal_claims", "substantial_public_interest", "health_social_care", "public_health",
	"archiving_research_statistics"}

// Art10Conditions are the grounds for data on criminal convictions (Art. 10).
var Art10Conditions = []string{"official_authority", "authorised_by_law"}

// TransferMechanisms are the grounds of Chapter V for a transfer abroad.
var TransferMechanisms = []string{"adequacy_decision", "standard_contractual_clauses", "binding_corporate_rules",
	"approved_code_or_certification", "derogation_art49"}

// Transfer is a transfer of the data to a third country.
type Transfer struct {
	Country   string `json:"country"` // ISO 3166-1 alpha-2
	Mechanism string `json:"mechanism"`
}

// Notice is one version of a purpose's notice text.
type Notice struct {
	Version   int       `json:"version"`
	Text      string    `json:"text"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// Purpose is a processing activity of the register.
type Purpose struct {
	ID                string     `json:"id"`
	Key               string     `json:"key"`
	Name              string     `json:"name"`
	Description       string     `json:"description"`
	LegalBasis        string     `json:"legal_basis"`
	SpecialConditions []string   `json:"special_conditions"`
	DataCategories    []string   `json:"data_categories"`
	SubjectCategories []string   `json:"subject_categories"`
	Recipients        []string   `json:"recipients"`
	Transfers         []Transfer `json:"transfers"`
	RetentionDays     int        `json:"retention_days"`     // 0: not fixed
	ConsentValidDays  int        `json:"consent_valid_days"` // consent basis: 0 = until withdrawn
	Notice            *Notice    `json:"notice"`             // the current version; nil without one
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
}

// New is a purpose to create; NoticeText is its first notice version.
type New struct {
	Purpose
	NoticeText string
}

// Patch changes a purpose; nil fields stay. The key never changes.
type Patch struct {
	Name              *string
	Description       *string
	LegalBasis        *string
	SpecialConditions *[]string
	DataCategories    *[]string
	SubjectCategories *[]string
	Recipients        *[]string
	Transfers         *[]Transfer
	RetentionDays     *int
	ConsentValidDays  *int
}

// Service keeps the register.
type Service struct {
	db  *sqldb.DB
	log *audit.Log
	now func() time.Time
}

// NewService returns a Service.
func NewService(db *sqldb.DB, log *audit.Log, now func() time.Time) *Service {
	return &Service{db: db, log: log, now: now}
}

var (
	purposeKey = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}(\.[a-z][a-z0-9_]{0,40}){0,4}$`)
	country    = regexp.MustCompile(`^[A-Z]{2}$`)
)

// maxNotice bounds a notice text (about 30 pages).
const maxNotice = 100_000

func text(field, v string, required bool, max int) (string, error) {
	v = strings.TrimSpace(v)
	if required && v == "" {
		return "", errs.Field(field, "required")
	}
	if utf8.RuneCountInString(v) > max || !utf8.ValidString(v) {
		return "", errs.Field(field, "at most %d characters of UTF-8", max)
	}
	return v, nil
}

func list(field string, vs []string, allowed func(string) bool, what string) ([]string, error) {
	out := []string{}
	for _, v := range vs {
		v = strings.TrimSpace(v)
		if !allowed(v) {
			return nil, errs.Field(field, "%q is not %s", v, what)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// check validates and normalises p (all but key and notice).
func check(p *Purpose) error {
	var err error
	if p.Name, err = text("name", p.Name, true, 200); err != nil {
		return err
	}
	if p.Description, err = text("description", p.Description, false, 4000); err != nil {
		return err
	}
	if !slices.Contains(LegalBases, p.LegalBasis) {
		return errs.Field("legal_basis", "one of %s (Art. 6(1) (a) to (f))", strings.Join(LegalBases, ", "))
	}
	if p.DataCategories, err = list("data_categories", p.DataCategories, func(k string) bool {
		_, ok := lookup(shipped.DataCategories, k)
		return ok
	}, "a data category of the taxonomy (GET /api/v1/taxonomy) or a custom.… key"); err != nil {
		return err
	}
	if len(p.DataCategories) == 0 {
		return errs.Field("data_categories", "must hold at least one: what data does this purpose use?")
	}
	if p.SubjectCategories, err = list("subject_categories", p.SubjectCategories, func(k string) bool {
		_, ok := lookup(shipped.SubjectCategories, k)
		return ok
	}, "a subject category of the taxonomy or a custom.… key"); err != nil {
		return err
	}
	if p.Recipients, err = list("recipients", p.Recipients, func(r string) bool {
		return r != "" && utf8.RuneCountInString(r) <= 200
	}, "a recipient name of 1 to 200 characters"); err != nil {
		return err
	}
	conditions := append(slices.Clone(Art9Conditions), Art10Conditions...)
	if p.SpecialConditions, err = list("special_conditions", p.SpecialConditions, func(c string) bool {
		return slices.Contains(conditions, c)
	}, "a condition of Art. 9(2) or Art. 10"); err != nil {
		return err
	}
	kinds := Specials(p.DataCategories)
	has := func(set []string) bool {
		return slices.ContainsFunc(p.SpecialConditions, func(c string) bool { return slices.Contains(set, c) })
	}
	switch {
	case kinds["art9"] && !has(Art9Conditions):
		return errs.Field("special_conditions", "special categories of data (Art. 9) need one of the conditions of Art. 9(2): %s",
			strings.Join(Art9Conditions, ", "))
	case kinds["art10"] && !has(Art10Conditions):
		return errs.Field("special_conditions", "data on criminal convictions (Art. 10) needs one of: %s", strings.Join(Art10Conditions, ", "))
	case len(kinds) == 0 && len(p.SpecialConditions) > 0:
		return errs.Field("special_conditions", "only for purposes that use special categories of data or criminal convictions")
	}
	if p.Transfers == nil {
		p.Transfers = []Transfer{}
	}
	for _, t := range p.Transfers {
		if !country.MatchString(t.Country) {
			return errs.Field("transfers", "country %q: an ISO 3166-1 alpha-2 code such as US", t.Country)
		}
		if !slices.Contains(TransferMechanisms, t.Mechanism) {
			return errs.Field("transfers", "mechanism %q: one of %s", t.Mechanism, strings.Join(TransferMechanisms, ", "))
		}
	}
	if p.RetentionDays < 0 || p.RetentionDays > 100*366 {
		return errs.Field("retention_days", "0 (not fixed) to 36600")
	}
	if p.ConsentValidDays < 0 || p.ConsentValidDays > 100*366 {
		return errs.Field("consent_valid_days", "0 (until withdrawn) to 36600")
	}
	if p.ConsentValidDays > 0 && p.LegalBasis != Consent {
		return errs.Field("consent_valid_days", "only for purposes based on consent")
	}
	return nil
}

// NoticeHash is the hex SHA-256 of a notice text as stored.
func NoticeHash(text string) string {
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:])
}

// Create adds a purpose to the register. A purpose based on consent needs
// a notice text: people cannot agree to what they were not told.
func (s *Service) Create(ctx context.Context, tenantID string, in New) (Purpose, error) {
	p := in.Purpose
	p.Key = strings.TrimSpace(p.Key)
	if !purposeKey.MatchString(p.Key) {
		return Purpose{}, errs.Field("key", "lower-case words of letters, digits and _, joined by dots (such as marketing.newsletter)")
	}
	if err := check(&p); err != nil {
		return Purpose{}, err
	}
	notice, err := text("notice_text", in.NoticeText, p.LegalBasis == Consent, maxNotice)
	if err != nil {
		if p.LegalBasis == Consent && strings.TrimSpace(in.NoticeText) == "" {
			return Purpose{}, errs.Field("notice_text", "required for a purpose based on consent: the text people agree to")
		}
		return Purpose{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Purpose{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	p.ID, p.CreatedAt, p.UpdatedAt = id.String(), now, now
	if notice != "" {
		p.Notice = &Notice{Version: 1, Text: notice, SHA256: NoticeHash(notice), CreatedAt: now}
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var taken int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM purposes WHERE tenant_id = ? AND key = ?", tenantID, p.Key).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return errs.E(errs.Conflict, "a purpose with the key %q exists", p.Key)
		}
		cols, err := columns(p)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO purposes (tenant_id, id, key, name, description, legal_basis, special_conditions,
				data_categories, subject_categories, recipients, transfers, retention_days, consent_valid_days, notice_version,
				created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			append(append([]any{tenantID, p.ID, p.Key}, cols...), now.UnixMicro(), now.UnixMicro())...); err != nil {
			return err
		}
		return insertNotice(ctx, tx, tenantID, p.ID, p.Notice)
	}, audit.Event{Action: "purpose.create", TargetType: "purpose", TargetID: p.Key,
		Details: map[string]any{"key": p.Key, "legal_basis": p.LegalBasis, "notice_version": noticeVersion(p.Notice)}})
	return p, err
}

func noticeVersion(n *Notice) int {
	if n == nil {
		return 0
	}
	return n.Version
}

// columns are the values of the mutable columns, in the order of the
// INSERT and UPDATE statements.
func columns(p Purpose) ([]any, error) {
	out := []any{p.Name, p.Description, p.LegalBasis}
	for _, v := range []any{p.SpecialConditions, p.DataCategories, p.SubjectCategories, p.Recipients, p.Transfers} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return append(out, p.RetentionDays, p.ConsentValidDays, noticeVersion(p.Notice)), nil
}

func insertNotice(ctx context.Context, tx *sqldb.Tx, tenantID, purposeID string, n *Notice) error {
	if n == nil {
		return nil
	}
	_, err := tx.Exec(ctx, "INSERT INTO notice_versions (tenant_id, purpose_id, version, text, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)",
		tenantID, purposeID, n.Version, n.Text, n.SHA256, n.CreatedAt.UnixMicro())
	return err
}

const selectPurpose = `SELECT p.id, p.key, p.name, p.description, p.legal_basis, p.special_conditions, p.data_categories,
	p.subject_categories, p.recipients, p.transfers, p.retention_days, p.consent_valid_days, p.created_at, p.updated_at,
	n.version, n.text, n.sha256, n.created_at
	FROM purposes p LEFT JOIN notice_versions n ON n.tenant_id = p.tenant_id AND n.purpose_id = p.id AND n.version = p.notice_version`

func scanPurpose(sc interface{ Scan(...any) error }) (Purpose, error) {
	var p Purpose
	var lists [5]string
	var created, updated int64
	var nv sql.NullInt64
	var nt, nh sql.NullString
	var nc sql.NullInt64
	if err := sc.Scan(&p.ID, &p.Key, &p.Name, &p.Description, &p.LegalBasis, &lists[0], &lists[1], &lists[2], &lists[3], &lists[4],
		&p.RetentionDays, &p.ConsentValidDays, &created, &updated, &nv, &nt, &nh, &nc); err != nil {
		return p, err
	}
	for i, dst := range []any{&p.SpecialConditions, &p.DataCategories, &p.SubjectCategories, &p.Recipients, &p.Transfers} {
		if err := json.Unmarshal([]byte(lists[i]), dst); err != nil {
			return p, fmt.Errorf("purpose %s: %w", p.ID, err)
		}
	}
	p.CreatedAt, p.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	if nv.Valid {
		p.Notice = &Notice{Version: int(nv.Int64), Text: nt.String, SHA256: nh.String, CreatedAt: time.UnixMicro(nc.Int64).UTC()}
	}
	return p, nil
}

var errNoPurpose = errs.E(errs.NotFound, "no such purpose")

// Get returns the purpose with key.
func (s *Service) Get(ctx context.Context, tenantID, key string) (Purpose, error) {
	return getPurpose(ctx, s.db.Read(), tenantID, key)
}

func getPurpose(ctx context.Context, q sqldb.Q, tenantID, key string) (Purpose, error) {
	p, err := scanPurpose(q.QueryRow(ctx, selectPurpose+" WHERE p.tenant_id = ? AND p.key = ?", tenantID, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Purpose{}, errNoPurpose
	}
	return p, err
}

// List returns the register, by key.
func (s *Service) List(ctx context.Context, tenantID string) ([]Purpose, error) {
	rows, err := s.db.Read().Query(ctx, selectPurpose+" WHERE p.tenant_id = ? ORDER BY p.key", tenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Purpose{}
	for rows.Next() {
		p, err := scanPurpose(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Update changes the register entry of key. A purpose cannot become based
// on consent without a notice text.
func (s *Service) Update(ctx context.Context, tenantID, key string, patch Patch) (Purpose, error) {
	var fields []string
	mark := func(name string, set bool) {
		if set {
			fields = append(fields, name)
		}
	}
	mark("name", patch.Name != nil)
	mark("description", patch.Description != nil)
	mark("legal_basis", patch.LegalBasis != nil)
	mark("special_conditions", patch.SpecialConditions != nil)
	mark("data_categories", patch.DataCategories != nil)
	mark("subject_categories", patch.SubjectCategories != nil)
	mark("recipients", patch.Recipients != nil)
	mark("transfers", patch.Transfers != nil)
	mark("retention_days", patch.RetentionDays != nil)
	mark("consent_valid_days", patch.ConsentValidDays != nil)
	if len(fields) == 0 {
		return s.Get(ctx, tenantID, key)
	}
	var out Purpose
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		p, err := getPurpose(ctx, tx.Q, tenantID, key)
		if err != nil {
			return err
		}
		setIf(&p.Name, patch.Name)
		setIf(&p.Description, patch.Description)
		setIf(&p.LegalBasis, patch.LegalBasis)
		setIf(&p.SpecialConditions, patch.SpecialConditions)
		setIf(&p.DataCategories, patch.DataCategories)
		setIf(&p.SubjectCategories, patch.SubjectCategories)
		setIf(&p.Recipients, patch.Recipients)
		setIf(&p.Transfers, patch.Transfers)
		setIf(&p.RetentionDays, patch.RetentionDays)
		setIf(&p.ConsentValidDays, patch.ConsentValidDays)
		if err := check(&p); err != nil {
			return err
		}
		if p.LegalBasis == Consent && p.Notice == nil {
			return errs.Field("legal_basis", "a purpose based on consent needs a notice text first: POST /api/v1/purposes/%s/notices", key)
		}
		cols, err := columns(p)
		if err != nil {
			return err
		}
		p.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
		_, err = tx.Exec(ctx, `UPDATE purposes SET name = ?, description = ?, legal_basis = ?, special_conditions = ?, data_categories = ?,
				subject_categories = ?, recipients = ?, transfers = ?, retention_days = ?, consent_valid_days = ?, notice_version = ?,
				updated_at = ? WHERE tenant_id = ? AND id = ?`, append(cols, p.UpdatedAt.UnixMicro(), tenantID, p.ID)...)
		out = p
		return err
	}, audit.Event{Action: "purpose.update", TargetType: "purpose", TargetID: key, Details: map[string]any{"key": key, "fields": fields}})
	return out, err
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// AddNotice makes text the purpose's new notice version. Consent given to
// an earlier version stays on record with that version's hash.
func (s *Service) AddNotice(ctx context.Context, tenantID, key, noticeText string) (Notice, error) {
	var n Notice
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		p, err := getPurpose(ctx, tx.Q, tenantID, key)
		if err != nil {
			return err
		}
		t, err := text("text", noticeText, true, maxNotice)
		if err != nil {
			return err
		}
		if p.Notice != nil && p.Notice.Text == t {
			return errs.E(errs.Conflict, "this is the text of the current notice (version %d)", p.Notice.Version)
		}
		n = Notice{Version: noticeVersion(p.Notice) + 1, Text: t, SHA256: NoticeHash(t), CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
		if err := insertNotice(ctx, tx, tenantID, p.ID, &n); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE purposes SET notice_version = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
			n.Version, n.CreatedAt.UnixMicro(), tenantID, p.ID)
		return err
	}, audit.Event{Action: "purpose.notice", TargetType: "purpose", TargetID: key, Details: map[string]any{"key": key}})
	return n, err
}

// Notices returns every notice version of the purpose, oldest first.
func (s *Service) Notices(ctx context.Context, tenantID, key string) ([]Notice, error) {
	p, err := s.Get(ctx, tenantID, key)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Read().Query(ctx, "SELECT version, text, sha256, created_at FROM notice_versions WHERE tenant_id = ? AND purpose_id = ? ORDER BY version",
		tenantID, p.ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Notice{}
	for rows.Next() {
		var n Notice
		var at int64
		if err := rows.Scan(&n.Version, &n.Text, &n.SHA256, &at); err != nil {
			return nil, err
		}
		n.CreatedAt = time.UnixMicro(at).UTC()
		out = append(out, n)
	}
	return out, rows.Err()
}
