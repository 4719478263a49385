package subject

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Erasure (Art. 17): the subject's data key is destroyed first, in the
// transaction that then deletes their rows, so that every ciphertext of
// theirs left anywhere — other rows, the audit trail's actor fields,
// backups — can no longer be read. What remains is a certificate: that
// they were erased, when, why, by whom, how many rows went.

// Every part of Custodia that holds rows about a subject contributes its
// own Eraser (registered in package core, in order): consent, mail, the
// rights, files, spaces, identity (the account, last). Erase and Anonymise
// run them all inside their transaction; what they remove is counted in
// the certificate. A test checks that every table with a subject_id column
// is in some eraser's Tables or is one that erasure must keep.

// An Eraser removes what one part of Custodia holds about a subject.
type Eraser struct {
	Name   string   // the part: "consent", "files", …
	Tables []string // the tables with a subject_id column it clears (for the coverage test)
	// Erase runs inside the erasure's transaction, before the subject's
	// own rows go (it sees the subject, and their account, whole). It may
	// answer work to do once the transaction has committed (deleting
	// blobs whose keys went with the rows); that work must be safe to
	// lose, as a crash can.
	Erase func(ctx context.Context, e *Erasure) (after func(context.Context), err error)
}

// Erasure is one erasure (or anonymisation) under way, as erasers see it.
type Erasure struct {
	Tx        *sqldb.Tx
	TenantID  string
	SubjectID string
	UserID    string // the subject's account, "" for a contact
	// Anonymise: only what identifies a contact goes (its rows in other
	// tables); the contact's row stays, and so do files linked to it.
	Anonymise bool
	erased    map[string]int
	shredded  []Blob
}

// Blob is stored content: its region and key.
type Blob struct{ Region, Key string }

// Shred says that the content at key in region goes with the erasure (its
// key went with the rows): kept backups delete their copies of it too.
func (e *Erasure) Shred(region, key string) { e.shredded = append(e.shredded, Blob{region, key}) }

// Shredded answers the content erasers before this one shredded.
func (e *Erasure) Shredded() []Blob { return e.shredded }

// Delete removes the tenant's rows of table that match where, counting
// them for the certificate.
func (e *Erasure) Delete(ctx context.Context, table, where string, args ...any) error {
	res, err := e.Tx.Exec(ctx, "DELETE FROM "+table+" WHERE tenant_id = ? AND "+where, append([]any{e.TenantID}, args...)...)
	if err != nil {
		return fmt.Errorf("erase from %s: %w", table, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		e.erased[table] += int(n)
	}
	return nil
}

// Count adds n rows of table, removed another way, to the certificate.
func (e *Erasure) Count(table string, n int) {
	if n > 0 {
		e.erased[table] += n
	}
}

// AddEraser adds an eraser to every erasure and anonymisation. Erasers are
// added while the application is put together, before it serves.
func (s *Service) AddEraser(er Eraser) { s.erasers = append(s.erasers, er) }

// ownTables are the subject package's own: the keys, the bounces, the row.
var ownTables = []string{"subject_keys", "subject_bounces", "subjects"}

// ErasedTables lists every table with a subject_id column that erasure
// clears: the erasers' and the subject's own.
func (s *Service) ErasedTables() []string {
	out := slices.Clone(ownTables)
	for _, er := range s.erasers {
		out = append(out, er.Tables...)
	}
	return out
}

// runErasers runs every eraser, collecting their work for after commit.
func (s *Service) runErasers(ctx context.Context, e *Erasure) ([]func(context.Context), error) {
	var after []func(context.Context)
	for _, er := range s.erasers {
		then, err := er.Erase(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", er.Name, err)
		}
		if then != nil {
			after = append(after, then)
		}
	}
	return after, nil
}

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
	// BackupsReachedAt is when every kept backup had lost the person's
	// key (their key shard rewritten); BackupsHeld how many had held it.
	BackupsReachedAt *time.Time `json:"backups_reached_at,omitempty"`
	BackupsHeld      int        `json:"backups_held,omitempty"`
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
		if userID != "" {
			if err := lastOwner(ctx, tx, tenantID, userID); err != nil {
				return err
			}
		}
		e := &Erasure{Tx: tx, TenantID: tenantID, SubjectID: id, UserID: userID, erased: c.Erased}
		if after, err = s.runErasers(ctx, e); err != nil {
			return err
		}
		if err := s.keys.DestroySubjectKey(ctx, tx, tenantID, id); err != nil {
			return err
		}
		if err := e.Delete(ctx, "subject_bounces", "subject_id = ?", id); err != nil {
			return err
		}
		if err := e.Delete(ctx, "subjects", "id = ?", id); err != nil {
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
	var at, reached int64
	var counts string
	err := s.db.Read().QueryRow(ctx, `SELECT erased_at, reason, request_id, actor, counts, backups_reached_at, backups_held
		FROM erasure_certificates WHERE tenant_id = ? AND subject_id = ?`,
		tenantID, id).Scan(&at, &c.Reason, &c.RequestID, &c.By, &counts, &reached, &c.BackupsHeld)
	if errors.Is(err, sql.ErrNoRows) {
		return c, errs.E(errs.NotFound, "no erasure of this subject")
	}
	if err != nil {
		return c, err
	}
	c.ErasedAt = time.UnixMicro(at).UTC()
	if reached != 0 {
		t := time.UnixMicro(reached).UTC()
		c.BackupsReachedAt = &t
	}
	return c, json.Unmarshal([]byte(counts), &c.Erased)
}

// BackupsReached records on a subject's erasure certificate, in tx, that
// every kept backup lost their key at at, held of them having held it.
// Without a certificate (an anonymisation), nothing is recorded here.
func BackupsReached(ctx context.Context, tx *sqldb.Tx, tenantID, id string, at time.Time, held int) error {
	_, err := tx.Exec(ctx, "UPDATE erasure_certificates SET backups_reached_at = ?, backups_held = ? WHERE tenant_id = ? AND subject_id = ?",
		at.UnixMicro(), held, tenantID, id)
	return err
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
