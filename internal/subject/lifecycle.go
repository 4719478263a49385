package subject

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// A contact's life after it is added: its address may stop working
// (bounces), which after a period makes it inactive; a legal hold keeps it
// from deletion; erasure and anonymisation end it.

// Bounce kinds.
const (
	HardBounce = "hard" // the address does not work (5xx): counts towards inactive
	SoftBounce = "soft" // a passing failure (mailbox full…): recorded only
)

// Bounce is a delivery failure reported for a contact.
type Bounce struct {
	ID        string    `json:"id"`
	SubjectID string    `json:"subject_id"`
	Kind      string    `json:"kind"`
	Source    string    `json:"source"` // api | smtp
	Reason    string    `json:"reason"` // a status code or short code, never the message
	At        time.Time `json:"at"`
	Status    string    `json:"status"` // the contact's status afterwards
}

// BounceInput reports a bounce.
type BounceInput struct {
	Kind   string     `json:"kind"`
	Reason string     `json:"reason"`
	At     *time.Time `json:"at"` // when the mail system saw it; default now
}

// RecordBounce records a bounce reported through the API. A hard bounce
// marks the address as not working since then, unless it already was.
func (s *Service) RecordBounce(ctx context.Context, tenantID, id string, in BounceInput) (Bounce, error) {
	if _, err := findRow(ctx, s.db.Read(), tenantID, id); err != nil {
		return Bounce{}, err
	}
	if in.Kind != HardBounce && in.Kind != SoftBounce {
		return Bounce{}, errs.Field("kind", "hard or soft")
	}
	in.Reason = strings.TrimSpace(in.Reason)
	if utf8.RuneCountInString(in.Reason) > 64 || strings.Contains(in.Reason, "@") {
		return Bounce{}, errs.Field("reason", "a status or short code, at most 64 characters, without addresses (e.g. 5.1.1)")
	}
	at := s.now()
	if in.At != nil {
		if in.At.After(at.Add(5 * time.Minute)) {
			return Bounce{}, errs.Field("at", "in the future")
		}
		at = *in.At
	}
	return s.bounce(ctx, tenantID, id, in.Kind, "api", in.Reason, "", at)
}

// Bounced records a hard bounce the SMTP server gave for a mail (the
// outbox's feedback).
func (s *Service) Bounced(ctx context.Context, tenantID, id, mailID, reason string) error {
	_, err := s.bounce(ctx, tenantID, id, HardBounce, "smtp", reason, mailID, s.now())
	return err
}

func (s *Service) bounce(ctx context.Context, tenantID, id, kind, source, reason, mailID string, at time.Time) (Bounce, error) {
	bid, err := uuid.NewV7()
	if err != nil {
		return Bounce{}, err
	}
	b := Bounce{ID: bid.String(), SubjectID: id, Kind: kind, Source: source, Reason: reason, At: at.UTC().Truncate(time.Microsecond)}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT status FROM subjects WHERE tenant_id = ? AND id = ?", tenantID, id).Scan(&b.Status); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return errNotFound
			}
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO subject_bounces (tenant_id, id, subject_id, kind, source, reason, mail_id, at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, tenantID, b.ID, id, kind, source, reason, mailID, b.At.UnixMicro()); err != nil {
			return err
		}
		if kind != HardBounce {
			return nil
		}
		_, err := tx.Exec(ctx, "UPDATE subjects SET bouncing_since = ? WHERE tenant_id = ? AND id = ? AND bouncing_since = 0",
			b.At.UnixMicro(), tenantID, id)
		return err
	}, audit.Event{Action: "subject.bounce", TargetType: "subject", TargetID: id, SubjectID: id,
		Details: map[string]any{"kind": kind, "source": source, "reason": reason}})
	return b, err
}

