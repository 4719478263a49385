package rights

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// Closing one's own account: a member asks, the account stays for the
// tenant's grace period (default 30 days) during which they can sign in
// and cancel, and is then erased — the person, the account and everything
// about them — like any erasure, with a certificate.

// Closure is the state of an account's closure.
type Closure struct {
	ClosesAt *time.Time `json:"closes_at"` // nil: not closing
}

// closesAt reads an account's closure date (0: none).
func (s *Service) closesAt(ctx context.Context, tenantID, userID string) (int64, string, error) {
	var at int64
	var role string
	err := s.db.Read().QueryRow(ctx, "SELECT closes_at, role FROM users WHERE tenant_id = ? AND id = ?", tenantID, userID).Scan(&at, &role)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", errs.E(errs.NotFound, "no such user")
	}
	return at, role, err
}

// AccountClosure answers whether and when an account closes.
func (s *Service) AccountClosure(ctx context.Context, tenantID, userID string) (Closure, error) {
	at, _, err := s.closesAt(ctx, tenantID, userID)
	if err != nil || at == 0 {
		return Closure{}, err
	}
	t := time.UnixMicro(at).UTC()
	return Closure{ClosesAt: &t}, nil
}

// CloseAccount schedules the closure of the account userID (whose person
// is subjectID) at the end of the tenant's grace period and mails them the
// date; asking again changes nothing. The last active owner is refused.
// With a grace period of 0 the account is erased at once.
func (s *Service) CloseAccount(ctx context.Context, tenantID, userID, subjectID string) (Closure, error) {
	at, role, err := s.closesAt(ctx, tenantID, userID)
	if err != nil {
		return Closure{}, err
	}
	if at != 0 {
		return s.AccountClosure(ctx, tenantID, userID)
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return Closure{}, err
	}
	email, key, err := s.subjects.Email(ctx, tenantID, subjectID)
	if err != nil {
		return Closure{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	closes := now.AddDate(0, 0, t.ClosureGraceDays)
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if role == "owner" {
			var owners int
			if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM users WHERE tenant_id = ? AND role = 'owner' AND status = 'active' AND closes_at = 0 AND id <> ?",
				tenantID, userID).Scan(&owners); err != nil {
				return err
			}
			if owners == 0 {
				return errs.E(errs.Conflict, "you are the last owner: make someone else owner first")
			}
		}
		res, err := tx.Exec(ctx, "UPDATE users SET closes_at = ? WHERE tenant_id = ? AND id = ? AND closes_at = 0", closes.UnixMicro(), tenantID, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 || email == "" || t.ClosureGraceDays == 0 {
			return err
		}
		return s.mail.Queue(ctx, tx, key, mail.Message{TenantID: tenantID, SubjectID: subjectID, Kind: "account-closing", To: email,
			Subject: "Your account at " + t.Name + " closes on " + closes.In(t.Location()).Format("2 January 2006"),
			Text: fmt.Sprintf(`Hello,

You asked to close your account at %s. It stays until %s; then
it is erased with everything %s holds about you through it.

Changed your mind? Sign in before then and cancel the closure
(DELETE /api/v1/me/closure).

%s`, t.Name, closes.In(t.Location()).Format("2 January 2006 15:04 MST"), t.Name, s.tenants.Footer(ctx, t))})
	}, audit.Event{Action: "user.close", TargetType: "user", TargetID: userID, SubjectID: subjectID,
		Details: map[string]any{"closes_at": closes.Format(time.RFC3339), "grace_days": t.ClosureGraceDays}})
	if err != nil {
		return Closure{}, err
	}
	if t.ClosureGraceDays == 0 {
		if err := s.eraseAccount(ctx, tenantID, userID, subjectID); err != nil {
			return Closure{}, err
		}
	}
	return Closure{ClosesAt: &closes}, nil
}

// CancelClosure keeps an account that was closing.
func (s *Service) CancelClosure(ctx context.Context, tenantID, userID, subjectID string) error {
	return s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE users SET closes_at = 0 WHERE tenant_id = ? AND id = ? AND closes_at <> 0", tenantID, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errs.E(errs.Conflict, "your account is not closing")
		}
		return nil
	}, audit.Event{Action: "user.close.cancel", TargetType: "user", TargetID: userID, SubjectID: subjectID})
}

// eraseAccount erases a closed account's person, as the system.
func (s *Service) eraseAccount(ctx context.Context, tenantID, userID, subjectID string) error {
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSystem, ID: "account-closure"})
	_, err := s.subjects.Erase(ctx, tenantID, subjectID, subject.EraseInput{Reason: "account closed by its holder", Accounts: true,
		Details: map[string]any{"user_id": userID}})
	return err
}

// CloseDue erases the accounts whose closure date has passed, and answers
// how many went. One that cannot go (it became the last owner, or a legal
// hold keeps its person) stays scheduled and is reported in err.
func (s *Service) CloseDue(ctx context.Context) (int, error) {
	rows, err := s.db.Read().Query(ctx, "SELECT tenant_id, id, subject_id FROM users WHERE closes_at <> 0 AND closes_at <= ? ORDER BY closes_at LIMIT 100",
		s.now().UnixMicro())
	if err != nil {
		return 0, err
	}
	type due struct{ tenantID, userID, subjectID string }
	var list []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.tenantID, &d.userID, &d.subjectID); err != nil {
			rows.Close()
			return 0, err
		}
		list = append(list, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	var errList []error
	for _, d := range list {
		if err := s.eraseAccount(ctx, d.tenantID, d.userID, d.subjectID); err != nil {
			errList = append(errList, fmt.Errorf("close account %s: %w", d.userID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errList...)
}
