package subject

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Restriction of processing (Art. 18): while it lasts, a subject's data
// is kept — it can be stored, rectified, exported to the person, erased —
// and every other read or use is refused with 409 and recorded. Listings
// show a restricted subject by id and status only.

// errRestricted refuses a read or use of a restricted subject.
func errRestricted(since int64) error {
	return errs.E(errs.Conflict, "processing of this subject's data is restricted (GDPR Art. 18) since %s: it is kept and can be exported, not otherwise used",
		time.UnixMicro(since).UTC().Format(time.RFC3339))
}

// refuseRestricted records and refuses action on a restricted subject.
func (s *Service) refuseRestricted(ctx context.Context, tenantID string, r row, action string) error {
	if r.restricted == 0 {
		return nil
	}
	if err := s.log.Record(ctx, tenantID, audit.Event{Action: action, TargetType: "subject", TargetID: r.id, SubjectID: r.id,
		Outcome: audit.Denied, Details: map[string]any{"reason": "restricted"}}); err != nil {
		return err
	}
	return errRestricted(r.restricted)
}

// Usable checks that subject id may be read or used for action (an audit
// action such as "consent.read"): 404 or 410 for an unknown or erased one,
// 409 — recorded — for a restricted one.
func (s *Service) Usable(ctx context.Context, tenantID, id, action string) error {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return err
	}
	return s.refuseRestricted(ctx, tenantID, r, action)
}

// ReadForExport reads one subject for an access or portability export — the
// use restriction leaves — and records the read.
func (s *Service) ReadForExport(ctx context.Context, tenantID, id string) (Subject, error) {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Subject{}, err
	}
	sub, err := s.open(ctx, tenantID, r)
	if err != nil {
		return Subject{}, err
	}
	return sub, s.log.Record(ctx, tenantID, audit.Event{Action: "subject.read", TargetType: "subject", TargetID: id, SubjectID: id,
		Details: map[string]any{"for": "export"}})
}

// Notify is told, in the transaction of a change to a subject, their email
// ("" without one) and key, to tell them of it.
type Notify func(ctx context.Context, tx *sqldb.Tx, email string, key *keyring.DataKey) error

// Restrict restricts the processing of a subject's data; the reason is
// sealed. Restricting a restricted subject changes nothing.
func (s *Service) Restrict(ctx context.Context, tenantID, id, reason string) (Subject, error) {
	dk, err := s.Key(ctx, tenantID, id) // first: an unknown subject is 404 whatever the input
	if err != nil {
		return Subject{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || utf8.RuneCountInString(reason) > 500 {
		return Subject{}, errs.Field("reason", "required, at most 500 characters: why processing is restricted")
	}
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil || r.restricted != 0 {
		return r.subject(fields{attributes: map[string]any{}}), err
	}
	ct := dk.Seal(table, "restriction_ct", id, []byte(reason))
	return s.setRestriction(ctx, tenantID, id, "subject.restrict", nil,
		"UPDATE subjects SET restricted_since = ?, restriction_ct = ? WHERE tenant_id = ? AND id = ?", s.now().UnixMicro(), ct, tenantID, id)
}

// Unrestrict lifts a subject's restriction; notify, when not nil, tells
// them (Art. 18(3)) in the same transaction.
func (s *Service) Unrestrict(ctx context.Context, tenantID, id string, notify Notify) (Subject, error) {
	if _, err := s.Key(ctx, tenantID, id); err != nil {
		return Subject{}, err
	}
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Subject{}, err
	}
	if r.restricted == 0 {
		return Subject{}, errs.E(errs.Conflict, "this subject is not restricted")
	}
	return s.setRestriction(ctx, tenantID, id, "subject.unrestrict", notify,
		"UPDATE subjects SET restricted_since = 0, restriction_ct = NULL WHERE tenant_id = ? AND id = ?", tenantID, id)
}

// ReplayRestriction makes again, after a restore, a restriction set (or
// lifted) after the backup; the reason is the replay's, the person's own
// being sealed in the change the backup lacks. It answers whether it
// changed anything.
func (s *Service) ReplayRestriction(ctx context.Context, tenantID, id string, restrict bool) (bool, error) {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil || (r.restricted != 0) == restrict {
		if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Gone) {
			return false, nil
		}
		return false, err
	}
	if restrict {
		_, err = s.Restrict(ctx, tenantID, id, "restricted after the backup this data was restored from (replayed from the ledger)")
	} else {
		_, err = s.Unrestrict(ctx, tenantID, id, nil)
	}
	return err == nil, err
}

// setRestriction runs update in a transaction audited as action, then
// answers the subject as the API shows it.
func (s *Service) setRestriction(ctx context.Context, tenantID, id, action string, notify Notify, update string, args ...any) (Subject, error) {
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, update, args...); err != nil {
			return err
		}
		if notify == nil {
			return nil
		}
		email, key, err := s.Email(ctx, tenantID, id)
		if err != nil {
			return err
		}
		return notify(ctx, tx, email, key)
	}, audit.Event{Action: action, TargetType: "subject", TargetID: id, SubjectID: id})
	if err != nil {
		return Subject{}, err
	}
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	if err != nil {
		return Subject{}, err
	}
	return s.reveal(ctx, tenantID, r)
}

// State is what decides whether a subject's data may be used now.
type State struct {
	Status     string
	Restricted bool
}

// State answers a subject's status and restriction, without reading their
// data (nothing is recorded): 404 or 410 for an unknown or erased one.
func (s *Service) State(ctx context.Context, tenantID, id string) (State, error) {
	r, err := findRow(ctx, s.db.Read(), tenantID, id)
	return State{Status: r.status, Restricted: r.restricted != 0}, err
}
