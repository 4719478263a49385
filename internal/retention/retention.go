// Package retention enforces how long a tenant keeps its contacts: the
// period after which a contact whose address no longer works becomes
// inactive, and policies that erase or anonymise contacts once a trigger
// date (added, last activity, consent withdrawn, inactive since) is older
// than their period. Contacts under a legal hold and user accounts are
// never touched. A run can be previewed (dry run: who would go, nothing
// changes); every run leaves its evidence — what, how many, when — in the
// audit trail. Time comes from the injected clock.
package retention

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// Triggers: the date a policy's period counts from.
const (
	Created          = "created"           // the contact was added
	LastActivity     = "last_activity"     // last change by or about the person
	ConsentWithdrawn = "consent_withdrawn" // a consent withdrawn, and no valid consent left
	InactiveSince    = "inactive_since"    // the contact became inactive
)

// Actions of a policy.
const (
	Erase     = "erase"
	Anonymise = "anonymise"
)

// Statuses a policy applies to, besides the subject statuses.
const AnyStatus = "any"

// Settings are a tenant's contact lifecycle settings.
type Settings struct {
	// InactiveAfterBounceDays: a contact whose address has bounced (hard)
	// and not worked since for this many days becomes inactive.
	InactiveAfterBounceDays int `json:"inactive_after_bounce_days"`
}

// DefaultSettings apply until a tenant changes them.
var DefaultSettings = Settings{InactiveAfterBounceDays: 30}