// Bounces lists the last 50 bounces recorded for a subject, newest first.
// Status is left empty: it is the contact's status now, not then.
func (s *Service) Bounces(ctx context.Context, tenantID, id string) ([]Bounce, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT id, kind, source, reason, at FROM subject_bounces
		WHERE tenant_id = ? AND subject_id = ? ORDER BY at DESC LIMIT 50`, tenantID, id)
	if err != nil {
		return nil, fmt.Errorf("bounces: %w", err)
	}
	defer rows.Close()
	var out []Bounce
	for rows.Next() {
		b := Bounce{SubjectID: id}
		var at int64
		if err := rows.Scan(&b.ID, &b.Kind, &b.Source, &b.Reason, &at); err != nil {
			return nil, err
		}
		b.At = time.UnixMicro(at).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

// Delivered records that mail to the subject was accepted: the address
// works again (the outbox's feedback).
func (s *Service) Delivered(ctx context.Context, tenantID, id string) error {
	return s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE subjects SET bouncing_since = 0 WHERE tenant_id = ? AND id = ? AND bouncing_since <> 0 AND status = ?",
			tenantID, id, StatusActive)
		return err
	})
}

// Deactivate turns inactive every active contact of the tenant whose
// address has not worked since before cutoff, and answers how many.
func (s *Service) Deactivate(ctx context.Context, tenantID string, cutoff time.Time) (int, error) {
	ids, err := s.IDs(ctx, tenantID, Where{SQL: "status = ? AND bouncing_since <> 0 AND bouncing_since <= ?",
		Args: []any{StatusActive, cutoff.UnixMicro()}}, "", 10_000)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	now := s.now().UnixMicro()
	events := make([]audit.Event, 0, len(ids))
	for _, id := range ids {
		events = append(events, audit.Event{Action: "subject.inactive", TargetType: "subject", TargetID: id, SubjectID: id,
			Details: map[string]any{"because": "address not working since before " + cutoff.UTC().Format(time.RFC3339)}})
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `UPDATE subjects SET status = ?, inactive_since = ? WHERE tenant_id = ? AND id = ? AND status = ?`,
				StatusInactive, now, tenantID, id, StatusActive); err != nil {
				return err
			}
		}
		return nil
	}, events...)
	return len(ids), err
}

// Hold puts a legal hold on a subject: nothing deletes or anonymises them
// until it is released. The reason (a matter, a case number) is sealed.
func (s *Service) Hold(ctx context.Context, tenantID, id, reason string) (Subject, error) {
	dk, err := s.Key(ctx, tenantID, id) // first: an unknown subject is 404 whatever the input
	if err != nil {
		return Subject{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || utf8.RuneCountInString(reason) > 500 {
		return Subject{}, errs.Field("reason", "required, at most 500 characters: why the data must be kept")
	}
	return s.setHold(ctx, tenantID, id, s.now().UnixMicro(), dk.Seal(table, "hold_ct", id, []byte(reason)), "subject.hold")
}

// Release lifts a subject's legal hold.
func (s *Service) Release(ctx context.Context, tenantID, id string) (Subject, error) {
	if _, err := s.Key(ctx, tenantID, id); err != nil {
		return Subject{}, err
	}
	return s.setHold(ctx, tenantID, id, 0, nil, "subject.release")
}

func (s *Service) setHold(ctx context.Context, tenantID, id string, since int64, ct []byte, action string) (Subject, error) {
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE subjects SET held_since = ?, hold_ct = ? WHERE tenant_id = ? AND id = ?", since, ct, tenantID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errNotFound
		}
		return nil
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

// errHeld refuses to delete or anonymise a held subject.
var errHeld = errs.E(errs.Conflict, "this subject is under a legal hold; release it first")

// lockContact checks, in tx, that id is a contact (not an account, whose
// end is closing the account) that is not held, and returns its status.
func lockContact(ctx context.Context, tx *sqldb.Tx, db *sqldb.DB, tenantID, id string) (string, error) {
	status, userID, err := lockSubject(ctx, tx, db, tenantID, id)
	if err != nil {
		return "", err
	}
	if userID != "" {
		return "", errs.E(errs.Conflict, "this subject is a user account; accounts end by being closed, not by retention")
	}
	return status, nil
}

// lockSubject locks a subject that is not held and returns its status and
// user id ("" for a contact).
func lockSubject(ctx context.Context, tx *sqldb.Tx, db *sqldb.DB, tenantID, id string) (string, string, error) {
	var status string
	var held int64
	err := tx.QueryRow(ctx, "SELECT status, held_since FROM subjects WHERE tenant_id = ? AND id = ?"+db.ForUpdate(), tenantID, id).Scan(&status, &held)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", errNotFound
	}
	if err != nil {
		return "", "", err
	}
	if held != 0 {
		return "", "", errHeld
	}
	userID, err := accountOf(ctx, tx.Q, tenantID, id)
	if err != nil {
		return "", "", err
	}
	return status, userID, nil
}

// Fields of a contact that anonymisation can clear one by one, by the
// taxonomy key of their data category.
var fieldCategories = map[string]string{
	"user.contact.email":        "email",
	"user.contact.phone_number": "phone",
	"user.unique_id":            "external_id",
}

// CheckCategories validates the data categories an anonymisation is
// narrowed to.
func CheckCategories(field string, cats []string) error {
	for i, c := range cats {
		if _, ok := fieldCategories[c]; !ok {
			return errs.Field(fmt.Sprintf("%s[%d]", field, i), "contacts hold user.contact.email, user.contact.phone_number and user.unique_id as fields; leave the list empty to anonymise the whole contact")
		}
	}
	return nil
}

// Anonymise removes what identifies a contact. With no categories, all of
// it: the data key is destroyed, every sealed field and blind index is
// cleared and the row stays, status anonymised, for counts (created, last
// activity). With categories, only those fields are cleared; a contact
// left with no identifier is anonymised whole.
func (s *Service) Anonymise(ctx context.Context, tenantID, id string, categories []string, why map[string]any) error {
	if len(categories) > 0 {
		p := Patch{}
		for _, c := range categories {
			switch fieldCategories[c] {
			case "email":
				p.Email = Optional[string]{Set: true, Null: true}
			case "phone":
				p.Phone = Optional[string]{Set: true, Null: true}
			case "external_id":
				p.ExternalID = Optional[string]{Set: true, Null: true}
			}
		}
		err := s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := lockContact(ctx, tx, s.db, tenantID, id)
			return err
		})
		if err != nil {
			return err
		}
		_, err = s.Rectify(ctx, tenantID, id, p)
		if e, ok := errs.As(err); !ok || e.Field != "email" || e.Kind != errs.Invalid {
			return err
		} // nothing would identify the contact any more: anonymise it whole
	}
	var after []func(context.Context)
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		status, err := lockContact(ctx, tx, s.db, tenantID, id)
		if err != nil || status == StatusAnonymised {
			return err
		}
		e := &Erasure{Tx: tx, TenantID: tenantID, SubjectID: id, Anonymise: true, erased: map[string]int{}}
		if after, err = s.runErasers(ctx, e); err != nil {
			return err
		}
		if err := s.keys.DestroySubjectKey(ctx, tx, tenantID, id); err != nil {
			return err
		}
		if err := e.Delete(ctx, "subject_bounces", "subject_id = ?", id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE subjects SET status = ?, email_ct = NULL, email_bidx = NULL, phone_ct = NULL, phone_bidx = NULL,
			external_id_ct = NULL, external_id_bidx = NULL, attributes_ct = NULL, source_ct = NULL, hold_ct = NULL,
			bouncing_since = 0, updated_at = ? WHERE tenant_id = ? AND id = ?`, StatusAnonymised, s.now().UnixMicro(), tenantID, id)
		return err
	}, audit.Event{Action: "subject.anonymise", TargetType: "subject", TargetID: id, SubjectID: id, Details: why})
	if err != nil {
		return err
	}
	for _, then := range after {
		then(context.WithoutCancel(ctx))
	}
	return nil
}
