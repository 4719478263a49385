package rights

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// Some requests change processing as soon as they are verified, without
// waiting for an admin: a restriction restricts the subject; a consent
// withdrawal withdraws the consents it names (all, when it names none);
// an objection withdraws the consent-based ones and, for purposes based
// on legitimate interests or a public task, records an open objection —
// processing for it stops until an admin decides (Art. 21(1)). Applying
// is idempotent and recorded in the request's history once ("applied");
// a request whose applying failed is applied again when it moves on.

// applies reports whether a request of type t takes effect when verified.
func applies(t string) bool {
	return t == "restriction" || t == "objection" || t == "withdraw_consent"
}

// Objection statuses.
const (
	ObjectionOpen       = "open"       // processing for the purpose stops until decided
	ObjectionUpheld     = "upheld"     // it stays stopped
	ObjectionOverridden = "overridden" // compelling legitimate grounds: processing may go on
)

// Objection is a person's objection to processing for one purpose.
type Objection struct {
	SubjectID string     `json:"subject_id"`
	Purpose   string     `json:"purpose"`
	RequestID string     `json:"request_id"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	DecidedAt *time.Time `json:"decided_at"`
}

// applied reports whether request id's history records it applied.
func (s *Service) applied(ctx context.Context, q sqldb.Q, tenantID, id string) (bool, error) {
	var n int
	err := q.QueryRow(ctx, "SELECT COUNT(*) FROM data_request_events WHERE tenant_id = ? AND request_id = ? AND kind = 'applied'",
		tenantID, id).Scan(&n)
	return n > 0, err
}

// needsApply reports whether r must be applied before moving to status.
func (s *Service) needsApply(ctx context.Context, tenantID string, r Request, status string) (bool, error) {
	if !applies(r.Type) || (status != Verified && status != InProgress && status != Completed) {
		return false, nil
	}
	done, err := s.applied(ctx, s.db.Read(), tenantID, r.ID)
	return !done, err
}

// apply makes r take effect and answers what it did, for the audit trail
// and the request's history.
func (s *Service) apply(ctx context.Context, tenantID string, r Request) (map[string]any, string, error) {
	if r.Type == "restriction" {
		if _, err := s.subjects.Restrict(ctx, tenantID, r.SubjectID, "data-subject request "+r.ID); err != nil {
			return nil, "", err
		}
		return map[string]any{"restricted": true}, "Processing of the person's data is restricted.", nil
	}
	keys := r.Purposes
	if len(keys) == 0 {
		ps, err := s.register.List(ctx, tenantID)
		if err != nil {
			return nil, "", err
		}
		for _, p := range ps {
			if p.LegalBasis == register.Consent || r.Type == "objection" && slices.Contains(objectableBases, p.LegalBasis) {
				keys = append(keys, p.Key)
			}
		}
	}
	withdrawn, objected := []string{}, []string{}
	for _, k := range keys {
		p, err := s.register.Get(ctx, tenantID, k)
		if errs.Is(err, errs.NotFound) {
			continue // removed from the register since
		}
		if err != nil {
			return nil, "", err
		}
		if p.LegalBasis == register.Consent {
			done, err := s.consent.WithdrawGranted(ctx, tenantID, r.SubjectID,
				consent.Input{Purpose: k, Method: "request", Source: "data-subject request " + r.ID})
			if err != nil {
				return nil, "", err
			}
			if done {
				withdrawn = append(withdrawn, k)
			}
			continue
		}
		if r.Type == "objection" && slices.Contains(objectableBases, p.LegalBasis) {
			if err := s.object(ctx, tenantID, r, k); err != nil {
				return nil, "", err
			}
			objected = append(objected, k)
		}
	}
	note := "Consent withdrawn: " + orNone(withdrawn) + "."
	if r.Type == "objection" {
		note += " Objections to review (processing stops until decided): " + orNone(objected) + "."
	}
	return map[string]any{"withdrawn": withdrawn, "objections": objected}, note, nil
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// object records (or reopens) an objection of r's subject to purpose.
func (s *Service) object(ctx context.Context, tenantID string, r Request, purpose string) error {
	return s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO objections (tenant_id, subject_id, purpose_key, request_id, status, created_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, subject_id, purpose_key) DO UPDATE SET request_id = excluded.request_id,
				status = excluded.status, created_at = excluded.created_at, decided_at = 0`,
			tenantID, r.SubjectID, purpose, r.ID, ObjectionOpen, s.now().UnixMicro())
		return err
	}, audit.Event{Action: "objection.open", TargetType: "subject", TargetID: r.SubjectID, SubjectID: r.SubjectID,
		Details: map[string]any{"purpose": purpose, "request_id": r.ID}})
}

// applyVerified applies a verified request that has not been applied,
// recording it, and answers the request as it now is.
func (s *Service) applyVerified(ctx context.Context, tenantID string, r Request) (Request, error) {
	need, err := s.needsApply(ctx, tenantID, r, r.Status)
	if err != nil || !need {
		return r, err
	}
	details, note, err := s.apply(ctx, tenantID, r)
	if err != nil {
		return Request{}, err
	}
	key, err := s.subjects.Key(ctx, tenantID, r.SubjectID)
	if err != nil {
		return Request{}, err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		return s.addEvent(ctx, tx, tenantID, r.ID, r.SubjectID, key, Event{Kind: "applied", Note: note, At: s.now().UTC().Truncate(time.Microsecond)})
	}, audit.Event{Action: "request.apply", TargetType: "request", TargetID: r.ID, SubjectID: r.SubjectID, Details: details})
	if err != nil {
		return Request{}, err
	}
	return s.Get(ctx, tenantID, r.ID)
}

