package rights

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// The public privacy portal, /privacy/{tenant}: a person asks for one of
// their rights by giving an email address. Nothing is a request yet: an
// intake is kept, sealed under a key of its own, and a one-time link is
// mailed to the address. Only the person who can read that mailbox can
// turn it into a request, which then exists as verified. The portal
// answers the same whether or not the address is known, so it tells
// nobody who the tenant holds data about.

const (
	// intakeTTL is how long a confirmation link works.
	intakeTTL = 24 * time.Hour
	// maxPendingIntakes bounds the unconfirmed intakes of one address, so
	// that the portal cannot be used to flood a mailbox.
	maxPendingIntakes = 3
	// intakeLabel labels the hashes of confirmation links.
	intakeLabel = "portal-intake"
)

// PortalInput is what a person submits on the portal.
type PortalInput struct {
	Type     string
	Email    string
	Details  string
	Purposes []string
}

// intake is what is sealed of a PortalInput.
type intake struct {
	Email    string   `json:"email"`
	Details  string   `json:"details"`
	Purposes []string `json:"purposes"`
}

// Portal is what the portal's form shows.
type Portal struct {
	Organisation string
	Types        []string
	Purposes     []register.Purpose // those a person can object to or withdraw consent from
	Controller   tenant.Controller  // who the organisation is, and its DPO
}

// Portal returns what the portal of tenant slug shows.
func (s *Service) Portal(ctx context.Context, slug string) (Portal, error) {
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil || t.Status != "active" {
		return Portal{}, errs.E(errs.NotFound, "no such organisation")
	}
	ps, err := s.register.List(ctx, t.ID)
	if err != nil {
		return Portal{}, err
	}
	var objectable []register.Purpose
	for _, p := range ps {
		if slices.Contains(objectableBases, p.LegalBasis) {
			objectable = append(objectable, p)
		}
	}
	c, err := s.tenants.Controller(ctx, t.ID)
	if err != nil {
		return Portal{}, err
	}
	return Portal{Organisation: t.Name, Types: Types, Purposes: objectable, Controller: c}, nil
}

