package subject

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Erasure (Art. 17): the subject's data key is destroyed first, in the
// transaction that then deletes their rows, so that every ciphertext of
// theirs left anywhere — other rows, the audit trail's actor fields,
// backups — can no longer be read. What remains is a certificate: that
// they were erased, when, why, by whom, how many rows went.

// ContactTables are the tables that hold rows about a subject, by
// subject_id, removed when the subject is erased (subject_keys and
// subjects go last). A test checks that every table with a subject_id
// column is here or is one that erasure must keep.
var ContactTables = []string{"consent_events", "consent_state", "consent_campaign_recipients", "subject_bounces", "mail_outbox",
	"download_links", "objections", "file_subjects"}

// accountTables hold rows about an account, by user_id; erasing a person
// who has an account removes them, then the account.
var accountTables = []string{"sessions", "devices", "mfa_factors", "recovery_codes", "api_tokens", "account_links",
	"group_members", "sms_codes"}

// eraseIntakes removes what the person asked on the privacy portal and
// has not confirmed yet (found by their email's blind index): each
// intake's own key, its mail, the intake.
func eraseIntakes(ctx context.Context, tx *sqldb.Tx, tenantID, id string, del func(table, where string, args ...any) error) error {
	rows, err := tx.Query(ctx, `SELECT i.id FROM portal_intakes i JOIN subjects s ON s.tenant_id = i.tenant_id AND s.email_bidx = i.email_bidx
		WHERE i.tenant_id = ? AND s.id = ?`, tenantID, id)
	if err != nil {
		return err
	}
	var intakes []string
	for rows.Next() {
		var i string
		if err := rows.Scan(&i); err != nil {
			rows.Close()
			return err
		}
		intakes = append(intakes, i)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, i := range intakes {
		if err := keyring.DestroySubjectKey(ctx, tx, tenantID, i); err != nil {
			return err
		}
		if err := del("mail_outbox", "subject_id = ?", i); err != nil {
			return err
		}
		if err := del("portal_intakes", "id = ?", i); err != nil {
			return err
		}
	}
	return nil
}

// An ErasureStep removes what another part of Custodia holds about a
// subject (the files linked to them, the uploads their account has under
// way), inside the erasure's transaction, before the subject's own rows
// and account go, counting the rows it removed by table in erased. It may answer work to
// do once the transaction has committed (deleting blobs whose keys went
// with the rows); that work must be safe to lose, as a crash can.
type ErasureStep func(ctx context.Context, tx *sqldb.Tx, tenantID, subjectID string, erased map[string]int) (after func(context.Context), err error)

// OnErase adds a step to every erasure. Steps are added while the
// application is put together, before it serves.
func (s *Service) OnErase(step ErasureStep) { s.erasureSteps = append(s.erasureSteps, step) }

// Lock locks a subject's row inside tx for a change that must not race
// its erasure (linking a file to them): NotFound, or Gone once erased.
func (s *Service) Lock(ctx context.Context, tx *sqldb.Tx, tenantID, id string) error {
	return present(ctx, tx.Q, tenantID, id, s.db.ForUpdate())
}

// Exists answers nil for a subject of the tenant: NotFound, or Gone once
// erased.
func (s *Service) Exists(ctx context.Context, tenantID, id string) error {
	return present(ctx, s.db.Read(), tenantID, id, "")
}

func present(ctx context.Context, q sqldb.Q, tenantID, id, lock string) error {
	var one int
	err := q.QueryRow(ctx, "SELECT 1 FROM subjects WHERE tenant_id = ? AND id = ?"+lock, tenantID, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return gone(ctx, q, tenantID, id)
	}
	return err
}

// Certificate is what is kept of an erasure.
type Certificate struct {
	SubjectID string         `json:"subject_id"`
	ErasedAt  time.Time      `json:"erased_at"`
	Reason    string         `json:"reason"`               // request | api | retention policy …
	RequestID string         `json:"request_id,omitempty"` // the erasure request it answers
	By        string         `json:"by"`                   // actor type and id
	Erased    map[string]int `json:"erased"`               // rows removed, by table
}

// EraseInput says why an erasure happens.
type EraseInput struct {
	Reason    string // free code: "api", "request", "retention policy <id>"
	RequestID string
	Accounts  bool // also erase a subject who has an account (and the account)
	Details   map[string]any
}

// Erase erases a subject. Held subjects are refused (409); so is the last
// active owner of a tenant, and an account unless in.Accounts.
func (s *Service) Erase(ctx context.Context, tenantID, id string, in EraseInput) (Certificate, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	actor := audit.ActorFrom(ctx)
	c := Certificate{SubjectID: id, ErasedAt: now, Reason: in.Reason, RequestID: in.RequestID, By: actor.Type + ":" + actor.ID,
		Erased: map[string]int{}}
	details := viaAccount(map[string]any{"reason": in.Reason}, in.Accounts)
	for k, v := range in.Details {
		details[k] = v
	}
	if in.RequestID != "" {
		details["request_id"] = in.RequestID
	}
	var after []func(context.Context)
	err := s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		after, c.Erased = nil, map[string]int{}
		if !in.Accounts { // which path erases whom comes before anything else
			switch userID, err := accountOf(ctx, tx.Q, tenantID, id); {
			case err != nil:
				return err
			case userID != "":
				return AccountErasure(userID)
			}
		}
		_, userID, err := lockSubject(ctx, tx, s.db, tenantID, id)
		if err != nil {
			return err
		}
		if userID != "" && !in.Accounts { // became an account meanwhile
			return AccountErasure(userID)
		}
		del := func(table, where string, args ...any) error {
			res, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE tenant_id = ? AND "+where, append([]any{tenantID}, args...)...)
			if err != nil {
				return fmt.Errorf("erase from %s: %w", table, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				c.Erased[table] += int(n)
			}
			return nil
		}
		if userID != "" {
			if err := lastOwner(ctx, tx, tenantID, userID); err != nil {
				return err
			}
		}
		// Other packages' steps see the subject, and their account, whole.
		for _, step := range s.erasureSteps {
			then, err := step(ctx, tx, tenantID, id, c.Erased)
			if err != nil {
				return err
			}
			if then != nil {
				after = append(after, then)
			}
		}
		if userID != "" {
			if err := del("passkey_challenges", "session_id IN (SELECT id FROM sessions WHERE tenant_id = ? AND user_id = ?)", tenantID, userID); err != nil {
				return err
			}
			for _, t := range accountTables {
				if err := del(t, "user_id = ?", userID); err != nil {
					return err
				}
			}
			if err := del("space_grants", "grantee_type = 'user' AND grantee_id = ?", userID); err != nil {
				return err
			}
			if err := del("users", "id = ?", userID); err != nil {
				return err
			}
		}
		if err := keyring.DestroySubjectKey(ctx, tx, tenantID, id); err != nil {
			return err
		}
		if err := eraseIntakes(ctx, tx, tenantID, id, del); err != nil {
			return err
		}
		for _, t := range ContactTables {
			if err := del(t, "subject_id = ?", id); err != nil {
				return err
			}
		}
		if err := del("subjects", "id = ?", id); err != nil {
			return err
		}
		counts, err := json.Marshal(c.Erased)
		if err != nil {
			return err
		}
		details["erased"] = c.Erased
		_, err = tx.Exec(ctx, `INSERT INTO erasure_certificates (tenant_id, subject_id, erased_at, reason, request_id, actor, counts)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, tenantID, id, now.UnixMicro(), in.Reason, in.RequestID, c.By, string(counts))
		return err
	}, audit.Event{Action: "subject.erase", TargetType: "subject", TargetID: id, SubjectID: id, Details: details})
	if err != nil {
		return Certificate{}, err
	}
	for _, then := range after {
		then(context.WithoutCancel(ctx))
	}
	// The key and rows are gone from the database; make their old page
	// images leave the WAL too. Best effort: the next checkpoint does it
	// anyway, and without the key what is left cannot be read.
	_, _ = s.db.Scrub(ctx)
	return c, nil
}

// lastOwner refuses to erase the tenant's last active owner.
func lastOwner(ctx context.Context, tx *sqldb.Tx, tenantID, userID string) error {
	var role string
	if err := tx.QueryRow(ctx, "SELECT role FROM users WHERE tenant_id = ? AND id = ?", tenantID, userID).Scan(&role); err != nil {
		return err
	}
	if role != "owner" {
		return nil
	}
	var others int
	if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM users WHERE tenant_id = ? AND role = 'owner' AND status = 'active' AND id <> ?",
		tenantID, userID).Scan(&others); err != nil {
		return err
	}
	if others == 0 {
		return errs.E(errs.Conflict, "this is the tenant's last owner: make someone else owner first")
	}
	return nil
}

// ErasureCertificate returns the certificate of an erased subject.
func (s *Service) ErasureCertificate(ctx context.Context, tenantID, id string) (Certificate, error) {
	c := Certificate{SubjectID: id}
	var at int64
	var counts string
	err := s.db.Read().QueryRow(ctx, "SELECT erased_at, reason, request_id, actor, counts FROM erasure_certificates WHERE tenant_id = ? AND subject_id = ?",
		tenantID, id).Scan(&at, &c.Reason, &c.RequestID, &c.By, &counts)
	if errors.Is(err, sql.ErrNoRows) {
		return c, errs.E(errs.NotFound, "no erasure of this subject")
	}
	if err != nil {
		return c, err
	}
	c.ErasedAt = time.UnixMicro(at).UTC()
	return c, json.Unmarshal([]byte(counts), &c.Erased)
}

// gone answers 410 for an erased subject id, and 404 otherwise.
func gone(ctx context.Context, q sqldb.Q, tenantID, id string) error {
	var at int64
	err := q.QueryRow(ctx, "SELECT erased_at FROM erasure_certificates WHERE tenant_id = ? AND subject_id = ?", tenantID, id).Scan(&at)
	if err == nil {
		return errs.E(errs.Gone, "this subject was erased on %s", strings.TrimSuffix(time.UnixMicro(at).UTC().Format(time.RFC3339), "Z")+"Z")
	}
	return errNotFound
}