// Policy is a retention rule.
type Policy struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	Status         string    `json:"status"` // active | inactive | any
	Trigger        string    `json:"trigger"`
	PeriodDays     int       `json:"period_days"`
	Action         string    `json:"action"`
	DataCategories []string  `json:"data_categories"` // anonymise only these fields; empty: the whole contact
	Enabled        bool      `json:"enabled"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// PolicyInput creates or changes a policy; nil fields keep their value
// (or default, on creation).
type PolicyInput struct {
	Name           *string   `json:"name"`
	Status         *string   `json:"status"`
	Trigger        *string   `json:"trigger"`
	PeriodDays     *int      `json:"period_days"`
	Action         *string   `json:"action"`
	DataCategories *[]string `json:"data_categories"`
	Enabled        *bool     `json:"enabled"`
}

// Service runs retention.
type Service struct {
	db       *sqldb.DB
	log      *audit.Log
	subjects *subject.Service
	logger   *slog.Logger
	now      func() time.Time
}

// NewService returns a Service.
func NewService(db *sqldb.DB, log *audit.Log, subjects *subject.Service, logger *slog.Logger, now func() time.Time) *Service {
	return &Service{db: db, log: log, subjects: subjects, logger: logger, now: now}
}

const section = "retention"

// Settings returns the tenant's lifecycle settings.
func (s *Service) Settings(ctx context.Context, tenantID string) (Settings, error) {
	var value string
	err := s.db.Read().QueryRow(ctx, "SELECT value FROM tenant_settings WHERE tenant_id = ? AND section = ?", tenantID, section).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return DefaultSettings, nil
	}
	st := DefaultSettings
	if err == nil {
		err = json.Unmarshal([]byte(value), &st)
	}
	return st, err
}

// UpdateSettings changes the tenant's lifecycle settings; the change is
// audited with old and new values.
func (s *Service) UpdateSettings(ctx context.Context, tenantID string, in Settings) (Settings, error) {
	if in.InactiveAfterBounceDays < 0 || in.InactiveAfterBounceDays > 3650 {
		return Settings{}, errs.Field("inactive_after_bounce_days", "between 0 (at the first hard bounce) and 3650")
	}
	old, err := s.Settings(ctx, tenantID)
	if err != nil {
		return Settings{}, err
	}
	value, err := json.Marshal(in)
	if err != nil {
		return Settings{}, err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, section, value, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (tenant_id, section) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			tenantID, section, string(value), s.now().UnixMicro())
		return err
	}, audit.Event{Action: "settings.retention.update", TargetType: "tenant", TargetID: tenantID,
		Details: map[string]any{"inactive_after_bounce_days": []int{old.InactiveAfterBounceDays, in.InactiveAfterBounceDays}}})
	return in, err
}

func (p *Policy) validate() error {
	p.Name = strings.TrimSpace(p.Name)
	if p.Name == "" || utf8.RuneCountInString(p.Name) > 200 {
		return errs.Field("name", "required, at most 200 characters")
	}
	if !slices.Contains([]string{subject.StatusActive, subject.StatusInactive, AnyStatus}, p.Status) {
		return errs.Field("status", "active, inactive or any")
	}
	if !slices.Contains([]string{Created, LastActivity, ConsentWithdrawn, InactiveSince}, p.Trigger) {
		return errs.Field("trigger", "one of created, last_activity, consent_withdrawn, inactive_since")
	}
	if p.Trigger == InactiveSince && p.Status == subject.StatusActive {
		return errs.Field("status", "an inactive_since policy applies to inactive contacts")
	}
	if p.PeriodDays < 1 || p.PeriodDays > 36500 {
		return errs.Field("period_days", "between 1 and 36500")
	}
	if p.Action != Erase && p.Action != Anonymise {
		return errs.Field("action", "erase or anonymise")
	}
	if p.DataCategories == nil {
		p.DataCategories = []string{}
	}
	if len(p.DataCategories) > 0 && p.Action != Anonymise {
		return errs.Field("data_categories", "only an anonymisation can be narrowed to data categories")
	}
	return subject.CheckCategories("data_categories", p.DataCategories)
}

func apply(p *Policy, in PolicyInput) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Name, in.Name)
	set(&p.Status, in.Status)
	set(&p.Trigger, in.Trigger)
	set(&p.Action, in.Action)
	if in.PeriodDays != nil {
		p.PeriodDays = *in.PeriodDays
	}
	if in.DataCategories != nil {
		p.DataCategories = *in.DataCategories
	}
	if in.Enabled != nil {
		p.Enabled = *in.Enabled
	}
}

// CreatePolicy adds a policy (enabled unless said otherwise; status any).
func (s *Service) CreatePolicy(ctx context.Context, tenantID string, in PolicyInput) (Policy, error) {
	p := Policy{Status: AnyStatus, Enabled: true}
	apply(&p, in)
	if err := p.validate(); err != nil {
		return Policy{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Policy{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	p.ID, p.CreatedAt, p.UpdatedAt = id.String(), now, now
	cats, _ := json.Marshal(p.DataCategories)
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO retention_policies (tenant_id, id, name, status, trigger_on, period_days, action,
			data_categories, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			tenantID, p.ID, p.Name, p.Status, p.Trigger, p.PeriodDays, p.Action, string(cats), boolInt(p.Enabled), now.UnixMicro(), now.UnixMicro())
		return err
	}, audit.Event{Action: "retention.policy.create", TargetType: "retention_policy", TargetID: p.ID, Details: p.details()})
	return p, err
}

func (p Policy) details() map[string]any {
	return map[string]any{"name": p.Name, "status": p.Status, "trigger": p.Trigger, "period_days": p.PeriodDays,
		"action": p.Action, "data_categories": p.DataCategories, "enabled": p.Enabled}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// UpdatePolicy changes a policy.
func (s *Service) UpdatePolicy(ctx context.Context, tenantID, id string, in PolicyInput) (Policy, error) {
	p, err := s.policy(ctx, tenantID, id)
	if err != nil {
		return Policy{}, err
	}
	apply(&p, in)
	if err := p.validate(); err != nil {
		return Policy{}, err
	}
	p.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	cats, _ := json.Marshal(p.DataCategories)
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE retention_policies SET name = ?, status = ?, trigger_on = ?, period_days = ?, action = ?,
			data_categories = ?, enabled = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
			p.Name, p.Status, p.Trigger, p.PeriodDays, p.Action, string(cats), boolInt(p.Enabled), p.UpdatedAt.UnixMicro(), tenantID, id)
		return err
	}, audit.Event{Action: "retention.policy.update", TargetType: "retention_policy", TargetID: id, Details: p.details()})
	return p, err
}

// DeletePolicy removes a policy.
func (s *Service) DeletePolicy(ctx context.Context, tenantID, id string) error {
	if _, err := s.policy(ctx, tenantID, id); err != nil {
		return err
	}
	return s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM retention_policies WHERE tenant_id = ? AND id = ?", tenantID, id)
		return err
	}, audit.Event{Action: "retention.policy.delete", TargetType: "retention_policy", TargetID: id})
}

const selectPolicy = `SELECT id, name, status, trigger_on, period_days, action, data_categories, enabled, created_at, updated_at
	FROM retention_policies`

// Policies lists the tenant's policies, oldest first.
func (s *Service) Policies(ctx context.Context, tenantID string) ([]Policy, error) {
	return s.policies(ctx, selectPolicy+" WHERE tenant_id = ? ORDER BY id", tenantID)
}

func (s *Service) policy(ctx context.Context, tenantID, id string) (Policy, error) {
	ps, err := s.policies(ctx, selectPolicy+" WHERE tenant_id = ? AND id = ?", tenantID, id)
	if err != nil {
		return Policy{}, err
	}
	if len(ps) == 0 {
		return Policy{}, errs.E(errs.NotFound, "no such retention policy")
	}
	return ps[0], nil
}

func (s *Service) policies(ctx context.Context, q string, args ...any) ([]Policy, error) {
	rows, err := s.db.Read().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Policy{}
	for rows.Next() {
		var p Policy
		var cats string
		var enabled int
		var created, updated int64
		if err := rows.Scan(&p.ID, &p.Name, &p.Status, &p.Trigger, &p.PeriodDays, &p.Action, &cats, &enabled, &created, &updated); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(cats), &p.DataCategories); err != nil {
			return nil, err
		}
		p.Enabled, p.CreatedAt, p.UpdatedAt = enabled != 0, time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// candidates selects the contacts a policy reaches now: never a held or
// restricted one (a restriction keeps data, Art. 18(1)(b)–(c)), never one
// already anonymised — and never an account, which subject.IDs and
// subject.List leave out.
func (s *Service) candidates(p Policy) subject.Where {
	now := s.now()
	cutoff := now.AddDate(0, 0, -p.PeriodDays).UnixMicro()
	conds := []string{"held_since = 0", "restricted_since = 0", "status <> ?"}
	args := []any{subject.StatusAnonymised}
	if p.Status != AnyStatus {
		conds, args = append(conds, "status = ?"), append(args, p.Status)
	}
	switch p.Trigger {
	case Created:
		conds, args = append(conds, "created_at <= ?"), append(args, cutoff)
	case LastActivity:
		conds, args = append(conds, "last_activity_at <= ?"), append(args, cutoff)
	case InactiveSince:
		conds, args = append(conds, "status = ? AND inactive_since <> 0 AND inactive_since <= ?"), append(args, subject.StatusInactive, cutoff)
	case ConsentWithdrawn:
		conds = append(conds, `EXISTS (SELECT 1 FROM consent_state c WHERE c.tenant_id = subjects.tenant_id AND c.subject_id = subjects.id
				AND c.action = 'withdraw' AND c.at <= ?)`,
			`NOT EXISTS (SELECT 1 FROM consent_state c WHERE c.tenant_id = subjects.tenant_id AND c.subject_id = subjects.id
				AND c.action = 'grant' AND (c.valid_until = 0 OR c.valid_until > ?))`)
		args = append(args, cutoff, now.UnixMicro())
	}
	return subject.Where{SQL: strings.Join(conds, " AND "), Args: args}
}

// Report is what a run did, or would do.
type Report struct {
	DryRun      bool           `json:"dry_run"`
	At          time.Time      `json:"at"`
	Deactivated int            `json:"deactivated"` // contacts turned inactive (dry run: that would be)
	Policies    []PolicyReport `json:"policies"`
}

// PolicyReport is one policy's part of a run.
type PolicyReport struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Action string `json:"action"`
	Count  int    `json:"count"`
	// Subjects are who would go (dry runs; at most 500 per policy, by id).
	Subjects []subject.Subject `json:"subjects,omitempty"`
}

// batch bounds one policy's work in a run; the next run goes on.
const batch = 10_000

// Run applies the tenant's lifecycle settings and enabled policies, or
// with dryRun only reports who they reach. Either way the run is audited.
func (s *Service) Run(ctx context.Context, tenantID string, dryRun bool) (Report, error) {
	st, err := s.Settings(ctx, tenantID)
	if err != nil {
		return Report{}, err
	}
	rep := Report{DryRun: dryRun, At: s.now().UTC().Truncate(time.Microsecond), Policies: []PolicyReport{}}
	cutoff := s.now().AddDate(0, 0, -st.InactiveAfterBounceDays)
	if dryRun {
		ids, err := s.subjects.IDs(ctx, tenantID, subject.Where{SQL: "status = ? AND bouncing_since <> 0 AND bouncing_since <= ?",
			Args: []any{subject.StatusActive, cutoff.UnixMicro()}}, "", batch)
		if err != nil {
			return Report{}, err
		}
		rep.Deactivated = len(ids)
	} else if rep.Deactivated, err = s.subjects.Deactivate(ctx, tenantID, cutoff); err != nil {
		return Report{}, err
	}
	ps, err := s.Policies(ctx, tenantID)
	if err != nil {
		return Report{}, err
	}
	for _, p := range ps {
		if !p.Enabled {
			continue
		}
		pr, err := s.runPolicy(ctx, tenantID, p, dryRun)
		if err != nil {
			return Report{}, err
		}
		rep.Policies = append(rep.Policies, pr)
	}
	counts := make([]map[string]any, 0, len(rep.Policies))
	for _, pr := range rep.Policies {
		counts = append(counts, map[string]any{"policy": pr.ID, "action": pr.Action, "count": pr.Count})
	}
	err = s.log.Record(ctx, tenantID, audit.Event{Action: "retention.run", TargetType: "tenant", TargetID: tenantID,
		Details: map[string]any{"dry_run": dryRun, "deactivated": rep.Deactivated, "policies": counts}})
	return rep, err
}

func (s *Service) runPolicy(ctx context.Context, tenantID string, p Policy, dryRun bool) (PolicyReport, error) {
	pr := PolicyReport{ID: p.ID, Name: p.Name, Action: p.Action}
	where := s.candidates(p)
	if dryRun {
		ids, err := s.subjects.IDs(ctx, tenantID, where, "", batch)
		if err != nil {
			return pr, err
		}
		pr.Count = len(ids)
		pr.Subjects, _, err = s.subjects.List(ctx, tenantID, subject.ListOptions{Limit: 500, Where: where})
		return pr, err
	}
	ids, err := s.subjects.IDs(ctx, tenantID, where, "", batch)
	if err != nil {
		return pr, err
	}
	why := map[string]any{"policy": p.ID, "trigger": p.Trigger, "period_days": p.PeriodDays}
	for _, id := range ids {
		if p.Action == Erase {
			_, err = s.subjects.Erase(ctx, tenantID, id, subject.EraseInput{Reason: "retention policy " + p.ID, Details: why})
		} else {
			err = s.subjects.Anonymise(ctx, tenantID, id, p.DataCategories, why)
		}
		if errs.Is(err, errs.Conflict) || errs.Is(err, errs.NotFound) {
			continue // held, or gone, since it was selected
		}
		if err != nil {
			return pr, fmt.Errorf("retention policy %s on subject %s: %w", p.ID, id, err)
		}
		pr.Count++
	}
	return pr, nil
}

// RecordBounce records a bounce reported through the API; a hard bounce
// that makes the address non-working for longer than the tenant's period
// (or a period of 0) turns the contact inactive at once.
func (s *Service) RecordBounce(ctx context.Context, tenantID, id string, in subject.BounceInput) (subject.Bounce, error) {
	b, err := s.subjects.RecordBounce(ctx, tenantID, id, in)
	if err != nil || b.Kind != subject.HardBounce {
		return b, err
	}
	if err := s.deactivate(ctx, tenantID); err != nil {
		return b, err
	}
	var status string
	err = s.db.Read().QueryRow(ctx, "SELECT status FROM subjects WHERE tenant_id = ? AND id = ?", tenantID, id).Scan(&status)
	b.Status = status
	return b, err
}

func (s *Service) deactivate(ctx context.Context, tenantID string) error {
	st, err := s.Settings(ctx, tenantID)
	if err != nil {
		return err
	}
	_, err = s.subjects.Deactivate(ctx, tenantID, s.now().AddDate(0, 0, -st.InactiveAfterBounceDays))
	return err
}

// Delivered hears from the outbox that mail to a contact was accepted.
func (s *Service) Delivered(ctx context.Context, tenantID, subjectID string) error {
	return s.subjects.Delivered(ctx, tenantID, subjectID)
}

// Bounced hears from the outbox that the SMTP server refused mail to a
// contact for good.
func (s *Service) Bounced(ctx context.Context, tenantID, subjectID, mailID, reason string) error {
	if err := s.subjects.Bounced(ctx, tenantID, subjectID, mailID, reason); err != nil {
		return err
	}
	return s.deactivate(ctx, tenantID)
}