// Intake records what a person asked for on the portal and mails a
// confirmation link to the address they gave. Past maxPendingIntakes for
// the mailbox (the address without its +tag) it quietly does nothing: the
// answer is the same.
func (s *Service) Intake(ctx context.Context, slug string, in PortalInput) error {
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil || t.Status != "active" {
		return errs.E(errs.NotFound, "no such organisation")
	}
	if !slices.Contains(Types, in.Type) {
		return errs.Field("type", "one of %s", strings.Join(Types, ", "))
	}
	email, err := subject.NormalizeEmail(in.Email)
	if err != nil {
		return err
	}
	in.Details = strings.TrimSpace(in.Details)
	if err := checkNote(in.Details); err != nil {
		return errs.Field("details", "at most 4000 characters")
	}
	if err := s.checkPurposes(ctx, t.ID, in.Type, in.Purposes); err != nil {
		return err
	}
	bidx, err := s.keys.BlindIndex(ctx, s.db.Read(), t.ID, "email", email)
	if err != nil {
		return err
	}
	// The cap counts the mailbox: victim+1@, victim+2@… reach one inbox.
	mbidx, err := s.keys.BlindIndex(ctx, s.db.Read(), t.ID, "mailbox", subject.Mailbox(email))
	if err != nil {
		return err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	var pending int
	if err := s.db.Read().QueryRow(ctx, "SELECT COUNT(*) FROM portal_intakes WHERE tenant_id = ? AND mailbox_bidx = ? AND expires_at > ?",
		t.ID, mbidx, now.UnixMicro()).Scan(&pending); err != nil {
		return err
	}
	if pending >= maxPendingIntakes {
		return s.log.Record(ctx, t.ID, audit.Event{Action: "request.intake", TargetType: "tenant", TargetID: t.ID,
			Outcome: audit.Denied, Details: map[string]any{"type": in.Type, "reason": "too many unconfirmed requests for the address"}})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	key, wrapped, err := s.keys.NewSubjectKey(ctx, s.db.Read(), t.ID, id.String())
	if err != nil {
		return err
	}
	pt, err := json.Marshal(intake{Email: email, Details: in.Details, Purposes: in.Purposes})
	if err != nil {
		return err
	}
	secret := keyring.NewSecret()
	expires := now.Add(intakeTTL)
	link := fmt.Sprintf("%s/privacy/%s/confirm/%s", s.links, t.Slug, secret)
	return s.log.Commit(ctx, t.ID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := wrapped.Insert(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO portal_intakes (tenant_id, id, token_hash, type, email_bidx, mailbox_bidx, intake_ct, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, id.String(), keyring.HashSecret(intakeLabel, secret), in.Type, bidx, mbidx,
			key.Seal("portal_intakes", "intake_ct", id.String(), pt), expires.UnixMicro(), now.UnixMicro()); err != nil {
			return err
		}
		return s.mail.Queue(ctx, tx, key, mail.Message{TenantID: t.ID, SubjectID: id.String(), Kind: "request-confirm", To: email,
			Subject: "Confirm your request to " + t.Name,
			Text: fmt.Sprintf(`Hello,

Someone — we hope you — asked %s, on its privacy page, for this
about the personal data it holds on this address:

    %s

To confirm that it is you and send the request, open this link:

%s

It works once, until %s (UTC). If you did not ask for this,
ignore this mail: nothing is sent, and the link stops working.

%s`, t.Name, typeTitle(in.Type), link, expires.Format("2 January 2006 15:04"), s.tenants.Footer(ctx, t))})
	}, audit.Event{Action: "request.intake", TargetType: "tenant", TargetID: t.ID,
		Details: map[string]any{"type": in.Type, "intake_id": id.String(), "expires_at": expires.Format(time.RFC3339)}})
}

// typeTitle names a request type for people.
func typeTitle(t string) string {
	return map[string]string{
		"access":           "a copy of my personal data (access)",
		"portability":      "my data in a machine-readable file (portability)",
		"rectification":    "correct my personal data (rectification)",
		"erasure":          "erase my personal data (erasure)",
		"restriction":      "restrict the use of my personal data (restriction)",
		"objection":        "stop using my personal data for some purposes (objection)",
		"withdraw_consent": "withdraw my consent",
	}[t]
}

// TypeTitle names a request type for people.
func TypeTitle(t string) string { return typeTitle(t) }

// errIntakeLink answers a confirmation link that is unknown, used or
// expired: all alike.
var errIntakeLink = errs.E(errs.Gone, "this link is used or has expired; ask again on the privacy page")

// pendingIntake is an unconfirmed intake, opened.
type pendingIntake struct {
	tenantID, id, typ string
	expires           time.Time
	intake
}

// findIntake resolves the secret of an unexpired intake of tenant slug.
func (s *Service) findIntake(ctx context.Context, slug, secret string) (pendingIntake, error) {
	var p pendingIntake
	if !keyring.WellFormedSecret(secret) {
		return p, errIntakeLink
	}
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil {
		return p, errIntakeLink
	}
	var ct []byte
	var expires int64
	err = s.db.Read().QueryRow(ctx, "SELECT id, type, intake_ct, expires_at FROM portal_intakes WHERE token_hash = ? AND tenant_id = ?",
		keyring.HashSecret(intakeLabel, secret), t.ID).Scan(&p.id, &p.typ, &ct, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return p, errIntakeLink
	}
	if err != nil {
		return p, err
	}
	p.tenantID, p.expires = t.ID, time.UnixMicro(expires).UTC()
	if !s.now().Before(p.expires) {
		return p, errIntakeLink
	}
	key, err := s.keys.SubjectKey(ctx, s.db.Read(), t.ID, p.id)
	if err != nil {
		return p, errIntakeLink // purged meanwhile
	}
	pt, err := key.Open("portal_intakes", "intake_ct", p.id, ct)
	if err != nil {
		return p, err
	}
	return p, json.Unmarshal(pt, &p.intake)
}

// IntakePage is what a confirmation link's page shows.
type IntakePage struct {
	Organisation string
	Type         string
	Title        string
	ExpiresAt    time.Time
}

// ViewIntake returns what the page of a confirmation link shows. Opening
// it changes nothing (mail scanners open links); the form's POST confirms.
func (s *Service) ViewIntake(ctx context.Context, slug, secret string) (IntakePage, error) {
	p, err := s.findIntake(ctx, slug, secret)
	if err != nil {
		return IntakePage{}, err
	}
	t, err := s.tenants.ByID(ctx, p.tenantID)
	if err != nil {
		return IntakePage{}, err
	}
	return IntakePage{Organisation: t.Name, Type: p.typ, Title: typeTitle(p.typ), ExpiresAt: p.expires}, nil
}

// ConfirmIntake turns the intake of a confirmation link into a verified
// request (channel portal) and spends the link: of concurrent
// confirmations exactly one makes a request. The intake, its key and its
// mail go; a restriction, objection or withdrawal then takes effect.
func (s *Service) ConfirmIntake(ctx context.Context, slug, secret, ip, userAgent string) (Request, error) {
	p, err := s.findIntake(ctx, slug, secret)
	if err != nil {
		return Request{}, err
	}
	subjectID, err := s.person(ctx, p.tenantID, Input{Email: p.Email})
	if errs.Is(err, errs.Conflict) { // a parallel confirmation made them a subject just now
		subjectID, err = s.person(ctx, p.tenantID, Input{Email: p.Email})
	}
	if err != nil {
		return Request{}, err
	}
	key, err := s.subjects.Key(ctx, p.tenantID, subjectID)
	if err != nil {
		return Request{}, err
	}
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSubject, ID: subjectID, SubjectID: subjectID, IP: ip, UserAgent: userAgent, Key: key})
	r, err := s.create(ctx, p.tenantID, subjectID, Input{Type: p.typ, Channel: "portal", Note: p.Details, Purposes: p.Purposes}, true,
		func(ctx context.Context, tx *sqldb.Tx) error {
			res, err := tx.Exec(ctx, "DELETE FROM portal_intakes WHERE tenant_id = ? AND id = ?", p.tenantID, p.id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errIntakeLink
			}
			return s.dropIntake(ctx, tx, p.tenantID, p.id)
		})
	if err != nil {
		return Request{}, err
	}
	return s.applyVerified(ctx, p.tenantID, r)
}

