package consent

import (
	"context"
	"crypto/hmac"
	"database/sql"
	"encoding/base64"
	"errors"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
)

// Withdraw links: every grant comes with a link at which the person can
// withdraw it again, as easily as they gave it — no account, no code. The
// link names the purpose and carries the subject id with a MAC under a
// tenant key, so it needs no stored state, never expires, and cannot be
// made for anyone else.

var errWithdrawLink = errs.E(errs.NotFound, "this withdrawal link is not valid")

// withdrawToken is the subject id's 16 bytes and 16 bytes of MAC.
func (s *Service) withdrawToken(ctx context.Context, tenantID, subjectID, purposeKey string) (string, error) {
	id, err := uuid.Parse(subjectID)
	if err != nil {
		return "", err
	}
	mac, err := s.keys.MAC(ctx, s.db.Read(), tenantID, "consent-withdraw", subjectID, purposeKey)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(append(id[:], mac[:16]...)), nil
}

// WithdrawURL returns the public link at which the subject withdraws
// consent to the purpose.
func (s *Service) WithdrawURL(ctx context.Context, tenantID, subjectID, purposeKey string) (string, error) {
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return "", err
	}
	tok, err := s.withdrawToken(ctx, tenantID, subjectID, purposeKey)
	if err != nil {
		return "", err
	}
	return s.issuer + "/privacy/" + t.Slug + "/withdraw/" + purposeKey + "/" + tok, nil
}

// WithdrawPage is what the page of a withdrawal link shows.
type WithdrawPage struct {
	Organisation string
	Purpose      string
	Granted      bool // false: there is nothing (left) to withdraw
}

// withdrawLink checks a withdrawal link and returns its tenant and subject.
func (s *Service) withdrawLink(ctx context.Context, slug, purposeKey, token string) (string, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 32 {
		return "", "", errWithdrawLink
	}
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil {
		return "", "", errWithdrawLink
	}
	id, _ := uuid.FromBytes(raw[:16])
	want, err := s.withdrawToken(ctx, t.ID, id.String(), purposeKey)
	if err != nil {
		return "", "", err
	}
	wantRaw, _ := base64.RawURLEncoding.DecodeString(want)
	if !hmac.Equal(raw, wantRaw) {
		return "", "", errWithdrawLink
	}
	if _, err := s.subjects.Key(ctx, t.ID, id.String()); err != nil {
		return "", "", errWithdrawLink // erased since
	}
	return t.ID, id.String(), nil
}

// Check is what a person's consent to one purpose allows now.
type Check struct {
	Granted bool // granted and unexpired
	// Tampered: the stored state does not match the ledger (its MAC fails,
	// it names an event the ledger lacks or a superseded one): it is not
	// believed, and the finding is audited.
	Tampered bool
}

// Check reads subjectID's consent to purposeKey, checking the state row
// against the ledger event it names (see checkState).
func (s *Service) Check(ctx context.Context, tenantID, subjectID, purposeKey string) (Check, error) {
	var c Check
	var r stateRow
	err := s.db.Read().QueryRow(ctx, `SELECT c.purpose_id, c.action, c.event_id, c.at, c.valid_until, c.mac,
			COALESCE(e.hash, ''), COALESCE(e.seq, 0),
			(SELECT COALESCE(MAX(x.seq), 0) FROM consent_events x WHERE x.tenant_id = c.tenant_id AND x.subject_id = c.subject_id
				AND x.purpose_id = c.purpose_id)
		FROM consent_state c JOIN purposes p ON p.tenant_id = c.tenant_id AND p.id = c.purpose_id
		LEFT JOIN consent_events e ON e.tenant_id = c.tenant_id AND e.id = c.event_id AND e.subject_id = c.subject_id
		WHERE c.tenant_id = ? AND c.subject_id = ? AND p.key = ?`, tenantID, subjectID, purposeKey).
		Scan(&r.purposeID, &r.action, &r.eventID, &r.at, &r.until, &r.mac, &r.eventHash, &r.eventSeq, &r.lastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil // never asked: no consent
	}
	if err != nil {
		return c, err
	}
	problem, err := s.checkState(ctx, tenantID, subjectID, r)
	if err != nil {
		return c, err
	}
	if problem != "" {
		c.Tampered = true
		return c, s.log.Record(ctx, tenantID, audit.Event{Action: "consent.tampered", TargetType: "subject", TargetID: subjectID,
			SubjectID: subjectID, Outcome: audit.Failure, Details: map[string]any{"purpose": purposeKey, "problem": problem}})
	}
	c.Granted = r.action == Grant && (r.until == 0 || r.until > s.now().UnixMicro())
	return c, nil
}

// granted reports whether the subject's consent to purposeKey may stand
// as granted for a withdrawal: a tampered state counts as granted there,
// so that withdrawing records the withdrawal whatever the row says.
func (s *Service) granted(ctx context.Context, tenantID, subjectID, purposeKey string) (bool, error) {
	c, err := s.Check(ctx, tenantID, subjectID, purposeKey)
	return c.Granted || c.Tampered, err
}

// ViewWithdraw returns what the page of a withdrawal link shows.
func (s *Service) ViewWithdraw(ctx context.Context, slug, purposeKey, token string) (WithdrawPage, error) {
	tenantID, subjectID, err := s.withdrawLink(ctx, slug, purposeKey, token)
	if err != nil {
		return WithdrawPage{}, err
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return WithdrawPage{}, err
	}
	p, err := s.register.Get(ctx, tenantID, purposeKey)
	if err != nil {
		return WithdrawPage{}, errWithdrawLink
	}
	g, err := s.granted(ctx, tenantID, subjectID, purposeKey)
	return WithdrawPage{Organisation: t.Name, Purpose: p.Name, Granted: g}, err
}

// WithdrawByLink records the withdrawal a person asked for on the page of
// a withdrawal link. With no valid grant to withdraw it records nothing
// and answers false.
func (s *Service) WithdrawByLink(ctx context.Context, slug, purposeKey, token, ip, userAgent string) (bool, error) {
	tenantID, subjectID, err := s.withdrawLink(ctx, slug, purposeKey, token)
	if err != nil {
		return false, err
	}
	key, err := s.subjects.Key(ctx, tenantID, subjectID)
	if err != nil {
		return false, err
	}
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSubject, ID: subjectID, SubjectID: subjectID, IP: ip, UserAgent: userAgent, Key: key})
	return s.WithdrawGranted(ctx, tenantID, subjectID, Input{Purpose: purposeKey, Method: "email_link", Source: "withdrawal link", IP: ip})
}

// WithdrawGranted records the withdrawal in (Action is set) when the
// subject's consent to in.Purpose is granted and unexpired, and answers
// whether it did: withdrawing what is not given records nothing.
func (s *Service) WithdrawGranted(ctx context.Context, tenantID, subjectID string, in Input) (bool, error) {
	if g, err := s.granted(ctx, tenantID, subjectID, in.Purpose); err != nil || !g {
		return false, err
	}
	in.Action = Withdraw
	_, err := s.Record(ctx, tenantID, subjectID, in)
	return err == nil, err
}
