package identity

import (
	"context"
	"errors"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/sqldb"
)

// Replay applies again, after a restore from a backup, a change that took
// something away from an account and that the restored data lacks
// (package core reads them from the ledger): kind is the change's audit
// action, target its target's id, detail what the ledger kept. It answers
// whether it changed anything.
//
// What cannot be made again must be reset: the ledger holds no password
// and no address, so after a password change the old password stops
// working (the person sets a new one with a reset link), and after a
// sign-in address change the account is suspended until an administrator
// sets its address again — the old address never signs in again.
func (s *Service) Replay(ctx context.Context, tenantID, kind, target string, detail map[string]string) (bool, error) {
	now := s.now().UnixMicro()
	why := map[string]any{"reason": "replayed from the ledger after a restore: " + kind + " after the backup"}
	var q string
	var args []any
	var ev audit.Event
	switch kind {
	case "user.password.change", "user.password.reset":
		q, args = "UPDATE users SET password_hash = '' WHERE tenant_id = ? AND id = ? AND password_hash <> ''", []any{tenantID, target}
		ev = audit.Event{Action: "user.password.reset_required", TargetType: "user", TargetID: target, Details: why}
	case "user.email.change":
		q, args = "UPDATE users SET status = ? WHERE tenant_id = ? AND id = ? AND status = ?", []any{StatusSuspended, tenantID, target, StatusActive}
		ev = audit.Event{Action: "user.update", TargetType: "user", TargetID: target, Details: merge(why, map[string]any{"status": []string{StatusActive, StatusSuspended}})}
	case "mfa.remove":
		q, args = "DELETE FROM mfa_factors WHERE tenant_id = ? AND id = ?", []any{tenantID, target}
		ev = audit.Event{Action: "mfa.remove", TargetType: "factor", TargetID: target, Details: why}
	case "user.mfa.reset":
		return s.replayFactorsReset(ctx, tenantID, target, why)
	case "user.update":
		return s.replayUpdate(ctx, tenantID, target, detail, why)
	case "group.member.remove":
		q, args = "DELETE FROM group_members WHERE tenant_id = ? AND group_id = ? AND user_id = ?", []any{tenantID, target, detail["user_id"]}
		ev = audit.Event{Action: "group.member.remove", TargetType: "group", TargetID: target, Details: merge(why, map[string]any{"user_id": detail["user_id"]})}
	case "user.close":
		at, err := time.Parse(time.RFC3339, detail["closes_at"])
		if err != nil {
			return false, nil // a record of an older version: nothing to go on
		}
		q, args = "UPDATE users SET closes_at = ? WHERE tenant_id = ? AND id = ? AND closes_at = 0", []any{at.UnixMicro(), tenantID, target}
		ev = audit.Event{Action: "user.close", TargetType: "user", TargetID: target, Details: merge(why, map[string]any{"closes_at": detail["closes_at"]})}
	default:
		return false, nil
	}
	return replayed(s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNothing
		}
		if ev.TargetType == "user" {
			return revokeSessions(ctx, tx, tenantID, target, "", now)
		}
		return nil
	}, ev))
}

// errNothing rolls a replay back that finds nothing to change: it writes
// no audit event.
var errNothing = errors.New("nothing to replay")

// replayed answers what a replay's commit did.
func replayed(err error) (bool, error) {
	if errors.Is(err, errNothing) {
		return false, nil
	}
	return err == nil, err
}

// replayFactorsReset removes every second factor of a user again.
func (s *Service) replayFactorsReset(ctx context.Context, tenantID, userID string, why map[string]any) (bool, error) {
	return replayed(s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		changed := false
		for _, q := range []string{"DELETE FROM mfa_factors WHERE tenant_id = ? AND user_id = ?",
			"DELETE FROM recovery_codes WHERE tenant_id = ? AND user_id = ?", "DELETE FROM sms_codes WHERE tenant_id = ? AND user_id = ?"} {
			res, err := tx.Exec(ctx, q, tenantID, userID)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				changed = true
			}
		}
		if !changed {
			return errNothing
		}
		return revokeSessions(ctx, tx, tenantID, userID, "", s.now().UnixMicro())
	}, audit.Event{Action: "user.mfa.reset", TargetType: "user", TargetID: userID, Details: why}))
}

// replayUpdate takes again what an account update took away: a lower role,
// a suspension. An update that gave something is left as the backup has it.
func (s *Service) replayUpdate(ctx context.Context, tenantID, userID string, detail map[string]string, why map[string]any) (bool, error) {
	return replayed(s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var role, status string
		if err := tx.QueryRow(ctx, "SELECT role, status FROM users WHERE tenant_id = ? AND id = ?", tenantID, userID).Scan(&role, &status); err != nil {
			return err
		}
		next, nextStatus := role, status
		if to := detail["role_to"]; to != "" && rank(to) < rank(role) {
			next = to
		}
		if detail["status_to"] == StatusSuspended {
			nextStatus = StatusSuspended
		}
		if next == role && nextStatus == status {
			return errNothing
		}
		why["role"], why["status"] = []string{role, next}, []string{status, nextStatus}
		if _, err := tx.Exec(ctx, "UPDATE users SET role = ?, status = ? WHERE tenant_id = ? AND id = ?", next, nextStatus, tenantID, userID); err != nil {
			return err
		}
		return revokeSessions(ctx, tx, tenantID, userID, "", s.now().UnixMicro())
	}, audit.Event{Action: "user.update", TargetType: "user", TargetID: userID, Details: why}))
}

func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}