// dropIntake destroys an intake's key and deletes its mail, in tx.
func (s *Service) dropIntake(ctx context.Context, tx *sqldb.Tx, tenantID, id string) error {
	if err := s.keys.DestroySubjectKey(ctx, tx, tenantID, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "DELETE FROM mail_outbox WHERE tenant_id = ? AND subject_id = ?", tenantID, id)
	return err
}

// PurgeIntakes deletes the intakes that expired unconfirmed, with their
// keys and mail, and answers how many went.
func (s *Service) PurgeIntakes(ctx context.Context) (int, error) {
	rows, err := s.db.Read().Query(ctx, "SELECT tenant_id, id FROM portal_intakes WHERE expires_at <= ? ORDER BY expires_at LIMIT 1000",
		s.now().UnixMicro())
	if err != nil {
		return 0, err
	}
	type expired struct{ tenantID, id string }
	var list []expired
	for rows.Next() {
		var e expired
		if err := rows.Scan(&e.tenantID, &e.id); err != nil {
			rows.Close()
			return 0, err
		}
		list = append(list, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	err = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		n = 0
		for _, e := range list {
			res, err := tx.Exec(ctx, "DELETE FROM portal_intakes WHERE tenant_id = ? AND id = ? AND expires_at <= ?", e.tenantID, e.id, s.now().UnixMicro())
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 1 {
				n++
				if err := s.dropIntake(ctx, tx, e.tenantID, e.id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return n, err
}

// Eraser is the rights' part of an erasure or anonymisation
// (subject.Eraser): the person's objections, the download links of their
// exports, and what they asked on the privacy portal without confirming
// (found by their email's blind index: each intake's own key, its mail,
// the intake). Their requests stay: the controller's record of handling
// them, what identified the person sealed under the key erasure destroys.
func (s *Service) Eraser() subject.Eraser {
	tables := []string{"objections", "download_links"}
	return subject.Eraser{Name: "rights", Tables: tables, Erase: func(ctx context.Context, e *subject.Erasure) (func(context.Context), error) {
		for _, t := range tables {
			if err := e.Delete(ctx, t, "subject_id = ?", e.SubjectID); err != nil {
				return nil, err
			}
		}
		intakes, err := e.Tx.Strings(ctx, `SELECT i.id FROM portal_intakes i JOIN subjects s ON s.tenant_id = i.tenant_id AND s.email_bidx = i.email_bidx
			WHERE i.tenant_id = ? AND s.id = ?`, e.TenantID, e.SubjectID)
		if err != nil {
			return nil, err
		}
		for _, i := range intakes {
			if err := s.keys.DestroySubjectKey(ctx, e.Tx, e.TenantID, i); err != nil {
				return nil, err
			}
			if err := e.Delete(ctx, "mail_outbox", "subject_id = ?", i); err != nil {
				return nil, err
			}
			if err := e.Delete(ctx, "portal_intakes", "id = ?", i); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}}
}