// Objections lists the tenant's objections with status ("" for all),
// oldest first; with noStaff, not those of people who have a user account
// (for a caller who may not read accounts).
func (s *Service) Objections(ctx context.Context, tenantID, status string, noStaff bool) ([]Objection, error) {
	cond, args := "", []any{}
	if status != "" {
		if !slices.Contains([]string{ObjectionOpen, ObjectionUpheld, ObjectionOverridden}, status) {
			return nil, errs.Field("status", "open, upheld or overridden")
		}
		cond, args = " AND status = ?", append(args, status)
	}
	if noStaff {
		cond += " AND NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = objections.tenant_id AND u.subject_id = objections.subject_id)"
	}
	return s.objections(ctx, tenantID, cond, args...)
}

// objections lists the tenant's objections matching cond.
func (s *Service) objections(ctx context.Context, tenantID, cond string, args ...any) ([]Objection, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT subject_id, purpose_key, request_id, status, created_at, decided_at FROM objections
		WHERE tenant_id = ?`+cond+" ORDER BY created_at, subject_id, purpose_key LIMIT 1000", append([]any{tenantID}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Objection{}
	for rows.Next() {
		var o Objection
		var created, decided int64
		if err := rows.Scan(&o.SubjectID, &o.Purpose, &o.RequestID, &o.Status, &created, &decided); err != nil {
			return nil, err
		}
		o.CreatedAt = time.UnixMicro(created).UTC()
		if decided != 0 {
			t := time.UnixMicro(decided).UTC()
			o.DecidedAt = &t
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Decide settles an open objection: upheld (processing for the purpose
// stays stopped) or overridden (the controller has compelling legitimate
// grounds, which belong in the request's notes).
func (s *Service) Decide(ctx context.Context, tenantID, subjectID, purpose, decision string) (Objection, error) {
	cur, err := s.objections(ctx, tenantID, " AND subject_id = ? AND purpose_key = ?", subjectID, purpose)
	if err != nil {
		return Objection{}, err
	}
	if len(cur) == 0 {
		return Objection{}, errs.E(errs.NotFound, "no objection of this subject to this purpose")
	}
	if decision != ObjectionUpheld && decision != ObjectionOverridden {
		return Objection{}, errs.Field("decision", "upheld or overridden")
	}
	if cur[0].Status != ObjectionOpen {
		return Objection{}, errs.E(errs.Conflict, "the objection was decided already (%s)", cur[0].Status)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE objections SET status = ?, decided_at = ? WHERE tenant_id = ? AND subject_id = ? AND purpose_key = ? AND status = ?`,
			decision, now.UnixMicro(), tenantID, subjectID, purpose, ObjectionOpen)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errs.E(errs.Conflict, "the objection was decided meanwhile")
		}
		return nil
	}, audit.Event{Action: "objection.decide", TargetType: "subject", TargetID: subjectID, SubjectID: subjectID,
		Details: map[string]any{"purpose": purpose, "decision": decision, "request_id": cur[0].RequestID}})
	if err != nil {
		return Objection{}, err
	}
	o := cur[0]
	o.Status, o.DecidedAt = decision, &now
	return o, nil
}

// LiftRestriction lifts a subject's restriction and tells them, by mail
// when they have an address, before processing resumes (Art. 18(3)).
func (s *Service) LiftRestriction(ctx context.Context, tenantID, subjectID string) (subject.Subject, error) {
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return subject.Subject{}, err
	}
	return s.subjects.Unrestrict(ctx, tenantID, subjectID, func(ctx context.Context, tx *sqldb.Tx, email string, key *keyring.DataKey) error {
		if email == "" {
			return nil
		}
		return s.mail.Queue(ctx, tx, key, mail.Message{TenantID: tenantID, SubjectID: subjectID, Kind: "restriction-lifted", To: email,
			Subject: t.Name + " lifts the restriction on your data",
			Text: fmt.Sprintf(`Hello,

%s restricted the use of your personal data, at your request or while
a question about it was settled. That restriction is now lifted: your
data may be used again for the purposes you were told of.

If you disagree, reply to %s or use its privacy page.

%s`, t.Name, t.Name, s.tenants.Footer(ctx, t))})
	})
}

// ReplayObjection makes again, after a restore, an objection's change the
// restored data lacks: opened (processing for the purpose stops until it
// is decided), or decided. It answers whether it changed anything.
func (s *Service) ReplayObjection(ctx context.Context, tenantID, subjectID, purpose, decision string) (bool, error) {
	cur, err := s.objections(ctx, tenantID, " AND subject_id = ? AND purpose_key = ?", subjectID, purpose)
	if err != nil {
		return false, err
	}
	if decision == "" { // opened
		if len(cur) > 0 && cur[0].Status == ObjectionOpen {
			return false, nil
		}
		return true, s.object(ctx, tenantID, Request{SubjectID: subjectID}, purpose)
	}
	if len(cur) == 0 || cur[0].Status != ObjectionOpen {
		return false, nil
	}
	_, err = s.Decide(ctx, tenantID, subjectID, purpose, decision)
	return err == nil, err
}
